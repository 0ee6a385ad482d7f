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

The URL is read the way the HTTP client will read it (yarl: IDNA, fullwidth and circled digits
folded to ASCII, so `https://１２７.０.０.１/` *is* 127.0.0.1), and a host written with anything but
ASCII is refused outright, as are the legacy numeric IPv4 spellings (`127.1`, `0177.0.0.1`,
`2130706433`) that the C resolver maps onto addresses. IPv6 forms that carry an IPv4 address
(IPv4-mapped and -compatible, 6to4 2002::/16, NAT64 64:ff9b::/96) are judged by that address;
Teredo (2001::/32) and local-use NAT64 are refused.

The URL is checked when a subscription is created and again before every request; then the
webhook client (tracer.alerts.http) resolves the name itself, drops every address the policy
refuses (IP literals included) and connects to an approved address only: a name that resolves to
a public address when checked and to an internal one when called (DNS rebinding), or a spelling
the checks above missed, still opens no connection. Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field

from yarl import URL

_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa", ".lan")
MAX_URL_LENGTH = 2048
#: Whitespace (str.isspace's set: re's \s on str patterns is the same) and C0/DEL/C1 controls. One
#: regex, not a test per character: a delivery worker checks every subscription's URL on its first
#: delivery, 10,000 of them in the first block after a start (200 ms by the per-character test).
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_TEREDO = ipaddress.ip_network("2001::/32")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


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
        host = host.lower().rstrip(".")
        return host in self.allow or (port is not None and f"{host}:{port}" in self.allow)


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, compatible, 6to4, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _V4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _public(ip: IP) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _TEREDO or ip in _NAT64_LOCAL:
            return False  # Teredo hides its client address; local NAT64 reaches the local network
        inner = _embedded_v4(ip)
        if inner is not None:
            return _public(inner)
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_link_local)


def public_address(text: str) -> bool:
    """Whether a literal address (as a socket reports it, IPv6 scope id allowed) is public."""
    try:
        return _public(ipaddress.ip_address(text.split("%", 1)[0]))
    except ValueError:
        return False


def _legacy_ipv4(host: str) -> bool:
    """A host the C resolver would read as an IPv4 address although it is not a dotted quad of
    decimals: 127.1, 0177.0.0.1, 0x7f.1, 2130706433 (inet_aton's forms)."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return False
    for part in parts:
        low = part.lower()
        if not (low.isascii() and (low.isdigit() or (low.startswith("0x") and all(c in "0123456789abcdef" for c in
                                                                                   low[2:])))):
            return False
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return True
    return False


def _host_of(url: str) -> tuple[str, str, int | None, URL]:
    """(scheme, host, port, parsed) as the HTTP client will see them."""
    try:
        parsed = URL(url)
        port = parsed.port
    except (ValueError, TypeError, UnicodeError) as exc:
        raise UnsafeUrl(f"not a valid URL: {exc}") from None
    raw = url.split("://", 1)[1] if "://" in url else ""
    netloc = raw.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if not netloc.isascii():
        # The client would fold fullwidth or circled digits and IDNA-encode names: a non-ASCII host
        # is either a disguise or a name an operator cannot read; ask for the ASCII spelling.
        raise UnsafeUrl("host must be written in ASCII (use the punycode xn-- form for an international name)")
    host = (parsed.raw_host or "").lower()
    return (parsed.scheme or "").lower(), host, port, parsed


def check_url(url: str, policy: UrlPolicy) -> str:
    """The URL if tracer may call it, else UnsafeUrl. Names are checked again when resolved."""
    if not isinstance(url, str) or not url:
        raise UnsafeUrl("a URL is required")
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"longer than {MAX_URL_LENGTH} characters")
    if _SPACE_OR_CONTROL.search(url):
        raise UnsafeUrl("contains whitespace or control characters")
    scheme, host, port, parsed = _host_of(url)
    if scheme not in ("https", "http"):
        raise UnsafeUrl("must be an https URL")
    if not host:
        raise UnsafeUrl("has no host")
    if parsed.user is not None or parsed.password is not None:
        raise UnsafeUrl("must not carry credentials (use the subscription secret to authenticate)")
    bare = host.rstrip(".")
    if _legacy_ipv4(bare):
        raise UnsafeUrl(f"{host} is not a canonical address (write IPv4 as four decimal numbers)")
    allowed = policy.allows_host(bare, port or (443 if scheme == "https" else 80))
    if scheme != "https" and not allowed:
        raise UnsafeUrl("must be https (plain http only for hosts on the operator's allow-list)")
    if allowed:
        return url
    try:
        ip: IP | None = ipaddress.ip_address(bare)
    except ValueError:
        ip = None
    if ip is not None:
        if not (policy.allow_private or _public(ip)):
            raise UnsafeUrl(f"{host} is not a public address (loopback, private and link-local are refused)")
        return url
    if bare == "localhost" or bare.endswith(_LOCAL_SUFFIXES) or "." not in bare:
        if not policy.allow_private:
            raise UnsafeUrl(f"{host} is a local name")
    return url


def describe(exc: BaseException) -> str:
    """A short, log-safe description of a delivery failure."""
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
