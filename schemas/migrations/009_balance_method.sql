-- Nodes without historical state (full nodes, Anvil by default) answer no balance at old blocks;
-- the worker then derives prior balances from the address's history (tracer/engine/balances.py).
-- Each trace says which way its prior balances were read, and why.
ALTER TABLE traces ADD COLUMN IF NOT EXISTS balance_method text;          -- node_state | derived_from_history | not_needed
ALTER TABLE traces ADD COLUMN IF NOT EXISTS balance_method_reason text;

-- What each node answered to the first-contact probe (a balance at a block far below its head),
-- per chain name and node (URL without credentials): several nodes can serve one chain name.
CREATE TABLE IF NOT EXISTS node_state (
    chain             text        NOT NULL,
    node              text        NOT NULL,
    historical_state  boolean     NOT NULL,
    probe_block       bigint      NOT NULL,
    head              bigint      NOT NULL,
    detail            text        NOT NULL,
    checked_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, node)
);
