"""Creating and deleting subscriptions: the checks a schema cannot make, and watchlists.

A subscription is a filter (trace, addresses, exit categories or entities, event types, minimum
amounts) plus a delivery: a webhook URL with a secret, or a stream the subscriber reads
(`GET /v1/subscriptions/{id}/events`).

Addresses without a trace make a watchlist: the subscription starts a watching trace from those
addresses at the current confirmed head, so any movement out of them starts (and then extends) a
trace, and every event of that trace reaches the subscription. `watch: false` instead only
matches events that touch the addresses in any trace (an exchange watching its own deposit
addresses). `watch: true` with a trace makes that trace follow new blocks.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import asyncpg

from tracer.addresses import InvalidAddress, normalize_address, shape_chain
from tracer.alerts.events import EVENT_TYPES, iso
from tracer.alerts.guard import UnsafeUrl, UrlPolicy, check_url
from tracer.alerts.signing import MIN_SECRET_LENGTH, new_secret
from tracer.domain.alerts import Deleted, NewSubscription, Subscription
from tracer.domain.chains import BITCOIN, TRON
from tracer.engine import service
from tracer.engine.policy import Policy, PolicyError
from tracer.store import subscriptions as sub_store
from tracer.store import traces as trace_store
from tracer.store.db import retrying

log = logging.getLogger("tracer.alerts")

MAX_ADDRESSES = 10_000
MAX_SCREEN_DEPTH = 10  # as GET /v1/screen


class SubscriptionError(ValueError):
    """Bad subscription input; `field` names it, `status` is the HTTP status to answer with."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Created:
    id: int
    secret: str | None  # the webhook secret, shown once
    watch_trace_id: int | None


def _shape_chain(address: Any) -> str:
    """The chain an address's shape says: 0x is EVM (ethereum unless the body names another), T...
    Tron, anything else is taken for Bitcoin and must pass its checks."""
    return shape_chain(address)


def _family(chain: str) -> str:
    return chain if chain in (BITCOIN, TRON) else "evm"


def _addresses(value: Any, field: str, chain: str | None) -> tuple[list[str] | None, str | None]:
    """Normalised addresses, and the chain they were read for: `chain` when the body names it,
    else the first address's shape (one subscription watches one chain: all must be of it)."""
    if value is None:
        return None, None
    if not isinstance(value, list) or not value:
        raise SubscriptionError(field, "must be a non-empty list of addresses")
    if len(value) > MAX_ADDRESSES:
        raise SubscriptionError(field, f"at most {MAX_ADDRESSES} addresses")
    chain = chain if isinstance(chain, str) else _shape_chain(value[0])
    out = []
    for i, a in enumerate(value):
        try:
            out.append(normalize_address(chain, a))
        except InvalidAddress as exc:
            raise SubscriptionError(f"{field}[{i}]", f"{exc.reason} (a {chain} address is expected)") from None
    return sorted(set(out)), chain


def _names(value: Any, field: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise SubscriptionError(field, "must be a non-empty list of names")
    return sorted({v.strip() for v in value})


#: The largest min_usd taken (a quadrillion dollars): above it no hop could ever pass.
MAX_USD = Decimal(10) ** 15


def _min_usd(value: Any) -> Decimal | None:
    """Dollars (a decimal string such as "10000.50", or a number): hop events worth less are not
    delivered; hop events whose price is unknown are."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise SubscriptionError("min_usd", "must be a decimal string of US dollars such as \"10000\"")
    try:
        usd = Decimal(str(value).strip())
    except InvalidOperation:
        raise SubscriptionError("min_usd", "must be a decimal number of US dollars") from None
    if not usd.is_finite() or usd < 0 or usd > MAX_USD:
        raise SubscriptionError("min_usd", f"must be between 0 and {MAX_USD:f} US dollars")
    return usd.quantize(Decimal("0.01"))


def _min_amount(value: Any) -> dict[str, int] | None:
    if value is None:
        return None
    try:
        return Policy.from_json({"min_amount": value}).min_amount
    except PolicyError as exc:
        raise SubscriptionError("min_amount", exc.message) from None


def _chain_for(chains: Mapping[str, Any], chain: str) -> Any:
    client = chains.get(chain)
    if client is None:
        raise SubscriptionError("chain", f"no node is configured for chain {chain!r} on this server", status=503)
    return client


def _screen_depth(value: Any, addresses: list[str] | None, chain: str) -> int | None:
    """screen_depth: screening_result events for the addresses' new inflows, exposure this many
    hops back (as GET /v1/screen?depth=N; EVM chains only, like it)."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_SCREEN_DEPTH:
        raise SubscriptionError("screen_depth", f"must be a whole number of hops from 1 to {MAX_SCREEN_DEPTH}")
    if addresses is None:
        raise SubscriptionError("screen_depth", "screening needs the addresses whose inflows it screens")
    if chain in (BITCOIN, TRON):
        raise SubscriptionError("screen_depth", f"indirect exposure is not available on {chain} yet (EVM chains only)")
    return value


async def create(
    pool: asyncpg.Pool,
    chains: Mapping[str, Any],  # chain name -> client with head() and block_times() (EvmChain)
    body: Mapping[str, Any],
    *,
    url_policy: UrlPolicy,
    created_by: str | None = None,
    api_key_id: int | None = None,
) -> Created:
    """Validate and create a subscription (and its watch trace); body as the API receives it."""
    delivery = body.get("delivery", "webhook")
    if delivery not in ("webhook", "stream"):
        raise SubscriptionError("delivery", "must be webhook or stream")
    url, secret = body.get("url"), body.get("secret")
    if delivery == "webhook":
        if url is None:
            raise SubscriptionError("url", "a webhook subscription needs a url")
        try:
            url = check_url(url, url_policy)
        except UnsafeUrl as exc:
            raise SubscriptionError("url", str(exc)) from None
        if secret is None:
            secret = new_secret()
        elif not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
            raise SubscriptionError("secret", f"must be at least {MIN_SECRET_LENGTH} characters")
    elif url is not None or secret is not None:
        raise SubscriptionError("url" if url is not None else "secret", "a stream subscription has no url or secret")
    chain = body.get("chain", "ethereum")
    if chain not in service.CHAINS:
        raise SubscriptionError("chain", f"unsupported chain {chain!r}; supported: {', '.join(service.CHAINS)}")
    addresses, chain_read = _addresses(body.get("addresses"), "addresses", body.get("chain"))
    chain = chain_read or chain
    trace_id = body.get("trace_id")
    watch = body.get("watch")
    if watch is None:
        watch = addresses is not None and trace_id is None
    event_types = _names(body.get("event_types"), "event_types")
    for i, t in enumerate(event_types or ()):
        if t not in EVENT_TYPES:
            raise SubscriptionError(f"event_types[{i}]", f"unknown event type; known: {', '.join(EVENT_TYPES)}")
    confirmations = body.get("confirmations", Policy().confirmations)
    if watch and trace_id is None and addresses is None:
        raise SubscriptionError("watch", "watch needs addresses (a watchlist) or a trace_id")
    if body.get("policy") is not None and not (watch and trace_id is None):
        raise SubscriptionError("policy", "a policy only applies to the trace a watchlist starts")
    if body.get("from_start") and trace_id is None:
        raise SubscriptionError("from_start", "from_start needs a trace_id")
    name = body.get("name") or (f"watchlist of {len(addresses)}" if watch and addresses and trace_id is None
                                else "subscription")
    min_amount = _min_amount(body.get("min_amount"))
    min_usd = _min_usd(body.get("min_usd"))
    categories = _names(body.get("categories"), "categories")
    entities = _names(body.get("entities"), "entities")
    screen_depth = _screen_depth(body.get("screen_depth"), addresses, chain)
    if screen_depth is not None and (not isinstance(confirmations, int) or isinstance(confirmations, bool)
                                     or confirmations < 0):
        raise SubscriptionError("confirmations", "must be a whole number of blocks, 0 or more")

    watch_trace_id: int | None = None
    if trace_id is not None:
        async with pool.acquire() as conn:
            row = await trace_store.get_trace(conn, trace_id)
            if row is None:
                raise SubscriptionError("trace_id", f"no trace {trace_id}", status=404)
            if row.chain != chain and "chain" in body:
                raise SubscriptionError("chain", f"trace {trace_id} is on {row.chain}")
            if addresses is not None and _family(row.chain) != _family(chain):
                raise SubscriptionError("addresses",
                                        f"trace {trace_id} is on {row.chain}: these are {chain} addresses")
            chain = row.chain
            if watch:
                status = await sub_store.watch_trace(conn, trace_id, confirmations)
                if status is None:
                    raise SubscriptionError("trace_id", f"trace {trace_id} is {row.status}: it cannot watch",
                                            status=409)
    elif watch:
        assert addresses is not None
        client = _chain_for(chains, chain)
        policy = dict(body.get("policy") or {})
        for fixed in ("watch", "confirmations", "from_block", "to_block", "from_time", "to_time"):
            if fixed in policy:
                raise SubscriptionError(f"policy.{fixed}", "set by the watchlist (it follows new blocks only)")
        head = await client.head()
        # Only new movements: the trace starts at the confirmed head, with nothing behind it.
        policy.update(watch=True, confirmations=confirmations, from_block=max(0, head - confirmations))
        try:
            watch_trace_id = await service.create_trace(pool, client, chain=chain, seeds=addresses, policy=policy,
                                                        label=f"watchlist: {name}"[:200], created_by=created_by)
        except service.TraceInputError as exc:
            field = exc.field if exc.field.startswith("policy") else f"addresses ({exc.field})"
            raise SubscriptionError(field, exc.message) from None
    spec = NewSubscription(
        name=str(name)[:200], delivery=delivery, url=url, secret=secret, chain=chain, trace_id=trace_id,
        addresses=addresses, watch=bool(watch), watch_trace_id=watch_trace_id, categories=categories,
        entities=entities, event_types=event_types, min_amount=min_amount, from_start=bool(body.get("from_start")),
        created_by=created_by, api_key_id=api_key_id, min_usd=min_usd, screen_depth=screen_depth,
        confirmations=confirmations if screen_depth is not None else Policy().confirmations,
    )
    try:
        async with pool.acquire() as conn:
            sid = await sub_store.insert_subscription(conn, spec)
    except BaseException:
        if watch_trace_id is not None:  # do not leave a watching trace nobody subscribed to
            await service.cancel_trace(pool, watch_trace_id)
        raise
    log.info("event=subscription_created id=%d delivery=%s watch_trace=%s", sid, delivery, watch_trace_id)
    return Created(sid, secret if delivery == "webhook" else None, watch_trace_id)


async def delete(pool: asyncpg.Pool, subscription_id: int) -> bool:
    """Delete a subscription and its queue; a watchlist's own trace is cancelled with it."""
    async def remove() -> Deleted | None:
        async with pool.acquire() as conn:
            return await sub_store.delete_subscription(conn, subscription_id)

    # Waits for a fan-out round in progress (see store.subscriptions.delete_subscription); a
    # database that picks us as a deadlock's victim all the same is asked again.
    row = await retrying(remove)
    if row is None:
        return False
    if row.watch_trace_id is not None:
        await service.cancel_trace(pool, row.watch_trace_id)
    return True


def public(row: Subscription, counts: Mapping[str, int] | None = None) -> dict[str, Any]:
    """A subscription row as the API shows it (never its secret)."""
    sid = int(row.id)
    out: dict[str, Any] = {
        "id": sid,
        "name": row.name,
        "delivery": row.delivery,
        "url": row.url,
        "chain": row.chain,
        "trace_id": row.trace_id,
        "addresses": list(row.addresses) if row.addresses is not None else None,
        "watch": row.watch,
        "watch_trace_id": row.watch_trace_id,
        "categories": _list(row.categories),
        "entities": _list(row.entities),
        "event_types": _list(row.event_types),
        "min_amount": dict(row.min_amount) if row.min_amount is not None else None,
        "min_usd": format(row.min_usd, "f") if row.min_usd is not None else None,
        "screen_depth": row.screen_depth,
        "created_by": row.created_by,
        "created_at": iso(row.created_at),
        "start_after": int(row.start_seq),
        "last_success_at": iso(row.last_success_at),
        "last_failure_at": iso(row.last_failure_at),
        "last_error": row.last_error,
        "deliveries": dict(counts) if counts is not None else None,
        "links": {
            "self": f"/v1/subscriptions/{sid}",
            "events": f"/v1/subscriptions/{sid}/events",
            "deliveries": f"/v1/subscriptions/{sid}/deliveries",
            "replay": f"/v1/subscriptions/{sid}/replay",
        },
    }
    return out


def _list(value: Sequence[str] | None) -> list[str] | None:
    return list(value) if value is not None else None
