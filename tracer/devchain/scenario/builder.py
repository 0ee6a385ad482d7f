"""`Builder`: executes a scenario's planned transactions in block order, keeping balances and
scheduling the exchanges' sweeps. The planners (plans, noise, services; replay, mixer_family) only
say what should happen when.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from tracer.devchain.scenario.model import GWEI, KINDS, ScenarioTx
from tracer.domain.transfers import NATIVE

KIND_NATIVE, KIND_TOKEN, KIND_BATCH, KIND_MIXER, KIND_WITHDRAW, KIND_SWAP, KIND_BRIDGE = KINDS

ALL = -1  # amount placeholder: the sender's whole balance of the asset when the tx executes

# Optional extras of a planned transaction: (memo, fixed gas price or 0, tag or ""). A tag names the
# executed ScenarioTx in `Builder.tagged`, so ground truth can point at it after `run()`.
Extra = tuple[str, int, str]
# (kind, sender, to, asset, amount, strict, ok, payouts, extra), in per-block lists in planning order
Event = tuple[int, str, str, str, int, bool, bool, tuple[tuple[str, int], ...], Extra | None]


class Builder:
    """Executes planned transactions in block order, keeping balances and scheduling sweeps.

    Planned events sit in a list sorted once; sweeps, decided while executing, in a heap. A strict
    event (laundering) that would overdraw is a generator bug; a lenient one (noise) is shrunk or
    dropped, so no balance on the chain ever goes negative.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.balances: dict[tuple[str, str], int] = {}
        self.genesis: dict[str, dict[str, int]] = {}
        self.events: dict[int, list[Event]] = {}
        self.deposit_sweeps_to: dict[str, str] = {}  # deposit address -> hot wallet it sweeps to
        self.sweep_delay_max = 4
        self.batch_contract = ""
        self.txs: dict[int, list[ScenarioTx]] = {}
        self.tagged: dict[str, tuple[int, ScenarioTx]] = {}  # tag -> (block, executed transaction)
        self.last_block = 0

    def new_address(self) -> str:
        return f"0x{self.rng.getrandbits(160):040x}"

    def fund(self, address: str, asset: str, amount: int) -> None:
        per = self.genesis.setdefault(address, {})
        per[asset] = per.get(asset, 0) + amount
        key = (address, asset)
        self.balances[key] = self.balances.get(key, 0) + amount

    def add(
        self,
        block: int,
        kind: int,
        sender: str,
        to: str,
        asset: str,
        amount: int,
        *,
        strict: bool = True,
        ok: bool = True,
        payouts: tuple[tuple[str, int], ...] = (),
        extra: Extra | None = None,
    ) -> None:
        ev = (kind, sender, to, asset, amount, strict, ok, payouts, extra)
        bucket = self.events.get(block)
        if bucket is None:
            self.events[block] = [ev]
        else:
            bucket.append(ev)
        if block > self.last_block:
            self.last_block = block

    def native(self, block: int, sender: str, to: str, amount: int, **kw: Any) -> None:
        self.add(block, KIND_NATIVE, sender, to, NATIVE, amount, **kw)

    def token(self, block: int, token: str, sender: str, to: str, amount: int, **kw: Any) -> None:
        self.add(block, KIND_TOKEN, sender, to, token, amount, **kw)

    def batch(self, block: int, sender: str, payouts: Sequence[tuple[str, int]], **kw: Any) -> None:
        p = tuple(payouts)
        self.add(block, KIND_BATCH, sender, self.batch_contract, NATIVE, sum(v for _, v in p), payouts=p, **kw)

    def mixer(self, block: int, sender: str, pool: str, amount: int, **kw: Any) -> None:
        self.add(block, KIND_MIXER, sender, pool, NATIVE, amount, **kw)

    def withdraw(self, block: int, sender: str, pool: str, payouts: Sequence[tuple[str, int]], **kw: Any) -> None:
        p = tuple(payouts)
        self.add(block, KIND_WITHDRAW, sender, pool, NATIVE, sum(v for _, v in p), payouts=p, **kw)

    def swap(self, block: int, sender: str, pair: str, token: str, amount_in: int, recipient: str, amount_out: int,
             **kw: Any) -> None:
        self.add(block, KIND_SWAP, sender, pair, token, amount_in, payouts=((recipient, amount_out),), **kw)

    def bridge(self, block: int, sender: str, router: str, vault: str, amount: int, **kw: Any) -> None:
        self.add(block, KIND_BRIDGE, sender, router, NATIVE, amount, payouts=((vault, amount),), **kw)

    def run(self) -> dict[int, list[ScenarioTx]]:
        """Execute every planned event, block by block, in planning order within a block.

        Sweeps decided on the way go first in their block, as an exchange's sweeper would.
        """
        events = self.events
        sweeps: dict[int, list[Event]] = {}
        pending: set[tuple[str, str]] = set()
        # Balances per asset, keyed by address alone: a str caches its hash, a tuple key doesn't.
        per_asset: dict[str, dict[str, int]] = {}
        for (address, asset), amount in self.balances.items():
            per_asset.setdefault(asset, {})[address] = amount
        sweeps_to = self.deposit_sweeps_to
        rand = self.rng.random
        delay_max = self.sweep_delay_max
        out = self.txs
        new_tx = ScenarioTx
        block = 0
        last = max(events, default=0)

        def sweep_later(who: str, hot: str, asset: str) -> None:
            # An exchange sweeps a deposit address soon after money lands on it.
            nonlocal last
            pending.add((who, asset))
            when = block + 1 + int(rand() * delay_max)
            sweep_kind = KIND_NATIVE if asset == NATIVE else KIND_TOKEN
            sweeps.setdefault(when, []).append((sweep_kind, who, hot, asset, ALL, False, True, (), None))
            last = max(last, when)

        while block < last:
            block += 1
            due = sweeps.pop(block, None)
            for ev in due or ():
                pending.discard((ev[1], ev[3]))
            planned = events.get(block, [])
            batch = (due + planned) if due else planned
            if not batch:
                continue
            txs: list[ScenarioTx] = []
            for ev in batch:
                kind, sender, to, asset, amount, strict, ok, payouts, extra = ev
                if kind >= KIND_WITHDRAW:
                    # Contract payouts (mixer, swap, bridge): rare, so a general path is fine here.
                    tx = self._service_tx(block, ev, per_asset)
                    if tx is not None:
                        txs.append(tx)
                        for frm, who, moved_asset, _ in tx.transfers():
                            if frm != sender and who in sweeps_to and (who, moved_asset) not in pending:
                                sweep_later(who, sweeps_to[who], moved_asset)
                    continue
                bal = per_asset.get(asset)
                if bal is None:
                    bal = per_asset[asset] = {}
                have = bal.get(sender, 0)
                if amount == ALL:
                    amount = have
                    if amount <= 0:
                        continue
                if ok and amount > have:
                    if strict:
                        raise RuntimeError(f"scenario generator overdraws {sender} ({asset}) at block {block}")
                    if kind == KIND_MIXER or kind == KIND_BATCH:
                        continue  # fixed amounts: an unrelated user who cannot afford it just doesn't
                    amount = have // 2
                    if amount <= 0:
                        continue
                gas_price = int((3 + 57 * rand()) * GWEI)
                if extra is not None and extra[1]:
                    gas_price = extra[1]  # a gas price the plan chose (a de-mixing clue, a wallet default)
                if kind == KIND_TOKEN:
                    tx = new_tx(kind, sender, to, amount, asset, (), ok, gas_price)
                else:
                    tx = new_tx(kind, sender, to, amount, "", payouts, ok, gas_price)
                txs.append(tx)
                if extra is not None and extra[2]:
                    self.tagged[extra[2]] = (block, tx)
                if not ok:
                    continue
                bal[sender] = have - amount
                for who, value in payouts if kind == KIND_BATCH else ((to, amount),):
                    bal[who] = bal.get(who, 0) + value
                    hot = sweeps_to.get(who)
                    if hot is not None and (who, asset) not in pending:
                        sweep_later(who, hot, asset)
            if txs:
                out[block] = txs
        self.balances = {(a, asset): v for asset, bal in per_asset.items() for a, v in bal.items()}
        if out:
            self.last_block = max(self.last_block, max(out))
        return out

    def _service_tx(self, block: int, ev: Event, per_asset: dict[str, dict[str, int]]) -> ScenarioTx | None:
        """Execute a withdrawal, swap or bridge deposit: every debit must be covered, else the
        transaction is a generator bug (strict) or is skipped (noise)."""
        kind, sender, to, asset, amount, strict, ok, payouts, extra = ev
        memo, gas, tag = extra if extra is not None else ("", 0, "")
        if kind == KIND_SWAP:
            tx = ScenarioTx(kind, sender, to, amount, asset, payouts, ok, 0, memo)
        else:
            tx = ScenarioTx(kind, sender, to, amount, "", payouts, ok, 0, memo)
        tx.gas_price = gas or int((3 + 57 * self.rng.random()) * GWEI)
        moves = ScenarioTx(kind, sender, to, amount, tx.token, payouts, True, 0, memo).transfers()
        if ok:
            # Debits are checked in execution order: a router forwards what it has just received.
            delta: dict[tuple[str, str], int] = {}
            for frm, who, moved_asset, value in moves:
                have = per_asset.get(moved_asset, {}).get(frm, 0) + delta.get((frm, moved_asset), 0)
                if value > have:
                    if strict:
                        raise RuntimeError(f"scenario generator overdraws {frm} ({moved_asset}) at block {block}")
                    return None
                delta[(frm, moved_asset)] = delta.get((frm, moved_asset), 0) - value
                delta[(who, moved_asset)] = delta.get((who, moved_asset), 0) + value
            for (who, moved_asset), value in delta.items():
                bal = per_asset.setdefault(moved_asset, {})
                bal[who] = bal.get(who, 0) + value
        if tag:
            self.tagged[tag] = (block, tx)
        return tx
