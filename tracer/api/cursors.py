"""Pagination cursors: opaque to clients, HMAC-signed so a forged or edited cursor is refused.

A cursor carries the sort key of the last row of a page and a digest of the query it belongs to
(trace, sort, filters). Reusing it with other filters, editing it, or signing it with another
server's secret fails verification: the client gets a 400 naming the `cursor` parameter, and no
query ever runs on a key the server did not produce.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any

_MAC_BYTES = 16  # 128-bit tag: forging one is as hard as guessing a random 128-bit number
_MAX_LEN = 2048


class CursorError(ValueError):
    """A cursor that was not issued by this server for this query."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _digest(scope: Mapping[str, Any]) -> str:
    canon = json.dumps(scope, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


class CursorCodec:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("cursor secret must be at least 16 bytes")
        self._secret = secret

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, kind: str, scope: Mapping[str, Any], key: Sequence[str]) -> str:
        body = json.dumps({"k": kind, "q": _digest(scope), "v": list(key)}, separators=(",", ":")).encode()
        return f"{_b64(body)}.{_b64(self._mac(body))}"

    def decode(self, token: str, kind: str, scope: Mapping[str, Any]) -> list[str]:
        """The key inside `token`, after checking its signature and that it belongs to this query."""
        if not token or len(token) > _MAX_LEN or token.count(".") != 1:
            raise CursorError("malformed cursor")
        body_text, mac_text = token.split(".")
        try:
            body, mac = _unb64(body_text), _unb64(mac_text)
        except (binascii.Error, ValueError):
            raise CursorError("malformed cursor") from None
        if f"{_b64(body)}.{_b64(mac)}" != token:
            # base64 ignores the spare low bits of a last character: an edited cursor could decode
            # to the same bytes. Only the exact text this server issued is a cursor.
            raise CursorError("malformed cursor")
        if not hmac.compare_digest(mac, self._mac(body)):
            raise CursorError("cursor signature does not verify (edited, or issued by another server)")
        try:
            data = json.loads(body)
        except ValueError:  # cannot happen for a cursor we signed, but never trust it blindly
            raise CursorError("malformed cursor") from None
        if not isinstance(data, dict) or data.get("k") != kind:
            raise CursorError("cursor belongs to another listing")
        if data.get("q") != _digest(scope):
            raise CursorError("cursor belongs to a query with other filters or sort; start without a cursor")
        value = data.get("v")
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise CursorError("malformed cursor")
        return value
