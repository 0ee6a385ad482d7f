"""The base of errors whose message is for the person at the keyboard."""

from __future__ import annotations


class UserError(Exception):
    """Input the user fixes, not a bug: a flag out of range, a file that is not what it should be, a
    database URL that opens nothing. Its message is one sentence naming what to fix; the command line
    prints it as is, without a traceback, and exits with status 2 (tracer.errors.describe). Here, the
    lowest layer, so that any layer's command handler or loader can raise one."""
