"""Expected failures and the one-line message a user sees for each."""

from __future__ import annotations


def describe(exc: BaseException) -> str | None:
    """A readable message for errors a user can fix; None for bugs (which keep their traceback)."""
    from tracer.addresses import InvalidAddress
    from tracer.engine.policy import PolicyError
    from tracer.engine.service import TraceInputError

    if isinstance(exc, InvalidAddress | PolicyError | TraceInputError):
        return str(exc)
    try:
        from tracer.chains.evm import ChainError
    except ImportError:
        return None
    if isinstance(exc, ChainError):
        return f"chain node: {exc}"
    if isinstance(exc, OSError | ConnectionError):
        return f"{type(exc).__name__}: {exc}"
    return None
