"""The dev chain's in-memory state: blocks, transactions, call frames, logs and balances.

`Chain.from_scenario()` expands the compact `ScenarioTx` records of a scenario into what a node
knows: block and transaction hashes, nonces, call frames (Parity traceAddress), logs with the real
event signatures (ERC-20 Transfer; Tornado Cash Deposit and Withdrawal; Uniswap V2 Swap; THORChain
router Deposit with its memo), contract code, native and token balances at any block. Rendering
node JSON is `server.py`'s job; this module answers structured questions fast.

Storage, growth, reorgs and search live in `chain_index.py`; the spelling of topics, selectors and
ABI words in `evm_abi.py` (re-exported here, where tests and siblings have always found them).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from itertools import accumulate

from tracer.devchain.chain_index import PAYING, Block, ChainIndex
from tracer.devchain.evm_abi import (
    DEPOSIT_TOPIC,
    SEL_DEPOSIT,
    SEL_DISPERSE,
    SEL_SWAP,
    SEL_THOR_DEPOSIT,
    SEL_TRANSFER,
    SEL_WITHDRAW,
    SWAP_TOPIC,
    THOR_DEPOSIT_TOPIC,
    TRANSFER_TOPIC,
    WETH,
    WITHDRAWAL_TOPIC,
    ZERO_ADDRESS,
    ZERO_HASH,
    abi_string,
    filler,
    pad_address,
    word,
)
from tracer.devchain.scenario import KINDS, Scenario, gc_paused

KIND_NATIVE, KIND_TOKEN, KIND_BATCH, KIND_MIXER, KIND_WITHDRAW, KIND_SWAP, KIND_BRIDGE = KINDS

__all__ = [
    "DEPOSIT_TOPIC", "SWAP_TOPIC", "THOR_DEPOSIT_TOPIC", "TRANSFER_TOPIC", "WITHDRAWAL_TOPIC", "ZERO_ADDRESS",
    "ZERO_HASH", "Block", "Chain", "Frame", "Log", "abi_string", "pad_address", "word",
]


# Gas a node would report; nothing is charged for it (balances are value transfers only).
_GAS = {KIND_NATIVE: 21_000, KIND_TOKEN: 51_000, KIND_BATCH: 30_000, KIND_MIXER: 980_000, KIND_WITHDRAW: 320_000,
        KIND_SWAP: 120_000, KIND_BRIDGE: 60_000}
_GAS_PER_PAYOUT = 9_000

# Fake runtime code per contract role: only its presence matters to clients (is_contract).
_CODE = {
    "token": "0x608060405234801561001057600080fd5b50600436106100a95760003560e01c806370a0823114",
    "batch": "0x608060405260043610610025576000357c010000000000000000000000000000000000000000",
    "mixer": "0x6080604052600436106100dd5760003560e01c8063b214faa51161007f578063e5285dcc11610059",
    "dex": "0x60806040526004361061016a5760003560e01c80638803dbee116100d1578063c45a015511610085",
    "bridge": "0x6080604052600436106101c25760003560e01c80637b939232116100f7578063ad5425c611610095",
}
_DEFAULT_CODE = "0x6080604052348015600f57600080fd5b50"


@dataclass(frozen=True, slots=True)
class Frame:
    """One call of a transaction: the top-level call has trace_address ()."""

    sender: str
    to: str
    value: int
    input: str
    trace_address: tuple[int, ...]
    subtraces: int
    error: str | None
    gas: int
    gas_used: int
    call_type: str = "call"


@dataclass(frozen=True, slots=True)
class Log:
    address: str
    topics: tuple[str, ...]
    data: str


class Chain(ChainIndex):
    """An in-memory EVM chain: `ChainIndex` plus what a node derives from it per transaction
    (target, value, input, gas, call frames, logs) and the state at any block (code, balances, nonces)."""

    @classmethod
    def from_scenario(cls, sc: Scenario) -> Chain:
        chain = cls(
            chain_id=sc.chain_id,
            name=sc.chain,
            genesis_time=sc.genesis_time,
            genesis_balances=sc.genesis_balances,
            tokens=sc.tokens,
            contracts=sc.contracts,
        )
        with gc_paused():
            for block in sc.blocks:
                if block.number != len(chain.blocks):
                    raise ValueError(f"scenario block {block.number} out of sequence")
                chain._add_block(block.txs, block.timestamp)
        return chain

    # -- transactions as a node shows them ---------------------------------------------------
    def tx_target(self, tid: int) -> str:
        tx = self.txs[tid]
        return tx.token if tx.kind == KIND_TOKEN else tx.to

    def tx_value(self, tid: int) -> int:
        tx = self.txs[tid]
        # Token transfers, swaps (the token is pulled by the pair) and withdrawals send no ETH.
        return 0 if tx.kind in (KIND_TOKEN, KIND_SWAP, KIND_WITHDRAW) else tx.value

    def tx_input(self, tid: int) -> str:
        tx = self.txs[tid]
        if tx.kind == KIND_TOKEN:
            return SEL_TRANSFER + pad_address(tx.to)[2:] + word(tx.value)
        if tx.kind == KIND_MIXER:
            return SEL_DEPOSIT + self.commitment(tid)[2:]
        if tx.kind == KIND_WITHDRAW:
            # withdraw(proof, root, nullifierHash, recipient, relayer, fee, refund): a dummy proof.
            recipient = tx.payouts[0][0] if tx.payouts else ZERO_ADDRESS
            fee = tx.payouts[1][1] if len(tx.payouts) > 1 else 0
            head = (word(7 * 32) + filler(tid, "root") + self.nullifier(tid)[2:] + pad_address(recipient)[2:]
                    + pad_address(self._relayer(tx))[2:] + word(fee) + word(0))
            return SEL_WITHDRAW + head + word(32) + filler(tid, "proof")
        if tx.kind == KIND_SWAP:
            recipient = tx.payouts[0][0] if tx.payouts else tx.sender
            path = word(2) + pad_address(tx.token)[2:] + pad_address(WETH)[2:]
            return (SEL_SWAP + word(tx.value) + word(0) + word(5 * 32) + pad_address(recipient)[2:]
                    + word(2**32 - 1) + path)
        if tx.kind == KIND_BRIDGE:
            vault = tx.payouts[0][0] if tx.payouts else ZERO_ADDRESS
            return SEL_THOR_DEPOSIT + pad_address(vault)[2:] + pad_address(ZERO_ADDRESS)[2:] + word(tx.value) + \
                word(4 * 32) + abi_string(tx.memo)
        if tx.kind == KIND_BATCH:
            n = len(tx.payouts)
            head = word(64) + word(64 + 32 * (n + 1))
            addrs = word(n) + "".join(pad_address(a)[2:] for a, _ in tx.payouts)
            values = word(n) + "".join(word(v) for _, v in tx.payouts)
            return SEL_DISPERSE + head + addrs + values
        return "0x"

    def tx_gas(self, tid: int) -> tuple[int, int]:
        """(gas limit, gas used)."""
        tx = self.txs[tid]
        used = _GAS[tx.kind] + (_GAS_PER_PAYOUT * len(tx.payouts) if tx.kind in PAYING else 0)
        if not tx.ok:
            used = used * 2 // 3
        return used * 5 // 4, used

    def frames(self, tid: int) -> list[Frame]:
        """The transaction's calls in execution (pre-)order; failed transactions stop at the top."""
        tx = self.txs[tid]
        gas, used = self.tx_gas(tid)
        subcalls = list(tx.payouts) if tx.kind in PAYING and tx.ok else []
        top = Frame(
            tx.sender,
            self.tx_target(tid),
            self.tx_value(tid),
            self.tx_input(tid),
            (),
            len(subcalls),
            None if tx.ok else "Reverted",
            gas,
            used,
        )
        return [top] + [Frame(tx.to, who, v, "0x", (k,), 0, None, 2_300, 0) for k, (who, v) in enumerate(subcalls)]

    def frame(self, trace_id: int) -> tuple[int, Frame]:
        tid = self.trace_tx[trace_id]
        return tid, self.frames(tid)[trace_id - self.tx_first_trace[tid]]

    def logs(self, tid: int) -> list[Log]:
        tx = self.txs[tid]
        if not tx.ok:
            return []
        first = self.tx_first_log[tid]
        end = self.tx_first_log[tid + 1] if tid + 1 < len(self.txs) else len(self.log_tx)
        out = []
        for lg in range(first, end):
            topics = self.log_topics[lg]
            t0 = topics[0]
            if t0 == TRANSFER_TOPIC:
                data = "0x" + word(tx.value)
            elif t0 == DEPOSIT_TOPIC:
                data = "0x" + word(self._leaf[tid]) + word(self.blocks[self.tx_block[tid]].timestamp)
            elif t0 == WITHDRAWAL_TOPIC:  # (address to, bytes32 nullifierHash, uint256 fee); relayer indexed
                fee = tx.payouts[1][1] if len(tx.payouts) > 1 else 0
                data = "0x" + pad_address(tx.payouts[0][0])[2:] + self.nullifier(tid)[2:] + word(fee)
            elif t0 == SWAP_TOPIC:  # token0 = the token paid in, token1 = WETH paid out
                data = "0x" + word(tx.value) + word(0) + word(0) + word(sum(v for _, v in tx.payouts))
            else:  # THORChain Deposit(address indexed to, address indexed asset, uint amount, string memo)
                data = "0x" + word(tx.value) + word(64) + abi_string(tx.memo)
            out.append(Log(self.log_address[lg], topics, data))
        return out

    def log(self, log_id: int) -> tuple[int, Log]:
        tid = self.log_tx[log_id]
        return tid, self.logs(tid)[log_id - self.tx_first_log[tid]]

    # -- state -----------------------------------------------------------------------------------
    def code(self, address: str) -> str:
        role = self.contracts.get(address)
        if role is None:
            return "0x"
        return _CODE.get(role, _DEFAULT_CODE)

    def _trace_value(self, t: int) -> int:
        tid = self.trace_tx[t]
        tx = self.txs[tid]
        if not tx.ok:
            return 0
        k = t - self.tx_first_trace[tid]
        if k == 0:
            return self.tx_value(tid)
        return tx.payouts[k - 1][1]

    def _native_timeline(self, address: str) -> tuple[list[int], list[int]]:
        cached = self._native_cache.get(address)
        if cached is not None:
            return cached
        moves: list[tuple[int, int]] = []
        for t in self.traces_from.get(address, ()):
            v = self._trace_value(t)
            if v:
                moves.append((t, -v))
        for t in self.traces_to.get(address, ()):
            v = self._trace_value(t)
            if v:
                moves.append((t, v))
        moves.sort()
        timeline = ([t for t, _ in moves], list(accumulate(d for _, d in moves)))
        self._native_cache[address] = timeline
        return timeline

    def _token_timeline(self, token: str, address: str) -> tuple[list[int], list[int]]:
        key = (token, address)
        cached = self._token_cache.get(key)
        if cached is not None:
            return cached
        padded = pad_address(address)
        moves: list[tuple[int, int]] = []
        for pos, sign in ((1, -1), (2, 1)):
            for lg in self.logs_by_topic[pos].get(padded, ()):
                if self.log_address[lg] == token and self.log_topics[lg][0] == TRANSFER_TOPIC:
                    moves.append((lg, sign * self.txs[self.log_tx[lg]].value))
        moves.sort()
        timeline = ([lg for lg, _ in moves], list(accumulate(d for _, d in moves)))
        self._token_cache[key] = timeline
        return timeline

    def native_balance(self, address: str, block: int, *, charge_gas: bool = False) -> int:
        """Wei held by `address` at the end of `block` (genesis plus value transfers; with
        `charge_gas`, minus the fees of the transactions it sent, as a real chain would)."""
        ids, sums = self._native_timeline(address)
        end = self.blocks[block].first_trace + self.blocks[block].n_traces
        k = bisect_left(ids, end)
        held = self.genesis_balances.get(address, {}).get("native", 0) + (sums[k - 1] if k else 0)
        if charge_gas:
            # Genesis also funds every fee the address will pay (scenarios fund value only).
            held += self.fees_paid(address, self.head) - self.fees_paid(address, block)
        return held

    def fees_paid(self, address: str, block: int) -> int:
        """Fees (gas used x gas price) of the transactions `address` sent up to the end of `block`."""
        cached = self._fee_cache.get(address)
        if cached is None:
            ids: list[int] = []
            fees: list[int] = []
            for t in self.traces_from.get(address, ()):
                tid = self.trace_tx[t]
                if self.tx_first_trace[tid] == t and self.txs[tid].sender == address:
                    ids.append(t)
                    fees.append(self.tx_gas(tid)[1] * self.txs[tid].gas_price)
            cached = self._fee_cache[address] = (ids, list(accumulate(fees)))
        ids, sums = cached
        k = bisect_left(ids, self.blocks[block].first_trace + self.blocks[block].n_traces)
        return sums[k - 1] if k else 0

    def token_balance(self, token: str, address: str, block: int) -> int:
        ids, sums = self._token_timeline(token, address)
        end = self.blocks[block].first_log + self.blocks[block].n_logs
        k = bisect_left(ids, end)
        return self.genesis_balances.get(address, {}).get(token, 0) + (sums[k - 1] if k else 0)

    def nonce(self, address: str, block: int) -> int:
        """Transactions sent by `address` up to the end of `block`."""
        end = self.blocks[block].first_trace + self.blocks[block].n_traces
        first_trace = self.tx_first_trace
        trace_tx = self.trace_tx
        n = 0
        for t in self.traces_from.get(address, ()):
            if t >= end:
                break
            if first_trace[trace_tx[t]] == t and self.txs[trace_tx[t]].sender == address:
                n += 1
        return n
