"""The schema runs unchanged on Citus (issue 22): every table of a freshly migrated database is
classified in tracer.store.distribution.TABLES, every unique key of a distributed table holds its
distribution column, every foreign key between distributed tables pairs the two distribution
columns of one colocation group, and no reference table refers to a distributed one. The check
is shown failing on schemas that break each rule (made inside a transaction rolled back after).

Migration 026 dropped the foreign keys that crossed groups; what they did is now done by the
store, and the last tests hold it to that: a trace's deletion still takes its subscriptions and
deliveries with it, a subscription to a missing trace and a hop on a missing transfer still fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace

import asyncpg
import pytest

from tracer.cli import main
from tracer.domain.alerts import NewSubscription
from tracer.domain.records import HopRow
from tracer.domain.transfers import Transfer, TransferKind
from tracer.store import subscriptions as sub_store
from tracer.store import traces as trace_store
from tracer.store.db import Database
from tracer.store.distribution import TABLES, Distributed, Reference, citus_plan, violations

pytestmark = pytest.mark.asyncio(loop_scope="session")

ADDR = "0x" + "ab" * 20


async def test_migrated_schema_obeys_the_citus_rules(db: Database) -> None:
    async with db.pool.acquire() as conn:
        assert await violations(conn) == []


async def _broken(db: Database, ddl: str) -> list[str]:
    """The check's findings on the migrated schema plus `ddl`, which is rolled back afterwards."""
    async with db.pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute(ddl)
            return await violations(conn)
        finally:
            await tx.rollback()


async def test_a_new_table_must_be_classified(db: Database) -> None:
    found = await _broken(db, "CREATE TABLE watch_notes (id bigserial PRIMARY KEY, body text)")
    assert found == ["watch_notes: not in tracer.store.distribution.TABLES (say whether it is distributed or "
                     "reference)"]


async def test_unique_keys_of_distributed_tables_hold_the_distribution_column(db: Database) -> None:
    found = await _broken(db, """ALTER TABLE hops ADD CONSTRAINT hops_one_per_block UNIQUE (chain, block_number);
                                 CREATE UNIQUE INDEX transfers_by_sender ON transfers (chain, from_addr, position);
                                 CREATE UNIQUE INDEX labels_once ON labels (chain, address, source, entity, category,
                                                                            valid_from, lower(program))""")
    assert sorted(found) == [
        "hops.hops_one_per_block: unique key (chain, block_number) lacks the distribution column trace_id",
        "transfers.transfers_by_sender: unique key (chain, from_addr, position) lacks the distribution column "
        "tx_hash",
    ]  # labels is a reference table: any unique key goes


async def test_foreign_keys_stay_within_a_group_on_the_distribution_columns(db: Database) -> None:
    found = await _broken(db, """
        ALTER TABLE trace_exits ADD CONSTRAINT trace_exits_fetched FOREIGN KEY (chain, address)
            REFERENCES address_coverage (chain, address);
        ALTER TABLE deliveries ADD CONSTRAINT deliveries_by_event FOREIGN KEY (trace_key, event_id)
            REFERENCES events (id, trace_key);
        ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_trace FOREIGN KEY (trace_id) REFERENCES traces (id);
        ALTER TABLE jobs ADD CONSTRAINT jobs_trace_null FOREIGN KEY (trace_id) REFERENCES traces (id)
            ON DELETE SET NULL;
        ALTER TABLE events ADD CONSTRAINT events_trace FOREIGN KEY (trace_id) REFERENCES traces (id);
        ALTER TABLE case_traces ADD CONSTRAINT case_traces_note FOREIGN KEY (case_id) REFERENCES cases (id)""")
    assert sorted(found) == [
        "deliveries.deliveries_by_event -> events(id, trace_key): must pair trace_key with trace_key "
        "(the distribution columns)",
        "events.events_trace -> traces(id): must pair trace_key with id (the distribution columns)",
        "jobs.jobs_trace_null -> traces(id): SET NULL/SET DEFAULT (or ON UPDATE CASCADE) on a key holding the "
        "distribution column trace_id",
        "subscriptions.subscriptions_trace -> traces(id): a reference table cannot refer to a distributed one",
        "trace_exits.trace_exits_fetched -> address_coverage(chain, address): trace and address groups are not "
        "colocated",
    ]  # case_traces -> cases: from a distributed table into a reference one, which Citus allows


async def test_distribution_columns_are_not_null(db: Database) -> None:
    found = await _broken(db, "ALTER TABLE case_traces DROP CONSTRAINT case_traces_pkey;"
                              "ALTER TABLE case_traces ALTER COLUMN trace_id DROP NOT NULL")
    assert found == ["case_traces: distribution column trace_id must exist and be NOT NULL"]


async def test_citus_plan_distributes_every_table_once_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "citus-plan"]) == 0
    printed = capsys.readouterr().out
    assert printed == citus_plan()
    calls = [line for line in printed.splitlines() if line.startswith("SELECT create_")]
    assert [c.split("'")[1] for c in calls] == list(TABLES)
    assert "SELECT create_distributed_table('hops', 'trace_id', colocate_with => 'traces');" in calls
    assert "SELECT create_distributed_table('transfers', 'tx_hash', colocate_with => 'none');" in calls
    assert "SELECT create_distributed_table('address_coverage', 'address', colocate_with => 'none');" in calls
    assert "SELECT create_reference_table('labels');" in calls
    # Reference tables first: a distributed table's keys into them need them distributed already.
    kinds = [isinstance(TABLES[t], Distributed) for t in TABLES]
    assert kinds == sorted(kinds)
    assert sum(isinstance(p, Reference) for p in TABLES.values()) == kinds.count(False)


async def _trace(db: Database) -> int:
    async with db.pool.acquire() as conn:
        return await trace_store.insert_trace(conn, chain="ethereum", seeds=[ADDR], policy={}, label="citus",
                                              from_block=0, to_block=10)


def _subscription(trace_id: int | None, *, watch_trace_id: int | None = None) -> NewSubscription:
    return NewSubscription(
        name="s", delivery="webhook", url="http://127.0.0.1:9/hook", secret="x" * 32, chain="ethereum",
        trace_id=trace_id, addresses=None if trace_id else [ADDR], watch=False, watch_trace_id=watch_trace_id,
        categories=None, entities=None, event_types=None, min_amount=None, from_start=False, created_by=None,
        api_key_id=None,
    )


async def test_deleting_a_trace_takes_its_subscriptions_and_deliveries(db: Database) -> None:
    gone, kept = await _trace(db), await _trace(db)
    async with db.pool.acquire() as conn:
        on_trace = await sub_store.insert_subscription(conn, _subscription(gone))
        watching = await sub_store.insert_subscription(conn, _subscription(None, watch_trace_id=gone))
        other = await sub_store.insert_subscription(conn, _subscription(kept))
        # A delivery of each trace's creation event to the watchlist subscription.
        await conn.execute(
            """INSERT INTO deliveries (subscription_id, seq, event_id, trace_key)
               SELECT $1, row_number() OVER (ORDER BY id), id, trace_id FROM events
               WHERE trace_id = ANY($2::bigint[])""",
            watching, [gone, kept])
        await conn.execute(
            """INSERT INTO deliveries (subscription_id, seq, event_id, trace_key)
               SELECT $1, 1000 + row_number() OVER (ORDER BY id), id, trace_id FROM events
               WHERE trace_id = ANY($2::bigint[])""",
            on_trace, [gone, kept])
        assert await trace_store.delete_trace(conn, gone)
        assert not await trace_store.delete_trace(conn, gone)
        assert await conn.fetchval("SELECT count(*) FROM subscriptions WHERE id = $1", on_trace) == 0
        assert await conn.fetchval("SELECT watch_trace_id FROM subscriptions WHERE id = $1", watching) is None
        assert await conn.fetchval("SELECT trace_id FROM subscriptions WHERE id = $1", other) == kept
        left = await conn.fetch("SELECT trace_key FROM deliveries WHERE subscription_id = $1", watching)
        assert [r["trace_key"] for r in left] == [kept]
        assert await conn.fetchval("SELECT count(*) FROM deliveries WHERE subscription_id = $1", on_trace) == 0


async def test_deleting_a_subscription_takes_its_deliveries_after_a_fan_out_round(db: Database) -> None:
    """Deliveries hold no key into subscriptions (migration 029): a deletion waits for a fan-out
    round in progress (which may have read the subscription) and then deletes what it fanned out."""
    tid = await _trace(db)
    async with db.pool.acquire() as conn:
        gone = await sub_store.insert_subscription(conn, _subscription(tid))
        kept = await sub_store.insert_subscription(conn, _subscription(tid))
        event = await conn.fetchval("SELECT id FROM events WHERE trace_id = $1 LIMIT 1", tid)
    async with db.pool.acquire() as round_conn, db.pool.acquire() as conn:
        tx = round_conn.transaction()
        await tx.start()
        await round_conn.execute("SELECT last_seq FROM alert_state WHERE id = 1 FOR UPDATE")  # as a round does
        deleting = asyncio.create_task(sub_store.delete_subscription(conn, gone))
        await asyncio.sleep(0.3)
        assert not deleting.done(), "the deletion waits for the round"
        await round_conn.execute(
            """INSERT INTO deliveries (subscription_id, seq, event_id, trace_key)
               SELECT s, 1, $2, $3 FROM unnest($1::bigint[]) s""", [gone, kept], event, tid)
        await tx.commit()
        assert (await asyncio.wait_for(deleting, 5)) is not None
        left = await conn.fetch("SELECT subscription_id FROM deliveries WHERE event_id = $1", event)
        assert [r["subscription_id"] for r in left] == [kept]


async def test_a_subscription_to_a_missing_trace_still_fails(db: Database) -> None:
    missing = await _trace(db)
    async with db.pool.acquire() as conn:
        assert await trace_store.delete_trace(conn, missing)
        attempts: list[Callable[[], Awaitable[int]]] = [
            lambda: sub_store.insert_subscription(conn, _subscription(missing)),
            lambda: sub_store.insert_subscription(conn, _subscription(None, watch_trace_id=missing)),
        ]
        for attempt in attempts:
            with pytest.raises(asyncpg.ForeignKeyViolationError):
                await attempt()
        assert await conn.fetchval("SELECT count(*) FROM subscriptions WHERE trace_id = $1 OR watch_trace_id = $1",
                                   missing) == 0


async def test_a_hop_on_a_transfer_no_longer_stored_fails(db: Database) -> None:
    trace_id = await _trace(db)
    transfer = Transfer(chain="ethereum", block_number=5, block_time=50, tx_hash="0x" + "11" * 32, tx_index=0,
                        position="0", from_address=ADDR, to_address="0x" + "cd" * 20, asset="native", amount=7,
                        kind=TransferKind.NATIVE)
    async with db.pool.acquire() as conn:
        await trace_store.store_transfers(conn, [transfer])
        tid = await conn.fetchval("SELECT id FROM transfers WHERE tx_hash = $1", transfer.tx_hash)
        hop = HopRow(transfer_id=tid, from_addr=ADDR, to_addr=transfer.to_address, asset="native", block_number=5,
                     depth=1, amount=7, share=1.0, kind="native", status="followed", reason="flagged funds", parents=[])
        await conn.execute("DELETE FROM transfers WHERE id = $1", tid)  # a reorg between read and commit
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await trace_store.upsert_hops(conn, trace_id, [hop])
        await trace_store.store_transfers(conn, [transfer])
        again = await conn.fetchval("SELECT id FROM transfers WHERE tx_hash = $1", transfer.tx_hash)
        written = await trace_store.upsert_hops(conn, trace_id, [replace(hop, transfer_id=again)])
        assert [r.transfer_id for r in written] == [again]
