"""Encoded pages of finished traces kept in memory, and ETags for conditional requests.

A page of a finished trace is the same bytes for everyone who may read it (no field depends on
the caller), so the encoded body is kept, keyed by the URL asked and the trace's version (status,
updated_at, hop count: tracer.store.reads.trace_version), which every change of a finished
trace's hops moves (reorg retraction, watching again). Dollars are the one part that can change
under an unchanged trace (a price stored or a feed registered later), so an entry is served for
at most `page_cache_seconds`, the same bound as the feeds the API keeps (Settings.feeds_cache_seconds).
The cache is bounded in bytes, least recently used out first; each API process has its own.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Hashable

from aiohttp import web

FINISHED = ("done", "failed", "cancelled")


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


class PageCache:
    def __init__(self, max_bytes: int, seconds: float) -> None:
        self.max_bytes = max_bytes
        self.seconds = seconds
        self._pages: OrderedDict[Hashable, tuple[float, bytes, str]] = OrderedDict()
        self._bytes = 0
        self.hits = 0

    def get(self, key: Hashable) -> tuple[bytes, str] | None:
        entry = self._pages.get(key)
        if entry is None:
            return None
        if time.monotonic() - entry[0] > self.seconds:
            self._drop(key)
            return None
        self._pages.move_to_end(key)
        self.hits += 1
        return entry[1], entry[2]

    def put(self, key: Hashable, body: bytes, etag: str) -> None:
        if len(body) > self.max_bytes // 4:  # one huge page must not empty the cache
            return
        self._drop(key)
        self._pages[key] = (time.monotonic(), body, etag)
        self._bytes += len(body)
        while self._bytes > self.max_bytes:
            self._drop(next(iter(self._pages)))

    def _drop(self, key: Hashable) -> None:
        entry = self._pages.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[1])


def conditional(request: web.Request, body: bytes, etag: str) -> web.Response:
    """200 with the body, or 304 when the client already holds these bytes (If-None-Match). Cached
    by the client only to revalidate, never by a shared cache: the body needs an API key."""
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    asked = request.headers.get("If-None-Match", "")
    if asked and (asked.strip() == "*" or etag in (t.strip().removeprefix("W/") for t in asked.split(","))):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/json", headers=headers)
