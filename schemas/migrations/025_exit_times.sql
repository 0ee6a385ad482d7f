-- Exits of a running trace without a lookup per exit: the block times of an exit's first and last
-- block and its token's decimals and symbol are kept in its trace_exits row once known (by
-- tracer.store.hops.refresh_exits when the row is written, and by tracer.store.described when the
-- worker fills a transfer's time or token name in later). NULL (or a negative time, the transfers'
-- "not read yet"): not known when the row was written; the exits query looks those up as before.
ALTER TABLE trace_exits ADD COLUMN IF NOT EXISTS first_time bigint;
ALTER TABLE trace_exits ADD COLUMN IF NOT EXISTS last_time bigint;
ALTER TABLE trace_exits ADD COLUMN IF NOT EXISTS decimals integer;
ALTER TABLE trace_exits ADD COLUMN IF NOT EXISTS symbol text;
-- The rows a described transfer may complete (any trace's exits of its recipient).
CREATE INDEX IF NOT EXISTS trace_exits_address ON trace_exits (chain, address, asset);

UPDATE trace_exits e SET
    first_time = (SELECT t.block_time FROM transfers t
                  WHERE t.chain = e.chain AND t.to_addr = e.address AND t.block_number = e.first_block
                    AND t.asset = e.asset ORDER BY t.block_time < 0, t.symbol IS NULL LIMIT 1),
    decimals = (SELECT t.decimals FROM transfers t
                WHERE t.chain = e.chain AND t.to_addr = e.address AND t.block_number = e.first_block
                  AND t.asset = e.asset ORDER BY t.block_time < 0, t.symbol IS NULL LIMIT 1),
    symbol = (SELECT t.symbol FROM transfers t
              WHERE t.chain = e.chain AND t.to_addr = e.address AND t.block_number = e.first_block
                AND t.asset = e.asset ORDER BY t.block_time < 0, t.symbol IS NULL LIMIT 1),
    last_time = (SELECT t.block_time FROM transfers t
                 WHERE t.chain = e.chain AND t.to_addr = e.address AND t.block_number = e.last_block
                   AND t.asset = e.asset ORDER BY t.block_time < 0 LIMIT 1)
WHERE e.first_time IS NULL;
