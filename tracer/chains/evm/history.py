"""What a node without historical state still answers, and how to tell such a node.

Archive nodes answer `eth_getBalance` / `eth_call` at any block. Full nodes (Geth, Nethermind,
Reth and Erigon in full mode) and Anvil by default keep only recent state and answer an old block
with an error: Anvil `BlockOutOfRangeError: block height is N but requested was M` (-32602), Geth
`missing trie node` or `historical state ... is not available`, Nethermind, Erigon and others
`header not found` / `state not available`. Blocks, transactions, receipts, traces and logs of old
blocks are still served. So the engine can derive an old balance: balance now (state of a recent
block) minus what the address received since, plus what it sent and the fees it paid since
(`tracer.engine.balances`). This module gives the chain-layer half of that:

- `probe_historical_state`: one state read at an old block at first contact (`eth_getCode` of
  Multicall3's address: the same read also says whether balances can be batched through it,
  tracer.chains.evm.state);
- `is_state_missing`: which error answers mean "no state there";
- `sent_fees`: the fee each of its transactions cost an address (gasUsed x effectiveGasPrice,
  plus the L1 data fee of OP-stack chains and blob gas), from receipts, batched.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tracer.chains.answers import SHAPE_ERRORS
from tracer.chains.errors import ChainError, RpcError
from tracer.chains.evm import mappers
from tracer.chains.records import FeePaid

if TYPE_CHECKING:
    from tracer.chains.evm import EvmChain

log = logging.getLogger(__name__)

# How far below the head the first-contact probe reads a balance. A full node keeps ~128 recent
# states (Geth), Reth full ~10,000 blocks of history, Anvil a few thousand: 100,000 blocks (two
# weeks on Ethereum) is past all of them, so "yes" means an archive node. A short chain is probed
# at block 1; a node that answers there but not later is still caught at run time (the balance
# read raises StateUnavailable and the engine derives).
PROBE_DEPTH = 100_000
MULTICALL3 = "0xca11bde05977b3631167028862be2a173976ca11"  # deployed at this address on most EVM chains

_STATE_MISSING = re.compile(
    r"blockoutofrange|block height is \d+ but requested|missing trie node|header not found"
    r"|historical state|state (is )?not available|state not found|state .*(pruned|unavailable)"
    r"|required historical|distance to target block exceeds|old data not available|not supported on pruned"
    r"|requested block .* (is )?(too old|pruned|not available)|state histories",
    re.IGNORECASE,
)


def is_state_missing(err: RpcError) -> bool:
    """True when the node says it keeps no state at the block asked for."""
    return bool(_STATE_MISSING.search(err.message))


@dataclass(frozen=True, slots=True)
class StateProbe:
    """The answer to "does this node keep old state?", as found at first contact."""

    historical_state: bool
    block: int  # the old block whose balance was asked for
    head: int
    detail: str  # the node's error, or "answered"
    multicall: bool = False  # Multicall3 has code at that block (so at every later one)

    def describe(self) -> str:
        if self.historical_state:
            return f"the node answered a state read at block {self.block} (head {self.head}): it keeps historical state"
        return f"the node keeps no state at block {self.block} (head {self.head}): {self.detail}"


async def probe_historical_state(client: EvmChain, head: int) -> StateProbe:
    block = max(1, head - PROBE_DEPTH) if head > 1 else 0
    try:
        code = await client.rpc.call("eth_getCode", [MULTICALL3, hex(block)])
    except RpcError as err:
        if is_state_missing(err):
            return StateProbe(False, block, head, f"{err.message} (code {err.code})")
        # Another refusal (an odd proxy): treat as archive; a real read that fails later is
        # recognised then and degrades the same way.
        log.debug("state probe answered an unexpected error, taking state as present: %s", err.message)
        return StateProbe(True, block, head, f"unexpected answer: {err.message}")
    return StateProbe(True, block, head, "answered", multicall=isinstance(code, str) and code not in ("0x", "0x0", ""))


def receipt_fee(receipt: Mapping[str, Any], tx_gas_price: int | None = None) -> int:
    """The fee a receipt says the sender paid: gasUsed x effectiveGasPrice (pre-London receipts
    have no effectiveGasPrice: the transaction's gasPrice), plus blob gas (EIP-4844) and the
    L1 data fee OP-stack chains add (`l1Fee`)."""
    used = mappers.quantity(receipt["gasUsed"])  # every receipt has it: one without is no receipt
    price_raw = receipt.get("effectiveGasPrice")
    price = mappers.quantity(price_raw) if price_raw is not None else (tx_gas_price or 0)
    fee = used * price
    if receipt.get("blobGasUsed") is not None and receipt.get("blobGasPrice") is not None:
        fee += mappers.quantity(receipt["blobGasUsed"]) * mappers.quantity(receipt["blobGasPrice"])
    if receipt.get("l1Fee") is not None:
        fee += mappers.quantity(receipt["l1Fee"])
    return fee


async def sent_fees(client: EvmChain, sent: Iterable[tuple[str, int, str]]) -> list[FeePaid]:
    """Fees of transactions (sender, block, hash), from receipts: `eth_getBlockReceipts` for
    blocks holding several of them when the node has it, `eth_getTransactionReceipt` otherwise.
    A failed transaction pays its fee too, so status does not matter here."""
    wanted = {h.lower(): (a, b) for a, b, h in sent}
    by_block: dict[int, list[str]] = {}
    for h, (_, b) in wanted.items():
        by_block.setdefault(b, []).append(h)
    receipts: dict[str, Mapping[str, Any]] = {}
    whole = [b for b, hs in sorted(by_block.items()) if len(hs) > 1] if client.supports_block_receipts else []
    if whole:
        answers = await client.rpc.batch([("eth_getBlockReceipts", [hex(b)]) for b in whole])
        for rows in answers:
            if isinstance(rows, RpcError):
                continue  # asked again one by one below (as are those of a null)
            try:
                for r in mappers.rows(rows):
                    h = str(r.get("transactionHash", "")).lower()
                    if h in wanted:
                        receipt_fee(r)  # what the receipt is read for, read here: a shape error is this answer's
                        receipts[h] = r
            except SHAPE_ERRORS as exc:
                raise client.malformed("eth_getBlockReceipts", rows, exc) from exc
    single = sorted(h for h in wanted if h not in receipts)
    answers = await client.rpc.batch([("eth_getTransactionReceipt", [h]) for h in single])
    for h, r in zip(single, answers, strict=True):
        if isinstance(r, RpcError):
            raise ChainError(f"node at {client.name} has no receipt for {h}: {r.message}")
        if r is None:
            raise ChainError(f"node at {client.name} has no receipt for {h} (eth_getTransactionReceipt answered null)")
        try:
            receipt_fee(r)
        except SHAPE_ERRORS as exc:
            raise client.malformed("eth_getTransactionReceipt", r, exc) from exc
        receipts[h] = r
    # Receipts of old (pre-London) blocks on some nodes carry no effectiveGasPrice: the price is
    # the transaction's own gasPrice then.
    unpriced = [h for h, r in receipts.items() if r.get("effectiveGasPrice") is None]
    prices = await client.gas_prices(unpriced) if unpriced else {}
    return sorted(
        (FeePaid(a, b, h, receipt_fee(receipts[h], prices.get(h))) for h, (a, b) in wanted.items()),
        key=lambda f: (f.block_number, f.tx_hash),
    )


def top_level_sender(trace: Mapping[str, Any]) -> tuple[str, int, str] | None:
    """(sender, block, tx hash) of a Parity-style trace that is a transaction's root call (failed
    or not, with or without value): every such transaction cost its sender a fee."""
    if trace.get("traceAddress") or not trace.get("transactionHash"):
        return None
    action = trace.get("action") or {}
    sender = mappers.lower(action.get("from"))
    if sender is None:
        return None
    return sender, mappers.quantity(trace["blockNumber"]), str(trace["transactionHash"]).lower()
