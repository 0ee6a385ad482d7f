"""Requests from browsers that are not ours: a Host allow-list and an Origin check.

Open mode (no API key exists, loopback only) trusts whoever can reach the port, and a web page
in the investigator's own browser can reach it: by DNS rebinding (evil.example resolving to
127.0.0.1, so the browser calls it same-origin, with `Host: evil.example`) or by a plain
cross-site form post (the browser sends it without asking; the page only cannot read the answer).

- Host: the name the client asked for must be on the allow-list, `TRACER_ALLOWED_HOSTS`
  (comma-separated names or addresses, `*` for any), by default the loopback names and the
  address the server is bound to. Others get 421 (400 when there is no Host at all). The default
  list applies in open mode only (behind keys a rebinding page has no key to send), an explicit
  list always.
- Origin: a state-changing request (anything but GET, HEAD, OPTIONS) that carries an Origin not
  naming this server (its Host, or an allowed host) is refused with 403, with or without keys;
  so is `Origin: null` (sandboxed frames, file pages) and a `Sec-Fetch-Site: cross-site` request.
  Clients that are not browsers send no Origin and are not affected.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from aiohttp import web

from tracer.api.context import CTX
from tracer.api.errors import ApiError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def host_name(value: str) -> str | None:
    """The host part of a Host header (no port, lowercase, no trailing dot), or None if malformed."""
    value = value.strip().lower()
    if not value or any(c.isspace() or ord(c) < 0x21 or ord(c) > 0x7E for c in value):
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or (value[end + 1:] and not value[end + 1:].startswith(":")):
            return None
        return value[1:end]
    name, _, port = value.partition(":")
    if port and not port.isdigit():
        return None
    return name.rstrip(".") or None


def default_hosts(bound: str) -> tuple[str, ...]:
    extra = [] if bound in ("", "0.0.0.0", "::") else [bound.strip("[]").lower()]
    return tuple(dict.fromkeys([*LOOPBACK_NAMES, *extra]))


def parse_hosts(text: str | None) -> tuple[str, ...] | None:
    """`TRACER_ALLOWED_HOSTS` as a tuple (None when unset or blank)."""
    if text is None or not text.strip():
        return None
    return tuple(h.strip().lower().strip("[]").rstrip(".") for h in text.split(",") if h.strip())


def _allowed(name: str, hosts: Iterable[str]) -> bool:
    for h in hosts:
        if h == "*" or h == name or (h.startswith("*.") and name.endswith(h[1:])):
            return True
    return False


@web.middleware
async def same_origin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[CTX]
    s = ctx.settings
    explicit = s.allowed_hosts
    hosts = explicit if explicit is not None else default_hosts(s.host)
    raw_host = request.headers.get("Host")
    name = host_name(raw_host) if raw_host is not None else None
    if explicit is not None or not await ctx.auth.has_keys():
        if raw_host is None or name is None:
            raise ApiError(400, "Bad request", "a valid Host header is required", field="Host")
        if not _allowed(name, hosts):
            raise ApiError(421, "Misdirected request",
                           f"this server does not answer for host {name!r}; allowed: {', '.join(hosts)} "
                           "(set TRACER_ALLOWED_HOSTS)", field="Host")
    if request.method not in _SAFE_METHODS:
        origin = request.headers.get("Origin")
        if origin is not None:
            parts = urlsplit(origin.strip().lower())
            same = raw_host is not None and parts.netloc == raw_host.strip().lower()
            origin_host = host_name(parts.netloc) if parts.scheme in ("http", "https") and parts.netloc else None
            named = [h for h in hosts if h != "*"]  # "*" opens the Host check, never cross-site writes
            if not same and (origin_host is None or not _allowed(origin_host, named)):
                raise ApiError(403, "Forbidden", f"cross-site request from origin {origin[:100]!r} refused",
                               field="Origin")
        elif request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
            raise ApiError(403, "Forbidden", "cross-site request refused", field="Origin")
    return await handler(request)
