"""A second chain for cross-chain tests: where a scenario's bridge deposits get paid out.

`destination(home, chain="avalanche", chain_id=43114)` builds a Scenario for the destination chain
of the home scenario's bridge deposits (`home.truth.bridges` whose memo names that chain): the
bridge's vault there pays each destination address the bridged amount at the bridge's rate a
couple of minutes after the deposit, and the money then moves a few hops to an exchange deposit
address, which sweeps it to the exchange's labelled hot wallet (so the tracer's exit there is the
deposit address, recognised by its sweep).
Unrelated vault payouts to other users make up the chain's noise; `decoys` of the destinations
also receive an unrelated payment later the same day, so matching by timing sees several
candidates there. The first `memos` payouts go through the THORChain router on that chain, as real
EVM outbounds do (`transferOut`: the router pays the destination and logs `TransferOut(vault, to,
asset, amount, memo)` with the memo `OUT:<deposit tx hash>`); the others are plain transfers from
the vault. Serve `CrossChain.chain()` (an `OutboundChain`) with `DevChainServer` beside the home
chain's server.

Blocks come every `block_seconds` from the home scenario's genesis time, so a timestamp means
the same moment on both chains. Deterministic by the home scenario and `seed`.

`with_bitcoin_payouts(home)` does the same for the deposits whose memo names Bitcoin: it gives
them valid P2WPKH destinations (the generator's are only address-shaped), then generates a Bitcoin
history (tracer.devchain.bitcoin) where THORChain's vault pays each one with the OP_RETURN memo
`OUT:<deposit tx hash>`, among payouts to other users, and the destination pays it on into an
exchange deposit address. Serve it with `EsploraServer`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from fractions import Fraction

from eth_hash.auto import keccak

from tracer.addresses import encode_btc_segwit
from tracer.devchain.bitcoin.records import BitcoinScenario, BitcoinScenarioParams, Handoff
from tracer.devchain.bitcoin.story import generate as generate_bitcoin
from tracer.devchain.chain import Chain, Log, abi_string, pad_address, word
from tracer.devchain.scenario import (
    KIND_BRIDGE,
    KIND_NATIVE,
    BridgeTruth,
    Scenario,
    ScenarioBlock,
    ScenarioLabel,
    ScenarioTx,
    Truth,
)
from tracer.domain.transfers import NATIVE

ETHER = 10**18


@dataclass(frozen=True, slots=True)
class PayoutTruth:
    """One bridge deposit on the home chain and what became of it on the destination chain."""

    deposit: BridgeTruth
    vault: str
    payer: str  # who pays the destination: the router for an outbound with a memo, else the vault
    memo: str | None  # the TransferOut memo naming the deposit (None: a plain transfer, no memo)
    address: str  # the destination the memo names
    time: int  # payout time
    amount: int  # paid out (destination chain's raw units)
    path: tuple[str, ...]  # wallets the payout moves through after the destination, in order
    deposit_address: str  # the exchange deposit address it reaches (the exit), swept to `exchange`
    exchange: str  # the labelled hot wallet
    decoy: bool  # the destination also got an unrelated payment within the day


TRANSFER_OUT_TOPIC = "0x" + keccak(b"TransferOut(address,address,address,uint256,string)").hex()
"""THORChain router outbounds."""


class OutboundChain(Chain):
    """A devchain whose bridge transactions with an `OUT:` memo are THORChain router outbounds:
    the vault calls the router, the router pays the destination (an internal call) and logs
    TransferOut(address indexed vault, address indexed to, address asset, uint amount, string memo)."""

    @staticmethod
    def _outbound(tx: ScenarioTx) -> bool:
        return tx.kind == KIND_BRIDGE and tx.memo.upper().startswith("OUT:") and bool(tx.payouts)

    def _service_logs(self, tx: ScenarioTx) -> list[tuple[str, tuple[str, ...]]]:
        if self._outbound(tx):
            return [(tx.to, (TRANSFER_OUT_TOPIC, pad_address(tx.sender), pad_address(tx.payouts[0][0])))]
        return super()._service_logs(tx)

    def logs(self, tid: int) -> list[Log]:
        out = super().logs(tid)
        tx = self.txs[tid]
        if not self._outbound(tx):
            return out
        # (address asset, uint amount, string memo): the native coin is asset 0x0.
        data = "0x" + word(0) + word(tx.payouts[0][1]) + word(96) + abi_string(tx.memo)
        return [Log(lg.address, lg.topics, data) for lg in out]


@dataclass
class CrossChain:
    scenario: Scenario
    vault: str
    router: str
    exchange: str
    payouts: list[PayoutTruth] = field(default_factory=list)

    def chain(self) -> OutboundChain:
        return OutboundChain.from_scenario(self.scenario)  # type: ignore[return-value]


def destination(
    home: Scenario,
    chain: str = "avalanche",
    chain_id: int = 43114,
    *,
    rate: Fraction = Fraction(30),
    delay: int = 120,
    hops: int = 2,
    decoys: int = 1,
    memos: int = 1,
    noise: int = 20,
    block_seconds: int = 12,
    seed: int = 1,
) -> CrossChain:
    """The destination chain of `home`'s bridge deposits to `chain` (see the module docstring)."""
    rng = random.Random(f"crosschain:{seed}:{chain}")

    def new() -> str:
        return f"0x{rng.getrandbits(160):040x}"

    vault, router, exchange, stranger = new(), new(), new(), new()
    times = {b.number: b.timestamp for b in home.blocks}
    deposits = sorted((b for b in home.truth.bridges if b.dest_chain == chain), key=lambda b: (b.block, b.sender))
    # The deposits' transaction hashes, which outbound memos name, as the home chain's server has them.
    hashes: dict[tuple[str, str], str] = {}
    if memos:
        built = Chain.from_scenario(home)
        hashes = {(tx.sender, tx.memo): built.tx_hash[tid] for tid, tx in enumerate(built.txs)
                  if tx.kind == KIND_BRIDGE}
    events: dict[int, list[ScenarioTx]] = {}

    def at(when: int, tx: ScenarioTx) -> None:
        events.setdefault(max(1, -(-(when - home.genesis_time) // block_seconds)), []).append(tx)

    payouts: list[PayoutTruth] = []
    total = 0
    for i, dep in enumerate(deposits):
        when = times[dep.block] + delay
        amount = int(dep.amount * rate)
        total += amount
        address = dep.dest_address.lower()
        path = tuple(new() for _ in range(hops))
        deposit_address = new()
        memo = "OUT:" + hashes[(dep.sender, dep.memo)].removeprefix("0x").upper() if i < memos else None
        if memo is not None:
            at(when, ScenarioTx(KIND_BRIDGE, vault, router, amount, payouts=((address, amount),), memo=memo))
        else:
            at(when, ScenarioTx(KIND_NATIVE, vault, address, amount))
        hop_from, t = address, when
        for nxt in (*path, deposit_address, exchange):
            t += 60
            at(t, ScenarioTx(KIND_NATIVE, hop_from, nxt, amount))
            hop_from = nxt
        decoy = i < decoys
        if decoy:
            # Later the same day someone else pays the destination: two candidates by timing.
            at(when + 3600, ScenarioTx(KIND_NATIVE, stranger, address, amount // 7))
        payouts.append(PayoutTruth(dep, vault, router if memo else vault, memo, address, when, amount, path,
                                   deposit_address, exchange, decoy))
    # Unrelated users of the bridge around the same time.
    start = min((times[d.block] for d in deposits), default=home.genesis_time)
    for _ in range(noise):
        at(start + rng.randint(0, 6 * 3600), ScenarioTx(KIND_NATIVE, vault, new(), rng.randint(1, 50) * ETHER))
    head = max(events, default=1) + 10
    blocks = [ScenarioBlock(n, home.genesis_time + n * block_seconds, events.get(n, [])) for n in range(1, head + 1)]
    scenario = Scenario(
        genesis_time=home.genesis_time,
        blocks=blocks,
        tokens=[],
        genesis_balances={vault: {NATIVE: total + 100_000 * ETHER}, stranger: {NATIVE: 1_000 * ETHER}},
        contracts={router: "bridge"},
        seeds=[],
        labels=[ScenarioLabel(exchange, "Binance", "exchange")],
        truth=Truth(),
        chain_id=chain_id,
        chain=chain,
        params={"crosschain": {"home_chain": home.chain, "seed": seed, "rate": str(rate), "delay": delay}},
    )
    return CrossChain(scenario, vault, router, exchange, payouts)


def with_bitcoin_payouts(
    home: Scenario, *, sats_per_ether: int = 5_000_000, seed: int = 1, **params: object
) -> tuple[Scenario, BitcoinScenario]:
    """`home` (changed in place: call this before serving it or building its other chains) with
    valid Bitcoin destinations in its memos, and the Bitcoin chain paying them (see the module
    docstring). `params` go to BitcoinScenarioParams."""
    rng = random.Random(f"crosschain-btc:{seed}")
    renamed: dict[str, str] = {}
    bridges = []
    for b in home.truth.bridges:
        if b.dest_chain == "bitcoin":
            address = encode_btc_segwit("bc", 0, rng.randbytes(20))
            renamed[b.memo] = b.memo.replace(b.dest_address, address)
            b = replace(b, memo=renamed[b.memo], dest_address=address)
        bridges.append(b)
    for block in home.blocks:
        for tx in block.txs:
            if tx.kind == KIND_BRIDGE and tx.memo in renamed:
                tx.memo = renamed[tx.memo]
    home.truth.bridges = bridges
    # The deposits' transaction hashes are what the vault's memos name: ask the chain the server
    # will build from the same scenario.
    chain = Chain.from_scenario(home)
    handoffs = []
    for tid, tx in enumerate(chain.txs):
        if tx.kind == KIND_BRIDGE and tx.memo in renamed.values():
            dest = next(b for b in bridges if b.memo == tx.memo)
            when = chain.blocks[chain.tx_block[tid]].timestamp
            handoffs.append(Handoff.thorchain(chain.tx_hash[tid], tx.value * sats_per_ether // ETHER, when,
                                              dest.dest_address))
    first = min((h.time for h in handoffs), default=home.genesis_time)
    btc = generate_bitcoin(BitcoinScenarioParams(**{  # type: ignore[arg-type]
        "seed": seed, "genesis_time": first - 6 * 3600, "coinjoin": False, "peel_hops": 3, **params,
        "handoffs": tuple(handoffs)}))
    return home, btc
