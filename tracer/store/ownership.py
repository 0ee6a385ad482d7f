"""SQL for ownership and the limits shared by API processes (schemas/migrations/010_ownership.sql).

Traces, subscriptions and private labels carry the key (owner_key_id) and team (owner_team) that
made them; a request acts on them when its key is the owner, shares the team, or is an admin
(the API decides, this module only reads and writes the columns). The rate buckets live here too:
one row per caller, updated in one statement, so every API process draws from the same bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracer.store.sql import Conn

ACTIVE = ("queued", "running", "watching")


@dataclass(frozen=True, slots=True)
class Owner:
    key_id: int | None
    team: str | None

    @property
    def nobody(self) -> bool:
        return self.key_id is None and self.team is None


@dataclass(frozen=True)
class Viewer:
    """Whose private labels a read sees besides the public ones (migration 010): a key's own and
    its team's; `everything` for admins listing labels to publish them and for the CLI."""

    key_id: int | None = None
    team: str | None = None
    everything: bool = False

    def args(self) -> tuple[bool, int | None, str | None]:
        return self.everything, self.key_id, self.team


#: The engine and anything shared by every caller: public labels only.
PUBLIC = Viewer()


def visible_sql(n: int) -> str:
    """The visibility test, with the Viewer's args as parameters $n, $n+1, $n+2."""
    return (f"(${n}::boolean OR NOT private OR owner_key_id = ${n + 1}::bigint "
            f"OR owner_team = ${n + 2}::text)")


async def set_trace_owner(conn: Conn, trace_id: int, owner: Owner) -> None:
    await conn.execute("UPDATE traces SET owner_key_id = $2, owner_team = $3 WHERE id = $1",
                       trace_id, owner.key_id, owner.team)


async def trace_owner(conn: Conn, trace_id: int) -> Owner | None:
    row = await conn.fetchrow("SELECT owner_key_id, owner_team FROM traces WHERE id = $1", trace_id)
    return Owner(row["owner_key_id"], row["owner_team"]) if row is not None else None


async def set_subscription_team(conn: Conn, subscription_id: int, team: str | None) -> None:
    if team is not None:
        await conn.execute("UPDATE subscriptions SET owner_team = $2 WHERE id = $1", subscription_id, team)


async def subscription_owner(conn: Conn, subscription_id: int) -> Owner | None:
    row = await conn.fetchrow("SELECT api_key_id, owner_team FROM subscriptions WHERE id = $1", subscription_id)
    return Owner(row["api_key_id"], row["owner_team"]) if row is not None else None


async def active_traces(conn: Conn, owner: Owner) -> int:
    """Unfinished traces of a key, or of its whole team when it has one."""
    if owner.team is not None:
        return int(await conn.fetchval(
            "SELECT count(*) FROM traces WHERE owner_team = $1 AND status = ANY($2::text[])", owner.team, list(ACTIVE)))
    return int(await conn.fetchval(
        "SELECT count(*) FROM traces WHERE owner_key_id = $1 AND status = ANY($2::text[])", owner.key_id, list(ACTIVE)))


async def subscriptions_of(conn: Conn, owner: Owner) -> int:
    if owner.team is not None:
        return int(await conn.fetchval("SELECT count(*) FROM subscriptions WHERE owner_team = $1", owner.team))
    return int(await conn.fetchval("SELECT count(*) FROM subscriptions WHERE api_key_id = $1", owner.key_id))


async def make_labels_private(conn: Conn, chain: str, address: str, source: str, owner: Owner) -> None:
    """Mark the owner's labels of an address (its own source) private to it."""
    await conn.execute(
        """UPDATE labels SET private = true, owner_key_id = $4, owner_team = $5
           WHERE chain = $1 AND address = $2 AND source = $3 AND NOT private""",
        chain, address, source, owner.key_id, owner.team)


async def publish_label(conn: Conn, label_id: int) -> bool | None:
    """Make a label public: True if it was private, False if already public, None if absent."""
    row = await conn.fetchrow(
        """WITH old AS (SELECT id, private FROM labels WHERE id = $1 FOR UPDATE)
           UPDATE labels l SET private = false, updated_at = now() FROM old WHERE l.id = old.id
           RETURNING old.private""", label_id)
    return None if row is None else bool(row["private"])


async def label_privacy(conn: Conn, label_ids: list[int]) -> dict[int, bool]:
    rows = await conn.fetch("SELECT id, private FROM labels WHERE id = ANY($1::bigint[])", label_ids)
    return {r["id"]: r["private"] for r in rows}


async def take_token(conn: Conn, caller: str, rate: float, burst: float) -> float:
    """Spend one token of `caller`'s bucket (refilled at `rate` per second up to `burst`), in one
    statement: 0.0 when allowed, else the seconds until a token is there. The bucket row is
    locked for the statement, so concurrent requests of one caller, whichever process serves
    them, are counted one after the other."""
    tokens = await conn.fetchval(
        """WITH prev AS (
               SELECT least($3, tokens + greatest(0, extract(epoch FROM clock_timestamp() - at)) * $2) AS t
               FROM api_rate_buckets WHERE caller = $1 FOR UPDATE
           ), want AS (
               SELECT coalesce((SELECT t FROM prev), $3) AS t
           ), up AS (
               INSERT INTO api_rate_buckets AS b (caller, tokens, at)
               SELECT $1, CASE WHEN t >= 1 THEN t - 1 ELSE t END, clock_timestamp() FROM want
               ON CONFLICT (caller) DO UPDATE SET tokens = EXCLUDED.tokens, at = EXCLUDED.at
               RETURNING 1
           )
           SELECT t FROM want""",
        caller, float(rate), float(burst))
    left = float(tokens)
    return 0.0 if left >= 1.0 else (1.0 - left) / rate


async def prune_buckets(conn: Conn, idle_seconds: float) -> None:
    """Forget buckets idle long enough to be full again (they behave exactly like new ones)."""
    await conn.execute("DELETE FROM api_rate_buckets WHERE at < clock_timestamp() - make_interval(secs => $1)",
                       idle_seconds)
