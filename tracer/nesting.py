"""How deeply a JSON (or YAML flow) text nests, checked before a parser recurses into it.

Importing web3 raises Python's recursion limit to 100,000 (py_ecc sets it), so in a process with
a chain client the C JSON decoder no longer stops at a RecursionError: 100,000 nested brackets
overflow the C stack and kill the process (one 200 kB request took `tracer serve` down with
SIGSEGV). Untrusted text is therefore measured first; real documents nest a handful of levels.
"""

from __future__ import annotations

import re

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def too_deep(raw: bytes, limit: int) -> bool:
    """True when brackets outside double-quoted strings nest deeper than `limit`."""
    if raw.count(b"[") + raw.count(b"{") <= limit:  # the usual case, without scanning
        return False
    depth = 0
    for m in _BRACKET.finditer(_STRING.sub(b"", raw)):
        if m.group() in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        else:
            depth = max(0, depth - 1)
    return False
