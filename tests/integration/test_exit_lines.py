"""GET /exits of a forward trace sends lines whose JSON Postgres wrote (tracer.store.exits): they say
exactly what tracer.api.serialize.exit_line says of the same rows (every way an exit is recognised,
a token, a time not known yet, an exit on another chain, text that needs escaping), and a running
trace's next answer holds a hop the moment its commit returns (nothing kept between requests).
Real Postgres, a real server on a socket, the store functions the worker's commit calls."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import orjson
import pytest

from tests.api_support import conforms, running_api
from tracer.api import serialize as ser
from tracer.api.context import Settings
from tracer.api.handlers.exits import _shown, encoded_items
from tracer.domain.chains import EVM_CHAINS, NATIVE_DECIMALS_OF, NATIVE_SYMBOL, native_unit
from tracer.domain.records import HopRow
from tracer.domain.transfers import Transfer, TransferKind
from tracer.store import exits as exit_store
from tracer.store import keys as key_store
from tracer.store import reads
from tracer.store import traces as store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHAIN = "exitlines-chain"  # its own chain: no other test's transfers share its blocks
SEED = "0x" + "5c" * 20
TOKEN = "0x" + "7c" * 20
TRON_EXIT = "0x41" + "ab" * 20  # a Tron address as stored; the body shows it as T...


def _addr(i: int) -> str:
    return f"0x{0xE1E0000 + i:040x}"


#: Exit addresses and the trace's verdict on each: (reason, entity, category, evidence), None: no verdict.
VERDICTS: dict[str, tuple[str | None, str | None, str | None, dict[str, Any] | None] | None] = {
    _addr(1): ("label:ofac", "Exchange \"Q\" \\ ünï", "exchange", {"list": "sdn", "n": 1.5, "nested": {"a": [1, 2]}}),
    _addr(2): ("deposit_address", "Deposit", "exchange", {"source": "sweeps", "sweeps": 3}),
    _addr(3): ("deposit_address", None, None, None),
    _addr(4): ("bridge", "Bridge", "bridge", {"recognised_by": "event", "events": ["Deposit", "Locked"]}),
    _addr(5): ("bridge", "Bridge", "bridge", {"recognised_by": "event", "events": []}),
    _addr(6): ("max_value\nodd", None, None, {}),
    _addr(7): None,
    TRON_EXIT: ("label:tron", "Tron exchange", "exchange", None),
}


async def _trace(db: Database) -> tuple[int, list[Transfer], dict[str, int]]:
    async with db.pool.acquire() as conn:
        trace_id = await store.insert_trace(conn, chain=CHAIN, seeds=[SEED], policy={}, label="exit-lines",
                                            from_block=1, to_block=1000)
        await store.start_trace(conn, trace_id, {"native": 10**20, TOKEN: 7 * 10**9}, [SEED])
        transfers: list[Transfer] = []
        for i, address in enumerate(VERDICTS):
            token = i in (0, 4)  # addresses 1 and 5
            # Address 3's transfers carry no time yet (-1), as the worker stores them before describing.
            transfers.append(Transfer("tron" if address == TRON_EXIT else CHAIN, 100 + i,
                                      -1 if i == 2 else 1_700_000_000 + 12 * i, f"0x{0xE1E00 + i:064x}", 0, "tx",
                                      SEED, address, TOKEN if token else "native", 3 * 10**18 + 7 * i if not token
                                      else 1_234_567 + i, TransferKind.TOKEN if token else TransferKind.NATIVE,
                                      6 if token else None, "US\"DT" if token else None))
        await store.store_transfers(conn, transfers)
        ids = {r["tx_hash"]: r["id"] for r in await conn.fetch(
            "SELECT id, tx_hash FROM transfers WHERE tx_hash = ANY($1::text[])", [t.tx_hash for t in transfers])}
        for address, verdict in VERDICTS.items():
            if verdict is None:
                continue
            reason, entity, category, evidence = verdict
            await conn.execute(
                """INSERT INTO jobs (trace_id, chain, address, kind, depth, state, role, reason, entity, category,
                                     evidence)
                   VALUES ($1, $2, $3, 'address', 1, 'done', 'exit', $4, $5, $6, $7::jsonb)""",
                trace_id, "tron" if address == TRON_EXIT else CHAIN, address, reason, entity, category,
                evidence)
    return trace_id, transfers, ids


def _hop(t: Transfer, ids: dict[str, int], amount: int | None = None) -> HopRow:
    return HopRow(transfer_id=ids[t.tx_hash], from_addr=t.from_address, to_addr=t.to_address, asset=t.asset,
                  block_number=t.block_number, depth=1, amount=t.amount if amount is None else amount, share=1.0,
                  kind=str(t.kind), status="exit", reason="label:test", parents=[],
                  chain="tron" if t.chain == "tron" else None)


async def test_lines_written_by_postgres_say_what_the_serializer_says(db: Database) -> None:
    trace_id, transfers, ids = await _trace(db)
    async with db.pool.acquire() as conn, conn.transaction():
        await store.upsert_hops(conn, trace_id, [_hop(t, ids) for t in transfers])
    totals = {"native": 10**20, TOKEN: 7 * 10**9}
    async with db.pool.acquire() as conn:
        # A row written before trace_exits kept checksums: the API computes the address's.
        await conn.execute("UPDATE trace_exits SET address_checksum = NULL WHERE trace_id = $1 AND address = $2",
                           trace_id, _addr(2))
        rows = await reads.exits(conn, trace_id)
        lines = await exit_store.exit_lines(conn, trace_id, CHAIN, totals)
        tokens = await exit_store.exit_lines(conn, trace_id, CHAIN, totals, asset=TOKEN)
        exchanges = await exit_store.exit_lines(conn, trace_id, CHAIN, totals, category="exchange")
        no_checksum = await exit_store.exit_items(conn, trace_id, CHAIN, totals)
        await store.refresh_exits(conn, trace_id, [(CHAIN, _addr(2))])  # as the next commit into it would
        whole = await exit_store.exit_items(conn, trace_id, CHAIN, totals)
    assert len(rows) == len(VERDICTS) and [(x.address, x.asset) for x in lines] == [(r.address, r.asset) for r in rows]
    assert {x.asset for x in tokens} == {TOKEN} and len(tokens) == 2
    assert {x.address for x in exchanges} == {_addr(1), _addr(2), TRON_EXIT}
    assert f'"address_checksum":"{ser.checksummed(lines[0].address)}"' in lines[0].line
    assert [x.address for x in lines if x.no_checksum] == [_addr(2)] and no_checksum is None
    assert [x.address for x in lines if x.tron] == [TRON_EXIT]
    # The time not known yet is looked up (-1, as the serializer shows what reads.exits found).
    assert next(r for r in rows if r.address == _addr(3)).first_time == -1

    ours = json.loads(encoded_items(lines, None, None, "amount"))
    # The whole array as Postgres wrote it for a trace without dollars: the same lines.
    assert whole is not None and whole.tron and json.loads(_shown(whole.items, whole.tron)) == ours
    assert whole.reached == {"native": sum(r.amount for r in rows if r.asset == "native"),
                             TOKEN: sum(r.amount for r in rows if r.asset == TOKEN)}
    assert ours[0]["address"].startswith("T")  # the Tron exit, shown as the API shows it
    for item in ours:
        item["address"] = item["address"] if item["chain"] != "tron" else TRON_EXIT
    theirs = [ser.exit_line(CHAIN, r, totals) for r in rows]  # before the body's Tron display
    assert ours == theirs
    # Byte for byte where no evidence document is in the line (Postgres spaces jsonb's text).
    for line, item in zip(ours, theirs, strict=True):
        if item["recognised_by"]["evidence"] is None:
            assert orjson.dumps(line) == orjson.dumps(item)
    by_address = {i["address"]: i for i in ours}
    assert by_address[_addr(4)]["recognised_by"]["source"] == "Deposit, Locked"
    assert by_address[_addr(5)]["recognised_by"]["source"] == "bridge"
    assert by_address[_addr(2)]["recognised_by"]["source"] == "sweeps"
    assert by_address[_addr(3)]["recognised_by"]["source"] == "behaviour"
    assert by_address[_addr(1)]["entity"] == "Exchange \"Q\" \\ ünï"
    assert by_address[_addr(7)]["recognised_by"] == {"method": "other", "source": None, "evidence": None}
    token_line = by_address[_addr(1)]
    assert (token_line["amount"], token_line["symbol"], token_line["decimals"]) == ("1.234567", "US\"DT", 6)
    assert by_address[TRON_EXIT]["share"] == 0.0 and by_address[TRON_EXIT]["decimals"] == 6  # sun, another chain

    # Dollars, a floor on them and their order: as the serializer's lines with the same dollars.
    class Dollars:
        def exit_usd(self, chain: str, address: str, asset: str) -> Decimal | None:
            return None if address == _addr(6) else Decimal(int(address[-2:], 16)) * Decimal("1.005")

        def share(self, usd: Decimal | None) -> float | None:
            return None if usd is None else float(usd / 1000)

    d: Any = Dollars()
    priced = json.loads(encoded_items(lines, d, Decimal("3"), "usd"))
    for item in priced:
        item["address"] = item["address"] if item["chain"] != "tron" else TRON_EXIT
    expected = [ser.exit_line(CHAIN, r, totals, {"usd": ser_usd, "usd_share": d.share(v)})
                for r in rows for v in [d.exit_usd(r.chain, r.address, r.asset)] for ser_usd in [_usd(v)]
                if v is not None and v >= 3]
    expected.sort(key=lambda i: (i["usd"] is None, -Decimal(i["usd"] or 0)))
    assert priced == expected and len(priced) >= 3


def _usd(v: Decimal | None) -> str | None:
    return None if v is None else format(v.quantize(Decimal("0.01")), "f")


async def _three_exits_committed(db: Database) -> tuple[int, list[Transfer], dict[str, int], str]:
    """A running trace with its first three exit hops committed, and a read key for its API."""
    trace_id, transfers, ids = await _trace(db)
    async with db.pool.acquire() as conn:
        _, key = await key_store.create_key(conn, f"exit-lines-{trace_id}", ["read"], created_by="test")
        async with conn.transaction():
            await store.upsert_hops(conn, trace_id, [_hop(t, ids) for t in transfers[:3]])
        await conn.execute("UPDATE traces SET hop_count = 3 WHERE id = $1", trace_id)
    return trace_id, transfers, ids, key


@pytest.mark.parametrize("live_usd_max_hops", [20_000, 0])
async def test_a_running_traces_next_answer_holds_the_hop_just_committed(db: Database,
                                                                         live_usd_max_hops: int) -> None:
    trace_id, transfers, ids, key = await _three_exits_committed(db)
    url = f"/v1/traces/{trace_id}/exits"
    async with running_api(db, {}, Settings(live_usd_max_hops=live_usd_max_hops)) as api:
        _, first, _ = await api.call("GET", url, key=key, expect=200)
        conforms("exit-list", first)
        assert first["status"] == "running" and len(first["items"]) == 3
        assert ("deferred" in first["usd"]) == (live_usd_max_hops == 0)
        # One commit: a new exit, and more into an exit already listed.
        async with db.pool.acquire() as conn, conn.transaction():
            await store.upsert_hops(conn, trace_id, [_hop(transfers[3], ids),
                                                     _hop(transfers[0], ids, amount=transfers[0].amount * 2)])
        _, second, _ = await api.call("GET", url, key=key, expect=200)
        conforms("exit-list", second)
        amounts = {i["address"]: int(i["amount_raw"]) for i in second["items"]}
        assert len(second["items"]) == 4 and amounts[_addr(4)] == transfers[3].amount
        assert amounts[_addr(1)] == transfers[0].amount * 2
        reached = {t["total"]["asset"]: int(t["reached_exits"]["amount_raw"]) for t in second["totals"]}
        assert reached == {"native": sum(t.amount for t in transfers[1:4]), TOKEN: transfers[0].amount * 2}
        # The Tron exit (another chain) comes in shown as T..., in its own units.
        async with db.pool.acquire() as conn, conn.transaction():
            await store.upsert_hops(conn, trace_id, [_hop(transfers[-1], ids)])
        _, third, _ = await api.call("GET", url, key=key, expect=200)
        conforms("exit-list", third)
        tron = [i for i in third["items"] if i["chain"] == "tron"]
        assert len(tron) == 1 and tron[0]["address"].startswith("T") and tron[0]["address_checksum"] == \
            tron[0]["address"]


Verdict = tuple[str, int, str, str, str | None, str | None, dict[str, Any] | None]


def _verdict(address: str, reason: str, entity: str | None, category: str | None,
             evidence: dict[str, Any] | None) -> Verdict:
    return address, 1, "exit", reason, entity, category, evidence


async def _as_serializer_says(db: Database, trace_id: int, **params: str) -> list[dict[str, Any]]:
    """The trace's lines as tracer.api.serialize.exit_line writes them from rows read now (the
    verdicts joined, the shares divided): what an answer must hold whatever was stored before."""
    async with db.pool.acquire() as conn:
        trace = await store.get_trace(conn, trace_id)
        assert trace is not None
        totals = {a: int(v) for a, v in (trace.totals or {}).items()}
        rows = await reads.exits(conn, trace_id)
        verdicts = {r["address"]: r["category"] for r in await conn.fetch(
            "SELECT address, category FROM jobs WHERE trace_id = $1", trace_id)}
    lines = [ser.exit_line(CHAIN, r, totals) for r in rows if params.get("category") in (None, verdicts.get(r.address))]
    return [{k: v for k, v in i.items() if k not in ("usd", "usd_share")} for i in lines]


@pytest.mark.parametrize("live_usd_max_hops", [20_000, 0])
async def test_a_verdict_or_the_totals_changed_are_in_the_next_answer(db: Database, live_usd_max_hops: int) -> None:
    """Each line's verdict and share are written with its row (migration 033): a verdict committed
    with a hop into its address (either order in one transaction), or on its own, or dropped, and
    totals changed since, are all in the next answer."""
    trace_id, transfers, ids, key = await _three_exits_committed(db)
    transfers = transfers[:-1]  # the Tron exit is another test's
    url = f"/v1/traces/{trace_id}/exits"

    async with running_api(db, {}, Settings(live_usd_max_hops=live_usd_max_hops)) as api:
        async def answer_is_right(**params: str) -> list[dict[str, Any]]:
            query = "".join(f"&{k}={v}" for k, v in params.items())
            _, body, _ = await api.call("GET", url + ("?" + query[1:] if query else ""), key=key, expect=200)
            conforms("exit-list", body)
            items = [{k: v for k, v in i.items() if k not in ("usd", "usd_share")} for i in body["items"]]
            assert items == await _as_serializer_says(db, trace_id, **params)
            return items

        await answer_is_right()
        # A new exit's hop, then its verdict, in one commit.
        async with db.pool.acquire() as conn, conn.transaction():
            await store.upsert_hops(conn, trace_id, [_hop(transfers[6], ids)])
            await store.set_verdicts(conn, trace_id, [_verdict(_addr(7), "label:late", "Late \"X\"", "exchange",
                                                               {"k": [1, 2]})])
        late = {i["address"]: i for i in await answer_is_right()}[_addr(7)]
        assert (late["entity"], late["recognised_by"]["source"]) == ('Late "X"', "late")
        # A listed exit's verdict changed, then more hops into it, in one commit.
        async with db.pool.acquire() as conn, conn.transaction():
            await store.set_verdicts(conn, trace_id, [_verdict(_addr(1), "bridge", "Renamed", "bridge",
                                                               {"recognised_by": "event", "events": ["Sent"]})])
            await store.upsert_hops(conn, trace_id, [_hop(transfers[0], ids, amount=transfers[0].amount * 3)])
        renamed = {i["address"]: i for i in await answer_is_right()}[_addr(1)]
        assert (renamed["entity"], renamed["recognised_by"]["source"]) == ("Renamed", "Sent")
        # A verdict on its own, and the category filter that reads it.
        async with db.pool.acquire() as conn:
            await store.set_verdicts(conn, trace_id, [_verdict(_addr(2), "label:b", "B", "bridge", None)])
        assert {i["address"] for i in await answer_is_right(category="bridge")} == {_addr(1), _addr(2)}
        assert {i["address"] for i in await answer_is_right(category="exchange")} == {_addr(7)}
        # A verdict dropped: the line says what a line without one says.
        async with db.pool.acquire() as conn:
            await conn.execute("DELETE FROM jobs WHERE trace_id = $1 AND address = $2", trace_id, _addr(3))
        gone = {i["address"]: i for i in await answer_is_right()}[_addr(3)]
        assert gone["entity"] is None and gone["recognised_by"] == {"method": "other", "source": None,
                                                                    "evidence": None}
        # Totals extended (as a watching trace's are): the shares of the new totals.
        before = {i["address"]: i["share"] for i in await answer_is_right()}
        async with db.pool.acquire() as conn:
            await conn.execute("""UPDATE traces SET totals = jsonb_build_object('native', $2::text, $3::text, $4::text)
                                  WHERE id = $1""", trace_id, str(3 * 10**20), TOKEN, str(transfers[0].amount * 3))
        after = {i["address"]: i["share"] for i in await answer_is_right()}
        assert after[_addr(2)] < before[_addr(2)] and after[_addr(1)] == 1 and after[_addr(1)] != before[_addr(1)]


async def test_a_new_exit_waits_for_a_verdict_being_written(db: Database) -> None:
    """Two transactions: one changes an address's verdict, the other writes the first hop into it
    (a new exit row) before the first commits. The exit row waits for the verdict and holds it."""
    trace_id, transfers, ids = await _trace(db)
    async with db.pool.acquire() as verdict_conn, db.pool.acquire() as hop_conn:
        async with verdict_conn.transaction():
            await store.set_verdicts(verdict_conn, trace_id, [_verdict(_addr(6), "label:now", "Now", "exchange",
                                                                       None)])

            async def hop() -> None:
                async with hop_conn.transaction():
                    await store.upsert_hops(hop_conn, trace_id, [_hop(transfers[5], ids)])

            writing = asyncio.create_task(hop())
            await asyncio.sleep(0.3)
            assert not writing.done()  # waiting for the verdict's row
        await writing
    totals = {"native": 10**20, TOKEN: 7 * 10**9}
    async with db.pool.acquire() as conn:
        [line] = await exit_store.exit_lines(conn, trace_id, CHAIN, totals)
    assert '"entity":"Now"' in line.line and '"category":"exchange"' in line.line


async def test_postgres_knows_each_chains_native_coin_as_the_domain_does(db: Database) -> None:
    """Migration 030's tracer_native_unit writes the native coin's unit into stored lines: a chain
    added to tracer.domain.chains without a migration replacing the function fails here."""
    chains = sorted({*NATIVE_SYMBOL, *NATIVE_DECIMALS_OF, *EVM_CHAINS, "a-chain-nobody-named"})
    rows = await db.pool.fetch("SELECT c, (tracer_native_unit(c)).* FROM unnest($1::text[]) AS c", chains)
    assert {r["c"]: (r["symbol"], r["decimals"]) for r in rows} == {c: native_unit(c) for c in chains}
