"""Errors of the chain layer: what the engine may catch when a node cannot give an answer."""

from __future__ import annotations


class ChainError(Exception):
    """The node could not answer: it gave up after retries, answered garbage, or refused for good."""


class WrongChain(ChainError):
    """The node serves another chain than the one a trace runs on (caught at connect)."""


class MalformedAnswer(ChainError, ValueError):
    """The node answered, but not in the shape the method's answers have: a chain id or block number
    that is no number (a proxy's page, another API at the URL), a string where a list of traces
    should be (tracer.chains.answers). A ValueError too, which callers that parse answers already
    catch. `node` ("node at scheme://host:port") and `method` say which answer, when known."""

    def __init__(self, message: str, *, node: str | None = None, method: str | None = None) -> None:
        super().__init__(message)
        self.node = node
        self.method = method


class RpcError(Exception):
    """A JSON-RPC error object the node returned for one request.

    It is a value, not a failure of the transport: the request reached the node and the node said
    no (unknown method, too many results, reverted call). Callers decide what it means.
    """

    def __init__(self, method: str, code: int | None, message: str, data: object = None) -> None:
        super().__init__(f"{method}: node error {code}: {message}")
        self.method = method
        self.code = code
        self.message = message
        self.data = data


class StateUnavailable(ChainError):
    """The node keeps no state at the block asked for (a full node, Anvil by default): balances
    there must come from somewhere else (tracer.engine.balances derives them from history)."""

    def __init__(self, message: str, block: int) -> None:
        super().__init__(message)
        self.block = block
