-- tracer schema, version 34: delivery queue indexes that keep their plans when the statistics lag.
--
-- deliveries is mostly delivered rows, so ANALYZE nearly always finds no pending one and the
-- planner takes the pending partial indexes for empty. Then a claim's queue read
-- (store.deliveries.due_deliveries) scanned the whole of deliveries_due once per subscription
-- (subscription_id is its second column) and a batch of delivered marks scanned it once per mark:
-- at 10,000 pending, 190 ms per claim of 512 and 160 ms per 100 marks instead of about 1 ms each.
--  - deliveries_due goes: every subscription probe now has only deliveries_chain, which leads with
--    subscription_id, and the claim (which reads every due queue head anyway) scans that in
--    subscription order, grouping without a sort. The fan-out's look for queues held back by a
--    retry scans it too, the pending rows only.
--  - deliveries_event goes: nothing reads deliveries by event since migration 029 dropped the key
--    into events, and it cost an index entry per fanned-out row and per delivered mark.
DROP INDEX IF EXISTS deliveries_due;
DROP INDEX IF EXISTS deliveries_event;
