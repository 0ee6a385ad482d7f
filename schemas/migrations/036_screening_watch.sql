-- tracer schema, version 36: the monitor's look for screening subscriptions reads only those.
--
-- Each monitor step (every poll, and now every pushed head) asks for the subscriptions of its
-- chain that screen inflows (store.screening.screening_watches). With no index for it that read
-- every subscription row: 3 ms per step at 10,000 webhook subscriptions, none of them screening,
-- Postgres CPU taken from the deliveries of the block the step had just confirmed.
-- Partial on what the query asks, so webhook subscriptions cost it nothing; neither lease column is
-- in it, so the delivery workers' lease updates stay heap-only (migration 035).
CREATE INDEX IF NOT EXISTS subscriptions_screening ON subscriptions (chain, id)
    WHERE screen_depth IS NOT NULL AND addresses IS NOT NULL;
