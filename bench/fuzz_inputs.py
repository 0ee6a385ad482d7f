"""Malformed input for the API: `bench/faults.py` sends it, and the reliability tests use it too
(through tests/fuzz_inputs.py; bench imports nothing from tests/).

- `label_files(rng, n)`: broken label files (truncated, spliced garbage, flipped bytes, invalid or
  foreign encodings, huge lines, bad addresses, wrong shapes, an entity bomb), each with the
  content type and file name it is sent with.
- `openapi_cases(doc, values)`: from the served OpenAPI document, one request per operation and
  parameter (or top-level body member) with that one value replaced by junk.
- `junk_requests(...)`: hand-written junk: addresses, chain names, policies, bodies, keys.
- `tampered(cursor, rng)`: edited variants of a real signed cursor.
- `check_refusal(...)`: what every refusal must look like (4xx problem+json naming what is wrong).
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

VALID_ADDRESS = "0x098b716b8aaf21512996dc57eb0615e2383e2f96"

OFAC_JSON = json.dumps({
    "metadata": {"lastUpdated": "2026-08-22T04:43:26.646Z", "sdnListDate": "08/20/2026", "source": "OFAC SDN List",
                 "totalAddresses": 1},
    "addresses": {VALID_ADDRESS: {
        "type": "Digital Currency Address - ETH",
        "entries": [{"entity": "LAZARUS GROUP", "program": "DPRK3", "type": "Digital Currency Address - ETH",
                     "uid": "27307", "akas": []}]}},
})
TAGPACK = """title: example
creator: tests
label: binance
category: exchange
currency: ETH
confidence: service_data
source: https://example.org
actor: binance
tags:
- address: '0xBE0eB53F46cd790Cd13851d5EFf43D12404d33E8'
  label: binance reserve wallets ETH
"""
PLAIN_CSV = ("chain,address,entity,category,source\n"
             "ethereum,0x28C6c06298d514Db089934071355E5743bf21d60,Binance,hot_wallet,analyst\n")
SDN_XML = """<?xml version="1.0" encoding="utf-8"?>
<sdnList xmlns="http://tempuri.org/sdnList.xsd"><publshInformation><Publish_Date>08/20/2026</Publish_Date>
</publshInformation><sdnEntry><uid>27307</uid><lastName>LAZARUS GROUP</lastName><sdnType>Entity</sdnType>
<programList><program>DPRK3</program></programList><idList><id><uid>1</uid>
<idType>Digital Currency Address - ETH</idType><idNumber>0x098b716b8aaf21512996dc57eb0615e2383e2f96</idNumber>
</id></idList></sdnEntry></sdnList>
"""
#: file name -> (content type, text): one valid file of each family the importer reads.
VALID_FILES: dict[str, tuple[str, str]] = {
    "sanctioned-addresses.json": ("application/json", OFAC_JSON),
    "pack.yaml": ("application/yaml", TAGPACK),
    "mine.csv": ("text/csv", PLAIN_CSV),
    "sdn.xml": ("application/xml", SDN_XML),
}


@dataclass(frozen=True)
class LabelFile:
    what: str
    filename: str | None
    content_type: str
    body: bytes


def _mutations(raw: bytes, rng: random.Random, n: int) -> Iterator[tuple[str, bytes]]:
    yield "truncated to a third", raw[: len(raw) // 3]
    yield "trailing garbage", raw + b"\n\x00\x01{[<"
    yield "commas as semicolons", raw.replace(b",", b";")
    yield "utf-16", raw.decode("utf-8", errors="replace").encode("utf-16")
    yield "nul bytes", raw.replace(b"0x", b"0x\x00")
    for _ in range(n):
        cut = rng.randrange(1, len(raw))
        kind = rng.randrange(4)
        if kind == 0:
            yield f"cut at {cut}", raw[:cut]
        elif kind == 1:
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
            yield f"garbage at {cut}", raw[:cut] + junk + raw[cut:]
        elif kind == 2:
            yield f"invalid utf-8 at {cut}", raw[:cut] + b"\xc3\x28" + raw[cut + 1:]
        else:
            yield f"byte flipped at {cut}", raw[:cut] + bytes([raw[cut] ^ 0x5A]) + raw[cut + 1:]


def _hand_made() -> Iterator[LabelFile]:
    csv_head = "chain,address,entity,category,source\n"
    bad_addresses = ["0x123", "0x" + "g" * 40, "0x" + "1" * 41, "0xBE0eB53F46cd790Cd13851d5EFf43D12404d33e8",
                     "", "x" * 5000, "0x" + "0" * 40 + "\u200b", "'; DROP TABLE labels; --"]
    for i, a in enumerate(bad_addresses):
        yield LabelFile(f"csv bad address {i}", "bad.csv", "text/csv",
                        (csv_head + f"ethereum,{a},Evil,hot_wallet,analyst\n").encode())
    yield LabelFile("csv huge line", "huge.csv", "text/csv",
                    (csv_head + "ethereum," + "A" * (4 << 20) + ",x,hot_wallet,a\n").encode())
    yield LabelFile("csv huge field count", "wide.csv", "text/csv", (csv_head + ",".join(["x"] * 200_000)).encode())
    yield LabelFile("csv header only", "empty.csv", "text/csv", csv_head.encode())
    yield LabelFile("csv unknown category", "cat.csv", "text/csv",
                    (csv_head + f"ethereum,{VALID_ADDRESS},Evil,not_a_category,analyst\n").encode())
    yield LabelFile("csv latin-1", "latin.csv", "text/csv",
                    (csv_head + f"ethereum,{VALID_ADDRESS},Caf\u00e9 \u00e9chang\u00e9,exchange,analyst\n")
                    .encode("latin-1"))
    yield LabelFile("csv utf-16 with BOM", "u16.csv", "text/csv", PLAIN_CSV.encode("utf-16"))
    yield LabelFile("binary noise", None, "application/octet-stream", bytes(range(256)) * 64)
    yield LabelFile("json top-level list", "sanctioned-addresses.json", "application/json",
                    b'[{"addresses": {}}]')
    yield LabelFile("json addresses a list", "sanctioned-addresses.json", "application/json",
                    b'{"addresses": ["0x1"]}')
    yield LabelFile("json entries wrong type", "sanctioned-addresses.json", "application/json",
                    json.dumps({"metadata": {"sdnListDate": "08/20/2026"},
                                "addresses": {VALID_ADDRESS: {"entries": "LAZARUS"}}}).encode())
    yield LabelFile("json deeply nested", "sanctioned-addresses.json", "application/json",
                    b'{"addresses": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    yield LabelFile("json bad date", "sanctioned-addresses.json", "application/json",
                    OFAC_JSON.replace("08/20/2026", "20/20/2026").encode())
    yield LabelFile("json address not hex", "sanctioned-addresses.json", "application/json",
                    OFAC_JSON.replace(VALID_ADDRESS, "0x" + "z" * 40).encode())
    yield LabelFile("xml entity bomb", "sdn.xml", "application/xml", (
        '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
        + ']><sdnList><sdnEntry><lastName>&i;</lastName></sdnEntry></sdnList>').encode())
    yield LabelFile("xml external entity", "sdn.xml", "application/xml", (
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<sdnList><sdnEntry><lastName>&x;</lastName></sdnEntry></sdnList>"))
    yield LabelFile("xml neither sdnList nor Sanctions", "other.xml", "application/xml", b"<root><a/></root>")
    yield LabelFile("xml unclosed", "sdn.xml", "application/xml", SDN_XML.encode()[:-30])
    yield LabelFile("yaml not a mapping", "pack.yaml", "application/yaml", b"- just\n- a list\n")
    yield LabelFile("yaml tags not a list", "pack.yaml", "application/yaml",
                    TAGPACK.split("tags:")[0].encode() + b"tags: 5\n")
    yield LabelFile("yaml python object", "pack.yaml", "application/yaml", b"!!python/object/apply:os.system ['id']\n")
    yield LabelFile("yaml alias bomb", "pack.yaml", "application/yaml",
                    b"a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                    b"c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
                    b"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n")
    yield LabelFile("unknown format", "notes.txt", "text/plain", b"just some words\nnothing else\n")


def label_files(rng: random.Random, n: int = 8, valid: Mapping[str, tuple[str, str]] | None = None) -> list[LabelFile]:
    """Malformed label files: `n` random mutations of each valid file plus the hand-made ones."""
    out: list[LabelFile] = []
    for name, (ctype, text) in (valid or VALID_FILES).items():
        raw = text.encode()
        for what, body in _mutations(raw, rng, n):
            if body != raw:  # a mutation that changed nothing would be a valid file
                out.append(LabelFile(f"{name}: {what}", name, ctype, body))
    out.extend(_hand_made())
    return out


# ----------------------------------------------------------------------------------- API junk

JUNK_STRINGS: list[Any] = [
    "", " ", "0", "-1", "1e999", "NaN", "null", "true", "💥" * 50, "a" * 5000, "\x00", "%00", "../../etc/passwd",
    "'; DROP TABLE traces; --", "<script>alert(1)</script>", "${jndi:ldap://x}", "\ud800", "0x", "0x" + "f" * 41,
    "9" * 40, "-9223372036854775809", "9223372036854775808", "1.5", "[]", "{}",
]
JUNK_JSON: list[Any] = [None, True, False, 0, -1, 2**64, 1.5, float("1e308"), "", "x" * 10_000, [], [1, 2], {},
                        {"a": {"b": {"c": [None]}}}, "\u0000", "💥"]

BAD_ADDRESSES = [
    "", "0x", "0x123", "0x" + "g" * 40, "0x" + "1" * 39, "0x" + "1" * 41, "1" * 42,
    "0xBE0eB53F46cd790Cd13851d5EFf43D12404d33e8",  # mixed case, checksum wrong
    # (surrounding whitespace is trimmed by design, so " 0x…" is not junk)
    "0x098b716b8aaf21512996dc57eb0615e2383e2f9\u0664", "0X" + "G" * 40, "bc1qinvalid",
    "1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
    "0x" + "0" * 40 + "00", "%30x" + "1" * 40, "0x%00" + "1" * 38,
]
BAD_CHAINS = ["Ethereum", "ETHEREUM", "eth ereum", "ethereum;", "-", "1", "x" * 33, "💥", "../ethereum",
              "ethereum%00", "bitcoin\x00"]
BAD_POLICIES: list[Any] = [
    None, [], "haircut", 5, {"max_depth": -1}, {"max_depth": 10**9}, {"max_depth": "3"}, {"max_depth": 1.5},
    {"max_hops": -5}, {"max_hops": 10**12}, {"model": "everything"}, {"min_share": 2}, {"min_share": -0.1},
    {"min_share": "NaN"}, {"from_block": -1}, {"from_block": 10, "to_block": 5}, {"to_block": 2**70},
    {"from_time": "yesterday"}, {"from_time": "2030-01-01T00:00:00Z", "to_time": "2020-01-01T00:00:00Z"},
    {"unknown_field": 1}, {"confirmations": -1}, {"confirmations": 10**6}, {"watch": "yes"},
    {"max_depth": None}, {"max_depth": True},
]


@dataclass
class Request:
    category: str
    what: str
    method: str
    path: str
    params: list[tuple[str, str]] | dict[str, str] = field(default_factory=dict)
    json_body: Any = None
    raw_body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    send_json: bool = False
    #: the statuses that count as a correct answer (a refusal, or a success where the junk was valid)
    allowed: tuple[int, ...] = (400, 404, 405, 409, 413, 415, 422)


def _trace_body(**override: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"chain": "ethereum", "seeds": [VALID_ADDRESS], "policy": {"max_depth": 3}}
    body.update(override)
    return body


def junk_requests(trace_id: int) -> list[Request]:
    """Hand-written junk for every kind of input the issue names."""
    out: list[Request] = []
    for a in BAD_ADDRESSES:
        out.append(Request("addresses", f"path {a!r}", "GET", f"/v1/addresses/ethereum/{_path_safe(a)}"))
        out.append(Request("addresses", f"screen {a!r}", "GET", "/v1/screen", params={"address": a}))
        out.append(Request("addresses", f"seed {a!r}", "POST", "/v1/traces", json_body=_trace_body(seeds=[a]),
                           send_json=True))
        out.append(Request("addresses", f"label {a!r}", "POST", "/v1/labels", send_json=True,
                           json_body={"address": a, "entity": "x", "category": "exchange"}))
        # Hop filters take any chain's address (a trace may continue onto Bitcoin): a valid one is fine.
        out.append(Request("addresses", f"hops filter {a!r}", "GET", f"/v1/traces/{trace_id}/hops",
                           params={"address": a}, allowed=(200, 400) if a.startswith("1Boat") else (400,)))
    for c in BAD_CHAINS:
        out.append(Request("chains", f"path {c!r}", "GET", f"/v1/addresses/{_path_safe(c)}/{VALID_ADDRESS}"))
        out.append(Request("chains", f"trace {c!r}", "POST", "/v1/traces", json_body=_trace_body(chain=c),
                           send_json=True))
        out.append(Request("chains", f"labels filter {c!r}", "GET", "/v1/labels", params={"chain": c}))
    # A well-formed name without a node is readable (labels may exist for it) but cannot be traced.
    out.append(Request("chains", "reading an unconfigured chain", "GET", f"/v1/addresses/solana/{VALID_ADDRESS}",
                       allowed=(200, 400)))
    out.append(Request("chains", "tracing on an unconfigured chain", "POST", "/v1/traces", send_json=True,
                       json_body=_trace_body(chain="solana")))
    for p in BAD_POLICIES:
        out.append(Request("policies", f"policy {json.dumps(p)[:60]}", "POST", "/v1/traces",
                           json_body=_trace_body(policy=p), send_json=True))
    out.append(Request("policies", "too many seeds", "POST", "/v1/traces", send_json=True,
                       json_body=_trace_body(seeds=[f"0x{i:040x}" for i in range(10_001)])))
    out.append(Request("policies", "no seeds", "POST", "/v1/traces", json_body=_trace_body(seeds=[]), send_json=True))
    bodies: list[tuple[str, bytes, str]] = [
        ("not json", b"{not json", "application/json"),
        ("empty", b"", "application/json"),
        ("json array", b"[1,2,3]", "application/json"),
        ("json string", b'"hello"', "application/json"),
        ("nested 100k", b"[" * 100_000 + b"]" * 100_000, "application/json"),
        ("2 MiB", b'{"seeds": ["' + b"a" * (2 << 20) + b'"]}', "application/json"),
        ("invalid utf-8", b'{"seeds": ["\xff\xfe"]}', "application/json"),
        ("nul in string", b'{"chain": "ethereum", "seeds": ["\\u0000"]}', "application/json"),
        ("form encoded", b"seeds=0x1", "application/x-www-form-urlencoded"),
        ("xml", b"<seeds/>", "application/xml"),
        ("duplicate keys", b'{"seeds": [], "seeds": ["' + VALID_ADDRESS.encode() + b'"], "chain": 5}',
         "application/json"),
        ("huge number", b'{"seeds": ["' + VALID_ADDRESS.encode() + b'"], "policy": {"max_depth": 1' + b"0" * 5000
         + b"}}", "application/json"),
    ]
    for what, raw, ctype in bodies:
        for path in ("/v1/traces", "/v1/labels", "/v1/subscriptions", f"/v1/addresses/ethereum/{VALID_ADDRESS}/labels"):
            out.append(Request("bodies", f"{what} -> {path}", "POST", path, raw_body=raw,
                               headers={"Content-Type": ctype}))
    for what, ids in (("trace id", ["0", "-1", "abc", "1.5", "99999999999999999999", "1e3", "%20"]),):
        for i in ids:
            out.append(Request("bodies", f"{what} {i!r}", "GET", f"/v1/traces/{i}"))
    return out


def _path_safe(text: str) -> str:
    from urllib.parse import quote

    # surrogatepass: a lone surrogate goes out as the (invalid UTF-8) bytes it stands for.
    return quote(text, safe="", errors="surrogatepass") or "%20"


def url_of(req: Request) -> str:
    """The request's path and query, percent-encoded here so junk no HTTP client would encode
    (lone surrogates, NUL) still goes out; send it with yarl's `encoded=True`."""
    from urllib.parse import quote, urlencode

    items = list(req.params.items()) if isinstance(req.params, dict) else list(req.params)
    query = urlencode(items, quote_via=quote, errors="surrogatepass")
    return req.path + ("?" + query if query else "")


def tampered(cursor: str, rng: random.Random, n: int = 20) -> list[tuple[str, str]]:
    """Edited variants of a real cursor: flipped characters, cut, extended, re-encoded, forged."""
    out: list[tuple[str, str]] = [
        ("truncated", cursor[: len(cursor) // 2]),
        ("one char less", cursor[:-1]),
        ("appended", cursor + "A"),
        ("empty", ""),
        ("not base64", "!!!***"),
        ("upper-cased", cursor.upper()),
        ("forged plain json", base64.urlsafe_b64encode(b'{"k":"hops","key":["1"]}').decode().rstrip("=")),
        ("huge", "A" * 5000),
        ("doubled", cursor + cursor),
    ]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    for _ in range(n):
        i = rng.randrange(len(cursor))
        ch = rng.choice([c for c in alphabet if c != cursor[i]])
        out.append((f"char {i} changed", cursor[:i] + ch + cursor[i + 1:]))
    return out


# ------------------------------------------------------------------------------- OpenAPI cases


def _resolve(doc: Mapping[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/"):
        target: Any = doc
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def _case(op: tuple[str, str], what: str, path_params: Mapping[str, str], query: dict[str, str], body: Any,
          send_json: bool) -> Request:
    method, url = op
    for k, v in path_params.items():
        url = url.replace("{" + k + "}", _path_safe(str(v)))
    # A junk value may happen to be valid (an empty filter): success is allowed too, a 5xx never.
    return Request("openapi", f"{op[0]} {op[1]}: {what}"[:160], method, url, params=query, json_body=body,
                   send_json=send_json, allowed=(200, 201, 202, 204, 400, 404, 405, 409, 413, 415, 422))


def openapi_cases(doc: Mapping[str, Any], path_values: Mapping[str, str], rng: random.Random,
                  per_field: int = 6) -> list[Request]:
    """One request per (operation, parameter or body member, junk value) from the OpenAPI document:
    every other input keeps a plausible value, so the junk one is what the server must refuse."""
    out: list[Request] = []
    for path, item in doc["paths"].items():
        shared = [_resolve(doc, p) for p in item.get("parameters", [])]
        for method, op in item.items():
            if method not in ("get", "post", "delete", "put", "patch"):
                continue
            key = (method.upper(), path)
            params = shared + [_resolve(doc, p) for p in op.get("parameters", [])]
            pp = {p["name"]: path_values.get(p["name"], "1") for p in params if p.get("in") == "path"}
            body = None
            content = (_resolve(doc, op.get("requestBody") or {}) or {}).get("content", {})
            is_json = "application/json" in content
            if is_json:
                media = content["application/json"]
                body = media.get("example")
                if body is None:
                    schema = _resolve(doc, media.get("schema", {}))
                    body = {k: "x" for k in schema.get("required", [])}
            for p in params:
                for junk in rng.sample(JUNK_STRINGS, min(per_field, len(JUNK_STRINGS))):
                    if p.get("in") == "path":
                        out.append(_case(key, f"path {p['name']}={junk!r}", {**pp, p["name"]: junk}, {}, body,
                                         is_json))
                    elif p.get("in") == "query":
                        out.append(_case(key, f"query {p['name']}={junk!r}", pp, {p["name"]: junk}, body, is_json))
                if p.get("in") == "query":
                    twice = _case(key, f"query {p['name']} given twice", pp, {}, body, is_json)
                    twice.params = [(p["name"], "1"), (p["name"], "2")]
                    out.append(twice)
            if isinstance(body, dict):
                for member in list(body):
                    for junk in rng.sample(JUNK_JSON, min(per_field, len(JUNK_JSON))):
                        out.append(_case(key, f"body {member}={json.dumps(junk)[:40]}", pp, {},
                                         {**body, member: junk}, is_json))
                    out.append(_case(key, f"body without {member}", pp, {},
                                     {k: v for k, v in body.items() if k != member}, is_json))
                out.append(_case(key, "body with an unknown member", pp, {}, {**body, "zz_unknown": 1}, is_json))
            out.append(_case(key, "unknown query parameter", pp, {"zz_unknown": "1"}, body, is_json))
    return out


# ------------------------------------------------------------------------------------ checking


def refusal_problem(status: int, content_type: str, body: Any) -> str | None:
    """Why a 4xx answer is not a proper machine-readable refusal, or None when it is."""
    if not content_type.startswith("application/problem+json"):
        return f"content type {content_type!r}"
    if not isinstance(body, dict):
        return "body is not a JSON object"
    if body.get("status") != status:
        return f"status member {body.get('status')!r} != {status}"
    if not body.get("title") or not (body.get("detail") or body.get("field")):
        return "no title or no detail/field"
    text = json.dumps(body)
    if "Traceback" in text or 'File "' in text:
        return "a traceback in the body"
    return None
