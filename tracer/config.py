"""Configuration from the environment, with the same names as the CLI flags."""

from __future__ import annotations

import os


def rpc_urls(explicit: str | None = None, chain: str = "ethereum") -> dict[str, str]:
    """Node URLs per chain: `TRACER_RPC_URL` for the default chain, `TRACER_RPC_URL_<CHAIN>` for
    each other one (e.g. TRACER_RPC_URL_ARBITRUM)."""
    urls: dict[str, str] = {}
    for key, value in os.environ.items():
        if key.startswith("TRACER_RPC_URL_") and value:
            urls[key[len("TRACER_RPC_URL_"):].lower()] = value
    default = explicit or os.environ.get("TRACER_RPC_URL")
    if default:
        urls[chain] = default
    return urls


def ws_urls(explicit: str | None = None, chain: str = "ethereum") -> dict[str, str]:
    """The monitor's new-heads WebSocket setting per chain, as given (a ws(s) URL or "off"):
    `--ws` / `TRACER_WS_URL` for the default chain, `TRACER_WS_URL_<CHAIN>` for each other one.
    A chain missing here gets its RPC URL's ws form (tracer.chains.urls.heads_url)."""
    urls: dict[str, str] = {}
    for key, value in os.environ.items():
        if key.startswith("TRACER_WS_URL_") and value:
            urls[key[len("TRACER_WS_URL_"):].lower()] = value
    default = explicit or os.environ.get("TRACER_WS_URL")
    if default:
        urls[chain] = default
    return urls


# Frontier addresses a worker claims per batch. A batch's chain reads go out as one request set,
# so the HTTP posts to the node fall with the batch size: on the 110k-hop bench (30 ms, 50 req/s
# node, one worker) 32 took 76 posts per 1,000 hops and 324 s, 256 took 16 posts and 133 s
# (bench/trace_speed.py).
DEFAULT_BATCH_SIZE = 256
