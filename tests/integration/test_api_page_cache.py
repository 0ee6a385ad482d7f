"""Pages of hops of finished traces are kept encoded (tracer.api.pages) and carry an ETag: a
client holding the page gets 304, and a change of the trace (a reorg retracting hops of a finished
trace, the trace running again, its deletion) is never answered from the kept page. Real Postgres,
a real server on a socket, the store functions the worker and the monitor call."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api_support import running_api
from tracer.api.context import CTX, Settings
from tracer.domain.records import HopRow
from tracer.domain.transfers import Transfer, TransferKind
from tracer.store import follow
from tracer.store import keys as key_store
from tracer.store import traces as store
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHAIN = "pagecache-chain"  # its own chain: the reorg below deletes the chain's later transfers
SEED = "0x" + "5a" * 20


def _addr(i: int) -> str:
    return f"0x{0xCAC0000 + i:040x}"


async def test_finished_pages_are_kept_revalidated_and_never_stale(db: Database) -> None:
    async with db.pool.acquire() as conn:
        _, key = await key_store.create_key(conn, "page-cache", ["read"], created_by="test")
        trace_id = await store.insert_trace(conn, chain=CHAIN, seeds=[SEED], policy={}, label="page-cache",
                                            from_block=1, to_block=100)
        transfers = [Transfer(CHAIN, 10 + i, 1_700_000_000 + i, f"0x{0xCAC00 + i:064x}", 0, "tx", SEED, _addr(i),
                              "native", 10**18 + i, TransferKind.NATIVE, None, None) for i in range(4)]
        await store.store_transfers(conn, transfers)
        ids = [r["id"] for r in await conn.fetch(
            "SELECT id FROM transfers WHERE chain = $1 ORDER BY block_number", CHAIN)]

        async with conn.transaction():
            await store.upsert_hops(conn, trace_id, [
                HopRow(transfer_id=ids[i], from_addr=SEED, to_addr=t.to_address, asset="native",
                       block_number=t.block_number, depth=1, amount=t.amount, share=1.0, kind="native",
                       status="followed", reason="flagged funds", parents=[]) for i, t in enumerate(transfers[:3])])
        await conn.execute("UPDATE traces SET status = 'done', finished_at = now() WHERE id = $1", trace_id)

    headers = {"X-API-Key": key}
    url = f"/v1/traces/{trace_id}/hops?limit=10"
    async with running_api(db, {}, Settings()) as api:
        pages = api.app[CTX].pages
        assert pages is not None

        async def get(extra: dict[str, str] | None = None) -> tuple[int, Any, Any]:
            async with api.session.get(api.base + url, headers={**headers, **(extra or {})}) as r:
                return r.status, await r.read(), r.headers

        async def blocks() -> list[int]:
            _, page, _ = await api.call("GET", url, key=key, expect=200)
            return [h["block_number"] for h in page["items"]]

        status, body, h = await get()
        assert status == 200 and h["ETag"] and h["Cache-Control"] == "private, no-cache"
        hits = pages.hits
        status, again, h2 = await get()
        assert (status, again, h2["ETag"]) == (200, body, h["ETag"]) and pages.hits == hits + 1  # kept bytes
        status, empty, h3 = await get({"If-None-Match": h["ETag"]})
        assert (status, empty, h3["ETag"]) == (304, b"", h["ETag"])
        status, _, _ = await get({"If-None-Match": '"something-else"'})
        assert status == 200
        # Without a key the kept page is not served: auth comes first.
        async with api.session.get(api.base + url) as r:
            assert r.status == 401
        assert await blocks() == [10, 11, 12]

        # A reorg past block 11 retracts the finished trace's hop in block 12.
        async with db.pool.acquire() as conn:
            await follow.retract_after(conn, CHAIN, 11, old_hash=None, new_hash=None)
        assert await blocks() == [10, 11]
        status, _, _ = await get({"If-None-Match": h["ETag"]})
        assert status == 200  # other bytes now

        # Running again (watching): new hops show at once.
        async with db.pool.acquire() as conn:
            await conn.execute("UPDATE traces SET status = 'watching', updated_at = now() WHERE id = $1", trace_id)
        assert await blocks() == [10, 11]
        async with db.pool.acquire() as conn:  # a watching trace's hops are written without touching it
            await store.store_transfers(conn, [transfers[3]])
            ids[3] = await conn.fetchval("SELECT id FROM transfers WHERE tx_hash = $1", transfers[3].tx_hash)
            t = transfers[3]
            async with conn.transaction():
                await store.upsert_hops(conn, trace_id, [HopRow(transfer_id=ids[3], from_addr=SEED,
                                                                to_addr=t.to_address, asset="native",
                                                                block_number=t.block_number, depth=1, amount=t.amount,
                                                                share=1.0, kind="native", status="followed",
                                                                reason="flagged funds", parents=[])])
        assert await blocks() == [10, 11, 13]

        async with db.pool.acquire() as conn:
            await store.delete_trace(conn, trace_id)
        async with api.session.get(api.base + url, headers=headers) as r:
            assert r.status == 404
