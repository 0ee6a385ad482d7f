"""The webhook delivery worker: at-least-once, in order per trace, signed, with backoff and dead-letter.

Workers coordinate through Postgres only. A worker leases a subscription (SKIP LOCKED + lease,
like trace jobs), posts its due deliveries oldest first, one queue per trace, and gives the lease
back; a worker that dies mid-way loses its lease and another takes the subscription over,
re-sending what was not marked delivered (receivers drop duplicates by event id).

Why one subscription per worker slot: it keeps each trace's events in order without locking
single deliveries, and it bounds what a slow or dead receiver can take from the others to one slot
for at most half a lease, with short timeouts; the other slots keep serving everyone else.

A failed attempt holds its trace's queue (nothing overtakes it) until a retry time drawn with
exponential backoff and jitter (so receivers that failed together are not retried together); after
`max_attempts` tries the event and the queue behind it move to dead-letter, in order, where
`POST /v1/subscriptions/{id}/replay` puts them back. Redirects are not followed (SSRF).

What one webhook costs, at thousands of subscriptions on one event: a claim scans every due queue
head, so it must be rare: a worker leases many subscriptions ahead (`held`) and serves
`concurrency` of them at a time; one that waits past half its lease is given back untouched. The
claim reads the queue heads of all it leased in one query, the events apart; an event is priced
and rendered once (`events.rendered`), each subscription's body is that with its id spliced in,
then signed and posted by tracer.alerts.http (a lean HTTP/1.1 client behind the SSRF guard).
Connections are kept alive and shared by every subscription of a receiver (up to `per_host` at a
time), so a receiver with many subscriptions is not dialled once per delivery, and one with many
slots' worth of work cannot take every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from tracer import __version__
from tracer.alerts import events, signing
from tracer.alerts.finisher import Finisher
from tracer.alerts.guard import UnsafeUrl, UrlPolicy, check_url, describe
from tracer.alerts.http import HttpError, WebhookClient, WebhookLimits
from tracer.alerts.prices import event_values
from tracer.alerts.sequencer import Sequencer
from tracer.alerts.slots import RankedSlots
from tracer.domain.alerts import DueDelivery, Leased
from tracer.store import deliveries as delivery_store
from tracer.store import outbox
from tracer.store.listen import Connect, Listener
from tracer.store.traces import Conn

log = logging.getLogger("tracer.alerts")

#: A delivery's own header lines: event id, type, timestamp, signature.
_HEADERS = (f"{signing.EVENT_ID_HEADER}: %d\r\n{signing.EVENT_TYPE_HEADER}: %s\r\n"
            f"{signing.TIMESTAMP_HEADER}: %d\r\n{signing.SIGNATURE_HEADER}: %s\r\n").encode()


@dataclass
class DeliverySettings:
    concurrency: int = 256  # subscriptions served at once by this worker
    # Leased, waiting for a first slot. A claim costs about its scan of every due queue head, whatever
    # its size: 10,000 subscriptions took 17 claims per block at 2,048, 6 at 16,384 (0.46 -> 0.16 s).
    held: int = 16384
    held_total: int = 16384  # leased at once in all, counting those that sent one and wait to send more
    claim_max: int = 512  # leased by a claim after idle: the first posts start while the next claim runs
    per_host: int = 64  # connections to one receiver (host, port) at once, kept alive and reused
    lease_seconds: float = 60.0
    request_timeout: float = 10.0
    connect_timeout: float = 5.0
    max_attempts: int = 12
    backoff_base: float = 2.0  # first retry after ~2 s, then 4, 8, ... (jittered)
    backoff_max: float = 3600.0  # 12 tries span about 1.5 hours with these defaults
    poll: float = 1.0  # look for due retries at least this often
    per_trace: int = 100  # deliveries of one trace queue fetched at a time
    retention_seconds: float = 7 * 86400.0  # delivered rows kept for inspection
    prune_every: float = 600.0
    claim_delay: float = 0.005  # after a slot frees, wait this long so one claim fills several
    claim_fraction: float = 0.25  # while some are held, claim again once this part of `held` is free
    rendered_events: int = 4096  # events kept rendered (a block's event fans out to every subscription)
    finish_every: float = 0.005  # delivered marks and lease releases are written in batches this often
    finish_hold: float = 0.5  # ...or held this long at most while first deliveries wait for a slot

    def __post_init__(self) -> None:
        if self.request_timeout >= self.lease_seconds / 2:
            # A request must end well inside the lease, or a second worker could take the
            # subscription over while the first is still waiting on the receiver.
            self.request_timeout = self.lease_seconds / 3


def backoff(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds before try `attempt + 1`: exponential, capped, with "equal jitter" (half fixed, half
    random) so a retry is never immediate yet receivers that failed together are spread out."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return delay / 2 + rng.uniform(0, delay / 2)


@dataclass
class DeliveryStats:
    attempts: int = 0
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    claims: int = 0
    renders: int = 0  # events rendered (each is then sent to many subscriptions)


class Deliverer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        connect: Connect | None = None,
        settings: DeliverySettings | None = None,
        url_policy: UrlPolicy | None = None,
        name: str | None = None,
        sequence: bool = True,
        seed: int | None = None,
    ) -> None:
        self.pool = pool
        self.connect = connect
        self.settings = settings or DeliverySettings()
        self.url_policy = url_policy if url_policy is not None else UrlPolicy.from_env()
        self.name = name or f"deliver:{socket.gethostname()}:{os.getpid()}:{random.randrange(1 << 30):x}"
        self.sequencer = Sequencer(pool) if sequence else None
        self.stats = DeliveryStats()
        self._rng = random.Random(seed)
        self._wake = asyncio.Event()
        self._slots = RankedSlots(self.settings.concurrency)
        self._unserved: set[int] = set()  # leased subscriptions that have not had a slot yet
        # The last claim found fewer due than it asked: the next waits for new deliveries' notice, a
        # queue given back early or the poll, not for every lease given back (a claim scans them all).
        self._drained = False
        self.client: WebhookClient | None = None
        self._finisher = Finisher(pool, self.name, self.settings.finish_every, released=self._wake.set,
                                  busy=lambda: bool(self._unserved), hold=self.settings.finish_hold)
        self._checked: dict[str, str] = {}  # URL -> "" if allowed, else why not (the policy is fixed)
        # event id -> its body rendered for every subscription (None: it cannot be rendered).
        self._bodies: OrderedDict[int, events.Rendered | None] = OrderedDict()

    # ------------------------------------------------------------------ loop

    def wake(self) -> None:
        self._more_due()

    def _more_due(self) -> None:  # new deliveries, a queue given back early: claim
        self._drained = False
        self._wake.set()

    def _on_notify(self, channel: str, _payload: str) -> None:
        if channel == outbox.EVENTS_CHANNEL:
            if self.sequencer is not None:
                self.sequencer.poke()
        else:
            self._more_due()

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        limits = WebhookLimits(timeout=s.request_timeout, connect_timeout=s.connect_timeout,
                               user_agent=f"tracer-webhooks/{__version__}")
        self.client = client = WebhookClient(self.url_policy, per_host=s.per_host, limits=limits)
        background: list[asyncio.Task[None]] = []
        try:
            if self.connect is not None:
                listener = Listener(self.connect, (outbox.EVENTS_CHANNEL, outbox.ALERTS_CHANNEL),
                                    self._on_notify, on_reconnect=self._reconnected)
                background.append(asyncio.create_task(listener.run(stop), name="tracer-deliver-listen"))
            if self.sequencer is not None:
                background.append(asyncio.create_task(self.sequencer.run(stop), name="tracer-sequencer"))
            finisher_stop = asyncio.Event()
            finisher = asyncio.create_task(self._finisher.run(finisher_stop), name="tracer-deliver-finish")
            try:
                await self._loop(stop)
            finally:
                finisher_stop.set()  # after the slots: their last marks and releases are written
                await asyncio.gather(finisher, return_exceptions=True)
                for t in background:
                    t.cancel()
                await asyncio.gather(*background, return_exceptions=True)
        finally:
            await client.close()

    def _reconnected(self) -> None:
        # Whatever was announced while we were not listening: look now.
        self._more_due()
        if self.sequencer is not None:
            self.sequencer.poke()

    async def _loop(self, stop: asyncio.Event) -> None:
        s = self.settings
        tasks: set[asyncio.Task[None]] = set()
        # Tasks report their end here instead of the loop waiting on every one of them: waiting on
        # thousands of leased subscriptions' tasks cost a callback per task per turn of the loop.
        ended: list[asyncio.Task[None]] = []

        def _ended(task: asyncio.Task[None]) -> None:
            ended.append(task)
            self._wake.set()

        last_prune = 0.0
        try:
            while not stop.is_set():
                self._wake.clear()
                # Subscriptions that sent their first delivery and wait to send more (at a lower
                # rank, see slots) do not keep the next claim's first deliveries waiting.
                held = max(s.held, s.concurrency)
                free = min(held - len(self._unserved), max(held, s.held_total) - len(tasks))
                # While slots are busy, wait for a good part of them to free: every claim scans
                # the due queue heads, so claiming a slot or two at a time would cost that scan
                # per delivery at thousands of subscriptions.
                if free > 0 and not self._drained and (not tasks or free >= max(1, int(held * s.claim_fraction))):
                    # A claim costs about its scan of the due queue heads, whatever it takes
                    # (16 ms for 512 of 10,000 due, 27 ms for 2,048): while busy, one takes all
                    # the room there is; after idle, `claim_max` so the first posts start soon.
                    size = free if tasks else min(free, max(1, s.claim_max))
                    claimed: list[Leased] = []
                    first: dict[int, list[DueDelivery]] = {}
                    try:
                        async with self.pool.acquire() as conn:
                            claimed = await delivery_store.claim_subscriptions(
                                conn, self.name, size, s.lease_seconds)
                            if claimed:
                                # One query for the whole claim, not one per subscription.
                                due = await delivery_store.due_deliveries(conn, [c.id for c in claimed], s.per_trace)
                                await self._render(conn, due)
                                for row in due:
                                    first.setdefault(row.subscription_id, []).append(row)
                    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                        log.warning("event=db_unavailable worker=%s error=%r", self.name, exc)
                        await asyncio.sleep(1.0)
                    self.stats.claims += len(claimed)
                    self._drained = len(claimed) < size
                    deadline = time.monotonic() + s.lease_seconds / 2
                    self._unserved.update(c.id for c in claimed)
                    for sub in claimed:
                        task = asyncio.create_task(self._serve(sub, first.get(sub.id, []), deadline),
                                                   name=f"tracer-deliver-{sub.id}")
                        task.add_done_callback(_ended)
                        tasks.add(task)
                if time.monotonic() - last_prune > s.prune_every:
                    last_prune = time.monotonic()
                    with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                        async with self.pool.acquire() as conn:
                            await delivery_store.prune_deliveries(conn, s.retention_seconds)
                waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._wake.wait()),
                                                     asyncio.ensure_future(stop.wait())}
                woken, _ = await asyncio.wait(waiters, timeout=s.poll, return_when=asyncio.FIRST_COMPLETED)
                if not woken:
                    self._drained = False  # the poll: retries whose time came, leases that lapsed
                for w in waiters:
                    w.cancel()
                finished, ended[:] = ended[:], []
                for t in finished:
                    if not t.cancelled() and t.exception() is not None:
                        log.error("event=deliver_task_crashed error=%r", t.exception())
                tasks.difference_update(finished)
                if finished and not stop.is_set():
                    # Let other slots free up too, so one claim fills several (a claim scans
                    # every due delivery: one per finished task would cost that scan each time).
                    await asyncio.sleep(s.claim_delay)
        finally:
            # Stopping: requests in flight finish (bounded by the request timeout); what they do
            # not mark delivered is sent again by whoever takes the subscription next.
            if tasks:
                await asyncio.wait(tasks, timeout=s.request_timeout + 1)
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ one subscription

    async def _render(self, conn: Conn, due: Sequence[DueDelivery]) -> None:
        """Render the events of `due` that are not rendered yet: read together, priced together,
        each rendered once for all its subscriptions. Bodies are kept for the latest
        `rendered_events` events (a numbered event does not change; a hop priced later than its
        delivery is not re-priced for a retry that still finds its body here)."""
        missing = sorted({d.event_id for d in due if d.event_id not in self._bodies})
        for event_id in {d.event_id for d in due} - set(missing):
            self._bodies.move_to_end(event_id)
        if not missing:
            return
        rows = await outbox.events_by_id(conn, missing)
        try:
            values = await event_values(self.pool, list(rows.values()))
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:  # unpriced beats undelivered
            log.error("event=pricing_failed events=%d error=%r", len(rows), exc)
            values = {}
        for event_id in missing:
            row = rows.get(event_id)
            body: events.Rendered | None = None
            if row is not None:
                try:
                    body = events.rendered(row, usd=values.get(row.seq))
                    self.stats.renders += 1
                except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
                    # A payload we cannot render is a bug; failing it (and in the end
                    # dead-lettering it) keeps it from wedging the queue in a crash loop.
                    log.error("event=render_failed event=%d error=%r", event_id, exc)
            self._bodies[event_id] = body
        while len(self._bodies) > self.settings.rendered_events:
            self._bodies.popitem(last=False)

    async def _serve(self, sub: Leased, rows: list[DueDelivery], deadline: float) -> None:
        """Deliver a leased subscription's due queues (`rows`: the first batch, fetched with the
        claim) until `deadline` (half the lease after the claim: a request started before it ends
        well inside the lease), then give the lease back."""
        succeeded = cut_short = False
        try:
            succeeded = await self._serve_queues(sub, rows, deadline)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("event=deliver_db_error subscription=%d error=%r", sub.id, exc)
            cut_short = True
        finally:
            self._unserved.discard(sub.id)
            self._drained &= not (cut_short or time.monotonic() >= deadline)  # given back with some due
            # Written with the next batch, not waited for: the finisher wakes the loop once the
            # lease is given back, as there may be more due (new events, a lease cut short).
            self._finisher.release(sub.id, succeeded)

    async def _serve_queues(self, sub: Leased, rows: list[DueDelivery], deadline: float) -> bool:
        """Post the queues in order until stuck or past `deadline` (a subscription that waited
        for a slot that long is given back untouched); True when any delivery succeeded.

        A slot is taken per attempt, not per subscription, and a subscription's k-th attempt of
        the lease waits for every waiting (k-1)-th (slots.RankedSlots): one with a backlog sends
        one delivery and queues again behind the others, so a block's event reaches every
        subscription before anyone's next events do (the lease keeps this subscription's queue
        ours, and in order, meanwhile)."""
        s = self.settings
        succeeded = False
        sent = 0
        while rows and time.monotonic() < deadline:
            queues: dict[int, list[DueDelivery]] = {}
            for r in rows:
                queues.setdefault(r.trace_key, []).append(r)
            progressed = False
            for queue in queues.values():
                for row in queue:
                    if not row.due:
                        break
                    await self._slots.acquire(sent)
                    try:
                        if not sent:
                            self._first_slot(sub.id)
                        sent += 1
                        if time.monotonic() >= deadline:
                            break
                        ok = await self._attempt(sub, row)
                    finally:
                        self._slots.release()
                    if not ok:
                        break  # the rest of this trace's queue waits behind it
                    progressed = succeeded = True
            if not progressed or all(len(q) < s.per_trace for q in queues.values()):
                break  # stuck, or every queue was fetched whole
            await self._finisher.flush()  # what we sent is marked before we read the queue again
            async with self.pool.acquire() as conn:
                rows = await delivery_store.due_deliveries(conn, [sub.id], s.per_trace)
                await self._render(conn, rows)
        return succeeded

    def _first_slot(self, subscription_id: int) -> None:
        self._unserved.discard(subscription_id)
        s = self.settings
        held = max(s.held, s.concurrency)
        if len(self._unserved) == held - max(1, int(held * s.claim_fraction)):
            self._wake.set()  # just room for the next claim, though no subscription may be done yet

    async def _attempt(self, sub: Leased, row: DueDelivery) -> bool:
        """One try of one delivery, recorded; True when the receiver took it."""
        self.stats.attempts += 1
        rendered = self._bodies.get(row.event_id)
        if rendered is None:
            await self._failed(sub, row, None, "cannot render event", None)
            return False
        status, error, retry_after = await self._post(sub, rendered, rendered.for_subscription(sub.id))
        if error:
            await self._failed(sub, row, status, error, retry_after)
            return False
        self._finisher.mark(sub.id, row.seq, status or 200)
        self.stats.delivered += 1
        return True

    async def _post(self, sub: Leased, event: events.Rendered, body: bytes) -> tuple[int | None, str, float | None]:
        """POST a signed body: (status, error or "", Retry-After seconds)."""
        assert self.client is not None
        stamp = int(time.time())
        headers = _HEADERS % (event.seq, event.type.encode(), stamp, signing.sign(sub.secret, stamp, body).encode())
        why = self._checked.get(sub.url)
        if why is None:
            # Checked again here, not only at creation: the operator's allow-list may have changed.
            try:
                check_url(sub.url, self.url_policy)
                why = ""
            except UnsafeUrl as exc:
                why = describe(exc)
            self._checked[sub.url] = why
        if why:
            return None, why, None
        try:
            # Redirects come back as the 3xx they are: never followed (SSRF).
            answer = await self.client.post(sub.url, body, headers)
        except (HttpError, TimeoutError, OSError, ValueError) as exc:
            return None, describe(exc), None
        if 200 <= answer.status < 300:
            return answer.status, "", None
        retry_after = _retry_after(answer.retry_after) if answer.status in (429, 503) else None
        return answer.status, f"HTTP {answer.status}", retry_after

    async def _failed(self, sub: Leased, row: DueDelivery, status: int | None, error: str,
                      retry_after: float | None) -> None:
        s = self.settings
        seq, trace_key = row.seq, row.trace_key
        attempts = row.attempts + 1
        self.stats.failed += 1
        async with self.pool.acquire() as conn:
            if attempts >= s.max_attempts:
                self.stats.dead += 1
                log.warning("event=dead_letter subscription=%d seq=%d attempts=%d error=%s", sub.id, seq, attempts,
                            error)
                await delivery_store.mark_failed(conn, sub.id, seq, trace_key, status=status, error=error,
                                                 retry_in=None)
                return
            delay = backoff(attempts, s.backoff_base, s.backoff_max, self._rng)
            if retry_after is not None:  # the receiver said when: no sooner than that (within our cap)
                delay = max(delay, min(retry_after, s.backoff_max))
            log.info("event=delivery_failed subscription=%d seq=%d attempt=%d retry_in=%.2fs error=%s", sub.id, seq,
                     attempts, delay, error)
            await delivery_store.mark_failed(conn, sub.id, seq, trace_key, status=status, error=error, retry_in=delay)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None
