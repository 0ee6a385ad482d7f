"""Where every table would live on Citus, and the catalog check that the schema allows it.

Citus hash-distributes a table by one column; a unique key (primary key, unique constraint or
unique index) of a distributed table is only enforceable on one shard if it contains that column,
and a foreign key is only enforceable between two colocated distributed tables on their
distribution columns, or from any table into a reference table (replicated to every node).
A reference table cannot hold a key into a distributed one. Migration 026 made the schema obey
these rules; `violations` reads the catalog and says where a schema breaks them (the suite runs it
on a freshly migrated database), and `citus_plan` is the SQL an operator runs once on a Citus
coordinator after `tracer db migrate` (`tracer db citus-plan` prints it).

The trace group (bigint) holds a trace and everything it wrote, so a trace's reads, writes and
cascading deletes stay on one node. The shared chain transfers go by transaction (tx_hash): an even
spread whatever one address's volume (an exchange's hot wallet sends millions), a transaction's
transfers together, and their natural key unchanged; a trace's probe reads a batch of hundreds of
addresses at once, which reaches every shard under any key. Keyed by sender instead, the unique key
had to take from_addr, and Postgres then planned address probes through it rather than through
transfers_from, changing the order rows came back in (test_reliability_reorg saw it). The
addresses' fetched block ranges go by address. Everything else is small, or read by joins
everywhere, so it is a reference table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tracer.store.sql import Conn


@dataclass(frozen=True)
class Distributed:
    """Hash-distributed by `column`, colocated with the other tables of `group`."""

    column: str
    group: str


@dataclass(frozen=True)
class Reference:
    """Replicated to every node (small tables every join reads)."""


Placement = Distributed | Reference

TRACE = "trace"
TRANSACTION = "transaction"
ADDRESS = "address"

# In the order an operator distributes them: a table's foreign keys point at tables above it (the
# test checks), reference tables first, and each group's first table leads its colocation.
TABLES: dict[str, Placement] = {
    "schema_migrations": Reference(),
    "api_keys": Reference(),
    "api_secrets": Reference(),
    "api_rate_buckets": Reference(),
    "audit_log": Reference(),
    "labels": Reference(),
    "label_imports": Reference(),
    "label_events": Reference(),
    "chain_ids": Reference(),
    "chain_blocks": Reference(),
    "block_pins": Reference(),
    "node_state": Reference(),
    "token_meta": Reference(),
    "price_feeds": Reference(),
    "prices": Reference(),
    "mixer_events": Reference(),
    "mixer_coverage": Reference(),
    "alert_state": Reference(),
    "subscriptions": Reference(),
    "cases": Reference(),
    "case_notes": Reference(),
    "case_tags": Reference(),
    # The trace group: what one trace reads and writes, joined on the trace.
    "traces": Distributed("id", TRACE),
    "jobs": Distributed("trace_id", TRACE),
    "hops": Distributed("trace_id", TRACE),
    # trace_key = coalesce(trace_id, 0): a screening result belongs to no trace (migration 028).
    "events": Distributed("trace_key", TRACE),
    "trace_chains": Distributed("trace_id", TRACE),
    "trace_exits": Distributed("trace_id", TRACE),
    "mixer_deposits": Distributed("trace_id", TRACE),
    "mixer_links": Distributed("trace_id", TRACE),
    "backward_bridges": Distributed("trace_id", TRACE),
    "case_traces": Distributed("trace_id", TRACE),
    # A delivery lives with its event (delete_trace deletes both: migration 029).
    "deliveries": Distributed("trace_key", TRACE),
    # Chain facts shared by every trace: transfers by transaction, fetched ranges by address.
    "transfers": Distributed("tx_hash", TRANSACTION),
    "address_coverage": Distributed("address", ADDRESS),
}


@dataclass(frozen=True)
class Key:
    """A unique or foreign key as the catalog has it."""

    table: str
    name: str
    kind: str  # 'p' primary, 'u' unique, 'x' exclusion, 'i' unique index, 'f' foreign
    columns: tuple[str | None, ...]  # None: an expression
    ref_table: str | None = None
    ref_columns: tuple[str, ...] = ()
    on_delete: str = "a"  # pg_constraint.confdeltype: a no action, r restrict, c cascade, n null, d default
    on_update: str = "a"


def citus_plan(tables: dict[str, Placement] | None = None) -> str:
    """The SQL that turns a migrated tracer database on a Citus coordinator into a cluster."""
    tables = TABLES if tables is None else tables
    leaders: dict[str, str] = {}
    lines = ["-- tracer on Citus: run once on the coordinator after `tracer db migrate`, before any worker starts.",
             "-- Foreign keys need one shard copy per table (the default).",
             "SET citus.shard_replication_factor = 1;"]
    for table, placement in tables.items():
        if isinstance(placement, Reference):
            lines.append(f"SELECT create_reference_table('{table}');")
        else:
            leader = leaders.setdefault(placement.group, table)
            colocate = "none" if leader == table else leader
            lines.append(f"SELECT create_distributed_table('{table}', '{placement.column}', "
                         f"colocate_with => '{colocate}');")
    return "\n".join(lines) + "\n"


def check(tables: Iterable[str], keys: Sequence[Key], not_null: dict[tuple[str, str], bool],
          placements: dict[str, Placement] | None = None) -> list[str]:
    """What would stop `citus_plan` (or a write after it) on this schema, one line per problem."""
    placements = TABLES if placements is None else placements
    found = set(tables)
    problems = [f"{t}: not in tracer.store.distribution.TABLES (say whether it is distributed or reference)"
                for t in sorted(found - placements.keys())]
    problems += [f"{t}: in TABLES but not in the schema" for t in sorted(placements.keys() - found)]
    for table, placement in placements.items():
        if isinstance(placement, Distributed) and table in found and not not_null.get((table, placement.column)):
            problems.append(f"{table}: distribution column {placement.column} must exist and be NOT NULL")
    order = {t: i for i, t in enumerate(placements)}
    for key in keys:
        mine = placements.get(key.table)
        if mine is None:
            continue
        if key.kind != "f":
            if isinstance(mine, Distributed) and mine.column not in key.columns:
                problems.append(f"{key.table}.{key.name}: unique key {_cols(key.columns)} lacks the distribution "
                                f"column {mine.column}")
            continue
        problems += _foreign_key_problems(key, mine, placements.get(key.ref_table or ""), order)
    return problems


def _foreign_key_problems(key: Key, mine: Placement, theirs: Placement | None, order: dict[str, int]) -> list[str]:
    where = f"{key.table}.{key.name} -> {key.ref_table}{_cols(key.ref_columns)}"
    if theirs is None:
        return []  # the missing table is reported once, above
    problems = []
    if isinstance(mine, Reference):
        if isinstance(theirs, Distributed):
            problems.append(f"{where}: a reference table cannot refer to a distributed one")
    else:
        if mine.column in key.columns and (key.on_delete in "nd" or key.on_update in "ndc"):
            problems.append(f"{where}: SET NULL/SET DEFAULT (or ON UPDATE CASCADE) on a key holding the "
                            f"distribution column {mine.column}")
        if isinstance(theirs, Distributed) and theirs.group != mine.group:
            problems.append(f"{where}: {mine.group} and {theirs.group} groups are not colocated")
        elif isinstance(theirs, Distributed) and (
                mine.column not in key.columns or theirs.column not in key.ref_columns
                or key.columns.index(mine.column) != key.ref_columns.index(theirs.column)):
            problems.append(f"{where}: must pair {mine.column} with {theirs.column} (the distribution columns)")
    if not problems and key.ref_table != key.table and order[key.ref_table or ""] > order[key.table]:
        # A key Citus would accept, but only once the table it refers to is distributed.
        problems.append(f"{where}: {key.ref_table} must come before {key.table} in TABLES")
    return problems


def _cols(columns: Iterable[str | None]) -> str:
    return "(" + ", ".join(c or "<expression>" for c in columns) + ")"


_KEYS = """
SELECT cl.relname::text AS table, c.conname::text AS name, c.contype::text AS kind,
       ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i) AS columns,
       rf.relname::text AS ref_table,
       ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i) AS ref_columns,
       c.confdeltype::text AS on_delete, c.confupdtype::text AS on_update
FROM pg_constraint c JOIN pg_class cl ON cl.oid = c.conrelid LEFT JOIN pg_class rf ON rf.oid = c.confrelid
WHERE cl.relnamespace = current_schema()::regnamespace AND c.contype IN ('p', 'u', 'x', 'f')
UNION ALL
SELECT cl.relname::text, ic.relname::text, 'i',
       ARRAY(SELECT a.attname::text FROM unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY k(n, o)
             LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o),
       NULL, '{}'::text[], 'a', 'a'
FROM pg_index i JOIN pg_class cl ON cl.oid = i.indrelid JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE cl.relnamespace = current_schema()::regnamespace AND i.indisunique
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid)
"""

_COLUMNS = """
SELECT cl.relname::text AS table, a.attname::text AS column, a.attnotnull AS not_null
FROM pg_class cl JOIN pg_attribute a ON a.attrelid = cl.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE cl.relnamespace = current_schema()::regnamespace AND cl.relkind IN ('r', 'p')
"""


async def violations(conn: Conn, placements: dict[str, Placement] | None = None) -> list[str]:
    """`check` over the connected database's schema (the tables of its current schema)."""
    columns = await conn.fetch(_COLUMNS)
    keys = [Key(r["table"], r["name"], r["kind"], tuple(r["columns"]), r["ref_table"], tuple(r["ref_columns"]),
                r["on_delete"], r["on_update"]) for r in await conn.fetch(_KEYS)]
    not_null = {(r["table"], r["column"]): bool(r["not_null"]) for r in columns}
    return check({r["table"] for r in columns}, keys, not_null, placements)


__all__ = ["ADDRESS", "TABLES", "TRACE", "TRANSACTION", "Distributed", "Key", "Placement", "Reference", "check",
           "citus_plan", "violations"]
