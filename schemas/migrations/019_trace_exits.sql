-- File prices by UTC day (no block): a page of hops looks up the days of its hops. Without this
-- index the generic plan of that lookup (asyncpg prepares statements) went through prices_key on
-- (chain, asset) alone and read every stored price of the asset for each day asked.
CREATE INDEX IF NOT EXISTS prices_day ON prices (chain, asset, day) WHERE block_number IS NULL;

-- Every off-ramp a trace reached, one row per (chain, address, asset): the sums of its exit hops,
-- kept by the store functions that write hops (tracer/store/hops.py, tracer/store/alerts.py) in
-- the same transaction. GET /v1/traces/{id}/exits of a running trace reads these rows instead of
-- aggregating the trace's exit hops on every request. Keyed by trace_id first (the distribution
-- column, like hops).
CREATE TABLE IF NOT EXISTS trace_exits (
    trace_id     bigint  NOT NULL REFERENCES traces (id) ON DELETE CASCADE,
    chain        text    NOT NULL,
    address      text    NOT NULL,
    asset        text    NOT NULL,
    amount       numeric(78, 0) NOT NULL,   -- sum of the exit hops' amounts, raw units
    hops         integer NOT NULL,
    senders      integer NOT NULL,          -- distinct senders of those hops
    depth        integer NOT NULL,          -- the smallest depth of those hops
    first_block  bigint  NOT NULL,
    last_block   bigint  NOT NULL,
    PRIMARY KEY (trace_id, chain, address, asset)
);
CREATE INDEX IF NOT EXISTS trace_exits_amount ON trace_exits (trace_id, amount DESC, address, asset);

-- Exits of the traces stored before this table.
INSERT INTO trace_exits (trace_id, chain, address, asset, amount, hops, senders, depth, first_block, last_block)
SELECT trace_id, chain, to_addr, asset, sum(amount), count(*), count(DISTINCT from_addr), min(depth),
       min(block_number), max(block_number)
FROM hops WHERE status = 'exit'
GROUP BY trace_id, chain, to_addr, asset
ON CONFLICT DO NOTHING;
