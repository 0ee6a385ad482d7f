"""A node that answers garbage inside a well-formed JSON-RPC envelope gets a clear error.

A node in front of a devchain corrupts the result of one method at a time (a string where an object
or a list belongs, a list of strings, an object without the method's fields, hex that is not hex,
null) and the client call that reads it must raise a ChainError naming the node (scheme, host and
port: never the URL's key) and the method, a MalformedAnswer where the answer has the wrong shape,
never the AttributeError, KeyError, TypeError... of mapping it. Null is an answer for a few methods
(no traces, no logs, no such block yet): there the call may also succeed.

End to end, a trace through the embedded workers against such a node ends `failed` with that
sentence as its reason; a node that answered garbage once and then recovered gives the healthy hops
(the worker retries the job: nothing garbage was cached).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.fixtures_chain import DevChainFactory, RunningDevChain, proxy, senders, serving
from tests.garbage_support import KEY, Case, Garble, judge
from tests.reliability_support import forget_transfers, hop_rows, reference_hops, run_trace
from tracer.chains.errors import MalformedAnswer
from tracer.chains.evm import EvmChain
from tracer.chains.evm.mappers import TRANSFER_TOPIC
from tracer.devchain.scenario import KIND_BATCH, Scenario
from tracer.domain.transfers import TransferQuery
from tracer.engine.service import create_trace
from tracer.runner import run_with_workers
from tracer.store.db import Database
from tracer.workers.trace import MAX_ATTEMPTS

pytestmark = pytest.mark.asyncio(loop_scope="session")


@dataclass
class Garbage:
    """A node in front of a devchain that passes the results of `garble.method` through `garble`,
    `times` answers long (None: for good)."""

    node: RunningDevChain
    garble: Garble = field(default_factory=Garble)
    times: int | None = None

    def rewrite(self, req: dict[str, Any]) -> dict[str, Any] | None:
        if req.get("method") != self.garble.method or self.times == 0:
            return None
        answer = self.node.server.handle_request(req)
        if "result" not in answer:
            return answer
        before = self.garble.corrupted
        answer = {**answer, "result": self.garble(req["method"], answer["result"])}
        if self.times is not None and self.garble.corrupted > before:
            self.times -= 1
        return answer


async def _head(c: EvmChain) -> int:
    return await c.head()


def _cases(sc: Scenario) -> list[Case]:
    wallets, last = senders(sc), sc.blocks[-1].number
    busy = sorted({tx.to for _, tx in sc.iter_txs() if tx.kind == KIND_BATCH})
    token = sc.tokens[0].address
    holder = next(tx.sender for _, tx in sc.iter_txs() if tx.token == token)

    async def transfers(c: EvmChain) -> Any:
        return await c.transfers(TransferQuery(wallets, 0, last, outgoing=True, incoming=True))

    async def payouts(c: EvmChain) -> Any:
        # The batch contract's internal payouts read without the calls into it: their parent calls
        # are unknown, so trace_transaction is asked whether one reverted.
        return await c.transfers(TransferQuery(busy, 0, last, outgoing=True, incoming=False))

    async def fees_by_receipt(c: EvmChain) -> Any:
        c.supports_block_receipts = False  # one eth_getTransactionReceipt per transaction
        return await c.fees_paid(wallets, 0, last)

    async def scan_by_block_receipts(c: EvmChain) -> Any:
        c.debug_method = None  # receipts say which transactions failed (no callTracer frames do)
        return await transfers(c)

    async def scan_by_receipt(c: EvmChain) -> Any:
        c.debug_method, c.supports_block_receipts = None, False
        return await transfers(c)

    trace, scan = {"use_trace_filter": True}, {"use_trace_filter": False}
    return [
        Case("eth_getBlockByNumber", lambda c: c.block_times(range(1, 20)), name="headers"),
        Case("eth_getBlockByNumber", lambda c: c.block_hashes(range(1, 20)), null_is_an_answer=True, name="hashes"),
        Case("eth_getBlockByNumber", transfers, options=scan, name="block scan"),
        Case("eth_getLogs", transfers, null_is_an_answer=True, options=trace, name="token transfers"),
        Case("eth_getLogs", lambda c: c.logs(None, [TRANSFER_TOPIC], 0, last), null_is_an_answer=True, name="logs"),
        Case("trace_filter", transfers, null_is_an_answer=True, options=trace, name="transfers"),
        Case("trace_filter", lambda c: c.fees_paid(wallets, 0, last), null_is_an_answer=True, options=trace,
             name="senders"),
        Case("trace_transaction", payouts, null_is_an_answer=True, options=trace, name="reverted parents"),
        Case("eth_getBlockReceipts", scan_by_block_receipts, options=scan, name="block scan"),
        Case("eth_getTransactionReceipt", scan_by_receipt, options=scan, name="block scan"),
        Case("eth_getTransactionReceipt", fees_by_receipt, options=trace, name="fees"),
        Case("eth_call", lambda c: c.token_balances([(holder, token, last)]), name="balanceOf"),
        Case("eth_getBalance", lambda c: c.native_balances([(sc.seeds[0], last)])),
        Case("eth_getCode", lambda c: c.is_contract(sorted(sc.contracts))),
        Case("debug_traceBlockByNumber", transfers, null_is_an_answer=True, options=scan),
        Case("debug_traceTransaction", transfers, options={**scan, "debug_method": "debug_traceTransaction"}),
    ]


def _connect(garbage: Garbage, url: str, sc: Scenario) -> Callable[[Garble, Case], Awaitable[EvmChain]]:
    async def connect(garble: Garble, case: Case) -> EvmChain:
        garbage.garble = garble
        client = EvmChain(url + f"?apikey={KEY}", chain=sc.chain, expected_chain_id=sc.chain_id, **case.options)
        await client.connect()
        return client

    return connect


async def test_every_shape_of_garbage_in_every_method_is_a_clear_chain_error(
    devchain_factory: DevChainFactory, small_scenario: Scenario
) -> None:
    node = await devchain_factory(small_scenario)
    garbage = Garbage(node)
    async with serving(proxy(node, garbage.rewrite)) as url:
        problems = await judge(_cases(small_scenario), _connect(garbage, url, small_scenario),
                               lambda client, _method: f"node at {client.name}")
    assert not problems, "\n".join(problems)


async def test_the_message_says_what_came_instead(devchain_factory: DevChainFactory, small_scenario: Scenario) -> None:
    node = await devchain_factory(small_scenario)
    garbage = Garbage(node)
    async with serving(proxy(node, garbage.rewrite)) as url:
        client = await _connect(garbage, url, small_scenario)(Garble(), Case("trace_filter", _head))
        garbage.garble.method, garbage.garble.shape = "trace_filter", "string"
        try:
            with pytest.raises(MalformedAnswer) as err:
                await client.transfers(TransferQuery(senders(small_scenario), 0, await client.head()))
        finally:
            await client.close()
    assert str(err.value) == (f"node at {client.name} answered trace_filter with a string "
                              "('oops, not what you asked for'), not a list of traces")


async def test_a_trace_against_a_garbage_node_fails_with_the_sentence_or_recovers(
    db: Database, small_scenario: Scenario, devchain_factory: DevChainFactory
) -> None:
    reference = await reference_hops(db, small_scenario, devchain_factory)  # a healthy node's, labels loaded
    node = await devchain_factory(small_scenario)
    garbage = Garbage(node)
    async with serving(proxy(node, garbage.rewrite)) as url:
        client = EvmChain(url + f"?apikey={KEY}", chain=small_scenario.chain, expected_chain_id=small_scenario.chain_id)
        await client.connect()
        try:
            # For good: the worker's last try fails the trace with the sentence as its reason.
            await forget_transfers(db.pool)
            trace_id = await create_trace(db.pool, client, chain=small_scenario.chain, seeds=small_scenario.seeds,
                                          policy={})
            garbage.garble.method, garbage.garble.shape = "trace_filter", "list of strings"
            # The worker gives a job MAX_ATTEMPTS tries with growing pauses (~30 s); start at the last.
            await db.pool.execute("UPDATE jobs SET attempts = $2 WHERE trace_id = $1", trace_id, MAX_ATTEMPTS - 1)
            status = await run_with_workers(db.pool, {small_scenario.chain: client}, trace_id, workers=1,
                                            progress=False, timeout=30)
            error = await db.pool.fetchval("SELECT error FROM traces WHERE id = $1", trace_id)
            assert status == "failed", (status, error)
            assert error.startswith(f"node at {client.name} answered trace_filter with a list of strings, "
                                    "not a list of traces"), error
            assert KEY not in error and not re.search(r"\w+Error|MalformedAnswer", error), error
            assert await db.pool.fetchval("SELECT count(*) FROM hops WHERE trace_id = $1", trace_id) == 0

            # Once: the job is tried again after its pause and the trace finds the healthy hops.
            await forget_transfers(db.pool)
            garbage.times, garbage.garble.corrupted = 1, 0
            trace_id, status = await run_trace(db.pool, client, small_scenario, workers=2, timeout=30)
        finally:
            await client.close()
    assert garbage.garble.corrupted == 1
    assert status == "done"
    assert await hop_rows(db.pool, trace_id) == reference
