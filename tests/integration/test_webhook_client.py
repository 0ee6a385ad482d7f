"""The webhook client against hostile receivers (raw asyncio servers on 127.0.0.1 that answer
exactly the bytes a test gives them): redirects are not followed, oversized or endless answers
fail in time and drop the connection, bytes beyond an answer are never read as the next one,
connections are reused when the answer was read to its end, and one a receiver closed while idle
is replaced."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tracer.alerts.guard import UrlPolicy
from tracer.alerts.http import Answer, HttpError, WebhookClient, WebhookLimits

ASYNC = pytest.mark.asyncio(loop_scope="session")
LOOPBACK = UrlPolicy(allow=frozenset({"127.0.0.1"}))
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """Reads each request (head and Content-Length body), then runs `answer` for it."""

    def __init__(self, answer: Callable[[asyncio.StreamWriter, int], Awaitable[bool]]) -> None:
        self.answer = answer  # (writer, request number) -> keep the connection open
        self.accepted = 0
        self.closed = 0  # connections ended (by either side)
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                self.requests.append(head + await reader.readexactly(length))
                if not await self.answer(writer, len(self.requests)):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self.closed += 1
            writer.close()

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.close()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _says(data: bytes, keep: bool = True) -> Callable[[asyncio.StreamWriter, int], Awaitable[bool]]:
    async def answer(writer: asyncio.StreamWriter, _n: int) -> bool:
        writer.write(data)
        await writer.drain()
        return keep
    return answer


async def _post(client: WebhookClient, url: str) -> Any:
    return await client.post(url, b'{"id":1}', b"X-Tracer-Event-Id: 1\r\n")


async def _posts(answer: bytes, times: int, *, keep: bool = True, pause: float = 0.0,
                 timeout: float = 10.0) -> tuple[list[Answer], Server]:
    """`times` posts one after the other through one connection slot to a server answering `answer`."""
    async with Server(_says(answer, keep)) as server:
        client = WebhookClient(LOOPBACK, per_host=1, limits=WebhookLimits(timeout=timeout))
        answers = []
        try:
            for _ in range(times):
                answers.append(await _post(client, server.url()))
                await asyncio.sleep(pause)
        finally:
            await client.close()
    return answers, server


@ASYNC
async def test_keep_alive_connections_are_reused_and_requests_are_well_formed() -> None:
    async with Server(_says(OK)) as server:
        client = WebhookClient(LOOPBACK, per_host=2)
        try:
            answers = await asyncio.gather(*(_post(client, server.url(f"/s/{i}?x=1")) for i in range(40)))
        finally:
            await client.close()
        assert {a.status for a in answers} == {200}
        assert client.connects == server.accepted <= 2
        first = server.requests[0]
        assert first.startswith(b"POST /s/") and b"?x=1 HTTP/1.1\r\n" in first
        assert f"Host: 127.0.0.1:{server.port}\r\n".encode() in first
        assert b"X-Tracer-Event-Id: 1\r\n" in first and first.endswith(b'\r\n\r\n{"id":1}')


@ASYNC
async def test_chunked_answers_are_read_to_their_end_and_the_connection_reused() -> None:
    chunked = b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\n ok\r\n0\r\n\r\n"
    answers, server = await _posts(chunked, 5)
    assert {a.status for a in answers} == {202}
    assert server.accepted == 1 and len(server.requests) == 5


@ASYNC
async def test_a_redirect_is_a_failure_and_is_not_followed() -> None:
    async with Server(_says(OK)) as elsewhere:
        moved = (f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {elsewhere.url()}\r\nContent-Length: 0\r\n\r\n"
                 ).encode()
        async with Server(_says(moved)) as server:
            client = WebhookClient(LOOPBACK)
            try:
                assert (await _post(client, server.url())).status == 307
            finally:
                await client.close()
        assert elsewhere.accepted == 0


@ASYNC
@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n" + b"x" * 200_000,   # a huge body announced
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"10000\r\n" + b"x" * 65536 + b"\r\n"
    + b"10000\r\n" + b"x" * 65536 + b"\r\n",                                    # a huge body in chunks
    b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 200_000,                                 # a body to the end of time
])
async def test_a_huge_body_is_not_read_and_its_connection_not_reused(answer: bytes) -> None:
    started = time.monotonic()
    answers, server = await _posts(answer, 3, timeout=3.0)
    assert time.monotonic() - started < 2
    assert {a.status for a in answers} == {200}
    assert server.accepted == 3  # each answer left its connection unusable: a new one each time


@ASYNC
async def test_an_endless_head_fails_and_so_does_garbage() -> None:
    async def endless(writer: asyncio.StreamWriter, _n: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(100):
            writer.write(b"X-Filler: " + b"y" * 1000 + b"\r\n")
            await writer.drain()
        return True

    for answer in (endless, _says(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")):
        async with Server(answer) as server:
            client = WebhookClient(LOOPBACK, limits=WebhookLimits(timeout=3.0))
            try:
                with pytest.raises(HttpError):
                    await _post(client, server.url())
            finally:
                await client.close()


@ASYNC
@pytest.mark.parametrize("drip", [False, True])
async def test_a_slow_receiver_times_out(drip: bool) -> None:
    async def slow(writer: asyncio.StreamWriter, _n: int) -> bool:
        for byte in OK if drip else b"":
            writer.write(bytes([byte]))
            await asyncio.sleep(0.1)
        await asyncio.sleep(10)
        return False

    async with Server(slow) as server:
        client = WebhookClient(LOOPBACK, limits=WebhookLimits(timeout=0.5))
        try:
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await _post(client, server.url())
            assert time.monotonic() - started < 1.5
        finally:
            await client.close()


@ASYNC
async def test_bytes_beyond_the_answer_are_not_read_as_the_next_one() -> None:
    smuggled = OK + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    answers, server = await _posts(smuggled, 3)
    assert {a.status for a in answers} == {200}
    assert server.accepted == 3


@ASYNC
async def test_a_connection_closed_while_idle_is_replaced() -> None:
    answers, server = await _posts(OK, 4, keep=False, pause=0.02)  # closed after each answer, unannounced
    assert {a.status for a in answers} == {200}
    assert server.accepted == 4 and len(server.requests) == 4


@ASYNC
async def test_connection_close_and_retry_after_are_honoured() -> None:
    busy = b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    answers, server = await _posts(busy, 2)
    assert {(a.status, a.retry_after) for a in answers} == {(503, "7")}
    assert server.accepted == 2


@ASYNC
async def test_idle_connections_are_closed_after_the_keepalive() -> None:
    async with Server(_says(OK)) as server:
        client = WebhookClient(LOOPBACK, per_host=4, limits=WebhookLimits(keepalive=0.3))
        try:
            await asyncio.gather(*(_post(client, server.url()) for _ in range(4)))
            assert server.accepted >= 1 and server.closed == 0
            await asyncio.sleep(1.2)
            assert server.closed == server.accepted  # nobody posted again: every socket closed
            assert (await _post(client, server.url())).status == 200  # and a new one made when needed
        finally:
            await client.close()
