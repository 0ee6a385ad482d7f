"""Multicall3 on the devchain: `aggregate3` and `getEthBalance` at the contract's usual address,
executed for real at the block asked (each inner call answered as an eth_call at that block), so
clients that batch balance reads through it meet what mainnet answers. eth_getCode there returns
the runtime code of the compiled stand-in (anvil/contracts/Multicall3.sol), which is what the
Anvil runs place at the same address."""

from __future__ import annotations

import functools
from collections.abc import Callable

import eth_abi
from eth_abi.exceptions import DecodingError

from tracer.devchain.rpc_params import RpcError

ADDRESS = "0xca11bde05977b3631167028862be2a173976ca11"
AGGREGATE3 = "0x82ad56cb"
GET_ETH_BALANCE = "0x4d2301cc"


@functools.cache
def runtime_code() -> str:
    from tracer.devchain.anvil.artifacts import artifact

    return artifact("Multicall3").runtime


def answer(data: str, call: Callable[[str, str], str], balance: Callable[[str], int]) -> str:
    """The return data of a call into Multicall3 with input `data`: `call(to, data)` answers an
    inner call (raising RpcError when it reverts), `balance(address)` the native balance, both
    at the block of the outer call."""
    selector, body = data[:10], bytes.fromhex(data[10:])
    try:
        if selector == GET_ETH_BALANCE:
            (holder,) = eth_abi.decode(["address"], body)
            return "0x" + eth_abi.encode(["uint256"], [balance(str(holder).lower())]).hex()
        if selector == AGGREGATE3:
            (calls,) = eth_abi.decode(["(address,bool,bytes)[]"], body)
        else:
            raise RpcError(-32000, "execution reverted")
    except (DecodingError, ValueError) as exc:
        raise RpcError(-32000, "execution reverted") from exc
    results: list[tuple[bool, bytes]] = []
    for target, allow_failure, call_data in calls:
        try:
            out = call(str(target).lower(), "0x" + bytes(call_data).hex())
        except RpcError:
            if not allow_failure:
                raise RpcError(-32000, "execution reverted: Multicall3: call failed") from None
            results.append((False, b""))
            continue
        results.append((True, bytes.fromhex(out[2:])))
    return "0x" + eth_abi.encode(["(bool,bytes)[]"], [results]).hex()
