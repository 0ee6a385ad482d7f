"""The compiled dev contracts (contracts/artifacts/*.json, made by compile.py) and their calls."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import eth_abi
from eth_utils import keccak
from eth_utils.abi import collapse_if_tuple
from web3 import Web3
from web3.contract import Contract

ARTIFACTS = Path(__file__).resolve().parent / "contracts" / "artifacts"

STABLECOIN = "Stablecoin"
BATCH = "BatchPayout"
POOL = "MixerPool"
PAIR = "ConstantProductPair"
ROUTER = "BridgeRouter"
RECEIVER = "Receiver"


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str  # creation code (deploy with eth_sendTransaction)
    runtime: str  # deployed code (place with anvil_setCode)

    @functools.cached_property
    def contract(self) -> type[Contract]:
        return Web3().eth.contract(abi=self.abi)

    def call_data(self, function: str, *args: Any) -> str:
        """ABI-encoded input of `function(*args)` (addresses in any case: eth_abi, not web3's
        checksum-only contract wrapper)."""
        selector, types = self._functions[function]
        return "0x" + selector + eth_abi.encode(types, list(args)).hex()

    @functools.cached_property
    def _functions(self) -> dict[str, tuple[str, list[str]]]:
        out = {}
        for item in self.abi:
            if item.get("type") == "function":
                types = [collapse_if_tuple(i) for i in item["inputs"]]
                signature = f"{item['name']}({','.join(types)})"
                out[item["name"]] = (keccak(text=signature)[:4].hex(), types)
        return out

    def topic(self, event: str) -> str:
        """topic0 of one of the contract's events."""
        return str(getattr(self.contract.events, event).topic)


@functools.cache
def artifact(name: str) -> Artifact:
    data = json.loads((ARTIFACTS / f"{name}.json").read_text())
    return Artifact(name, data["abi"], data["bytecode"], data["deployedBytecode"])
