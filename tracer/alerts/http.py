"""The webhook client: HTTP/1.1 POSTs on kept-alive connections, through the SSRF guard.

Why not aiohttp's client: at ten thousand webhooks per block its per-request machinery (request
and response objects, header multidicts, stream readers, a connector lookup) cost ~150 µs of CPU
per webhook, most of a delivery worker's time. A webhook needs little of it: one POST with a body
known in full, a status line to read and a small answer to skip. This client writes the request
in one `transport.write` (head bytes built once per URL) and parses the answer in a Protocol:
status, Content-Length or chunked, Connection, Retry-After.

The guard (tracer.alerts.guard) is applied at connection time: the name is resolved here (cached
for `dns_ttl`), every address the policy refuses is dropped (`public_address`, unless the
operator's allow-list or allow-private says otherwise), and the socket connects to one of the
approved addresses themselves, so nothing resolves the name again between the check and the
connect (DNS rebinding) and no spelling of a URL reaches an address the check did not see.
`connect_to` refuses any address not so approved, whoever calls it. TLS verifies the certificate
against the URL's host name, not the address.

Hostile receivers: redirects are answered as what they are (an HTTP 3xx failure, never
followed); a head over `max_head` bytes, a body over `max_body` (its Content-Length or its chunks)
or an answer that never ends fails within `timeout` and closes the connection; a connection is
reused only after an answer read to its end, so a receiver cannot leave bytes that would be read
as the next answer.

Connections are pooled per (scheme, host, port) and shared by every subscription of a receiver,
at most `per_host` at a time; idle ones are dropped after `keepalive`. A request that fails on a
reused connection before any byte of an answer (the receiver closed it while idle) is sent once
more on a new one.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import cast

from yarl import URL

from tracer.alerts.guard import UrlPolicy, public_address
from tracer.alerts.slots import RankedSlots


class HttpError(OSError):
    """A webhook request that got no usable answer (refused, reset, malformed, too large, timed out)."""


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after: str | None  # the Retry-After header as sent, if any


@dataclass
class Target:
    """What a URL means to the client, parsed once (a subscription posts to the same URL each time)."""

    scheme: str
    host: str  # as the URL names it, IPv6 without brackets
    port: int
    head: bytes  # "POST /path HTTP/1.1\r\nHost: ...\r\n" and the fixed headers

    @property
    def key(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port


def target(url: str, user_agent: str) -> Target:
    """The URL read the way the guard's check_url reads it (yarl: IDNA and digit folding)."""
    parsed = URL(url)
    scheme = (parsed.scheme or "").lower()
    if scheme not in ("http", "https") or not parsed.raw_host:
        raise HttpError(f"not an http(s) URL: {url[:100]}")
    host = parsed.raw_host.lower()
    port = parsed.port or (443 if scheme == "https" else 80)
    default = port == (443 if scheme == "https" else 80)
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if default else f"{shown}:{port}"
    path = parsed.raw_path_qs or "/"
    head = (f"POST {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: {user_agent}\r\n"
            f"Content-Type: application/json\r\nAccept: */*\r\n").encode("ascii")
    return Target(scheme, host, port, head)


class _Conn(asyncio.Protocol):
    """One connection: at most one request in flight; the answer is parsed as it arrives."""

    def __init__(self, limits: WebhookLimits) -> None:
        self.max_head = limits.max_head
        self.max_body = limits.max_body
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = time.monotonic()
        self.used = 0  # requests answered on this connection
        self._buf = bytearray()
        self._waiter: asyncio.Future[Answer] | None = None
        self._got_bytes = False
        self._answer: Answer | None = None
        self._left = -1  # body bytes still to come (Content-Length), -1 before the head
        self._chunked = False
        self._keep = True
        self._body_seen = 0
        self.deadline = 0.0  # loop time by which the answer must be complete (the client's sweep checks)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not isinstance(asyncio.Transport): uvloop's TCP transport has the methods, not the base.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            why = f"connection closed by the receiver{f': {exc}' if exc else ''}"
            self._waiter.set_exception(HttpError(why))

    def request(self, data: bytes) -> asyncio.Future[Answer]:
        assert self.transport is not None and self._waiter is None
        self._waiter = asyncio.get_running_loop().create_future()
        self._buf.clear()
        self._got_bytes = False
        self._answer, self._left, self._chunked, self._keep, self._body_seen = None, -1, False, True, 0
        self.transport.write(data)
        return self._waiter

    @property
    def reusable(self) -> bool:
        return not self.closed and self._keep and self._waiter is None

    @property
    def answered_nothing(self) -> bool:
        return not self._got_bytes

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def expire(self) -> None:
        """Past its deadline: fail the request in flight and drop the connection."""
        self._keep = False
        waiter = self._waiter
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError())

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self._keep = False  # bytes nobody asked for: this connection cannot be trusted again
            self.close()
            return
        self._got_bytes = True
        self._buf += data
        try:
            self._parse()
        except HttpError as exc:
            self._keep = False
            self.close()
            if not self._waiter.done():
                self._waiter.set_exception(exc)

    def _parse(self) -> None:
        while self._answer is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > self.max_head:
                    raise HttpError(f"answer head over {self.max_head} bytes")
                return
            if end > self.max_head:
                raise HttpError(f"answer head over {self.max_head} bytes")
            lines = bytes(self._buf[:end]).split(b"\r\n")
            del self._buf[:end + 4]
            status_line = lines[0].split(None, 2)
            if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1.") or not status_line[1].isdigit():
                raise HttpError("not an HTTP/1.x answer")
            status = int(status_line[1])
            length, retry_after = None, None
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    if not value.strip().isdigit():
                        raise HttpError("bad Content-Length")
                    length = int(value.strip())
                elif name == b"transfer-encoding":
                    self._chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    if b"close" in value.lower():
                        self._keep = False
                elif name == b"retry-after":
                    retry_after = value.strip().decode("latin-1")[:100]
            if 100 <= status < 200:
                continue  # an interim answer (100 Continue): the real one follows
            if status_line[0] == b"HTTP/1.0":
                self._keep = False
            self._answer = Answer(status, retry_after)
            if self._chunked:
                self._left = 0
            elif length is not None:
                if length > self.max_body:
                    self._keep = False  # not worth reading: answer now, drop the connection
                    self._finish()
                    return
                self._left = length
            else:
                self._keep = False  # the body runs to the end of the connection: never reuse it
                self._finish()
                return
        if self._chunked:
            self._parse_chunks()
        else:
            take = min(self._left, len(self._buf))
            del self._buf[:take]
            self._left -= take
            if self._left == 0:
                self._finish()

    def _parse_chunks(self) -> None:
        while True:
            if self._left > 0:  # inside a chunk (with its CRLF)
                take = min(self._left, len(self._buf))
                del self._buf[:take]
                self._left -= take
                if self._left:
                    return
            end = self._buf.find(b"\r\n")
            if end < 0:
                if len(self._buf) > 1024:
                    raise HttpError("bad chunk size line")
                return
            size_text = bytes(self._buf[:end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HttpError("bad chunk size") from None
            del self._buf[:end + 2]
            if size == 0:
                # Trailers are not expected from a webhook receiver; the blank line ends it.
                if self._buf[:2] == b"\r\n":
                    del self._buf[:2]
                    self._finish()
                else:
                    self._keep = False
                    self._finish()
                return
            self._body_seen += size
            if self._body_seen > self.max_body:
                self._keep = False
                self._finish()
                return
            self._left = size + 2

    def _finish(self) -> None:
        waiter, answer = self._waiter, self._answer
        assert waiter is not None and answer is not None
        self._waiter = None
        if self._buf:
            self._keep = False  # more than the answer: do not read it as the next one
        self.used += 1
        self.idle_since = time.monotonic()
        if not self._keep:
            self.close()
        if not waiter.done():
            waiter.set_result(answer)


@dataclass(frozen=True, slots=True)
class WebhookLimits:
    """How long and how much a receiver gets: seconds for a whole request and for connecting, how long
    an idle connection and a resolved name are kept, and the most an answer's head and body may hold."""

    timeout: float = 10.0
    connect_timeout: float = 5.0
    keepalive: float = 30.0
    dns_ttl: float = 30.0
    max_head: int = 16384
    max_body: int = 65536
    user_agent: str = "tracer-webhooks"


@dataclass
class _Host:
    """A receiver: `slots` holds its connection limit (one rank: first come, first served) and
    `idle` its kept-alive connections."""

    slots: RankedSlots
    idle: list[_Conn] = field(default_factory=list)


class WebhookClient:
    """POSTs to webhook receivers under `policy`. One per delivery worker; `close()` at the end."""

    def __init__(self, policy: UrlPolicy, *, per_host: int = 64, limits: WebhookLimits = WebhookLimits(),
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.policy = policy
        self.per_host = max(1, per_host)
        self.limits = limits
        self.refused = 0  # connections the guard stopped (tests and logs read it)
        self.connects = 0  # connections opened
        self._ssl = ssl_context
        self._hosts: dict[tuple[str, str, int], _Host] = {}
        self._targets: dict[str, Target] = {}
        self._resolved: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._approved: set[tuple[str, int]] = set()  # non-public (address, port) of allow-listed hosts
        self._in_flight: set[_Conn] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def target(self, url: str) -> Target:
        found = self._targets.get(url)
        if found is None:
            if len(self._targets) > 100_000:
                self._targets.clear()
            found = self._targets[url] = target(url, self.limits.user_agent)
        return found

    async def post(self, url: str, body: bytes, headers: bytes = b"") -> Answer:
        """POST `body` with `headers` (header lines, each ending in CRLF, besides Host,
        User-Agent, Content-Type and Content-Length): the receiver's answer, or HttpError /
        TimeoutError after `timeout` seconds."""
        t = self.target(url)
        data = b"%s%sContent-Length: %d\r\n\r\n%s" % (t.head, headers, len(body), body)
        host = self._hosts.get(t.key)
        if host is None:
            host = self._hosts[t.key] = _Host(RankedSlots(self.per_host))
        await host.slots.acquire(0)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.limits.timeout
            conn = self._idle_conn(host)
            if conn is not None:
                try:
                    return await self._exchange(host, conn, data, deadline)
                except HttpError:
                    if not conn.answered_nothing:
                        raise
                    # Closed while idle, before a byte of an answer: once more on a new one.
            try:
                async with asyncio.timeout_at(min(deadline, loop.time() + self.limits.connect_timeout)):
                    conn = await self._connect(t)
            except TimeoutError:
                raise HttpError(f"cannot connect to {t.host}:{t.port}: timed out") from None
            return await self._exchange(host, conn, data, deadline)
        finally:
            host.slots.release()

    async def _exchange(self, host: _Host, conn: _Conn, data: bytes, deadline: float) -> Answer:
        # No timer per request: the sweep fails what is past its deadline (a timer each costs
        # more than the rest of the request at thousands per second).
        conn.deadline = deadline
        self._in_flight.add(conn)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep(), name="tracer-webhook-timeouts")
        try:
            answer = await conn.request(data)
        except BaseException:
            conn.close()
            raise
        finally:
            self._in_flight.discard(conn)
        if conn.reusable:
            host.idle.append(conn)
        return answer

    async def _sweep(self) -> None:
        """While anything is in flight or idle: fail requests past their deadline, and close idle
        connections older than `keepalive` (a receiver not posted to again keeps no socket)."""
        loop = asyncio.get_running_loop()
        every = min(0.1, self.limits.timeout / 10)
        pruned = loop.time()
        while self._in_flight or any(h.idle for h in self._hosts.values()):
            await asyncio.sleep(every)
            now = loop.time()
            for conn in [c for c in self._in_flight if c.deadline <= now]:
                self._in_flight.discard(conn)
                conn.expire()
            if now - pruned >= min(1.0, self.limits.keepalive / 2):
                pruned = now
                cutoff = time.monotonic() - self.limits.keepalive
                for host in self._hosts.values():
                    stale = [c for c in host.idle if not c.reusable or c.idle_since <= cutoff]
                    for conn in stale:
                        host.idle.remove(conn)
                        conn.close()

    def _idle_conn(self, host: _Host) -> _Conn | None:
        now = time.monotonic()
        while host.idle:
            conn = host.idle.pop()
            if conn.reusable and now - conn.idle_since < self.limits.keepalive:
                return conn
            conn.close()
        return None

    async def _connect(self, t: Target) -> _Conn:
        addresses = await self.addresses(t.host, t.port)
        last: BaseException | None = None
        for address in addresses:
            try:
                return await self.connect_to(t, address)
            except HttpError:
                raise
            except OSError as exc:
                last = exc
        raise HttpError(f"cannot connect to {t.host}:{t.port}: {last}")

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses of `host` the policy lets us connect to (resolved, cached, filtered)."""
        allowed = self.policy.allow_private or self.policy.allows_host(host, port)
        found = self._resolved.get((host, port))
        now = time.monotonic()
        if found is None or now - found[0] > self.limits.dns_ttl:
            try:
                literal = str(ipaddress.ip_address(host.rstrip(".")))  # 127.0.0.1. is 127.0.0.1
                every = [literal]
            except ValueError:
                every = await self.lookup(host, port)
            found = self._resolved[(host, port)] = (now, every)
        if allowed:
            for a in found[1]:
                self._approved.add((a, port))
            return found[1]
        kept = [a for a in found[1] if public_address(a)]
        if not kept:
            self.refused += 1
            raise HttpError(f"webhook host {host} is not a public address; refused")
        return kept

    async def lookup(self, host: str, port: int) -> list[str]:
        """Every address the name resolves to (the system resolver), before the guard's filter."""
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))

    async def connect_to(self, t: Target, address: str) -> _Conn:
        """A new connection to `address` for `t`; refused unless the guard approved the address."""
        if not (public_address(address) or (address, t.port) in self._approved):
            self.refused += 1
            raise HttpError(f"connection to {address} refused by the webhook guard")
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext | None = None
        if t.scheme == "https":
            context = self._ssl = self._ssl or ssl.create_default_context()
        _, conn = await loop.create_connection(
            lambda: _Conn(self.limits), address, t.port, ssl=context,
            server_hostname=t.host if context is not None else None)
        self.connects += 1
        return conn

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        for host in self._hosts.values():
            for conn in host.idle:
                conn.close()
            host.idle.clear()
        self._hosts.clear()
