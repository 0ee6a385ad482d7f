-- tracer schema, version 29: a fan-out checks no foreign key per delivery (issue 22).
--
-- A block's event fans out to every matching webhook subscription in one INSERT ... SELECT
-- (store.outbox.sequence_round). Its two foreign keys fired a trigger and a FOR KEY SHARE probe
-- per new row, into subscriptions and into events, to check rows the same statement had just
-- read: at 10,000 subscriptions, 60 of its 115 ms. What the keys did is done by the store:
--   - their ON DELETE CASCADE: delete_subscription and delete_trace delete the deliveries.
--   - no delivery of a deleted subscription: those two take alert_state's row FOR SHARE before
--     deleting subscriptions. A round holds it FOR UPDATE, so a deletion waits for the round in
--     progress, and the next round waits for the deletion's commit and then no longer sees it.
--   - no delivery of a deleted event: a round numbers the events it fans out (UPDATE ... SET seq
--     under the same lock), and delete_trace deletes its events and their deliveries under it.
ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_subscription_id_fkey;
ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_event_fkey;
