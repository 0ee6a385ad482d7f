"""Which webhook URLs tracer may call: a guard against server-side request forgery (SSRF).

A webhook URL is chosen by whoever holds an API key, and the delivery worker calls it from inside
the deployment's network, so an unchecked URL would let a key holder probe or hit internal
services (the cloud metadata endpoint at 169.254.169.254, the database, admin ports). Rules:

- https only, no credentials in the URL;
- the destination must be a public address: loopback, private, link-local, multicast, reserved
  and unspecified addresses are refused, and so are names that only mean something locally
  (localhost, *.localhost, *.local, *.internal, *.localdomain, names without a dot);
- an explicit allow-list (`TRACER_WEBHOOK_ALLOW=host[:port],...`) lifts both rules for the hosts it
  names, so a receiver on the same network (or a test's 127.0.0.1 server) is allowed only when an
  operator says so; `TRACER_WEBHOOK_ALLOW_PRIVATE=1` lifts the address rule for every host (a
  private deployment where all receivers are internal).

The URL is checked when a subscription is created and again before every request, and names are
checked after resolution, at connect time (`GuardedResolver`), so a name that resolves to a
public address when checked and to an internal one when called (DNS rebinding) is still refused.
Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa", ".lan")
MAX_URL_LENGTH = 2048


class UnsafeUrl(ValueError):
    """A webhook URL the guard refuses; the message says why."""


@dataclass(frozen=True)
class UrlPolicy:
    #: Hosts ("host" or "host:port", lowercase) allowed whatever they resolve to, over http too.
    allow: frozenset[str] = field(default_factory=frozenset)
    #: Allow private and loopback destinations for every host (still https unless allow-listed).
    allow_private: bool = False

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> UrlPolicy:
        source = os.environ if env is None else env
        hosts = frozenset(h.strip().lower() for h in source.get("TRACER_WEBHOOK_ALLOW", "").split(",") if h.strip())
        return cls(allow=hosts, allow_private=source.get("TRACER_WEBHOOK_ALLOW_PRIVATE", "") in ("1", "true", "yes"))

    def allows_host(self, host: str, port: int | None) -> bool:
        host = host.lower()
        return host in self.allow or (port is not None and f"{host}:{port}" in self.allow)


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_link_local)


def check_url(url: str, policy: UrlPolicy) -> str:
    """The URL if tracer may call it, else UnsafeUrl. Names are checked again when resolved."""
    if not isinstance(url, str) or not url:
        raise UnsafeUrl("a URL is required")
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        raise UnsafeUrl("contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in ("https", "http"):
        raise UnsafeUrl("must be an https URL")
    if not host:
        raise UnsafeUrl("has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("must not carry credentials (use the subscription secret to authenticate)")
    allowed = policy.allows_host(host, port or (443 if scheme == "https" else 80))
    if scheme != "https" and not allowed:
        raise UnsafeUrl("must be https (plain http only for hosts on the operator's allow-list)")
    if allowed:
        return url
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        if not (policy.allow_private or _public(ip)):
            raise UnsafeUrl(f"{host} is not a public address (loopback, private and link-local are refused)")
        return url
    if host == "localhost" or host.endswith(_LOCAL_SUFFIXES) or "." not in host.strip("."):
        if not policy.allow_private:
            raise UnsafeUrl(f"{host} is a local name")
    return url


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then drops the addresses the policy refuses;
    a name left with none fails to connect. (aiohttp does not resolve IP literals: `check_url`
    covers those before each request.)"""

    def __init__(self, policy: UrlPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self.policy.allow_private or self.policy.allows_host(host, port):
            return results
        kept = [r for r in results if _public(ipaddress.ip_address(r["host"]))]
        if not kept:
            raise OSError(f"webhook host {host} resolves only to non-public addresses; refused")
        return kept

    async def close(self) -> None:
        await self._inner.close()


def describe(exc: BaseException) -> str:
    """A short, log-safe description of a delivery failure."""
    text: Any = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
