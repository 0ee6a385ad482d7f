-- tracer schema, version 26: keys that run unchanged on Citus (issue 22, "past one Postgres").
--
-- Citus hash-distributes a table by one column and can only enforce, on one shard, a unique key
-- that contains that column and a foreign key between two colocated tables on it (or into a
-- reference table, replicated everywhere). The map of which table is distributed by what is
-- tracer/store/distribution.py; tests/integration/test_distribution_keys.py holds the schema to it.
--
--  - trace group (bigint): traces by id; jobs, hops, events, trace_chains, trace_exits, mixer_*,
--    case_traces by trace_id; deliveries by trace_key (the trace of its event).
--  - transfers by tx_hash (text): spread evenly whatever an address's volume, a transaction's
--    transfers (a swap's legs) on one node, and their natural key (chain, tx_hash, position)
--    unchanged. Keyed by sender, the unique key would have had to take from_addr, and the
--    planner then probed addresses through it instead of transfers_from (another row order).
--  - address_coverage by address.
--  - everything else is a reference table (labels, keys, cases, subscriptions, prices...): small,
--    or read by joins on every node.
--
-- Nothing here changes what a query returns on plain Postgres:
--  - widened keys stay as unique as before, since the old key alone already was: a transfer's id
--    fixes its transaction, an event's id or seq its trace, a delivery's (subscription, seq) its
--    event and so its trace. The old key's columns stay first, so the same index serves every
--    lookup by them, and no index gains a column an address probe could be planned through.
--  - foreign keys that cross groups go; what they did is now done by the code that writes those
--    rows: transfers.require_stored before hops and mixer rows are written (a batch that read
--    transfers a reorg has since deleted still fails), traces.delete_trace removes the trace's
--    subscriptions and clears watch_trace_id, subscriptions.insert_subscription locks the traces
--    it names FOR KEY SHARE, as the keys did.
--  - deliveries keep their key into events, now on (trace, event), so deleting a trace still
--    deletes its deliveries through its events.

-- Keys from the trace group into transfers (by transaction) cannot be colocated.
ALTER TABLE hops DROP CONSTRAINT IF EXISTS hops_transfer_id_fkey;
ALTER TABLE mixer_deposits DROP CONSTRAINT IF EXISTS mixer_deposits_transfer_id_fkey;
ALTER TABLE mixer_links DROP CONSTRAINT IF EXISTS mixer_links_withdrawal_transfer_id_fkey;

ALTER TABLE transfers DROP CONSTRAINT IF EXISTS transfers_pkey;
ALTER TABLE transfers ADD CONSTRAINT transfers_pkey PRIMARY KEY (id, tx_hash);

-- Subscriptions are a reference table: a reference table cannot hold a key into a distributed one.
ALTER TABLE subscriptions DROP CONSTRAINT IF EXISTS subscriptions_trace_id_fkey;
ALTER TABLE subscriptions DROP CONSTRAINT IF EXISTS subscriptions_watch_trace_id_fkey;

-- Events by trace: the key (and seq's) carry the trace; deliveries refer to (trace, event).
ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_event_id_fkey;
ALTER TABLE events DROP CONSTRAINT IF EXISTS events_pkey;
ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (id, trace_id);
DROP INDEX IF EXISTS events_seq;
CREATE UNIQUE INDEX IF NOT EXISTS events_seq ON events (seq, trace_id);

ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_pkey;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_pkey PRIMARY KEY (subscription_id, seq, trace_key);
ALTER TABLE deliveries ADD CONSTRAINT deliveries_event_fkey
    FOREIGN KEY (trace_key, event_id) REFERENCES events (trace_id, id) ON DELETE CASCADE;
