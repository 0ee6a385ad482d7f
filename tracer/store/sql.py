"""What the modules of the trace tables share: the connection type and the SQL for "this chain,
or the trace's own"."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg

Conn: TypeAlias = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

TRACE_CHAIN = "coalesce({arg}::text, (SELECT chain FROM traces WHERE id = $1))"
"""SQL for a chain argument: None means the trace's own chain."""
