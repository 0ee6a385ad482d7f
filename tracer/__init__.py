"""tracer: follow flagged cryptocurrency hop by hop to the off-ramps where it cashes out."""

import sys as _sys

# web3 imports py_ecc, which raises the interpreter's recursion limit to 100,000 at import. With
# that limit the C JSON decoder overflows the C stack on a deeply nested document (a hostile node
# answer or API body) and the process dies with SIGSEGV instead of raising RecursionError. Import
# it first, under our control, and put the limit back: nothing tracer calls recurses that deep.
_limit = _sys.getrecursionlimit()
import py_ecc  # noqa: E402,F401

_sys.setrecursionlimit(_limit)

__version__ = "0.1.0"
