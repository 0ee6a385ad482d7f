"""Alerting pieces that need no database: signatures, the SSRF guard, backoff, event JSON."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from tracer.alerts import events, signing
from tracer.alerts.deliver import DeliverySettings, backoff
from tracer.alerts.guard import UnsafeUrl, UrlPolicy, check_url
from tracer.alerts.http import WebhookClient
from tracer.api.openapi import validator
from tracer.domain.alerts import EventRow
from tracer.engine.policy import Policy, PolicyError
from tracer.store.outbox import notify_payload, parse_notify


def test_signature_round_trip_and_tampering() -> None:
    secret = signing.new_secret()
    body = b'{"id":1,"type":"hop_added"}'
    sig = signing.sign(secret, 1_700_000_000, body)
    assert sig.startswith("v1=") and len(sig) == 3 + 64
    assert signing.verify(secret, body, "1700000000", sig, now=1_700_000_100)
    assert signing.verify(secret, body, "1700000000", "v1=" + "0" * 64 + "," + sig, now=1_700_000_100)  # rotation
    assert not signing.verify(secret, body + b" ", "1700000000", sig, now=1_700_000_100)
    assert not signing.verify("another secret value", body, "1700000000", sig, now=1_700_000_100)
    assert not signing.verify(secret, body, "1700000001", sig, now=1_700_000_100)  # timestamp is signed
    assert not signing.verify(secret, body, "1700000000", sig, now=1_700_000_000 + 301)  # too old: replay
    assert not signing.verify(secret, body, None, sig)
    assert not signing.verify(secret, body, "soon", sig)


@pytest.mark.parametrize("url", [
    "http://hooks.example.com/x",            # not https
    "ftp://hooks.example.com/x",
    "https://user:pw@hooks.example.com/x",   # credentials
    "https://127.0.0.1/x", "https://127.8.9.10:8443/",
    "https://[::1]/x", "https://[::ffff:127.0.0.1]/x",
    "https://10.1.2.3/", "https://192.168.0.10/", "https://172.16.5.4/",
    "https://169.254.169.254/latest/meta-data/",  # cloud metadata
    "https://0.0.0.0/", "https://224.0.0.1/",
    "https://localhost/x", "https://api.localhost/x", "https://db.internal/", "https://printer.local/",
    "https://intranet/",
    "https://hooks.example.com/a b",
    "",
])
def test_guard_refuses(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        check_url(url, UrlPolicy())


def test_guard_allows_public_https_and_explicit_allow_list() -> None:
    assert check_url("https://hooks.example.com/tracer?x=1", UrlPolicy())
    assert check_url("https://8.8.8.8/hook", UrlPolicy())
    allow = UrlPolicy(allow=frozenset({"127.0.0.1"}))
    assert check_url("http://127.0.0.1:9999/hook", allow)  # allow-listed: http and loopback
    with pytest.raises(UnsafeUrl):
        check_url("http://127.0.0.2:9999/hook", allow)
    by_port = UrlPolicy(allow=frozenset({"127.0.0.1:8443"}))
    assert check_url("https://127.0.0.1:8443/", by_port)
    with pytest.raises(UnsafeUrl):
        check_url("https://127.0.0.1:8444/", by_port)
    private = UrlPolicy(allow_private=True)
    assert check_url("https://10.0.0.5/hook", private)
    with pytest.raises(UnsafeUrl):
        check_url("http://10.0.0.5/hook", private)  # still https
    env = UrlPolicy.from_env({"TRACER_WEBHOOK_ALLOW": " 127.0.0.1 , Receiver.Test:8080",
                              "TRACER_WEBHOOK_ALLOW_PRIVATE": ""})
    assert env.allow == {"127.0.0.1", "receiver.test:8080"} and not env.allow_private
    assert UrlPolicy.from_env({}) == UrlPolicy()  # nothing is allowed by default


class _FixedDns(WebhookClient):
    def __init__(self, policy: UrlPolicy, answers: list[str]) -> None:
        super().__init__(policy)
        self.answers = answers

    async def lookup(self, host: str, port: int) -> list[str]:
        return self.answers


@pytest.mark.asyncio(loop_scope="session")
async def test_resolution_refuses_names_that_resolve_inside() -> None:
    """DNS rebinding: a public-looking name that resolves to an internal address at connect time."""
    inner = ["10.0.0.7", "127.0.0.1"]
    with pytest.raises(OSError, match="not a public address"):
        await _FixedDns(UrlPolicy(), inner).addresses("hooks.example.com", 443)
    kept = await _FixedDns(UrlPolicy(), ["10.0.0.7", "93.184.216.34"]).addresses("hooks.example.com", 443)
    assert kept == ["93.184.216.34"]
    allowed = await _FixedDns(UrlPolicy(allow=frozenset({"receiver.test"})), inner).addresses("receiver.test", 80)
    assert allowed == inner


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(1)
    for attempt in range(1, 12):
        full = min(60.0, 2.0 * 2 ** (attempt - 1))
        values = [backoff(attempt, 2.0, 60.0, rng) for _ in range(200)]
        assert all(full / 2 <= v <= full for v in values)
        assert max(values) - min(values) > full / 4  # really jittered
    assert DeliverySettings(lease_seconds=30, request_timeout=20).request_timeout == 10  # inside the lease


def _row(type_: str, payload: dict[str, Any], seq: int = 7) -> EventRow:
    return EventRow(seq, 3, type_, payload, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "ethereum")


HOP = {"transfer_id": 11, "tx_hash": "0x" + "ab" * 32, "position": "tx", "block_number": 120,
       "block_time": 1_700_000_000, "from": "0x" + "11" * 20, "to": "0x" + "22" * 20, "asset": "native",
       "amount": "1500000000000000000",
       "transfer_amount": "3000000000000000000", "symbol": None, "decimals": None, "depth": 2, "kind": "native",
       "status": "exit", "reason": "exchange", "share": 0.5, "to_entity": "Binance", "to_category": "exchange"}


def test_event_json_matches_its_schema() -> None:
    body = events.render(_row("hop_added", HOP), subscription_id=5)
    assert body["hop"]["amount"] == "1.5" and body["hop"]["amount_raw"] == "1500000000000000000"
    assert body["hop"]["symbol"] == "ETH" and body["hop"]["decimals"] == 18
    assert body["hop"]["timestamp"] == "2023-11-14T22:13:20Z"
    assert body["id"] == 7 and body["subscription_id"] == 5 and body["created_at"] == "2026-01-02T03:04:05Z"
    token = dict(HOP, asset="0x" + "dd" * 20, amount="1234567", symbol="USDT", decimals=6)
    assert events.render(_row("hop_retracted", token))["hop"]["amount"] == "1.234567"
    v = validator("webhook_event")
    for b in (body, events.render(_row("hop_retracted", token)),
              events.render(_row("exit_reached", {"address": HOP["to"], "entity": "Binance", "category": "exchange",
                                                  "reason": "label"})),
              events.render(_row("trace_finished", {"hops": 3, "frontier": 0}))):
        errors = list(v.iter_errors(json.loads(events.encode(b))))
        assert not errors, errors
    assert not v.is_valid(dict(events.render(_row("trace_finished", {})), hop=body["hop"]))
    assert not v.is_valid({k: x for k, x in body.items() if k != "hop"})


def test_an_event_rendered_once_gives_every_subscription_its_exact_body() -> None:
    tron = dict(HOP, to="0x41" + "22" * 20, to_entity='Quote " and "subscription_id":1')
    rows = [_row("hop_added", HOP), _row("hop_updated", tron, seq=12), _row("trace_finished", {"hops": 3}),
            _row("exit_reached", {"address": HOP["to"], "entity": "x", "subscription_id": 5})]
    for row in rows:
        once = events.rendered(row)
        assert (once.seq, once.type) == (row.seq, row.type)
        for sid in (1, 5, 987_654_321, (1 << 63) - 1):
            assert once.for_subscription(sid) == events.encode(events.render(row, subscription_id=sid))


def test_notify_payload_round_trip_and_overflow() -> None:
    assert parse_notify(notify_payload(42, [3, 1])) == (42, frozenset({1, 3}))
    big = notify_payload(9, range(10_000))
    assert len(big) < 8000 and parse_notify(big) == (9, None)
    assert parse_notify("0:") == (0, frozenset())


def test_policy_watch_fields() -> None:
    p = Policy.from_json({"watch": True, "confirmations": 3})
    assert p.watch and p.confirmations == 3 and Policy.from_json(p.to_json()) == p
    assert not Policy().watch and Policy().confirmations == 12
    with pytest.raises(PolicyError):
        Policy.from_json({"watch": "yes"})
    with pytest.raises(PolicyError):
        Policy.from_json({"confirmations": -1})
    assert validator("policy").is_valid(p.to_json())
