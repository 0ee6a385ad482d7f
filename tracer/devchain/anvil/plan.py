"""How a Scenario's transactions become Anvil transactions: which code sits at which address, and
the `eth_sendTransaction` objects of each scenario transaction.

Contracts: the scenario's tokens get `Stablecoin`, its mixer pools `MixerPool`, the targets of its
batch payouts `BatchPayout`, of its swaps `ConstantProductPair` and of its bridge deposits
`BridgeRouter`; any other address the scenario marks as a contract (a labelled DEX or bridge that
only receives plain payments) gets `Receiver`, unless it sends transactions itself (an account
with code cannot send: EIP-3607).

Gas. Anvil runs with a zero base fee and every transaction pays gas price 0, so value movements
and balances are exactly the scenario's. The exception is what the mixer linker reads as a clue:
mixer deposits and withdrawals carry the scenario's own gas price. Their senders get the gas money
(`anvil_setBalance`) just before the block and lose what is left of it just after, so their
balance is the scenario's at the end of every block but that one (where it holds up to
GAS_PAID_LIMIT x price, about 0.01 ETH, more) -- see executor.py.

Failed transactions (`ok=False`) are sent with a gas limit of exactly their intrinsic gas, so they
run out of gas at their first instruction: real failed transactions that move nothing. A failed
plain transfer to an account without code cannot exist on an EVM (there is nothing to fail); those
are not sent and are counted (they move nothing in the scenario either).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from eth_utils import keccak

from tracer.devchain.anvil import artifacts as art
from tracer.devchain.scenario import KINDS, Scenario, ScenarioTx
from tracer.domain.transfers import NATIVE

KIND_NATIVE, KIND_TOKEN, KIND_BATCH, KIND_MIXER, KIND_WITHDRAW, KIND_SWAP, KIND_BRIDGE = KINDS

ZERO = "0x" + "0" * 40
# Sends the setup transactions (initialize, mint, liquidity): an address no generator draws.
SETUP_ACCOUNT = "0x5e7a9000000000000000000000000000000005e7"
MINT_CHUNK = 250  # recipients per mint transaction
GAS_PAID_LIMIT = 250_000  # gas limit of the transactions that pay gas (mixer deposits, withdrawals)
_GAS = {KIND_TOKEN: 120_000, KIND_MIXER: GAS_PAID_LIMIT, KIND_WITHDRAW: GAS_PAID_LIMIT, KIND_SWAP: 250_000,
        KIND_BRIDGE: 200_000}
GAS_PRICED = (KIND_MIXER, KIND_WITHDRAW)


class PlanError(ValueError):
    """The scenario asks for something the dev contracts cannot do."""


@dataclass
class Placement:
    """Which dev contract runs at which scenario address."""

    tokens: dict[str, tuple[str, int]] = field(default_factory=dict)  # address -> (symbol, decimals)
    pools: dict[str, int] = field(default_factory=dict)  # address -> denomination (wei)
    batches: set[str] = field(default_factory=set)
    pairs: dict[str, str] = field(default_factory=dict)  # pair -> its token
    routers: set[str] = field(default_factory=set)
    receivers: set[str] = field(default_factory=set)

    def code(self) -> dict[str, str]:
        """address -> runtime code to place with anvil_setCode."""
        out = {a: art.artifact(art.STABLECOIN).runtime for a in self.tokens}
        out.update({a: art.artifact(art.POOL).runtime for a in self.pools})
        out.update({a: art.artifact(art.BATCH).runtime for a in self.batches})
        out.update({a: art.artifact(art.PAIR).runtime for a in self.pairs})
        out.update({a: art.artifact(art.ROUTER).runtime for a in self.routers})
        out.update({a: art.artifact(art.RECEIVER).runtime for a in self.receivers})
        return out

    def has_code(self, address: str) -> bool:
        return (address in self.tokens or address in self.pools or address in self.batches
                or address in self.pairs or address in self.routers or address in self.receivers)


def place(sc: Scenario) -> Placement:
    p = Placement()
    senders = {tx.sender for _, tx in sc.iter_txs()}
    for t in sc.tokens:
        p.tokens[t.address] = (t.symbol, t.decimals)
    for pool in sc.mixer_pools:
        if pool.asset != NATIVE:
            raise PlanError(f"mixer pool {pool.address}: only ETH pools are modelled, not {pool.asset}")
        p.pools[pool.address] = pool.denomination
    for _, tx in sc.iter_txs():
        if tx.kind == KIND_BATCH:
            p.batches.add(tx.to)
        elif tx.kind == KIND_SWAP:
            if p.pairs.setdefault(tx.to, tx.token) != tx.token:
                raise PlanError(f"pair {tx.to} swaps two tokens; the dev pair has one")
        elif tx.kind == KIND_BRIDGE:
            p.routers.add(tx.to)
        elif tx.kind in (KIND_MIXER, KIND_WITHDRAW) and tx.to not in p.pools:
            raise PlanError(f"mixer transaction to {tx.to}, which is not one of the scenario's pools")
    for address in sc.contracts:
        if not p.has_code(address) and address not in senders:
            p.receivers.add(address)
    clash = senders & {a for a in p.code() if a not in p.receivers}
    if clash:
        raise PlanError(f"contract addresses that send transactions: {sorted(clash)[:3]}")
    return p


def intrinsic_gas(data: str) -> int:
    """The least gas a transaction with this input may carry (Prague: the EIP-7623 calldata floor)."""
    raw = bytes.fromhex(data[2:]) if data.startswith("0x") else b""
    zero = raw.count(0)
    tokens = zero + 4 * (len(raw) - zero)
    return 21_000 + max(4 * tokens, 10 * tokens)


def _word(tag: str) -> bytes:
    return keccak(text=tag)


@dataclass(frozen=True)
class Sent:
    """One transaction to send: the scenario tx it belongs to (None for setup / approvals)."""

    params: dict[str, Any]
    ok: bool
    scenario_tx: ScenarioTx | None


def setup_transactions(sc: Scenario, p: Placement) -> list[Sent]:
    """Block 1's first transactions: initialize the contracts, mint the genesis token balances,
    add the pairs' genesis liquidity (minted to the pair, then the pair's own `mint`)."""
    out: list[Sent] = []

    def call(to: str, data: str, gas: int = 3_000_000) -> None:
        out.append(Sent({"from": SETUP_ACCOUNT, "to": to, "data": data, "value": "0x0", "gas": hex(gas),
                         "gasPrice": "0x0"}, True, None))

    coin, pool, pair = art.artifact(art.STABLECOIN), art.artifact(art.POOL), art.artifact(art.PAIR)
    for address, (symbol, decimals) in sorted(p.tokens.items()):
        call(address, coin.call_data("initialize", symbol, symbol, decimals), 300_000)
    for address, denomination in sorted(p.pools.items()):
        call(address, pool.call_data("initialize", denomination), 100_000)
    for address, token in sorted(p.pairs.items()):
        call(address, pair.call_data("initialize", token), 100_000)
    for token in sorted(p.tokens):
        holders = sorted((a, assets[token]) for a, assets in sc.genesis_balances.items() if assets.get(token))
        for start in range(0, len(holders), MINT_CHUNK):
            chunk = holders[start:start + MINT_CHUNK]
            call(token, coin.call_data("mint", [a for a, _ in chunk], [v for _, v in chunk]),
                 60_000 + 40_000 * len(chunk))
    for address in sorted(p.pairs):
        if sc.genesis_balances.get(address, {}).get(p.pairs[address]) and \
                sc.genesis_balances.get(address, {}).get(NATIVE):
            call(address, pair.call_data("mint", SETUP_ACCOUNT), 300_000)
    return out


def transactions(sc: Scenario, p: Placement, block: int, txs: Iterable[ScenarioTx],
                 native: dict[str, int]) -> tuple[list[Sent], int]:
    """The Anvil transactions of one scenario block, and how many failed plain transfers were left
    out. `native` is the scenario's ETH ledger at the block's start (read, not changed)."""
    out: list[Sent] = []
    skipped = 0
    for i, tx in enumerate(txs):
        sent = _one(sc, p, block, i, tx, native)
        if sent is None:
            skipped += 1
        out.extend(sent or ())
    return out, skipped


def _one(sc: Scenario, p: Placement, block: int, i: int, tx: ScenarioTx,
         native: dict[str, int]) -> list[Sent] | None:
    kind = tx.kind
    value = 0
    extra: list[Sent] = []
    if kind == KIND_TOKEN and tx.token == NATIVE:
        # A "token" transfer of the native asset (the replay's noise draws kind and asset apart):
        # what it moves, by ScenarioTx.transfers(), is ETH, so it is sent as an ETH transfer.
        kind = KIND_NATIVE
    if kind == KIND_NATIVE:
        to, data, value = tx.to, "0x", tx.value
        gas = 60_000 if p.has_code(to) else 21_000
        if not tx.ok and not p.has_code(to):
            return None
    elif kind == KIND_TOKEN:
        to, data = tx.token, art.artifact(art.STABLECOIN).call_data("transfer", tx.to, tx.value)
    elif kind == KIND_BATCH:
        to, value = tx.to, tx.value
        data = art.artifact(art.BATCH).call_data("disperseEther", [a for a, _ in tx.payouts],
                                                 [v for _, v in tx.payouts])
        gas = 60_000 + 45_000 * len(tx.payouts)
    elif kind == KIND_MIXER:
        to, value = tx.to, tx.value
        data = art.artifact(art.POOL).call_data("deposit", _word(f"commitment:{block}:{i}:{tx.sender}"))
    elif kind == KIND_WITHDRAW:
        to = tx.to
        recipient, paid = tx.payouts[0] if tx.payouts else (ZERO, 0)
        relayer, fee = tx.payouts[1] if len(tx.payouts) > 1 else (ZERO, 0)
        if tx.ok and paid + fee != p.pools[to]:
            raise PlanError(f"withdrawal at block {block} pays {paid + fee}, pool {to} holds notes of {p.pools[to]}")
        data = art.artifact(art.POOL).call_data("withdraw", b"", _word("root"), _word(f"nullifier:{block}:{i}"),
                                                recipient, relayer, fee, 0)
    elif kind == KIND_SWAP:
        to = tx.to
        recipient, out = tx.payouts[0] if tx.payouts else (tx.sender, 0)
        data = art.artifact(art.PAIR).call_data("swapTokensForETH", tx.value, out, recipient)
        approve = art.artifact(art.STABLECOIN).call_data("approve", tx.to, tx.value)
        extra.append(Sent({"from": tx.sender, "to": tx.token, "data": approve, "value": "0x0",
                           "gas": hex(80_000), "gasPrice": "0x0"}, True, None))
    elif kind == KIND_BRIDGE:
        to, value = tx.to, tx.value
        router = art.artifact(art.ROUTER)
        payee = tx.payouts[0][0] if tx.payouts else ZERO
        if tx.memo.upper().startswith("OUT:"):  # a vault paying out on the destination chain
            data = router.call_data("transferOut", payee, ZERO, 0, tx.memo)
        else:
            data = router.call_data("deposit", payee, ZERO, 0, tx.memo)
    else:
        raise PlanError(f"unknown transaction kind {kind}")
    if kind != KIND_NATIVE and kind != KIND_BATCH:
        gas = _GAS[kind]
    if not tx.ok:
        # Out of gas at the first instruction; the value only when the sender could pay it (a
        # transaction that cannot pay its value is refused, not mined).
        gas = intrinsic_gas(data)
        if value > native.get(tx.sender, 0):
            value = 0
    price = tx.gas_price if kind in GAS_PRICED and tx.ok else 0
    params = {"from": tx.sender, "to": to, "data": data, "value": hex(value), "gas": hex(gas), "gasPrice": hex(price)}
    return [*extra, Sent(params, tx.ok, tx)]
