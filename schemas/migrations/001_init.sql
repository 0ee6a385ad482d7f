-- tracer schema, version 1.
-- Distribution intent (for Citus, when one server is not enough): trace-scoped tables
-- (traces, hops, jobs, events) are keyed by trace_id; chain facts (transfers, labels,
-- address_coverage) by (chain, address). Hot paths never join across the two keys.

CREATE TABLE IF NOT EXISTS traces (
    id            bigserial PRIMARY KEY,
    chain         text        NOT NULL,
    seeds         text[]      NOT NULL,
    policy        jsonb       NOT NULL,
    label         text,
    status        text        NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled', 'watching')),
    error         text,
    from_block    bigint      NOT NULL,
    to_block      bigint      NOT NULL,
    totals        jsonb       NOT NULL DEFAULT '{}'::jsonb,   -- asset -> raw amount leaving the seeds
    created_by    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS traces_status ON traces (status, id);
CREATE INDEX IF NOT EXISTS traces_seeds ON traces USING gin (seeds);

-- Chain facts, shared by every trace. amount is the raw integer (wei, token base units).
CREATE TABLE IF NOT EXISTS transfers (
    id            bigserial PRIMARY KEY,
    chain         text     NOT NULL,
    tx_hash       text     NOT NULL,
    position      text     NOT NULL,
    block_number  bigint   NOT NULL,
    block_time    bigint   NOT NULL,
    tx_index      integer  NOT NULL,
    from_addr     text     NOT NULL,
    to_addr       text     NOT NULL,
    asset         text     NOT NULL,
    amount        numeric(78, 0) NOT NULL,
    kind          text     NOT NULL CHECK (kind IN ('native', 'internal', 'token')),
    decimals      smallint,
    symbol        text,
    UNIQUE (chain, tx_hash, position)
);
CREATE INDEX IF NOT EXISTS transfers_from ON transfers (chain, from_addr, block_number);
CREATE INDEX IF NOT EXISTS transfers_to ON transfers (chain, to_addr, block_number);

-- Which block ranges of an address's transfers (both directions) are already in `transfers`,
-- so re-processing an address never asks the node twice.
CREATE TABLE IF NOT EXISTS address_coverage (
    chain         text   NOT NULL,
    address       text   NOT NULL,
    from_block    bigint NOT NULL,
    to_block      bigint NOT NULL,
    PRIMARY KEY (chain, address)
);

-- One row per (trace, address) reached: the unit of work (claimed with SKIP LOCKED and a
-- lease) and the node's verdict once processed (followed, exit, stopped and why).
CREATE TABLE IF NOT EXISTS jobs (
    trace_id      bigint  NOT NULL REFERENCES traces (id) ON DELETE CASCADE,
    address       text    NOT NULL,             -- '' for the trace's start job
    kind          text    NOT NULL DEFAULT 'address' CHECK (kind IN ('start', 'address')),
    depth         integer NOT NULL,
    is_seed       boolean NOT NULL DEFAULT false,
    state         text    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done')),
    generation    integer NOT NULL DEFAULT 0,   -- bumped when new taint arrives; a run that saw an older one re-queues
    lease_until   timestamptz,                  -- while running: the lease; while pending: not before
    worker        text,
    attempts      integer NOT NULL DEFAULT 0,
    role          text,      -- followed | exit | stopped
    reason        text,      -- why it is an exit or why it stopped
    entity        text,
    category      text,
    evidence      jsonb,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trace_id, address)
);
CREATE INDEX IF NOT EXISTS jobs_claim ON jobs (state, lease_until) WHERE state <> 'done';

-- A transfer as seen by one trace, with the flagged amount it carries.
CREATE TABLE IF NOT EXISTS hops (
    trace_id      bigint  NOT NULL REFERENCES traces (id) ON DELETE CASCADE,
    transfer_id   bigint  NOT NULL REFERENCES transfers (id),
    from_addr     text    NOT NULL,
    to_addr       text    NOT NULL,
    asset         text    NOT NULL,
    block_number  bigint  NOT NULL,
    depth         integer NOT NULL,
    amount        numeric(78, 0) NOT NULL,       -- flagged part of the transfer, raw units
    share         double precision NOT NULL,     -- amount / transfer amount
    kind          text    NOT NULL,
    status        text    NOT NULL,              -- followed | exit | stopped
    reason        text    NOT NULL,              -- why followed or why it stopped
    parents       bigint[] NOT NULL DEFAULT '{}', -- transfer ids of the tainted inflows it draws on
    confidence    double precision NOT NULL DEFAULT 1.0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trace_id, transfer_id)
);
CREATE INDEX IF NOT EXISTS hops_to ON hops (trace_id, to_addr);
CREATE INDEX IF NOT EXISTS hops_from ON hops (trace_id, from_addr);
CREATE INDEX IF NOT EXISTS hops_block ON hops (trace_id, block_number, transfer_id);
CREATE INDEX IF NOT EXISTS hops_amount ON hops (trace_id, amount DESC, transfer_id);
CREATE INDEX IF NOT EXISTS hops_exits ON hops (trace_id, to_addr) WHERE status = 'exit';

CREATE TABLE IF NOT EXISTS labels (
    id            bigserial PRIMARY KEY,
    chain         text NOT NULL,
    address       text NOT NULL,
    entity        text NOT NULL,
    category      text NOT NULL,
    source        text NOT NULL,
    confidence    double precision NOT NULL DEFAULT 1.0,
    valid_from    timestamptz,
    valid_to      timestamptz,
    program       text,
    evidence      jsonb,
    created_by    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (chain, address, source, entity, category)
);
CREATE INDEX IF NOT EXISTS labels_address ON labels (chain, address);

-- Outbox: written in the same transaction as the hops they describe.
CREATE TABLE IF NOT EXISTS events (
    id            bigserial PRIMARY KEY,
    trace_id      bigint REFERENCES traces (id) ON DELETE CASCADE,
    type          text   NOT NULL,
    payload       jsonb  NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS events_trace ON events (trace_id, id);
