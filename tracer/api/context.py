"""The API's settings and the one object the app holds: database, chain clients, auth, metrics."""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import asyncpg
from aiohttp import web

from tracer.api import limit_flags
from tracer.api.memo import DollarsMemo
from tracer.api.pages import PageCache
from tracer.api.replica import ReadRouting
from tracer.chains.feeds import Feed
from tracer.chains.protocols import ChainSource
from tracer.config import DEFAULT_BATCH_SIZE
from tracer.store.db import Database

if TYPE_CHECKING:
    from tracer.api.auth import Authenticator
    from tracer.api.cursors import CursorCodec
    from tracer.api.metrics import Metrics
    from tracer.workers.trace import Worker


class ChainClient(ChainSource, Protocol):
    """What the API needs of a chain client: the worker's calls plus the head (tracer.chains.evm)."""

    async def head(self) -> int: ...


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    #: Workers run inside the API process (0: the API only queues; `tracer worker` does the work).
    workers: int = 0
    worker_batch_size: int = DEFAULT_BATCH_SIZE
    worker_lease_seconds: float = 30.0
    #: HMAC key for pagination cursors; None: a random secret kept in the database, shared by every
    #: API process on it (so a cursor works on any replica and after a restart).
    secret: bytes | None = None
    #: Seeds are ~44 bytes each and a trace takes at most 10,000: 1 MiB leaves room for the policy.
    max_body: int = 1 << 20
    page_default: int = 100
    page_max: int = 1000
    #: How long a checked key (or "no keys exist") is trusted before asking Postgres again: the
    #: delay after which a revocation takes effect.
    key_cache_seconds: float = 5.0
    #: Requests per second each API key (or, in open mode, each client address) may make, with
    #: bursts up to `rate_limit_burst`; beyond it 429 with Retry-After. None: no limit.
    rate_limit: float | None = limit_flags.RATE_LIMIT
    rate_limit_burst: int = limit_flags.RATE_LIMIT_BURST
    #: Formats built in memory (graphml, gexf) and path searches refuse bigger traces (422); the
    #: streamed formats (csv, json, dot) have no limit.
    graph_max_hops: int = 250_000
    paths_max_hops: int = 500_000
    health_timeout: float = 3.0
    #: Rendered exit lists of finished traces kept in memory (a finished trace's exits never change;
    #: dashboards poll them). 0 disables.
    exits_cache_size: int = 256
    #: Encoded pages of hops of finished traces kept in memory, in bytes per API process
    #: (TRACER_API_PAGE_CACHE_MB; 0 disables), each served for at most page_cache_seconds (the lag
    #: of a page's dollars behind a price stored meanwhile; tracer.api.pages).
    page_cache_bytes: int = 16 << 20
    page_cache_seconds: float = 10.0
    #: Dollars of an unfinished trace are summed (every hop at its block's price) only up to this
    #: many hops (TRACER_API_LIVE_USD_MAX_HOPS); past it its exits and summary say the dollars come
    #: when it finishes. A finished trace's dollars are summed once and kept (tracer.api.usd).
    live_usd_max_hops: int = 20_000
    #: How long the API trusts the price feeds it read from `price_feeds`: a feed registered
    #: meanwhile values pages of hops after at most this many seconds (0: read on every page).
    feeds_cache_seconds: float = 10.0
    #: Quotas (docs/SECURITY.md): seeds per trace (and addresses per watchlist); unfinished traces
    #: and subscriptions per key, or per team for keys that have one (429 past them).
    max_seeds: int = limit_flags.MAX_SEEDS
    max_active_traces: int = limit_flags.MAX_ACTIVE_TRACES
    max_subscriptions: int = limit_flags.MAX_SUBSCRIPTIONS
    #: Seconds a connection may take to send a request's headers (and an idle keep-alive
    #: connection may stay open): slow-header connections are closed.
    header_timeout: float = limit_flags.HEADER_TIMEOUT
    #: Path searches (/paths): wall-clock budget in seconds (a search past it is stopped: 503), and
    #: the most seeds a trace may have for one (422 beyond).
    paths_budget: float = limit_flags.PATHS_BUDGET
    paths_max_seeds: int = limit_flags.PATHS_MAX_SEEDS
    #: A chain node unreachable at start is retried this often (tracer.api.nodewatch).
    node_retry_seconds: float = 5.0
    #: Host names the server answers for (TRACER_ALLOWED_HOSTS); None: the loopback names and the
    #: bound address, enforced in open mode only (see tracer.api.sameorigin).
    allowed_hosts: tuple[str, ...] | None = None

    @property
    def allow_open(self) -> bool:
        """Without keys the API may only serve its own machine."""
        return is_loopback(self.host)


@dataclass
class ApiContext:
    db: Database
    chains: Mapping[str, ChainClient]
    settings: Settings
    metrics: Metrics
    auth: Authenticator
    cursors: CursorCodec | None = None
    workers: Sequence[Worker] = ()
    #: (method, path template) -> scope the route needs (None: public); filled from routes.ROUTES.
    scopes: dict[tuple[str, str], str | None] = field(default_factory=dict)
    #: (chain, token) -> (symbol, decimals): token metadata never changes, so it is cached forever.
    asset_meta: dict[tuple[str, str], tuple[str | None, int | None]] = field(default_factory=dict)
    trace_chains: dict[int, str] = field(default_factory=dict)  # trace id -> chain (immutable)
    exits_cache: OrderedDict[tuple[object, ...], bytes] = field(default_factory=OrderedDict)
    pages: PageCache | None = None
    #: A trace's dollar sums by (trace, status, updated_at, hop count), computed once however many
    #: requests ask at the same time (tracer.api.usd.shared_dollars).
    dollars: DollarsMemo = field(default_factory=lambda: DollarsMemo())
    #: (when read, the feeds of price_feeds): see tracer.api.usd.registered_feeds.
    feeds: tuple[float, list[Feed]] | None = None
    #: Where pure reads go (a streaming replica when TRACER_READ_DATABASE_URL is set; tracer.api.replica).
    reads: ReadRouting | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        return self.db.pool

    @property
    def read_pool(self) -> asyncpg.Pool:
        """For handlers that only read: the replica when it holds this process's writes."""
        return self.reads.pool if self.reads is not None else self.db.pool


CTX: web.AppKey[ApiContext] = web.AppKey("tracer_api", ApiContext)
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
