"""Answers in the wrong shape, told as such: the one place the chain clients turn the KeyError,
TypeError, ValueError... that mapping a node's garbage raises into a MalformedAnswer naming the node
(by `node_name`, never its URL: it may carry a key) and the method.

A node can answer with a well-formed envelope and junk inside it: a string where an object is
expected, null where a block should be, hex that is not hex. The mappers assume the documented
shapes (a check per field would cost every transfer of a trace); the clients map each answer inside
a `try` that catches `SHAPE_ERRORS` and raise `malformed(...)` instead, so a trace fails with "node
at http://127.0.0.1:8545 answered trace_filter with a string ('oops'), not a list of traces" rather
than "'str' object has no attribute 'get'".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracer.chains.errors import MalformedAnswer

# What mapping an answer of the wrong shape raises: a missing field, an index past the end, a
# method of another type, a number that is not one.
SHAPE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError)

# What each method answers, for the message; methods not here are "what <method> answers".
EXPECTED = {
    "eth_getBlockByNumber": "a block",
    "eth_getLogs": "a list of logs",
    "eth_getBlockReceipts": "a list of receipts",
    "eth_getTransactionReceipt": "a receipt",
    "eth_getBalance": "a quantity",
    "eth_call": "hex return data",
    "eth_getCode": "hex code",
    "trace_filter": "a list of traces",
    "trace_block": "a list of traces",
    "trace_transaction": "a list of traces",
    "debug_traceBlockByNumber": "a list of callTracer results",
    "debug_traceTransaction": "a callTracer frame",
    "/wallet/getnodeinfo": "node info with a solidityBlock",
    "/wallet/getblockbynum": "a block",
    "/wallet/getblockbylimitnext": "a list of blocks",
    "/wallet/gettransactioninfobyblocknum": "a list of transaction infos",
    "/wallet/getaccount": "an account",
    "/wallet/getassetissuebyid": "a TRC-10 asset",
    "/wallet/triggerconstantcontract": "a constant call's result",
    # Esplora, by endpoint
    "block": "a block with its timestamp",
    "block/txids": "a list of txids",
    "tx": "a transaction",
    "tx/merkle-proof": "a merkle proof with its position",
    "tx/outspends": "a list of outspends",
    "address": "an address with its chain_stats",
    "address/txs": "a list of transactions",
    "address/txs/chain": "a list of transactions",
}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


_ARTICLE = {"null": "", "object": "an ", "list": "a "}


def shape_of(answer: Any) -> str:
    """How an answer looks, in a few words ("a string ('oops')", "a list of strings", "null");
    bounded whatever the answer's size."""
    kind = _kind(answer)
    if kind == "string":
        return f"a string ({answer[:40]!r})" if answer else "an empty string"
    if kind == "list":
        if not answer:
            return "an empty list"
        items = sorted({_kind(item) for item in answer[:8]})
        return "a list of " + " and ".join("null" if k == "null" else f"{k}s" for k in items)
    return _ARTICLE.get(kind, "a ") + kind


def _detail(exc: BaseException | None) -> str:
    """What was wrong inside the answer: a missing field, a value that is no number (a ValueError's
    message); a TypeError's or AttributeError's ("'str' object has no attribute 'get'") says no more
    than the answer's shape already does."""
    if isinstance(exc, KeyError):
        return f" (no field {exc.args[0]!r})" if exc.args else ""
    text = str(exc) if isinstance(exc, ValueError) else ""
    return f" ({text[:120]})" if text else ""


def malformed(node: str, method: str, answer: Any, exc: BaseException | None = None, *,
              expected: str | None = None) -> MalformedAnswer:
    """The error for `answer` to `method` from the node called `node` ("node at http://host:port"),
    which should have been `expected` (by default what `method` answers, EXPECTED); `exc` (what
    mapping it raised) as is when it already is one (a nested mapping named it)."""
    if isinstance(exc, MalformedAnswer):
        return exc
    expected = expected or EXPECTED.get(method, f"what {method} answers")
    return MalformedAnswer(f"{node} answered {method} with {shape_of(answer)}, not {expected}{_detail(exc)}",
                           node=node, method=method)
