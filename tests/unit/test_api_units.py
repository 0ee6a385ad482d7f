"""The API's pure parts: cursor signing, exact amount formatting, metrics text, the contract files
and the routes table agreeing with the OpenAPI document."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tracer.api.cursors import CursorCodec, CursorError
from tracer.api.metrics import Metrics
from tracer.api.openapi import bundle, schemas_dir, validator
from tracer.api.routes import ROUTES
from tracer.api.serialize import format_units, iso
from tracer.store.keys import split_key

SECRET = b"s" * 32


@given(st.lists(st.text(max_size=30), max_size=4), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))
def test_cursor_round_trip(key: list[str], scope: dict[str, int]) -> None:
    codec = CursorCodec(SECRET)
    token = codec.encode("hops", scope, key)
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)
    assert codec.decode(token, "hops", scope) == key


@given(st.binary(min_size=1, max_size=200))
def test_forged_cursors_are_refused(garbage: bytes) -> None:
    codec = CursorCodec(SECRET)
    import base64

    forged = base64.urlsafe_b64encode(garbage).decode().rstrip("=") + ".AAAAAAAAAAAAAAAAAAAAAA"
    with pytest.raises(CursorError):
        codec.decode(forged, "hops", {})


def test_cursor_bound_to_kind_scope_and_secret() -> None:
    codec = CursorCodec(SECRET)
    token = codec.encode("hops", {"trace": 1}, ["5", "7"])
    with pytest.raises(CursorError, match="another listing"):
        codec.decode(token, "traces", {"trace": 1})
    with pytest.raises(CursorError, match="other filters"):
        codec.decode(token, "hops", {"trace": 2})
    with pytest.raises(CursorError, match="signature"):
        CursorCodec(b"t" * 32).decode(token, "hops", {"trace": 1})
    with pytest.raises(ValueError):
        CursorCodec(b"short")


@given(st.integers(min_value=0, max_value=2**256 - 1), st.one_of(st.none(), st.integers(min_value=0, max_value=77)))
def test_format_units_is_exact(raw: int, decimals: int | None) -> None:
    text = format_units(raw, decimals)
    assert re.fullmatch(r"\d+(\.\d*[1-9])?", text)
    whole, _, frac = text.partition(".")
    d = decimals or 0
    assert len(frac) <= d
    # back to the raw integer exactly (no Decimal context, which would round past 28 digits)
    assert int(whole) * 10**d + int(frac.ljust(d, "0") or "0") == raw


def test_iso_times() -> None:
    assert iso(0) == "1970-01-01T00:00:00Z"
    assert iso(1_700_000_000) == "2023-11-14T22:13:20Z"
    assert iso(None) is None


def test_split_key_never_raises() -> None:
    assert split_key("trk_abc_def") == ("abc", "def")
    for bad in ("", "trk_", "trk_abc", "trk__x", "abc_def", "trk_a_" + "x" * 300):
        assert split_key(bad) is None


def test_metrics_text_format() -> None:
    m = Metrics()
    m.observe("GET", "/v1/traces/{trace_id}", 200, 0.003)
    m.observe("GET", "/v1/traces/{trace_id}", 404, 2.0)
    m.observe("GET", "/v1/traces/{trace_id}", 200, 60.0)
    text = m.render({"tracer_jobs": ("gauge", "Jobs.", {(("state", 'we"ird\n'),): 3.0})})
    assert 'tracer_http_requests_total{method="GET",route="/v1/traces/{trace_id}",status="200"} 2' in text
    assert 'le="0.005"} 1' in text and 'le="2.5"} 2' in text and 'le="+Inf"} 3' in text
    assert 'tracer_jobs{state="we\\"ird\\n"} 3' in text
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert {"tracer_http_requests_total", "tracer_http_request_duration_seconds", "tracer_jobs"} <= names


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    doc = yaml.safe_load((schemas_dir() / "openapi.yaml").read_text())
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops if m != "parameters"}
    served = {(r.method, r.path) for r in ROUTES}
    assert documented == served
    for r in ROUTES:  # public routes say so in the document, keyed ones do not
        op = doc["paths"][r.path][r.method.lower()]
        assert (op.get("security") == []) == (r.scope is None), r


def test_bundle_is_self_contained_and_schemas_are_valid() -> None:
    doc = bundle()
    text = json.dumps(doc)
    refs = set(re.findall(r'"\$ref": "([^"]+)"', text))
    assert refs and all(r.startswith("#/components/") for r in refs)
    for ref in refs:
        node = doc
        for part in ref[2:].split("/"):
            node = node[part]
    for path in sorted((schemas_dir() / "json").glob("*.schema.json")):
        schema = json.loads(path.read_text())
        assert schema["$id"].endswith("/" + path.name)
        validator(path.name.removesuffix(".schema.json")).check_schema(schema)


def test_request_schemas_match_what_the_server_accepts() -> None:
    v = validator("trace-create")
    assert v.is_valid({"seeds": ["0x" + "ab" * 20], "policy": {"max_depth": 3, "min_amount": {"native": "5"}}})
    assert not v.is_valid({"seeds": ["0x" + "ab" * 20], "policy": {"nope": 1}})
    assert not v.is_valid({"seeds": []})
    assert Path(schemas_dir() / "openapi.yaml").exists()


def test_policy_schema_follows_the_engine_policy() -> None:
    """The contract names every policy field the engine knows, and no other (a new engine field
    must be documented before the API can echo it)."""
    from dataclasses import fields

    from tracer.engine.policy import Policy

    schema = json.loads((schemas_dir() / "json" / "policy.schema.json").read_text())
    assert set(schema["properties"]) == {f.name for f in fields(Policy)}
    assert validator("policy").is_valid(Policy().to_json())
