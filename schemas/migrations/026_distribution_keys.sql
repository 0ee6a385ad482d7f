-- tracer schema, version 26: keys that run unchanged on Citus (issue 22, "past one Postgres").
--
-- Citus hash-distributes a table by one column and can only enforce, on one shard, a unique key
-- that contains that column and a foreign key between two colocated tables on it (or into a
-- reference table, replicated everywhere). The map of which table is distributed by what is
-- tracer/store/distribution.py; tests/integration/test_distribution_keys.py holds the schema to it.
--
--  - trace group (bigint): traces by id; jobs, hops, events, trace_chains, trace_exits, mixer_*,
--    case_traces by trace_id; deliveries by trace_key (the trace of its event).
--  - address group (text): transfers by from_addr (the sender: the probe the trace makes for
--    every address it reaches), address_coverage by address.
--  - everything else is a small reference table (labels, keys, cases, subscriptions, prices...).
--
-- Nothing here changes what a query returns on plain Postgres:
--  - widened keys stay as unique as before, since the old key alone already was: a transfer's id
--    (or its chain, tx_hash and position) fixes its sender; an event's id or seq fixes its trace;
--    a delivery's (subscription, seq) fixes its event and so its trace. The old key's columns
--    stay first, so the same index serves every lookup by them.
--  - foreign keys that cross the two groups go; what they did is now done by the code that
--    writes those rows (tracer/store/hops.py checks a batch's transfers still exist, as the key did
--    when a reorg deleted them; traces.delete_trace removes the trace's subscriptions and clears
--    watch_trace_id; subscriptions.insert_subscription locks the trace it names).
--  - deliveries keep their key into events, now on (trace, event), so deleting a trace still
--    deletes its deliveries through its events.

-- Keys from the trace group into transfers (address group) cannot be colocated.
ALTER TABLE hops DROP CONSTRAINT IF EXISTS hops_transfer_id_fkey;
ALTER TABLE mixer_deposits DROP CONSTRAINT IF EXISTS mixer_deposits_transfer_id_fkey;
ALTER TABLE mixer_links DROP CONSTRAINT IF EXISTS mixer_links_withdrawal_transfer_id_fkey;

ALTER TABLE transfers DROP CONSTRAINT IF EXISTS transfers_pkey;
ALTER TABLE transfers ADD CONSTRAINT transfers_pkey PRIMARY KEY (id, from_addr);
ALTER TABLE transfers DROP CONSTRAINT IF EXISTS transfers_chain_tx_hash_position_key;
ALTER TABLE transfers ADD CONSTRAINT transfers_tx_position_key UNIQUE (chain, tx_hash, position, from_addr);

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
