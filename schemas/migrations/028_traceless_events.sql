-- tracer schema, version 28: events without a trace keep a distribution key.
--
-- A screening_result event (migration 024) belongs to a subscription's watched address, not to a
-- trace, so its trace_id is NULL; migration 026 put trace_id into the events' primary key (the
-- Citus distribution column must be in every unique key), which made it NOT NULL and refused
-- those events. Events are now keyed by trace_key = coalesce(trace_id, 0), the key deliveries
-- already carry for the same purpose: the trace group holds a trace's events, and the events of
-- no trace share key 0 (one shard on Citus; they are few: one per watched address's new inflow).
-- The key into traces cannot hold on Citus (it is not on the distribution column) and trace 0
-- does not exist, so delete_trace deletes a trace's events itself (their deliveries cascade).
ALTER TABLE events ADD COLUMN IF NOT EXISTS trace_key bigint;
UPDATE events SET trace_key = coalesce(trace_id, 0) WHERE trace_key IS NULL;
ALTER TABLE events ALTER COLUMN trace_key SET NOT NULL;

ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_event_fkey;
ALTER TABLE events DROP CONSTRAINT IF EXISTS events_pkey;
ALTER TABLE events DROP CONSTRAINT IF EXISTS events_trace_id_fkey;
ALTER TABLE events ALTER COLUMN trace_id DROP NOT NULL;
ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (id, trace_key);
DROP INDEX IF EXISTS events_seq;
CREATE UNIQUE INDEX IF NOT EXISTS events_seq ON events (seq, trace_key);
ALTER TABLE deliveries ADD CONSTRAINT deliveries_event_fkey
    FOREIGN KEY (trace_key, event_id) REFERENCES events (trace_key, id) ON DELETE CASCADE;
-- An event's key follows its trace: a row whose two disagree would be delivered under another
-- trace's queue.
ALTER TABLE events ADD CONSTRAINT events_trace_key CHECK (trace_key = coalesce(trace_id, 0));
