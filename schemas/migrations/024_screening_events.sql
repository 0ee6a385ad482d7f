-- tracer schema, version 24: screening results for watched addresses (issue 20).
--
-- A subscription on addresses with `screen_depth` gets a `screening_result` event whenever a
-- watched address receives new money, once the inflow is confirmed: the address's direct labels
-- and its indirect exposure within screen_depth hops back (what GET /v1/screen?depth=N answers).
-- The monitor keeps, per subscription, the last block it screened new inflows up to
-- (screened_to: NULL until its first look, which starts from the confirmed head: only money that
-- arrives after subscribing is screened).
ALTER TABLE subscriptions ADD COLUMN IF NOT EXISTS screen_depth integer CHECK (screen_depth BETWEEN 1 AND 10);
ALTER TABLE subscriptions ADD COLUMN IF NOT EXISTS screened_to bigint;
-- Blocks an inflow waits before it is screened (the body's `confirmations`, as for a watchlist).
ALTER TABLE subscriptions ADD COLUMN IF NOT EXISTS screen_confirmations integer NOT NULL DEFAULT 12
    CHECK (screen_confirmations >= 0);
