"""Balances at past blocks (native and ERC-20), as few calls as the node allows.

A trace reads each wallet's balance just before its first flagged inflow (tracer.engine.balances).
Two things make that cheap on a provider that counts every batch member as a call:

- **Multicall3** (`aggregate3` at 0xcA11bde05977b3631167028862bE2a173976CA11, deployed at that
  address on most EVM chains): every balance wanted at one block, native (`getEthBalance`) and
  tokens (`balanceOf`), in one `eth_call` at that block. A lone query goes as a plain call (as
  cheap, and needs no Multicall3). Whether the contract is there comes with the state probe at
  first contact (its `eth_getCode` at an old block), or is asked once (`eth_getCode` at the
  latest block) where the probe found none; a block older than its deployment answers an empty
  result and that block's queries are asked again one by one.
- **a cache**: a balance at a past block never changes, and a wallet woken again by a later
  inflow asks for the same block again (as block times, keyed by number: a reorg deeper than the
  trace's confirmations is the reorg guard's business).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import eth_abi
from eth_abi.exceptions import DecodingError

from tracer.addresses import normalize_evm
from tracer.chains.answers import SHAPE_ERRORS
from tracer.chains.errors import RpcError, StateUnavailable
from tracer.chains.evm import history, mappers
from tracer.chains.evm.history import MULTICALL3
from tracer.chains.evm.node import EvmNode
from tracer.domain.transfers import NATIVE

log = logging.getLogger(__name__)

AGGREGATE3 = "0x82ad56cb"  # aggregate3((address,bool,bytes)[])
GET_ETH_BALANCE = "0x4d2301cc"  # getEthBalance(address)
BALANCE_OF = "0x70a08231"  # balanceOf(address)
# Sub-calls per aggregate3: a cold balanceOf costs ~5-10k gas, and nodes cap an eth_call's gas
# (Geth's RPCGasCap 50M, Anvil the block gas limit 30M).
PER_MULTICALL = 500

Key = tuple[str, str, int]  # (holder, asset: NATIVE or a token, block)


def balance_call(holder: str, asset: str) -> tuple[str, str]:
    """(target, input) of one balance read: the token's balanceOf, or Multicall3's getEthBalance."""
    word = mappers.pad_topic(holder)[2:]
    return (MULTICALL3, GET_ETH_BALANCE + word) if asset == NATIVE else (asset, BALANCE_OF + word)


def encode_aggregate3(keys: Sequence[Key]) -> str:
    return encode_calls([balance_call(holder, asset) for holder, asset, _ in keys])


def encode_calls(calls: Sequence[tuple[str, str]]) -> str:
    """aggregate3's input for (target, input) calls, each allowed to fail on its own."""
    items = [(target, True, bytes.fromhex(data[2:])) for target, data in calls]
    return AGGREGATE3 + eth_abi.encode(["(address,bool,bytes)[]"], [items]).hex()


def decode_aggregate3(answer: Any, size: int) -> list[tuple[bool, bytes]] | None:
    """aggregate3's (success, returnData) per sub-call; None when the answer is not that (no
    Multicall3 code at the block answers "0x")."""
    if not isinstance(answer, str) or len(answer) <= 2:
        return None
    try:
        (results,) = eth_abi.decode(["(bool,bytes)[]"], bytes.fromhex(answer[2:]))
    except (DecodingError, ValueError, TypeError):
        return None
    if len(results) != size:
        return None
    return [(bool(ok), bytes(data)) for ok, data in results]


def _key(q: Key) -> Key:
    a, t, b = q
    return normalize_evm(a), t if t == NATIVE else normalize_evm(t), int(b)


class StateReads(EvmNode):
    """Balances at blocks for `EvmChain` (see the module doc)."""

    async def native_balances(self, queries: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Balances at blocks; raises StateUnavailable when the node keeps no state at one of them."""
        keys = [(normalize_evm(a), int(b)) for a, b in queries]
        got = await self.balances_at([(a, NATIVE, b) for a, b in keys])
        return {(a, b): got[(a, NATIVE, b)] for a, b in keys}

    async def token_balances(self, queries: Iterable[tuple[str, str, int]]) -> dict[tuple[str, str, int], int]:
        """`balanceOf(address)` of tokens at blocks. Calls that revert or return no uint are left
        out of the result (not a token, or the token did not exist yet at that block); a node that
        keeps no state at a block raises StateUnavailable."""
        return await self.balances_at((a, t, b) for a, t, b in queries)

    async def balances_at(self, queries: Iterable[Key], optional: Iterable[Key] = ()) -> dict[Key, int]:
        """Balances of (holder, NATIVE or token, block): one eth_call per block where several are
        wanted (Multicall3), a plain one for a lone query; all in one batch. Token reads that
        revert or answer no uint are left out; a native read that fails raises. `optional` keys
        ride along (into the cache, and the answer) only in a Multicall3 call made anyway at their
        block: a caller warming the cache for its next batch costs no call of its own."""
        keys = list(dict.fromkeys(_key(q) for q in queries))
        out, missing = self._balances.split(keys)
        if not missing:
            return out
        by_block: dict[int, list[Key]] = defaultdict(list)
        for key in missing:
            by_block[key[2]].append(key)
        # Optional keys only fill the Multicall3 calls these blocks need anyway (never one more).
        own = set(missing)
        for k in dict.fromkeys(_key(q) for q in optional):
            ks = by_block.get(k[2])
            if ks is not None and k not in own and k not in self._balances and len(ks) % PER_MULTICALL:
                ks.append(k)
        grouped = [ks for b, ks in sorted(by_block.items()) if len(ks) > 1 and b > self._multicall_absent_to]
        if grouped and self.multicall is None:
            code = await self.rpc.call("eth_getCode", [MULTICALL3, "latest"])
            self.multicall = isinstance(code, str) and code not in ("0x", "0x0", "")
            log.info("chain %s: Multicall3 %s", self.chain,
                     "present" if self.multicall else "absent: one call per balance")
        groups = [ks[i: i + PER_MULTICALL] for ks in grouped for i in range(0, len(ks), PER_MULTICALL)] \
            if self.multicall else []
        in_group = {k for ks in groups for k in ks}
        single = [k for k in missing if k not in in_group]
        calls: list[tuple[str, Sequence[Any]]] = [
            ("eth_call", [{"to": MULTICALL3, "data": encode_aggregate3(ks)}, hex(ks[0][2])]) for ks in groups]
        calls += [self._plain_call(k) for k in single]
        answers = await self.rpc.batch(calls)
        self._state_missing(answers, [ks[0][2] for ks in groups] + [k[2] for k in single])
        again: list[Key] = []
        for ks, ans in zip(groups, answers[: len(groups)], strict=True):
            results = decode_aggregate3(ans, len(ks))
            if results is None:
                # No Multicall3 at this block yet (older than its deployment), or an odd answer.
                if not isinstance(ans, RpcError):
                    self._multicall_absent_to = max(self._multicall_absent_to, ks[0][2])
                log.debug("aggregate3 at block %d answered %r: asking one by one", ks[0][2], ans)
                again.extend(k for k in ks if k in own)
                continue
            for key, (ok, data) in zip(ks, results, strict=True):
                answer = "0x" + data.hex() if ok else RpcError("aggregate3", None, "the balance call reverted")
                self._take(out, key, answer, word=True)
        for key, ans in zip(single, answers[len(groups):], strict=True):
            self._take(out, key, ans)
        if again:
            answers = await self.rpc.batch([self._plain_call(k) for k in again])
            self._state_missing(answers, [k[2] for k in again])
            for key, ans in zip(again, answers, strict=True):
                self._take(out, key, ans)
        return out

    async def calls_at(self, calls: Sequence[tuple[str, str]], block: str) -> list[Any]:
        """The return data (or RpcError) of eth_calls (target, input) at one block: one
        aggregate3 per PER_MULTICALL of them where Multicall3 is known to be there, a plain call
        each otherwise (or where its answer is not aggregate3's)."""
        if self.multicall and len(calls) > 1:
            chunks = [calls[i: i + PER_MULTICALL] for i in range(0, len(calls), PER_MULTICALL)]
            answers = await self.rpc.batch([("eth_call", [{"to": MULTICALL3, "data": encode_calls(c)}, block])
                                            for c in chunks])
            out: list[Any] = []
            for chunk, ans in zip(chunks, answers, strict=True):
                results = decode_aggregate3(ans, len(chunk))
                if results is None:
                    break
                out += ["0x" + data.hex() if ok else RpcError("eth_call", None, "reverted inside aggregate3")
                        for ok, data in results]
            else:
                return out
        return await self.rpc.batch([("eth_call", [{"to": t, "data": d}, block]) for t, d in calls])

    @staticmethod
    def _plain_call(key: Key) -> tuple[str, Sequence[Any]]:
        holder, asset, block = key
        if asset == NATIVE:
            return "eth_getBalance", [holder, hex(block)]
        target, data = balance_call(holder, asset)
        return "eth_call", [{"to": target, "data": data}, hex(block)]

    def _take(self, out: dict[Key, int], key: Key, answer: Any, *, word: bool = False) -> None:
        """Record one answer: a quantity from eth_getBalance, a uint256 word from a call."""
        holder, asset, block = key
        if asset == NATIVE:
            raw = self._expect(answer, f"balance of {holder} at block {block}")
        elif isinstance(answer, RpcError):
            log.debug("balanceOf%s failed: %s", key, answer.message)
            return
        else:
            raw, word = answer, True
        try:
            value = mappers.returned_uint(raw) if word else mappers.quantity(raw)
        except SHAPE_ERRORS as exc:
            raise self.malformed("eth_call" if word else "eth_getBalance", raw, exc) from exc
        if value is not None:
            out[key] = value
            self._balances.put(key, value)

    def _state_missing(self, answers: Sequence[Any], blocks: Sequence[int]) -> None:
        for ans, block in zip(answers, blocks, strict=True):
            if isinstance(ans, RpcError) and history.is_state_missing(ans):
                if self.historical_state:
                    log.warning("node at %s keeps no state at block %d after all: %s", self.name, block, ans.message)
                raise StateUnavailable(
                    f"node at {self.name} keeps no state at block {block}: {ans.message} (code {ans.code})", block
                )
