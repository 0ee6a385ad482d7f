"""Where the files of `schemas/` (SQL migrations, JSON Schemas, OpenAPI) are found at run time.

The repository keeps them at the top level, next to the `tracer` package; a wheel ships the same
folder inside the package as `tracer/schemas` (pyproject maps it with `package-dir`), so an
installed tracer migrates and serves its API contract without a checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

import tracer


def schemas_root() -> Path:
    """The `schemas/` folder: $TRACER_SCHEMAS_DIR, else the one inside the installed package, else
    the source tree's."""
    env = os.environ.get("TRACER_SCHEMAS_DIR")
    if env:
        return Path(env)
    package = Path(tracer.__file__).resolve().parent
    shipped = package / "schemas"
    if (shipped / "migrations").is_dir():
        return shipped
    return package.parent / "schemas"
