"""Configuration from the environment, with the same names as the CLI flags."""

from __future__ import annotations

import os


def rpc_urls(explicit: str | None = None, chain: str = "ethereum") -> dict[str, str]:
    """Node URLs per chain: `TRACER_RPC_URL` for the default chain, `TRACER_RPC_URL_<CHAIN>` for
    each other one (e.g. TRACER_RPC_URL_ARBITRUM)."""
    return _per_chain("TRACER_RPC_URL", explicit, chain)


def ws_urls(explicit: str | None = None, chain: str = "ethereum") -> dict[str, str]:
    """The monitor's new-heads WebSocket setting per chain, as given (a ws(s) URL or "off"):
    `--ws` / `TRACER_WS_URL` for the default chain, `TRACER_WS_URL_<CHAIN>` for each other one.
    A chain missing here gets its RPC URL's ws form (tracer.chains.urls.heads_url)."""
    return _per_chain("TRACER_WS_URL", explicit, chain)


def _per_chain(variable: str, explicit: str | None, chain: str) -> dict[str, str]:
    """`<variable>_<CHAIN>` for each chain set in the environment, and for `chain` the explicit
    value (a command-line option) or else `<variable>` itself."""
    urls: dict[str, str] = {}
    prefix = f"{variable}_"
    for key, value in os.environ.items():
        if key.startswith(prefix) and value:
            urls[key[len(prefix):].lower()] = value
    default = explicit or os.environ.get(variable)
    if default:
        urls[chain] = default
    return urls


# Frontier addresses a worker claims per batch. A batch's chain reads go out as one request set,
# so the HTTP posts to the node fall with the batch size: on the 110k-hop bench (30 ms, 50 req/s
# node, one worker) 32 took 76 posts per 1,000 hops and 324 s, 256 took 16 posts and 133 s
# (bench/trace_speed.py).
DEFAULT_BATCH_SIZE = 256
