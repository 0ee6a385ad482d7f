"""What the worker learns about transfers after storing them: block times and token names.

Transfers are fetched and stored without block times and token names (tracer.chains.evm reads no
header while fetching); the worker reads them for the transfers that become hops and fills them
in here. Token names are kept per token across traces (migration 016).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tracer.store.hops import EXIT_FIRST, EXIT_LAST
from tracer.store.hops import FIRST_UNKNOWN as _FIRST_UNKNOWN
from tracer.store.hops import LAST_UNKNOWN as _LAST_UNKNOWN
from tracer.store.traces import Conn


async def describe_transfers(conn: Conn, rows: Sequence[tuple[int, int, int | None, str | None]]) -> None:
    """Fill what transfers (by id) were stored without: the block time (-1) and the token's
    decimals and symbol (NULL), (id, block_time, decimals, symbol) each; what is known stays."""
    if not rows:
        return
    ordered = sorted(rows)
    async with conn.transaction():
        await conn.execute(
            """UPDATE transfers t SET block_time = CASE WHEN t.block_time < 0 THEN b.ts ELSE t.block_time END,
                                      decimals = COALESCE(t.decimals, b.decimals), symbol = COALESCE(t.symbol, b.symbol)
               FROM unnest($1::bigint[], $2::bigint[], $3::int[], $4::text[]) AS b(id, ts, decimals, symbol)
               WHERE t.id = b.id""",
            [r[0] for r in ordered], [r[1] for r in ordered], [r[2] for r in ordered], [r[3] for r in ordered],
        )
        await _complete_exits(conn, [r[0] for r in ordered])


async def _complete_exits(conn: Conn, transfer_ids: Sequence[int]) -> None:
    """Exits (of any trace) whose first or last block holds one of these transfers and whose time or
    token name was not known when their row was written: read them again, now that they may be."""
    first = EXIT_FIRST.format(e="e", addr="address")
    await conn.execute(
        f"""WITH d AS (SELECT DISTINCT chain, to_addr, asset, block_number FROM transfers
                       WHERE id = ANY($1::bigint[]))
            UPDATE trace_exits e SET
                first_time = CASE WHEN {_FIRST_UNKNOWN} THEN (SELECT block_time FROM ({first}) x) ELSE e.first_time END,
                decimals = CASE WHEN {_FIRST_UNKNOWN} THEN (SELECT decimals FROM ({first}) x) ELSE e.decimals END,
                symbol = CASE WHEN {_FIRST_UNKNOWN} THEN (SELECT symbol FROM ({first}) x) ELSE e.symbol END,
                last_time = CASE WHEN {_LAST_UNKNOWN}
                                 THEN (SELECT block_time FROM ({EXIT_LAST.format(e="e", addr="address")}) x)
                                 ELSE e.last_time END
            FROM d
            WHERE e.chain = d.chain AND e.address = d.to_addr AND e.asset = d.asset
              AND d.block_number IN (e.first_block, e.last_block) AND ({_FIRST_UNKNOWN} OR {_LAST_UNKNOWN})""",
        list(transfer_ids),
    )


async def token_meta(conn: Conn, chain: str, tokens: Sequence[str]) -> dict[str, tuple[int | None, str | None]]:
    """(decimals, symbol) of the tokens named before, by any trace."""
    rows = await conn.fetch(
        "SELECT token, decimals, symbol FROM token_meta WHERE chain = $1 AND token = ANY($2::text[])",
        chain, list(tokens))
    return {r["token"]: (r["decimals"], r["symbol"]) for r in rows}


async def save_token_meta(conn: Conn, chain: str, meta: Mapping[str, tuple[int | None, str | None]]) -> None:
    """Keep what the node named (a token it named nothing for is asked again next time)."""
    named = sorted((t, d, s) for t, (d, s) in meta.items() if d is not None or s is not None)
    if not named:
        return
    await conn.execute(
        """INSERT INTO token_meta (chain, token, decimals, symbol)
           SELECT $1, t, d, s FROM unnest($2::text[], $3::smallint[], $4::text[]) AS x(t, d, s)
           ON CONFLICT (chain, token) DO NOTHING""",
        chain, [n[0] for n in named], [n[1] for n in named], [n[2] for n in named],
    )
