"""The limits `tracer serve` takes as flags, and their defaults (docs/SECURITY.md).

Apart from the API on purpose: the CLI's parser prints these defaults in `tracer serve --help`
without importing the API (aiohttp, web3); Settings (tracer.api.context) takes its defaults from here.
"""

from __future__ import annotations

MAX_SEEDS = 1000
MAX_ACTIVE_TRACES = 20
MAX_SUBSCRIPTIONS = 100
RATE_LIMIT: float | None = None
RATE_LIMIT_BURST = 20
HEADER_TIMEOUT = 15.0
PATHS_BUDGET = 10.0
PATHS_MAX_SEEDS = 1000

#: (flag, environment variable, type, what, default) of each limit `tracer serve` takes; the Settings
#: field is the flag's name. Flag over variable over the default.
LIMITS: tuple[tuple[str, str, type, str, float | None], ...] = (
    ("--max-seeds", "TRACER_MAX_SEEDS", int, "seeds per trace and addresses per watchlist", MAX_SEEDS),
    ("--max-active-traces", "TRACER_MAX_ACTIVE_TRACES", int, "unfinished traces per key (or team)",
     MAX_ACTIVE_TRACES),
    ("--max-subscriptions", "TRACER_MAX_SUBSCRIPTIONS", int, "subscriptions per key (or team)", MAX_SUBSCRIPTIONS),
    ("--rate-limit", "TRACER_RATE_LIMIT", float, "requests per second per key, shared by every API process "
     "through Postgres (0: no limit)", RATE_LIMIT),
    ("--rate-limit-burst", "TRACER_RATE_LIMIT_BURST", int, "requests a key may make at once above the rate",
     RATE_LIMIT_BURST),
    ("--header-timeout", "TRACER_HEADER_TIMEOUT", float, "seconds a client may take to send request headers",
     HEADER_TIMEOUT),
    ("--paths-budget", "TRACER_PATHS_BUDGET", float, "seconds one /paths search may run", PATHS_BUDGET),
    ("--paths-max-seeds", "TRACER_PATHS_MAX_SEEDS", int, "most seeds of a trace /paths searches", PATHS_MAX_SEEDS),
)
