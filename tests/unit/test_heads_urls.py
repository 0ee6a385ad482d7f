"""Where `tracer monitor` listens for pushed heads (--ws / TRACER_WS_URL[_<CHAIN>]), and what counts
as a newHeads notification (tracer/chains/urls.py, tracer/chains/evm/heads.py)."""

from __future__ import annotations

import pytest

from tracer.chains.evm.heads import HeadWatcher, head_number
from tracer.chains.urls import checked_ws_url, heads_url, node_name, ws_url_for
from tracer.config import ws_urls


def test_the_rpc_url_gives_the_default_websocket() -> None:
    assert ws_url_for("http://127.0.0.1:8545") == "ws://127.0.0.1:8545"
    assert ws_url_for("https://eth.example.com/v3/KEY?x=1") == "wss://eth.example.com/v3/KEY?x=1"
    assert ws_url_for("WSS://node:8546/") == "wss://node:8546/"
    assert ws_url_for("/var/run/geth.ipc") is None and ws_url_for("ftp://node") is None


def test_a_setting_is_a_ws_url_or_off() -> None:
    rpc = "https://user:pw@eth.example.com/v3/KEY"
    assert heads_url(None, rpc, "ethereum") == "wss://user:pw@eth.example.com/v3/KEY"
    assert heads_url("off", rpc, "ethereum") is None and heads_url(" OFF ", rpc, "arbitrum") is None
    assert heads_url("ws://127.0.0.1:8546", rpc, "ethereum") == "ws://127.0.0.1:8546"
    # Esplora and Tron's JSON-RPC push no heads: no default for them, an explicit URL still counts.
    assert heads_url(None, "http://127.0.0.1:3002", "bitcoin") is None
    assert heads_url(None, "http://127.0.0.1:8090/jsonrpc", "tron") is None
    for bad in ("http://127.0.0.1:8545", "127.0.0.1:8546", "ws://", "ws://host:port/"):
        with pytest.raises(ValueError):
            heads_url(bad, rpc, "ethereum")
    with pytest.raises(ValueError) as refused:
        checked_ws_url("https://user:secret@eth.example.com/v3/KEY")
    assert "secret" not in str(refused.value) and "KEY" not in str(refused.value)


def test_the_watcher_names_its_node_without_secrets() -> None:
    watcher = HeadWatcher("wss://user:secret@eth.example.com:443/v3/KEY", chain="ethereum")
    assert watcher.where == node_name(watcher.url) == "wss://eth.example.com:443"
    with pytest.raises(ValueError):
        HeadWatcher("http://127.0.0.1:8545")


def test_settings_per_chain_like_the_rpc_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRACER_WS_URL", raising=False)
    monkeypatch.setenv("TRACER_WS_URL_ARBITRUM", "wss://arb.example.com")
    monkeypatch.setenv("TRACER_WS_URL_BASE", "off")
    assert ws_urls() == {"arbitrum": "wss://arb.example.com", "base": "off"}
    monkeypatch.setenv("TRACER_WS_URL", "ws://127.0.0.1:8546")
    assert ws_urls()["ethereum"] == "ws://127.0.0.1:8546"
    assert ws_urls("off", "base")["base"] == "off"  # --ws names the --chain's node, over the environment


def test_only_our_subscriptions_headers_are_heads() -> None:
    def note(sub: object, result: object, method: str = "eth_subscription") -> dict[str, object]:
        return {"jsonrpc": "2.0", "method": method, "params": {"subscription": sub, "result": result}}

    assert head_number(note("0x1", {"number": "0x1b4", "hash": "0x00"}), "0x1") == 436
    for junk in (None, "text", [], {}, note("0x2", {"number": "0x1"}), note("0x1", {"number": 5}),
                 note("0x1", {"number": "12"}), note("0x1", {"number": "0x"}), note("0x1", {"number": "0x" + "f" * 17}),
                 note("0x1", "0x5"), note("0x1", {"number": "0x5"}, method="eth_other"),
                 {"method": "eth_subscription", "params": ["0x1"]}):
        assert head_number(junk, "0x1") is None, junk
