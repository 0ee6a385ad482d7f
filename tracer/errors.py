"""Expected failures and the one-line message a user sees for each: the command line's view of the
errors every layer raises, so it sits with the CLI (tracer.cli imports it when a command fails), above
the layers whose errors it names."""

from __future__ import annotations

from tracer.addresses import InvalidAddress
from tracer.chains.errors import ChainError
from tracer.domain.records import UnknownTrace
from tracer.engine.policy import PolicyError
from tracer.engine.service import TraceInputError


def describe(exc: BaseException) -> str | None:
    """A readable message for errors a user can fix; None for bugs (which keep their traceback)."""
    if isinstance(exc, InvalidAddress | PolicyError | TraceInputError | UnknownTrace):
        return str(exc)
    if isinstance(exc, ChainError):
        return f"chain node: {exc}"
    if isinstance(exc, OSError | ConnectionError):
        return f"{type(exc).__name__}: {exc}"
    return None
