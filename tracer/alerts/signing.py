"""Webhook signatures: HMAC-SHA256 over the timestamp and the exact body bytes.

Every delivery carries

    X-Tracer-Event-Id: 1234            the event id (drop duplicates by it: delivery is at least once)
    X-Tracer-Event-Type: hop_added
    X-Tracer-Timestamp: 1764062400     unix seconds when this attempt was signed
    X-Tracer-Signature: v1=<hex>       hex(HMAC-SHA256(secret, "<timestamp>.<body>"))

The timestamp is inside the MAC so a captured request cannot be replayed later: receivers refuse
timestamps older than a few minutes (`verify`'s tolerance). The header may list several
comma-separated `v1=` values (room for rotating secrets); one match is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

EVENT_ID_HEADER = "X-Tracer-Event-Id"
EVENT_TYPE_HEADER = "X-Tracer-Event-Type"
TIMESTAMP_HEADER = "X-Tracer-Timestamp"
SIGNATURE_HEADER = "X-Tracer-Signature"
SCHEME = "v1"
MIN_SECRET_LENGTH = 16


def new_secret() -> str:
    """A random secret for a subscription that did not bring one (256 bits)."""
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{SCHEME}={mac}"


def verify(secret: str, body: bytes, timestamp: str | None, signature: str | None, *,
           tolerance: float = 300.0, now: float | None = None) -> bool:
    """What a receiver runs on each request: the MAC matches and the timestamp is recent."""
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    ts = int(timestamp)
    if abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    expected = sign(secret, ts, body)
    return any(hmac.compare_digest(expected, part.strip()) for part in signature.split(","))
