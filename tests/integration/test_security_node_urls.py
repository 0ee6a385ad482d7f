"""A node URL's secrets never reach an error message or a log line.

Providers put the API key in the URL (`https://mainnet.infura.io/v3/KEY`, `?apikey=KEY`) or in its
user part, and chain errors travel far: logs, the API's error bodies, and a trace's stored
`balance_method_reason`. Each client names the node by scheme, host and port only.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from tests.fixtures_chain import RunningDevChain
from tracer.chains.bitcoin.esplora import EsploraChain
from tracer.chains.errors import ChainError
from tracer.chains.evm.client import EvmChain
from tracer.chains.jsonrpc import JsonRpcTransport
from tracer.chains.retry import RetryPolicy, TransportOptions
from tracer.chains.tron_http import TronHttp
from tracer.domain.transfers import TransferQuery

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRETS = ("hunter2", "KEYPATHSECRET", "QUERYSECRET")
ONCE = TransportOptions(timeout=5.0, policy=RetryPolicy(retries=1, backoff=0.0))


@pytest.fixture
async def broken() -> AsyncIterator[str]:
    """A server that answers every request with HTTP 500: a URL to it full of secrets."""
    async def fail(_: web.Request) -> web.Response:
        return web.Response(status=500, text="no")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fail)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://user:hunter2@127.0.0.1:{port}/v3/KEYPATHSECRET?apikey=QUERYSECRET"
    finally:
        await runner.cleanup()


def _clean(message: str, port_url: str) -> None:
    assert not any(s in message for s in SECRETS), message
    assert port_url in message, message  # the node is still named: scheme, host and port


def _named(url: str) -> str:
    return "http://127.0.0.1:" + url.rsplit(":", 1)[1].split("/", 1)[0]


async def _error(attempt: Callable[[], Awaitable[object]], close: Callable[[], Awaitable[None]]) -> str:
    """The message of the ChainError `attempt()` raises; `close()` afterwards whatever happened."""
    try:
        with pytest.raises(ChainError) as err:
            await attempt()
    finally:
        await close()
    return str(err.value)


async def test_json_rpc_errors_name_the_node_without_its_secrets(broken: str) -> None:
    rpc = JsonRpcTransport(broken, ONCE)
    _clean(await _error(lambda: rpc.call("eth_blockNumber"), rpc.close), _named(broken))


async def test_an_evm_client_that_cannot_connect_names_the_node_without_its_secrets(broken: str) -> None:
    client = EvmChain(broken, transport=ONCE)
    _clean(await _error(client.connect, client.close), _named(broken))


async def test_esplora_and_tron_http_errors_name_the_server_without_its_secrets(broken: str) -> None:
    esplora = EsploraChain(broken, transport=ONCE)
    _clean(await _error(esplora.connect, esplora.close), _named(broken))
    tron = TronHttp(broken, ONCE)
    await tron.open()
    _clean(await _error(lambda: tron.post("/wallet/getnowblock", {}), tron.close), _named(broken))


async def test_an_evm_clients_logs_name_the_node_without_its_secrets(
    devchain: RunningDevChain, caplog: pytest.LogCaptureFixture
) -> None:
    """What the client logs while it learns a node (head, paths, limits) and reads from it."""
    port_url = devchain.url.rstrip("/")
    secret_url = port_url.replace("http://", "http://user:hunter2@") + "/v3/KEYPATHSECRET?apikey=QUERYSECRET"
    assert devchain.scenario is not None
    client = EvmChain(secret_url, use_trace_filter=False)
    caplog.set_level(logging.DEBUG, logger="tracer")
    try:
        await client.connect()
        assert await client.transfers(TransferQuery(devchain.scenario.seeds, 0, await client.head()))
    finally:
        await client.close()
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("tracer.chains")]
    assert any(port_url in m for m in logged), logged  # the node is still named where it was
    for message in logged:
        assert not any(s in message for s in SECRETS), message
