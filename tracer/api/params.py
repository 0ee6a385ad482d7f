"""Parsing query and path parameters: every bad value becomes a 400 naming the parameter."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from tracer.addresses import InvalidAddress, normalize_address, shape_chain
from tracer.api.errors import ApiError, bad_request
from tracer.nesting import too_deep

_MAX_BIGINT = (1 << 63) - 1
ANY_CHAIN = "any"
_MAX_NESTING = 64  # request bodies: a policy is three levels deep
_CHAIN = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def _query(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise bad_request(name, "given more than once")
    return values[0] if values else None


def reject_unknown(request: web.Request, allowed: Sequence[str]) -> None:
    """Unknown query parameters are refused: a typo such as ?min_ammount= must not silently
    return the unfiltered list."""
    for name in request.query:
        if name not in allowed:
            raise bad_request(name, f"unknown query parameter; allowed: {', '.join(sorted(allowed))}")


def int_param(request: web.Request, name: str, *, minimum: int = 0, maximum: int = _MAX_BIGINT,
              default: int | None = None) -> int | None:
    text = _query(request, name)
    if text is None or text == "":
        return default
    return parse_int(name, text, minimum=minimum, maximum=maximum)


def parse_int(name: str, text: str, *, minimum: int = 0, maximum: int = _MAX_BIGINT) -> int:
    if not re.fullmatch(r"[+-]?\d{1,19}", text.strip()):
        raise bad_request(name, "must be an integer")
    value = int(text)
    if not minimum <= value <= maximum:
        raise bad_request(name, f"must be between {minimum} and {maximum}")
    return value


def str_param(request: web.Request, name: str, *, max_len: int = 200) -> str | None:
    text = _query(request, name)
    if text is None:
        return None
    if len(text) > max_len:
        raise bad_request(name, f"at most {max_len} characters")
    _storable(name, text)
    return text


def _storable(name: str, text: str) -> None:
    """Postgres text holds neither NUL nor lone surrogates: refuse them here with a 400 instead of
    letting the driver fail with a 500."""
    if "\x00" in text:
        raise bad_request(name, "must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request(name, "is not valid Unicode") from None


def enum_param(request: web.Request, name: str, choices: Sequence[str], default: str | None = None) -> str | None:
    text = _query(request, name)
    if text is None:
        return default
    if text not in choices:
        raise bad_request(name, f"must be one of {', '.join(choices)}")
    return text


def enum_list_param(request: web.Request, name: str, choices: Sequence[str]) -> list[str] | None:
    """Repeated (?status=a&status=b) or comma-separated (?status=a,b) values."""
    values = [v for raw in request.query.getall(name, []) for v in raw.split(",") if v]
    if not values:
        return None
    for v in values:
        if v not in choices:
            raise bad_request(name, f"{v!r} is not one of {', '.join(choices)}")
    return sorted(set(values))


def address_param(request: web.Request, name: str, chain: str = "ethereum") -> str | None:
    text = _query(request, name)
    if text is None:
        return None
    return parse_address(name, text, chain)


def parse_address(name: str, text: Any, chain: str = "ethereum") -> str:
    """`chain` "any": the address's own shape says which (0x is EVM, T... Tron, else Bitcoin), for
    filters over traces and hops that may span chains."""
    if chain == ANY_CHAIN:
        chain = shape_chain(text)
    try:
        return normalize_address(chain, text)
    except InvalidAddress as exc:
        raise bad_request(name, f"invalid address: {exc.reason}") from None


def asset_param(request: web.Request, name: str) -> str | None:
    """`native` or a token contract address."""
    text = _query(request, name)
    if text is None or text == "native":
        return text
    return parse_address(name, text)


def decimal_param(request: web.Request, name: str) -> Decimal | None:
    text = _query(request, name)
    if text is None:
        return None
    if not re.fullmatch(r"\d{1,60}(\.\d{1,36})?", text):
        raise bad_request(name, "must be a non-negative decimal number such as 1.5 (a string, in the asset's units)")
    try:
        return Decimal(text)
    except InvalidOperation:
        raise bad_request(name, "must be a decimal number") from None


def trace_id(request: web.Request) -> int:
    text = request.match_info["trace_id"]
    if not re.fullmatch(r"\d{1,19}", text) or not 1 <= int(text) <= _MAX_BIGINT:
        raise bad_request("trace_id", "must be a positive integer")
    return int(text)


def chain_name(text: str) -> str:
    if not _CHAIN.fullmatch(text):
        raise bad_request("chain", "must be a chain name such as ethereum")
    return text


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400/413/415 problem. Only as application/json: a
    browser sends text/plain (or no type) cross-site without asking, application/json never."""
    ctype = request.headers.get("Content-Type", "")
    if ctype.split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "Unsupported media type", "send the body as application/json (Content-Type header)",
                       field="Content-Type")
    raw = await request.read()  # raises 413 past client_max_size
    if too_deep(raw, _MAX_NESTING):  # before json.loads: deep enough input crashes the process
        raise bad_request("body", f"JSON nested deeper than {_MAX_NESTING} levels")
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request("body", f"not valid JSON: {exc}") from None
    except RecursionError:  # absurdly nested input; json would otherwise surface as a 500
        raise bad_request("body", "JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise bad_request("body", "must be a JSON object")
    _storable("body", json.dumps(data, ensure_ascii=False).replace("\\u0000", "\x00"))
    return data
