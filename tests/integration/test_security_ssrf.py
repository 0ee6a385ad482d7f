"""SSRF: webhook URLs that disguise an internal address are refused when the subscription is made
(400 over real HTTP, nothing written), and the webhook client refuses to connect to any
non-public address whatever the spelling, IP literals included. Only loopback listeners are used,
and each counts the connections it accepts: a refusal must happen before connect."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.api_support import running_api
from tracer.alerts.guard import UnsafeUrl, UrlPolicy, check_url
from tracer.alerts.http import HttpError, WebhookClient, WebhookLimits
from tracer.api.handlers.alerts import NETWORK_ERROR
from tracer.store import keys as key_store
from tracer.store.db import Database

ASYNC = pytest.mark.asyncio(loop_scope="session")


class Listener:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self.accepted = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Listener:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.accepted += 1
            writer.close()

        self._server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


DISGUISED = [
    "https://１２７.０.０.１:{port}/x",       # fullwidth digits: the URL library folds them to 127.0.0.1
    "https://①②⑦.0.0.1:{port}/x",          # circled digits
    "https://１０.０.０.１/x", "https://１９２.１６８.１.１/x", "https://１６９.２５４.１６９.２５４/latest/meta-data/",
    "https://127.1:{port}/x", "https://0177.0.0.1:{port}/x", "https://0x7f.0.0.1:{port}/x",
    "https://2130706433:{port}/x",          # inet_aton forms: short, octal, hex, one number
    "https://127.0.0.1.:{port}/x", "https://localhost.:{port}/x",  # trailing dot
    "https://[::ffff:127.0.0.1]:{port}/x", "https://[::ffff:a00:1]/x", "https://[::127.0.0.1]:{port}/x",
    "https://[2002:7f00:1::1]:{port}/x",    # 6to4 of 127.0.0.1
    "https://[2002:c0a8:101::]/x",          # 6to4 of 192.168.1.1
    "https://[64:ff9b::7f00:1]:{port}/x",   # NAT64 of 127.0.0.1
    "https://[64:ff9b::a9fe:a9fe]/x",       # NAT64 of 169.254.169.254
    "https://[64:ff9b:1::a00:1]/x",         # local-use NAT64
    "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x",  # Teredo
    "https://exämple.com/x",                # non-ASCII host: refused at creation
    "https://ｅxample.com/x",
]


@pytest.mark.parametrize("url", DISGUISED)
def test_disguised_internal_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        check_url(url.format(port=18997), UrlPolicy())


def test_public_embeddings_and_names_still_pass() -> None:
    assert check_url("https://[2002:808:808::1]/hook", UrlPolicy())  # 6to4 of a public address
    assert check_url("https://[64:ff9b::808:808]/hook", UrlPolicy())
    assert check_url("https://xn--exmple-cua.com/hook", UrlPolicy())  # the ASCII spelling of exämple.com
    assert check_url("https://hooks.example.com./hook", UrlPolicy())


async def _spied_post(client: WebhookClient, url: str) -> BaseException | None:
    try:
        await client.post(url, b"{}")
    except (HttpError, OSError, TimeoutError, ValueError) as exc:
        return exc
    finally:
        await client.close()
    return None


@ASYNC
@pytest.mark.parametrize("template", [
    "https://１２７.０.０.１:{port}/x", "https://①②⑦.0.0.1:{port}/x", "https://127.0.0.1:{port}/x",
    "http://127.0.0.1:{port}/x", "https://127.0.0.1.:{port}/x", "https://[::ffff:127.0.0.1]:{port}/x",
    "http://localhost:{port}/x",
])
async def test_client_refuses_before_connecting(template: str) -> None:
    """The connection filter on its own (no check_url in front): whatever the spelling, no
    connection is opened to the loopback listener."""
    async with Listener() as listener:
        client = WebhookClient(UrlPolicy(), limits=WebhookLimits(timeout=3))
        started = time.monotonic()
        error = await _spied_post(client, template.format(port=listener.port))
        assert error is not None and any(w in repr(error) for w in ("refused", "non-public", "canonical")), error
        assert time.monotonic() - started < 2
        await asyncio.sleep(0.05)
        assert listener.accepted == 0 and client.refused == 1


class _LeakyClient(WebhookClient):
    """The resolution filter removed on purpose: the connect step alone must still refuse."""

    async def addresses(self, host: str, port: int) -> list[str]:
        return [host]


@ASYNC
async def test_connect_refuses_what_the_filter_missed() -> None:
    async with Listener() as listener:
        client = _LeakyClient(UrlPolicy(), limits=WebhookLimits(timeout=3))
        error = await _spied_post(client, f"http://127.0.0.1:{listener.port}/x")
        assert error is not None and "webhook guard" in repr(error), error
        assert listener.accepted == 0 and client.refused == 1


@ASYNC
async def test_allow_listed_loopback_still_connects() -> None:
    async with Listener() as listener:
        client = WebhookClient(UrlPolicy(allow=frozenset({"127.0.0.1"})), limits=WebhookLimits(timeout=3))
        await _spied_post(client, f"http://127.0.0.1:{listener.port}/x")
        await asyncio.sleep(0.05)
        assert listener.accepted == 1 and client.refused == 0


@ASYNC
async def test_api_refuses_disguised_webhook_urls_and_writes_nothing(db: Database) -> None:
    async with Listener() as listener, running_api(db) as api:
        before = await db.pool.fetchval("SELECT count(*) FROM subscriptions")
        for template in DISGUISED:
            url = template.format(port=listener.port)
            started = time.monotonic()
            _, body, _ = await api.call("POST", "/v1/subscriptions", expect=400,
                                        json={"url": url, "addresses": ["0x" + "11" * 20],
                                              "watch": False})
            assert time.monotonic() - started < 2
            assert body["field"] == "url", body
        assert await db.pool.fetchval("SELECT count(*) FROM subscriptions") == before
        assert listener.accepted == 0


@ASYNC
async def test_network_errors_are_shown_only_to_admins(db: Database) -> None:
    async with db.pool.acquire() as conn:
        _, admin = await key_store.create_key(conn, "sec-admin", ["admin"])
        _, tracer_key = await key_store.create_key(conn, "sec-trace", ["trace"])
    try:
        async with running_api(db) as api:
            _, made, _ = await api.call("POST", "/v1/subscriptions", key=tracer_key, expect=201,
                                        json={"delivery": "stream", "addresses": ["0x" + "12" * 20], "watch": False})
            sid = made["id"]
            detail = "ClientConnectorError: Cannot connect to host 10.0.0.1:22 ssl:True [Connect call failed]"
            await db.pool.execute("UPDATE subscriptions SET last_error = $2 WHERE id = $1", sid, detail)
            _, seen, _ = await api.call("GET", f"/v1/subscriptions/{sid}", key=tracer_key, expect=200)
            assert seen["last_error"] == NETWORK_ERROR
            _, seen, _ = await api.call("GET", f"/v1/subscriptions/{sid}", key=admin, expect=200)
            assert seen["last_error"] == detail
            await db.pool.execute("UPDATE subscriptions SET last_error = 'HTTP 500' WHERE id = $1", sid)
            _, seen, _ = await api.call("GET", "/v1/subscriptions", key=tracer_key, expect=200)
            assert [s["last_error"] for s in seen["items"] if s["id"] == sid] == ["HTTP 500"]
    finally:
        await db.pool.execute("UPDATE api_keys SET revoked_at = now()")
