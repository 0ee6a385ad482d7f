"""Execute a Scenario as real transactions on an Anvil node: `execute_scenario(url, scenario)`.

The same story `tracer demo` serves from its own JSON-RPC emulator -- peel chains, fan-out and
fan-in, batch payouts as internal calls, stablecoin legs, mixer deposits and withdrawals, swaps,
bridge deposits with memos, deposit addresses sweeping to hot wallets, noise -- run by a real EVM
(see plan.py for the contracts and the gas rules). Scenario block N is Anvil block N, mined at the
scenario's timestamp (`evm_setNextBlockTimestamp`, `evm_mine`) with mining otherwise off, its
transactions in the scenario's order (`--order fifo`) from their own senders (`--auto-impersonate`).

Genesis: ETH balances by `anvil_setBalance` before block 1 (as a genesis allocation: no
transaction behind them); token balances by `mint` in block 1 (Transfer events from the zero
address, before the scenario's own block-1 transactions); contract code by `anvil_setCode`.

Afterwards the run is checked against the scenario: every block has the scenario's number and
timestamp, every transaction landed in its block in order with the expected status, and every
address ends with the scenario's ETH and token balances (`ExecutionReport.mismatches`).

Transactions go in JSON-RPC batches of at most BATCH calls: Anvil answers larger batches with
their calls run concurrently, which reorders the mempool (seen with 200: 1,370 of 2,000 out of
order); 48 keeps the order and still executes a few thousand transfers a second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tracer.devchain.anvil import artifacts as art
from tracer.devchain.anvil.plan import GAS_PRICED, SETUP_ACCOUNT, Placement, Sent, place, setup_transactions
from tracer.devchain.anvil.plan import transactions as block_transactions
from tracer.devchain.anvil.rpc import AnvilRpc, Call
from tracer.devchain.scenario import Scenario, ScenarioTx
from tracer.domain.transfers import NATIVE

BATCH = 48


class ExecutionError(RuntimeError):
    pass


@dataclass
class ExecutionReport:
    url: str
    blocks: int = 0
    transactions: int = 0  # scenario transactions sent
    setup_transactions: int = 0  # initialize / mint / approve
    skipped_failed_transfers: int = 0  # failed plain transfers to accounts without code (see plan.py)
    seconds: float = 0.0
    # Per scenario block, the Anvil hash of each of its transactions ("" where not sent).
    tx_hashes: dict[int, list[str]] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"anvil: {self.blocks} blocks, {self.transactions} scenario transactions "
                f"(+{self.setup_transactions} setup/approvals, {self.skipped_failed_transfers} failed plain "
                f"transfers not sent) in {self.seconds:.1f}s; "
                + ("state matches the scenario" if not self.mismatches
                   else f"{len(self.mismatches)} MISMATCHES, first: {self.mismatches[0]}"))


def _apply(native: dict[str, int], tx: ScenarioTx) -> None:
    for frm, to, asset, amount in tx.transfers():
        if asset == NATIVE:
            native[frm] = native.get(frm, 0) - amount
            native[to] = native.get(to, 0) + amount


async def execute_scenario(url: str, scenario: Scenario, *, verify: bool = True) -> ExecutionReport:
    """Run `scenario` on the Anvil node at `url`: a fresh node (block 0) started as node.py starts
    it (--auto-impersonate, --order fifo, --disable-pool-balance-checks, a huge block gas limit)
    with the scenario's chain id. Returns what was done and, with `verify`, every difference
    between the node's state and the scenario's (an empty list when they agree)."""
    t0 = time.monotonic()
    report = ExecutionReport(url)
    plan = place(scenario)
    async with AnvilRpc(url, batch_size=BATCH) as rpc:
        await _check_node(rpc, scenario)
        native = {a: v[NATIVE] for a, v in scenario.genesis_balances.items() if v.get(NATIVE)}
        setup: list[Call] = [("evm_setAutomine", [False])]
        setup += [("anvil_setCode", [a, code]) for a, code in sorted(plan.code().items())]
        setup += [("anvil_setBalance", [a, hex(v)]) for a, v in sorted(native.items())]
        await rpc.batch(setup)
        expected: dict[int, list[Sent]] = {}
        fixes: list[Call] = []  # gas money to take back after the previous block
        for block in scenario.blocks:
            sends = setup_transactions(scenario, plan) if block.number == 1 else []
            report.setup_transactions += len(sends)
            mine, skipped = block_transactions(scenario, plan, block.number, block.txs, native)
            report.skipped_failed_transfers += skipped
            sends += mine
            floats: dict[str, int] = {}
            for s in sends:
                if s.scenario_tx is not None and s.scenario_tx.kind in GAS_PRICED and s.ok:
                    sender = s.params["from"]
                    floats[sender] = floats.get(sender, 0) + int(s.params["gas"], 16) * int(s.params["gasPrice"], 16)
            calls = fixes + [("anvil_setBalance", [a, hex(native.get(a, 0) + f)]) for a, f in floats.items()]
            calls.append(("evm_setNextBlockTimestamp", [block.timestamp]))
            calls += [("eth_sendTransaction", [s.params]) for s in sends]
            calls.append(("evm_mine", []))
            results = await rpc.batch(calls)
            hashes = results[len(calls) - 1 - len(sends):-1]
            for tx in block.txs:
                _apply(native, tx)
            fixes = [("anvil_setBalance", [a, hex(native.get(a, 0))]) for a in floats]
            expected[block.number] = [Sent({**s.params, "hash": h}, s.ok, s.scenario_tx) for s, h in zip(sends, hashes,
                                                                                                        strict=True)]
            sent_ids = {id(s.scenario_tx): h for s, h in zip(sends, hashes, strict=True) if s.scenario_tx is not None}
            report.tx_hashes[block.number] = [sent_ids.get(id(tx), "") for tx in block.txs]
            report.transactions += len(sent_ids)
            report.setup_transactions += sum(1 for s in mine if s.scenario_tx is None)
            report.blocks += 1
        if fixes:
            await rpc.batch(fixes)
        report.seconds = time.monotonic() - t0
        if verify:
            report.mismatches = await _verify_blocks(rpc, scenario, expected)
            report.mismatches += await verify_balances(rpc, scenario, plan)
    return report


async def _check_node(rpc: AnvilRpc, scenario: Scenario) -> None:
    chain_id, head = await rpc.batch([("eth_chainId", []), ("eth_blockNumber", [])])
    if int(chain_id, 16) != scenario.chain_id:
        raise ExecutionError(f"node at {rpc.url} has chain id {int(chain_id, 16)}, the scenario {scenario.chain_id}")
    numbers = [b.number for b in scenario.blocks]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ExecutionError("the scenario's blocks must be numbered 1..N without gaps (Anvil mines them in order)")
    if int(head, 16) != 0:
        raise ExecutionError(f"node at {rpc.url} is at block {int(head, 16)}: scenario block N must be node block "
                             "N, so start a fresh node")


async def _verify_blocks(rpc: AnvilRpc, scenario: Scenario, expected: dict[int, list[Sent]]) -> list[str]:
    bad: list[str] = []
    numbers = [b.number for b in scenario.blocks]
    blocks = await rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
    with_txs = [n for n in numbers if expected.get(n)]
    receipts = dict(zip(with_txs, await rpc.batch([("eth_getBlockReceipts", [hex(n)]) for n in with_txs]),
                        strict=True))
    for sb, got in zip(scenario.blocks, blocks, strict=True):
        if got is None or int(got["timestamp"], 16) != sb.timestamp:
            bad.append(f"block {sb.number}: missing or at another time ({got and int(got['timestamp'], 16)})")
            continue
        want = expected.get(sb.number, [])
        if [s.params["hash"] for s in want] != got["transactions"]:
            bad.append(f"block {sb.number}: transactions not the {len(want)} sent, in order "
                       f"({len(got['transactions'])} there)")
            continue
        for s, r in zip(want, receipts.get(sb.number) or [], strict=True):
            if (r["status"] == "0x1") != s.ok:
                bad.append(f"block {sb.number}: tx {s.params['hash']} status {r['status']}, expected "
                           f"{'success' if s.ok else 'failure'}")
    return bad


def final_balances(scenario: Scenario) -> dict[tuple[str, str], int]:
    """(address, asset) -> the scenario's balance after its last block."""
    out: dict[tuple[str, str], int] = {}
    for address, assets in scenario.genesis_balances.items():
        for asset, v in assets.items():
            out[(address, asset)] = out.get((address, asset), 0) + v
    for _, tx in scenario.iter_txs():
        for frm, to, asset, amount in tx.transfers():
            out[(frm, asset)] = out.get((frm, asset), 0) - amount
            out[(to, asset)] = out.get((to, asset), 0) + amount
    return out


async def verify_balances(rpc: AnvilRpc, scenario: Scenario, plan: Placement | None = None) -> list[str]:
    """Every (address, asset) the scenario touches: the node's balance at its head against the
    scenario's final one."""
    plan = plan or place(scenario)
    want = final_balances(scenario)
    coin = art.artifact(art.STABLECOIN)
    keys = sorted(k for k in want if k[0] != SETUP_ACCOUNT)
    calls: list[Call] = []
    for address, asset in keys:
        if asset == NATIVE:
            calls.append(("eth_getBalance", [address, "latest"]))
        else:
            calls.append(("eth_call", [{"to": asset, "data": coin.call_data("balanceOf", address)}, "latest"]))
    got = await rpc.batch(calls)
    bad = []
    for (address, asset), raw in zip(keys, got, strict=True):
        have = int(raw, 16) if raw not in (None, "0x") else 0
        if have != want[(address, asset)]:
            bad.append(f"{address} {asset}: node {have}, scenario {want[(address, asset)]}")
    return bad


def tx_hash_of(report: ExecutionReport, scenario: Scenario, tx: ScenarioTx) -> str:
    """The Anvil hash of one of the scenario's transactions ("" if it was not sent)."""
    for block in scenario.blocks:
        for k, t in enumerate(block.txs):
            if t is tx:
                return report.tx_hashes.get(block.number, [""] * len(block.txs))[k]
    return ""
