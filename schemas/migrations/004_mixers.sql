-- tracer schema, version 4: mixer pools and the links a trace infers through them.
--
-- mixer_events / mixer_coverage are chain facts (keyed by chain and pool, like transfers): each
-- pool's Deposit and Withdrawal logs, read once from the node and shared by every trace. The
-- linker needs a pool's whole history (how many notes were unspent at any moment), so coverage
-- always starts at block 0 and only grows at the top.
-- mixer_deposits / mixer_links are trace-scoped (keyed by trace_id, like hops): each flagged
-- deposit with its anonymity set, and the withdrawals it may have gone to, scored 0-1 with reasons.

CREATE TABLE IF NOT EXISTS mixer_events (
    chain         text    NOT NULL,
    pool          text    NOT NULL,
    block_number  bigint  NOT NULL,
    log_index     integer NOT NULL,
    block_time    bigint  NOT NULL,
    tx_hash       text    NOT NULL,
    kind          text    NOT NULL CHECK (kind IN ('deposit', 'withdrawal')),
    note          text    NOT NULL,               -- commitment (deposit) or nullifier hash (withdrawal)
    leaf_index    bigint,
    recipient     text,
    relayer       text,
    fee           numeric(78, 0),
    gas_price     numeric(78, 0),                 -- of the transaction, once fetched (NULL: not yet)
    PRIMARY KEY (chain, pool, block_number, log_index)
);
CREATE INDEX IF NOT EXISTS mixer_events_tx ON mixer_events (chain, tx_hash);

CREATE TABLE IF NOT EXISTS mixer_coverage (
    chain         text   NOT NULL,
    pool          text   NOT NULL,
    to_block      bigint NOT NULL,               -- events of blocks 0..to_block are stored
    PRIMARY KEY (chain, pool)
);

CREATE TABLE IF NOT EXISTS mixer_deposits (
    trace_id      bigint  NOT NULL REFERENCES traces (id) ON DELETE CASCADE,
    transfer_id   bigint  NOT NULL REFERENCES transfers (id),   -- the deposit hop's transfer
    pool          text    NOT NULL,
    asset         text    NOT NULL,
    denomination  numeric(78, 0) NOT NULL,
    depositor     text    NOT NULL,
    flagged       numeric(78, 0) NOT NULL,       -- flagged part of the deposit
    anonymity_set integer NOT NULL,              -- notes unspent in the pool right after it
    candidates    integer NOT NULL,              -- withdrawals the linker weighed
    status        text    NOT NULL CHECK (status IN ('linked', 'unlinked')),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trace_id, transfer_id)
);

CREATE TABLE IF NOT EXISTS mixer_links (
    trace_id               bigint  NOT NULL REFERENCES traces (id) ON DELETE CASCADE,
    deposit_transfer_id    bigint  NOT NULL,
    withdrawal_tx          text    NOT NULL,
    withdrawal_log_index   integer NOT NULL,
    withdrawal_transfer_id bigint REFERENCES transfers (id),   -- pool -> recipient, when fetched
    withdrawal_block       bigint  NOT NULL,
    withdrawal_time        bigint  NOT NULL,
    recipient              text    NOT NULL,
    relayer                text,
    fee                    numeric(78, 0) NOT NULL DEFAULT 0,
    withdrawn              numeric(78, 0),               -- what the recipient got
    confidence             double precision NOT NULL,
    carried                numeric(78, 0) NOT NULL DEFAULT 0,   -- flagged amount the link carries if followed
    status                 text    NOT NULL CHECK (status IN ('followed', 'candidate')),
    reasons                jsonb   NOT NULL DEFAULT '[]'::jsonb, -- [{heuristic, detail, weight}]
    updated_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trace_id, deposit_transfer_id, withdrawal_tx, withdrawal_log_index),
    FOREIGN KEY (trace_id, deposit_transfer_id) REFERENCES mixer_deposits (trace_id, transfer_id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS mixer_links_withdrawal ON mixer_links (trace_id, withdrawal_transfer_id);
