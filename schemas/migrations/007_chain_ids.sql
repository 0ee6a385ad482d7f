-- The chain id each chain name stands for, recorded the first time a node for that name is seen.
-- A worker, API or monitor whose node for a name reports another id refuses to start: a node of
-- another chain (a testnet, an L2 behind the wrong URL) would otherwise mix foreign transfers into
-- the shared `transfers` cache and into every trace on that name.
CREATE TABLE IF NOT EXISTS chain_ids (
    chain         text        PRIMARY KEY,
    chain_id      bigint      NOT NULL,
    first_node    text,                       -- the node it was first seen on (URL without credentials)
    first_seen    timestamptz NOT NULL DEFAULT now()
);
