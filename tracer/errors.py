"""Expected failures and the one-line message a user sees for each: the command line's view of the
errors every layer raises, so it sits with the CLI (tracer.cli imports it when a command fails), above
the layers whose errors it names.

Each layer marks the errors its user fixes (a bad flag, file, address, trace id, database URL) as
tracer.domain.errors.UserError, so this module needs none of those layers to know them: describing
a failure costs no imports (the engine's would bring web3, a second of CPU).
"""

from __future__ import annotations

from tracer.chains.errors import ChainError
from tracer.domain.errors import UserError


def describe(exc: BaseException) -> str | None:
    """A readable message for errors a user can fix; None for bugs (which keep their traceback)."""
    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, ChainError):
        return f"chain node: {exc}"
    if isinstance(exc, OSError | ConnectionError):
        return f"{type(exc).__name__}: {exc}"
    return None
