-- Hashes of recent blocks as traces first read them (tracer/nodes.py ReorgGuard). A read near the
-- head checks the node's hash of the block it reads up to against this record, before and after:
-- a different hash means the chain reorganised under what traces already read, so the reads past
-- the fork are retracted and the traces in their historical pass fail with the reason, instead of
-- recording hops of blocks that no longer exist. Only blocks within the guard depth of the head
-- are recorded (deeper ones are final), and older rows are pruned.
CREATE TABLE IF NOT EXISTS block_pins (
    chain         text        NOT NULL,
    number        bigint      NOT NULL,
    hash          text        NOT NULL,
    seen_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, number)
);
