-- tracer schema, version 5: alerting (subscriptions, webhook deliveries, live following).
--
-- Event order. `events.id` comes from a sequence, so ids are handed out in insert order, not in
-- commit order: a worker's batch can take ids 10..12 and commit after another batch that took
-- 13..15. A reader that remembers "the last id I saw" would skip 10..12 forever. So events get a
-- second number, `seq`, from the sequencer (tracer.alerts.sequencer): it numbers committed,
-- unnumbered events under a row lock on alert_state, one round at a time, so a reader that has
-- seen seq N has seen every event numbered up to N. seq is the public event id (webhook `id`,
-- SSE `id:`, `Last-Event-ID`); the unnumbered events are the sequencer's queue.
--
-- Distribution intent (Citus): subscriptions and alert_state are small reference tables;
-- deliveries are keyed by subscription_id; chain_blocks by chain.

ALTER TABLE events ADD COLUMN IF NOT EXISTS seq bigint;
CREATE INDEX IF NOT EXISTS events_unsequenced ON events (id) WHERE seq IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS events_seq ON events (seq);
CREATE INDEX IF NOT EXISTS events_trace_seq ON events (trace_id, seq) WHERE seq IS NOT NULL;

-- One row: the last seq handed out. Its row lock makes sequencing rounds one at a time.
CREATE TABLE IF NOT EXISTS alert_state (
    id            integer PRIMARY KEY CHECK (id = 1),
    last_seq      bigint  NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
INSERT INTO alert_state (id, last_seq) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;

-- A subscription is a filter over events plus a way to deliver them. Filters that are NULL match
-- everything. `watch_trace_id` is the trace a watchlist subscription started from its addresses.
-- The webhook secret is kept as given: signing needs it (it is never shown again after creation).
CREATE TABLE IF NOT EXISTS subscriptions (
    id              bigserial PRIMARY KEY,
    name            text        NOT NULL,
    delivery        text        NOT NULL CHECK (delivery IN ('webhook', 'stream')),
    url             text,
    secret          text,
    chain           text        NOT NULL DEFAULT 'ethereum',
    trace_id        bigint      REFERENCES traces (id) ON DELETE CASCADE,
    addresses       text[],
    watch           boolean     NOT NULL DEFAULT false,
    watch_trace_id  bigint      REFERENCES traces (id) ON DELETE SET NULL,
    categories      text[],
    entities        text[],
    event_types     text[],
    min_amount      jsonb,                          -- asset -> raw amount (decimal string)
    created_by      text,
    api_key_id      bigint      REFERENCES api_keys (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    start_seq       bigint      NOT NULL DEFAULT 0,     -- events after this seq are the subscription's
    -- delivery bookkeeping: which worker holds the subscription's queue (SKIP LOCKED + lease)
    lease_until     timestamptz,
    leased_by       text,
    last_success_at timestamptz,
    last_failure_at timestamptz,
    last_error      text,
    CHECK ((delivery = 'webhook') = (url IS NOT NULL AND secret IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS subscriptions_trace ON subscriptions (trace_id) WHERE trace_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS subscriptions_watch ON subscriptions (watch_trace_id) WHERE watch_trace_id IS NOT NULL;

-- One row per (webhook subscription, event): the outbox fanned out. A queue per subscription,
-- delivered in seq order per trace (trace_key; 0 for events without a trace).
CREATE TABLE IF NOT EXISTS deliveries (
    subscription_id bigint      NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    seq             bigint      NOT NULL,
    event_id        bigint      NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    trace_key       bigint      NOT NULL,
    state           text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_at         timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription_id, seq)
);
-- The delivery workers' claim: which subscriptions have something due.
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_at, subscription_id) WHERE state = 'pending';
-- A subscription's queue, per trace, in order.
CREATE INDEX IF NOT EXISTS deliveries_chain ON deliveries (subscription_id, trace_key, seq) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_dead ON deliveries (subscription_id, seq) WHERE state = 'dead';
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries (event_id);

-- Hashes of the blocks the monitor has followed, per chain: a stored hash that no longer matches
-- the node's is a reorg, and the highest block that still matches is where the chains forked.
CREATE TABLE IF NOT EXISTS chain_blocks (
    chain         text   NOT NULL,
    number        bigint NOT NULL,
    hash          text   NOT NULL,
    seen_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, number)
);
