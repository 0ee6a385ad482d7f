"""Garbage a node may answer inside a well-formed envelope, by shape, and the judge of what a chain
client makes of it: the garbage-node tests of tests/integration/test_chain_garbage.py (EVM),
test_tron_chain.py and test_bitcoin_chain.py.

    problems = await judge(cases, connect, who)   # [] when every read of garbage was a clear error

`connect(garble, case)` gives a connected client whose answers pass through `garble` (a proxy node
in front of a devchain, or the client's transport wrapped in process); `judge` arms it after
connect, so the client's probes see a healthy node."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tracer.chains.errors import ChainError, MalformedAnswer

KEY = "s3cr3t-key"  # in the clients' URLs: no error may repeat it

# Fields that hold numbers (quantities) in blocks, transactions, receipts, logs and traces.
_NUMBERS = {"number", "timestamp", "blockNumber", "blockTimestamp", "transactionIndex", "logIndex", "value", "gas",
            "gasUsed", "gasPrice", "effectiveGasPrice", "cumulativeGasUsed", "status", "nonce", "type", "balance",
            "transactionPosition", "baseFeePerGas", "gasLimit", "size", "difficulty", "totalDifficulty"}


def _z(text: str) -> str:
    return "0x" + "z" * max(1, len(text) - 2)


def _not_hex(value: Any) -> Any:
    """`value` with the digits of its numbers (and of a bare hex answer: a balance, call data, code)
    turned into z's."""
    if isinstance(value, str):
        return _z(value) if value.startswith("0x") else value

    def inside(v: Any, key: str = "") -> Any:
        if isinstance(v, list):
            return [inside(x) for x in v]
        if isinstance(v, dict):
            return {k: inside(x, k) for k, x in v.items()}
        return _z(v) if key in _NUMBERS and isinstance(v, str) and v.startswith("0x") else v

    return inside(value)


SHAPES: dict[str, Callable[[Any], Any]] = {
    "string": lambda _: "oops, not what you asked for",
    "list of strings": lambda _: ["0x1", "junk"],
    "object missing fields": lambda _: {"unexpected": True},
    "non-hex numbers": _not_hex,
    "null": lambda _: None,
}


def _no_numbers(value: Any) -> Any:
    """`value` with every number inside it a string that is none (the HTTP APIs' numbers are JSON's)."""
    if isinstance(value, list):
        return [_no_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _no_numbers(v) for k, v in value.items()}
    return "12 or so" if isinstance(value, int) and not isinstance(value, bool) else value


# For the HTTP APIs (Tron's /wallet/*, Esplora): their numbers are JSON numbers, not hex.
HTTP_SHAPES = {**{k: f for k, f in SHAPES.items() if k != "non-hex numbers"}, "numbers that are none": _no_numbers}


@dataclass
class Garble:
    """Garbles the answers to `method` (a JSON-RPC method, a Tron API path, an Esplora endpoint) the
    `shape` way, counting those it changed; the clients' transports are wrapped to pass their answers
    through it."""

    method: str = ""
    shape: str = ""
    corrupted: int = 0

    def __call__(self, method: str, answer: Any) -> Any:
        if method != self.method:
            return answer
        garbled = {**SHAPES, **HTTP_SHAPES}[self.shape](copy.deepcopy(answer))
        self.corrupted += garbled != answer
        return garbled


def verdict(where: str, method: str, shape: str, got: Any, healthy: Any, *, corrupted: int, who: str,
            null_is_an_answer: bool = False) -> str | None:
    """What is wrong with `got` (a result, or what the read raised) for garbage of `shape` in the
    answers to `method`; None if nothing. Garbage where the read does not look (a trace's gas) may go
    unnoticed, but must not change what is read; null, where it means none, may. An error is a
    ChainError naming the server (`who`, "node at http://host:port") and the method, never the
    URL's KEY; a MalformedAnswer of the method where the answer was not null."""
    if not corrupted:
        return f"{where}: never asked (the read asks nothing of {method})"
    if not isinstance(got, BaseException):
        if got != healthy and not (shape == "null" and null_is_an_answer):
            return f"{where}: read without an error, and not what a healthy server gives"
        return None
    if not isinstance(got, ChainError):
        return f"{where}: {type(got).__name__}: {got}"
    message = str(got)
    if who not in message or method not in message or KEY in message:
        return f"{where}: the message does not name the server and method: {message}"
    if shape != "null" and not (isinstance(got, MalformedAnswer) and got.method == method):
        return f"{where}: {type(got).__name__}, not a MalformedAnswer of {method}: {message}"
    return None


@dataclass(frozen=True)
class Case:
    """A read (`read(client)`) that asks `method`; `options` for the client it runs on."""

    method: str
    read: Callable[[Any], Awaitable[Any]]
    null_is_an_answer: bool = False  # null means none (no traces, no logs, no block yet): the read may succeed
    http: bool = False  # an HTTP API's endpoint: HTTP_SHAPES, not SHAPES
    options: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def __str__(self) -> str:
        return f"{self.method} ({self.name})" if self.name else self.method


async def judge(cases: list[Case], connect: Callable[[Garble, Case], Awaitable[Any]],
                who: Callable[[Any, str], str]) -> list[str]:
    """Each case with each shape of garbage, each on a fresh client (closed after): the problems
    `verdict` finds. `who(client, method)` is how the client names the server that answers `method`."""
    problems = []
    for case in cases:
        client = await connect(Garble(), case)
        try:
            healthy = await case.read(client)
        finally:
            await client.close()
        assert healthy and not isinstance(healthy, BaseException), (str(case), healthy)
        for shape in HTTP_SHAPES if case.http else SHAPES:
            garble = Garble()
            client = await connect(garble, case)
            garble.method, garble.shape = case.method, shape
            try:
                got = await case.read(client)
            except Exception as exc:  # which exception is the point
                got = exc
            finally:
                garble.method = ""
                await client.close()
            problem = verdict(f"{case} with {shape}", case.method, shape, got, healthy, corrupted=garble.corrupted,
                              who=who(client, case.method), null_is_an_answer=case.null_is_an_answer)
            if problem:
                problems.append(problem)
    return problems
