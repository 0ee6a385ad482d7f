-- USD prices of assets at blocks or days (tracer/engine/pricing.py), and the price feeds registered
-- for assets the shipped list (tracer/chains/feeds.py) does not know. Values are computed when read:
-- hops keep their coin amounts; a hop's dollars come from the price of its asset at its block.
CREATE TABLE IF NOT EXISTS price_feeds (
    chain       text        NOT NULL,
    asset       text        NOT NULL,        -- 'native' or a token address
    feed_chain  text        NOT NULL,        -- the chain the aggregator lives on
    feed        text        NOT NULL,
    pair        text        NOT NULL,
    provenance  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, asset)
);

CREATE TABLE IF NOT EXISTS prices (
    id           bigserial   PRIMARY KEY,
    chain        text        NOT NULL,
    asset        text        NOT NULL,
    block_number bigint,                      -- the asset chain's block the price is for
    block_time   bigint,                      -- that block's time: a block number names one block per chain
                                              -- (name), but test and dev chains reuse names
    day          date,                        -- a file price by date: the whole UTC day
    time         bigint,                      -- unix seconds the price stands for (feed: round's updatedAt)
    usd          numeric,                     -- NULL: unknown, `note` says why (never 0)
    source       text        NOT NULL CHECK (source IN ('feed', 'par', 'file', 'unavailable')),
    feed         text,
    round_id     numeric(30, 0),
    file         text,
    note         text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (block_number IS NOT NULL OR day IS NOT NULL),
    CHECK (usd IS NULL OR usd > 0)
);
CREATE UNIQUE INDEX IF NOT EXISTS prices_key
    ON prices (chain, asset, source, coalesce(block_number, -1), coalesce(block_time, -1),
               coalesce(day, DATE '1970-01-01'));
CREATE INDEX IF NOT EXISTS prices_block ON prices (chain, asset, block_number);
