-- tracer schema, version 6: one trace, several chains.
--
-- A bridge deposit whose destination chain is configured continues the trace there: the payout
-- becomes a hop on the destination chain and the recipient a job of that chain. Addresses are
-- only unique per chain (the same EOA exists on every EVM chain), so everything a trace keys by
-- address gains the chain:
--   jobs   (trace_id, address, chain) is the key now;
--   hops   carry the chain of their transfer (hops are keyed by transfer id, already unique across
--          chains, but read by address).
-- Rows written without a chain (older writers, the bench's bulk loads) get the trace's own chain
-- from a BEFORE INSERT trigger, so single-chain behaviour is unchanged.
-- trace_chains holds the block window of each chain a trace continued into; the trace's own
-- chain keeps its window in traces (from_block/to_block, extended by the monitor when watching).
-- mixer_deposits/mixer_links are keyed by transfer id (chain-unique) and need nothing.

CREATE OR REPLACE FUNCTION tracer_trace_chain() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.chain := (SELECT chain FROM traces WHERE id = NEW.trace_id);
    RETURN NEW;
END $$;

ALTER TABLE jobs ADD COLUMN IF NOT EXISTS chain text;
UPDATE jobs j SET chain = t.chain FROM traces t WHERE t.id = j.trace_id AND j.chain IS NULL;
ALTER TABLE jobs ALTER COLUMN chain SET NOT NULL;
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_pkey;
-- (trace_id, address) leads: lookups by address alone keep their index prefix.
ALTER TABLE jobs ADD CONSTRAINT jobs_pkey PRIMARY KEY (trace_id, address, chain);
DROP TRIGGER IF EXISTS jobs_chain ON jobs;
CREATE TRIGGER jobs_chain BEFORE INSERT ON jobs FOR EACH ROW WHEN (NEW.chain IS NULL)
    EXECUTE FUNCTION tracer_trace_chain();

ALTER TABLE hops ADD COLUMN IF NOT EXISTS chain text;
UPDATE hops h SET chain = t.chain FROM traces t WHERE t.id = h.trace_id AND h.chain IS NULL;
ALTER TABLE hops ALTER COLUMN chain SET NOT NULL;
DROP TRIGGER IF EXISTS hops_chain ON hops;
CREATE TRIGGER hops_chain BEFORE INSERT ON hops FOR EACH ROW WHEN (NEW.chain IS NULL)
    EXECUTE FUNCTION tracer_trace_chain();
-- The exits aggregate groups by chain too: keep it an index-only scan.
DROP INDEX IF EXISTS hops_exit_cover;
CREATE INDEX IF NOT EXISTS hops_exit_cover ON hops (trace_id, to_addr, asset)
    INCLUDE (amount, from_addr, depth, block_number, transfer_id, chain) WHERE status = 'exit';

CREATE TABLE IF NOT EXISTS trace_chains (
    trace_id      bigint  NOT NULL REFERENCES traces (id) ON DELETE CASCADE,
    chain         text    NOT NULL,
    from_block    bigint  NOT NULL,   -- the block at the earliest bridge deposit's time on this chain
    to_block      bigint  NOT NULL,   -- this chain's head when the trace first continued here
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trace_id, chain)
);
-- Why an inferred hop exists, when more than its reason says it (a bridge payout: the deposit on
-- the other chain, the protocol, how the payout was matched and how sure that is).
ALTER TABLE hops ADD COLUMN IF NOT EXISTS evidence jsonb;

-- Hops a trace holds, kept by the worker's commit (commits of a trace are serialised, so this
-- costs no contention): policy.max_hops is checked against it without counting hops per batch.
-- Reorg retraction deletes hops without lowering it: a watching trace may stop a little early.
ALTER TABLE traces ADD COLUMN IF NOT EXISTS hop_count bigint NOT NULL DEFAULT 0;
ALTER TABLE traces ADD COLUMN IF NOT EXISTS hop_limit_reached boolean NOT NULL DEFAULT false;
UPDATE traces t SET hop_count = (SELECT count(*) FROM hops h WHERE h.trace_id = t.id)
    WHERE EXISTS (SELECT 1 FROM hops h WHERE h.trace_id = t.id);
