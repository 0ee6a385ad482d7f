"""Structured logs: one `key=value` line per event, JSON when TRACER_LOG_JSON=1."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from tracer.domain.errors import UserError


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"ts": round(time.time(), 3), "level": record.levelname, "logger": record.name,
                           "msg": record.getMessage()})


def setup(level: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("TRACER_LOG_JSON") == "1":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    name = (level or os.environ.get("TRACER_LOG_LEVEL") or "WARNING").upper()
    if name not in logging.getLevelNamesMapping():
        raise UserError(f"--log-level / TRACER_LOG_LEVEL: no level {name!r}; one of DEBUG, INFO, WARNING, ERROR, "
                        "CRITICAL")
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(name)
