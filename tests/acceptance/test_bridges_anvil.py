"""Real bridges out of the box, on real EVMs: THORChain, Across and Wormhole between Anvil nodes
("ethereum" 1, "bsc" 56, "arbitrum" 42161), with ONLY the default label set.

The bridge contracts sit at their real mainnet addresses (runtime code of the MIT contracts in
tracer/devchain/anvil/contracts placed with anvil_setCode): the THORChain routers, the Across spoke
pools, the Wormhole core and token bridges. Unrelated users deposit through them (30 THORChain
swaps, Across and Wormhole transfers) so they look like the busy services they are. Each thief
bridges once; the far side pays out (THORChain `OUT:<hash>`, an Across relayer's fill, a Wormhole
redeem) to a payee, who pays an exchange deposit address that sweeps to a labelled hot wallet.
A fourth thief uses a THORChain-style router at an address no label names: recognised by its event;
two more pay an unlabelled Tornado-style pool and a Uniswap-V2-style pair (amounts that are no pool
denomination, so only the events can tell): the trace stops there and says what they are.

Each trace runs through the real API and workers: it continues on the far chain to the right
exit with the right amount, the report names the bridge "recognised by event", and the continued
deposit is a crossing, not a second exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio

from tests.anvil_support import AnvilRpc, anvil_node, require_anvil
from tests.api_support import Api, conforms, running_api
from tracer.api.context import Settings
from tracer.chains.evm import EvmChain
from tracer.devchain.anvil import artifacts as art
from tracer.domain.labels import Label
from tracer.engine import bridges
from tracer.engine import report as treport
from tracer.labels.defaults import load_default_labels
from tracer.store import backward as back_store
from tracer.store import labels as label_store
from tracer.store.db import Database

ETHER = 10**18
T0 = 1_700_000_000
ZERO = "0x" + "00" * 20
# Real mainnet addresses, all in the default label set (tracer/data/labels/bridge_contracts.csv).
THOR_ROUTER = {"ethereum": "0xd37bbe5744d730a1d98d8dc97c42f0ca46ad7146",
               "bsc": "0xb30ec53f98ff5947ede720d32ac2da7e52a5f56b"}
ACROSS_POOL = {"ethereum": "0x5c7bcd6e7de5423a257d81b442095a1a6ced35c5",
               "arbitrum": "0xe35e9842fceaca96570b734083f4a58e8f7c5f2a"}
WORMHOLE_CORE = "0x98f3c9e6e3face36baad05fe09d375ef1464288b"  # the same on Ethereum and BSC
TOKEN_BRIDGE = {"ethereum": "0x3ee18b2214aff97000d974cf647e7c347e8fa585",
                "bsc": "0xb6f6d86a8f9879a9c87f643768d9efc38c1da6e7"}
HOT_WALLET = {"bsc": "0x17b692ae403a8ff3a3b2ed7676cf194310dde9af",  # Binance: Hot Wallet 3
              "arbitrum": "0xb38e8c17e38363af6ebdcb3dae12e0243582891d"}  # Binance Hot Wallet
UNLABELLED_ROUTER = "0x" + "5e" * 20  # a THORChain-style router no label names
CHAINS = {"ethereum": 1, "bsc": 56, "arbitrum": 42161}


def addr(tag: int, n: int) -> str:
    return "0x" + f"{tag:02x}" * 2 + f"{n:036x}"


def pad(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


@dataclass
class Node:
    chain: str
    rpc: AnvilRpc
    url: str
    time: int = T0

    async def tx(self, frm: str, to: str, data: str = "0x", value: int = 0) -> dict[str, Any]:
        self.time += 12
        await self.rpc.call("evm_setNextBlockTimestamp", self.time)
        h = await self.rpc.call("eth_sendTransaction", {"from": frm, "to": to, "data": data, "value": hex(value),
                                                         "gas": hex(3_000_000), "gasPrice": "0x0"})
        await self.rpc.call("evm_mine")
        receipt = await self.rpc.call("eth_getTransactionReceipt", h)
        assert receipt["status"] == "0x1", receipt
        return dict(receipt)

    async def fund(self, *addresses: str, amount: int = 10_000 * ETHER) -> None:
        for a in addresses:
            await self.rpc.call("anvil_setBalance", a, hex(amount))

    async def place(self, address: str, contract: str) -> None:
        await self.rpc.call("anvil_setCode", address, art.artifact(contract).runtime)


@dataclass
class Case:
    """One thief's bridge crossing and where the money must end."""

    family: str
    thief: str
    home_chain: str
    far_chain: str
    deposit_tx: str = ""
    exit_address: str = ""
    exit_amount: int = 0
    bridge: str = ""
    match: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


async def _sweep(node: Node, payee: str, deposit_address: str, amount: int) -> None:
    """The payee pays an exchange deposit address, which sweeps it all to the labelled hot wallet."""
    await node.tx(payee, deposit_address, value=amount)
    await node.tx(deposit_address, HOT_WALLET[node.chain], value=amount)


async def build_world(eth: Node, bsc: Node, arb: Node) -> dict[str, Case]:
    router = art.artifact(art.ROUTER)
    pool = art.artifact("AcrossSpokePool")
    bridge = art.artifact("WormholeTokenBridge")
    for node in (eth, bsc):
        await node.place(THOR_ROUTER[node.chain], art.ROUTER)
        await node.place(WORMHOLE_CORE, "WormholeCore")
        await node.place(TOKEN_BRIDGE[node.chain], "WormholeTokenBridge")
    await eth.place(UNLABELLED_ROUTER, art.ROUTER)
    for node in (eth, arb):
        await node.place(ACROSS_POOL[node.chain], "AcrossSpokePool")
    admin = addr(0xAD, 1)
    await eth.fund(admin)
    await bsc.fund(admin)
    await eth.tx(admin, TOKEN_BRIDGE["ethereum"], bridge.call_data("initialize", WORMHOLE_CORE, 2))
    await bsc.tx(admin, TOKEN_BRIDGE["bsc"], bridge.call_data("initialize", WORMHOLE_CORE, 4))

    vault = {"ethereum": addr(0x7A, 1), "bsc": addr(0x7A, 2)}
    relayer = addr(0x4E, 1)
    await bsc.fund(vault["bsc"], relayer)
    await arb.fund(relayer)
    # Everyone else's business: 30 THORChain swaps, Across and Wormhole transfers.
    users = [addr(0x11, i) for i in range(40)]
    await eth.fund(*users, amount=100 * ETHER)
    for i, u in enumerate(users[:30]):
        # A third of them through the unlabelled router: a hub by its senders, were it followed.
        await eth.tx(u, THOR_ROUTER["ethereum"] if i < 20 else UNLABELLED_ROUTER, router.call_data(
            "deposit", vault["ethereum"], ZERO, 0, f"=:BTC.BTC:bc1qnoise{i:02d}"), value=(1 + i % 3) * ETHER)
    for i, u in enumerate(users[30:34]):
        await eth.tx(u, ACROSS_POOL["ethereum"], pool.call_data(
            "depositV3", u, addr(0x22, i), ETHER, 10, T0 + 86_400), value=ETHER)
    for i, u in enumerate(users[34:37]):
        await eth.tx(u, TOKEN_BRIDGE["ethereum"], bridge.call_data(
            "wrapAndTransferETH", 5, pad(addr(0x33, i)), 0, i), value=2 * ETHER)

    cases = {name: Case(name, addr(0xEE, n), "ethereum", far) for n, (name, far) in enumerate(
        (("thorchain", "bsc"), ("across", "arbitrum"), ("wormhole", "bsc"), ("unlabelled", "bsc")))}
    await eth.fund(*(c.thief for c in cases.values()), amount=60 * ETHER)
    payee = {name: addr(0x9A, n) for n, name in enumerate(cases)}
    deposit = {name: addr(0xDE, n) for n, name in enumerate(cases)}

    c = cases["thorchain"]
    r = await eth.tx(c.thief, THOR_ROUTER["ethereum"], router.call_data(
        "deposit", vault["ethereum"], ZERO, 0, f"=:BSC.BNB:{payee['thorchain']}"), value=50 * ETHER)
    c.deposit_tx, c.bridge, c.match = r["transactionHash"], THOR_ROUTER["ethereum"], bridges.MATCH_MEMO
    c = cases["unlabelled"]
    r = await eth.tx(c.thief, UNLABELLED_ROUTER, router.call_data(
        "deposit", vault["ethereum"], ZERO, 0, f"=:BSC.BNB:{payee['unlabelled']}"), value=11 * ETHER)
    c.deposit_tx, c.bridge, c.match = r["transactionHash"], UNLABELLED_ROUTER, bridges.MATCH_MEMO
    c = cases["across"]
    r = await eth.tx(c.thief, ACROSS_POOL["ethereum"], pool.call_data(
        "depositV3", c.thief, payee["across"], 29_900 * ETHER // 1000, 42161, T0 + 86_400), value=30 * ETHER)
    c.deposit_tx, c.bridge, c.match = r["transactionHash"], ACROSS_POOL["ethereum"], bridges.MATCH_ID
    c.extra["deposit_id"] = int(r["logs"][0]["topics"][2], 16)
    c = cases["wormhole"]
    r = await eth.tx(c.thief, TOKEN_BRIDGE["ethereum"], bridge.call_data(
        "wrapAndTransferETH", 4, pad(payee["wormhole"]), 0, 7), value=20 * ETHER)
    c.deposit_tx, c.bridge, c.match = r["transactionHash"], TOKEN_BRIDGE["ethereum"], bridges.MATCH_ID
    c.extra["sequence"] = int(r["logs"][0]["data"][2:66], 16)
    assert c.extra["sequence"] == 3  # after the three unrelated transfers

    # The far side, after the deposits: payouts, then the payees cash out at an exchange.
    bsc.time = arb.time = eth.time + 600
    others = [addr(0x44, i) for i in range(3)]
    for i, o in enumerate(others):  # the vault pays other users around the same time
        await bsc.tx(vault["bsc"], THOR_ROUTER["bsc"], router.call_data(
            "transferOut", o, ZERO, 0, "OUT:" + f"{i:064X}"), value=(3 + i) * ETHER)
    for name, amount in (("thorchain", 1_000 * ETHER), ("unlabelled", 200 * ETHER)):
        c = cases[name]
        await bsc.tx(vault["bsc"], THOR_ROUTER["bsc"], router.call_data(
            "transferOut", payee[name], ZERO, 0, "OUT:" + c.deposit_tx[2:].upper()), value=amount)
        c.exit_address, c.exit_amount = deposit[name], amount
    c = cases["wormhole"]
    await bsc.tx(relayer, TOKEN_BRIDGE["bsc"], bridge.call_data(
        "completeTransfer", 2, pad(TOKEN_BRIDGE["ethereum"]), 1, others[0]), value=2 * ETHER)  # someone else's
    await bsc.tx(relayer, TOKEN_BRIDGE["bsc"], bridge.call_data(
        "completeTransfer", 2, pad(TOKEN_BRIDGE["ethereum"]), c.extra["sequence"], payee["wormhole"]), value=95 * ETHER)
    c.exit_address, c.exit_amount = deposit["wormhole"], 95 * ETHER
    c = cases["across"]
    await arb.tx(relayer, ACROSS_POOL["arbitrum"], pool.call_data(
        "fillV3Relay", addr(0x11, 30), addr(0x22, 0), ETHER, 1, 0, T0 + 86_400), value=ETHER)  # someone else's
    await arb.tx(relayer, ACROSS_POOL["arbitrum"], pool.call_data(
        "fillV3Relay", c.thief, payee["across"], 30 * ETHER, 1, c.extra["deposit_id"], T0 + 86_400),
        value=29_900 * ETHER // 1000)
    c.exit_address, c.exit_amount = deposit["across"], 29_900 * ETHER // 1000
    for name, case in cases.items():
        await _sweep(bsc if case.far_chain == "bsc" else arb, payee[name], deposit[name], case.exit_amount)
    await _services(eth, admin, users, cases)
    return cases


async def _services(eth: Node, admin: str, users: list[str], cases: dict[str, Case]) -> None:
    """Two more thieves, into services no label names: a Tornado-style pool (recognised by its
    Deposit) and a Uniswap-V2-style pair whose output goes to another wallet (recognised by its
    Swap): the trace stops at each and says what it is, instead of following it as a wallet."""
    mixer, pair, coin = art.artifact(art.POOL), art.artifact(art.PAIR), art.artifact(art.STABLECOIN)
    pool_at, pair_at, token_at = "0x" + "70" * 20, "0x" + "9a" * 20, "0x" + "70ce" * 10
    await eth.place(pool_at, art.POOL)
    await eth.place(pair_at, art.PAIR)
    await eth.place(token_at, art.STABLECOIN)
    await eth.tx(admin, pool_at, mixer.call_data("initialize", 7 * ETHER))
    await eth.tx(admin, token_at, coin.call_data("initialize", "Tether USD", "USDT", 6))
    await eth.tx(admin, token_at, coin.call_data("mint", [pair_at], [2_000_000 * 10**6]))
    await eth.tx(admin, pair_at, pair.call_data("initialize", token_at))
    await eth.tx(admin, pair_at, "0x", value=1_000 * ETHER)
    await eth.tx(admin, pair_at, pair.call_data("mint", admin))
    for i, u in enumerate(users[37:40]):  # the pool's other users
        await eth.tx(u, pool_at, mixer.call_data("deposit", bytes([i]) * 32), value=7 * ETHER)
    for n, (name, bridge) in enumerate((("pool", pool_at), ("pair", pair_at))):
        cases[name] = c = Case(name, addr(0xEF, n), "ethereum", "", bridge=bridge)
        await eth.fund(c.thief, amount=60 * ETHER)
    await eth.tx(cases["pool"].thief, pool_at, mixer.call_data("deposit", b"\xee" * 32), value=7 * ETHER)
    await eth.tx(cases["pair"].thief, pair_at, pair.call_data("swapETHForTokens", 0, addr(0x66, 1)), value=6 * ETHER)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(db: Database) -> AsyncIterator[tuple[Api, dict[str, Case]]]:
    require_anvil()
    async with contextlib.AsyncExitStack() as stack:
        nodes: dict[str, Node] = {}
        for chain, chain_id in CHAINS.items():
            node = await stack.enter_async_context(anvil_node(chain_id=chain_id, mode="archive", timestamp=T0))
            rpc = await stack.enter_async_context(AnvilRpc(node.url))
            nodes[chain] = Node(chain, rpc, node.url)
        cases = await build_world(nodes["ethereum"], nodes["bsc"], nodes["arbitrum"])
        clients = {}
        for chain, chain_id in CHAINS.items():
            client = EvmChain(nodes[chain].url, chain=chain, expected_chain_id=chain_id)
            await client.connect()
            stack.push_async_callback(client.close)
            clients[chain] = client
        await load_default_labels(db.pool)  # the only labels there are
        api = await stack.enter_async_context(running_api(db, clients, Settings(workers=2, page_max=500)))
        yield api, cases


async def _exits(api: Api, trace_id: int) -> list[dict[str, Any]]:
    _, body, _ = await api.call("GET", f"/v1/traces/{trace_id}/exits", expect=200)
    conforms("exit-list", body)
    return list(body["items"])


async def _hops(api: Api, trace_id: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async for page in api.pages(f"/v1/traces/{trace_id}/hops?limit=500"):
        out.extend(page["items"])
    return out


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("family", ["thorchain", "across", "wormhole", "unlabelled"])
async def test_the_trace_crosses_the_bridge_to_the_right_exit_with_the_right_amount(
    world: tuple[Api, dict[str, Case]], db: Database, family: str
) -> None:
    api, cases = world
    case = cases[family]
    # hub_in_degree 5: the routers would be stopped as hubs (20 and 11 senders) if anything were
    # followed into them; recognising the bridge by its event comes first.
    trace = await api.run_trace({"chain": case.home_chain, "seeds": [case.thief], "policy": {"hub_in_degree": 5}},
                                tries=1200)
    hops = await _hops(api, trace["id"])
    # The deposit is a crossing (followed across the bridge), not an exit.
    [deposit_hop] = [h for h in hops if h["chain"] == case.home_chain and h["from"] == case.thief
                     and h["to"] == case.bridge]
    assert (deposit_hop["status"], deposit_hop["reason"]) == ("followed", "crossing")
    [payout] = [h for h in hops if h["chain"] == case.far_chain and h["reason"] == "bridge"]
    [proof] = payout["evidence"]["deposits"]
    assert (proof["tx_hash"], proof["match"], proof["confidence"]) == (case.deposit_tx, case.match, 1.0)
    # One exit, on the far chain: the exchange deposit address, with the whole payout.
    exits = await _exits(api, trace["id"])
    assert [(e["chain"], e["address"]) for e in exits] == [(case.far_chain, case.exit_address)], exits
    [e] = exits
    assert (e["category"], e["entity"], int(e["amount_raw"])) == ("deposit_address", "Binance", case.exit_amount)
    # The trace's own counter agrees: the bridge whose deposit crossed is not an exit.
    _, summary, _ = await api.call("GET", f"/v1/traces/{trace['id']}", expect=200)
    assert summary["progress"]["exits"] == 1, summary["progress"]
    # The report names the bridge and how it was recognised, and lists no exit twice.
    rep = await treport.build(db.pool, trace["id"])
    [cont] = rep.continuations
    assert (cont.chain, cont.followed, cont.recognised_by, cont.bridge) == (case.far_chain, True, "event", case.bridge)
    [line] = rep.bridges
    assert line.recognised_by == "event" and line.address == case.bridge
    protocol = {"thorchain": "THORChain", "unlabelled": "THORChain", "across": "Across",
                "wormhole": "Wormhole"}[family]
    assert cont.deposit.protocol == protocol
    if family == "unlabelled":
        assert line.entity == "THORChain (recognised by event)"
    assert f"via {protocol} (recognised by event)" in treport.render(rep)
    # Alerts count once too: an exit_reached for the exchange deposit address, none for the bridge.
    _, page, _ = await api.call("GET", f"/v1/traces/{trace['id']}/events?limit=500", expect=200)
    conforms("event-page", page)
    reached = [e for e in page["items"] if e["type"] == "exit_reached"]
    assert [e["data"]["address"] for e in reached] == [case.exit_address], reached
    assert [(x.chain, x.address, x.amount) for x in rep.exits] == [(case.far_chain, case.exit_address,
                                                                     case.exit_amount)]


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize(("family", "reason", "entity"), [
    ("pool", "entered mixer", "unlabelled mixer pool (Tornado-compatible events)"),
    ("pair", "entered dex", "DEX pool (Uniswap-style Swap event)")])
async def test_unlabelled_pools_and_pairs_are_recognised_by_their_events(
    world: tuple[Api, dict[str, Case]], db: Database, family: str, reason: str, entity: str
) -> None:
    api, cases = world
    case = cases[family]
    trace = await api.run_trace({"chain": case.home_chain, "seeds": [case.thief], "policy": {"hub_in_degree": 5}},
                                tries=1200)
    hops = await _hops(api, trace["id"])
    [into] = [h for h in hops if h["from"] == case.thief and h["to"] == case.bridge]
    assert (into["status"], into["reason"]) == ("stopped", reason)
    assert not [h for h in hops if h["from"] == case.bridge]  # not followed as a wallet
    rep = await treport.build(db.pool, trace["id"])
    [stop] = [x for x in rep.stops if x["address"] == case.bridge]
    assert (stop["reason"], stop["entity"]) == (reason, entity)
    assert not rep.exits


# Run last in the module: it labels the thieves' wallets, where the backward walk stops.
@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize(("family", "deposited"), [("thorchain", 50 * ETHER), ("across", 30 * ETHER),
                                                   ("wormhole", 20 * ETHER)])
async def test_backward_from_the_far_exit_crosses_back_to_the_thief(
    world: tuple[Api, dict[str, Case]], db: Database, family: str, deposited: int
) -> None:
    """Issue 20: a backward trace from the exchange deposit address on the far chain goes back
    through the payout to the deposit its event names (THORChain memo, Across deposit id, Wormhole
    sequence) and finds the thief on the home chain with the whole deposit: at the bridge's rate,
    the forward trace's amount for that exit."""
    api, cases = world
    case = cases[family]
    async with db.pool.acquire() as conn:
        await label_store.upsert_labels(conn, [Label(chain=case.home_chain, address=case.thief, entity="exploiter",
                                                     category="hacker", source="investigator")])
    trace = await api.run_trace({"chain": case.far_chain, "seeds": [case.exit_address], "direction": "backward",
                                 "policy": {"from_block": 1, "max_depth": 10}}, tries=1200)
    async with db.pool.acquire() as conn:
        sources = await back_store.sources(conn, trace["id"], case.far_chain)
    [thief] = [s for s in sources if s.address == case.thief]
    assert (thief.chain, thief.asset, thief.amount) == (case.home_chain, "native", deposited), sources
    # At the bridge's rate (the whole deposit paid the whole payout) it is the forward exit's amount.
    assert thief.amount * case.exit_amount // deposited == case.exit_amount
    hops = await _hops(api, trace["id"])
    [payout] = [h for h in hops if h["reason"] == "bridge"]
    assert (payout["chain"], payout["status"], payout["confidence"]) == (case.far_chain, "followed", 1.0)
    # The thief paid the bridge itself: the deposit is the source's hop (its label's verdict).
    [deposit] = [h for h in hops if h["chain"] == case.home_chain]
    assert (deposit["from"], deposit["to"], deposit["status"], int(deposit["amount_raw"])) == (
        case.thief, case.bridge, "exit", deposited)
    assert deposit["depth"] == payout["depth"] + 1
    # The bridge is a crossing, not a source, on either side.
    assert {(s.chain, s.address) for s in sources} == {(case.home_chain, case.thief)}
