-- tracer schema, version 18: subscriptions filter hop events on their dollars (issue 19's `min_usd`).
--
-- While any subscription sets min_usd, a hop event's dollars are written into its payload (`usd`,
-- a decimal string) by the worker that commits it, from the prices stored then
-- (tracer/engine/event_usd.py). A hop event still unpriced at fan-out is delivered: an unknown
-- price is no reason to keep money from the receiver.
ALTER TABLE subscriptions ADD COLUMN IF NOT EXISTS min_usd numeric CHECK (min_usd >= 0);
