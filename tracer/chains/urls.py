"""Node URLs: where a node is, said without secrets, and the WebSocket URL of an RPC node.

RPC URLs carry API keys in their user info, path or query (`https://mainnet.infura.io/v3/<key>`,
`wss://eth-mainnet.g.alchemy.com/v2/<key>`), so logs, errors and the database name a node by
scheme, host and port only (`node_name`).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from tracer.domain.chains import BITCOIN, TRON

_WS_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def node_name(url: str) -> str:
    """Where a node is, without what may be a secret: only scheme, host and port are kept."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}" if parts.scheme else host


def checked_ws_url(url: str) -> str:
    """`url` if it is a ws:// or wss:// URL with a host; ValueError (naming it without secrets) if not.

    Only these two: a new-heads URL is dialled by a long-running process, and anything else (a
    file path, an http URL given by mistake) should stop it at start, not fail quietly later."""
    parts = urlsplit(url.strip())
    try:
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        raise ValueError(f"the new-heads URL {node_name(url)!r} has an invalid port") from None
    if parts.scheme.lower() not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"a new-heads URL must be ws:// or wss:// with a host, not {node_name(url)!r}")
    return url.strip()


def ws_url_for(rpc_url: str) -> str | None:
    """The RPC URL with its scheme changed to ws/wss (Anvil and the devchain serve both on one port,
    as do Geth and Reth when `--ws.port` is their `--http.port`); None when the RPC URL is not
    http(s) or ws(s)."""
    parts = urlsplit(rpc_url.strip())
    scheme = _WS_SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        return None
    return urlunsplit(parts._replace(scheme=scheme))


def heads_url(setting: str | None, rpc_url: str, chain: str) -> str | None:
    """Where the monitor listens for `chain`'s new heads: `setting` (`--ws` / TRACER_WS_URL[_<CHAIN>]),
    checked; None for "off"; unset: the RPC URL's ws form for an EVM chain (Esplora and Tron's
    JSON-RPC push no heads). ValueError for a setting that is not a ws(s) URL."""
    if setting is not None and setting.strip():
        if setting.strip().lower() == "off":
            return None
        return checked_ws_url(setting)
    if chain in (BITCOIN, TRON):
        return None
    return ws_url_for(rpc_url)
