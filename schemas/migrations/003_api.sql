-- tracer schema, version 3: the investigator API.
--
-- API keys are stored as sha256 of their secret part (keys are 256-bit random, so a plain hash
-- is as good as a slow one and lets every request be checked in microseconds). `key_id` is the
-- public half printed in the key itself (trk_<key_id>_<secret>): the lookup goes by key_id and
-- the hash is compared in constant time, so response timing never depends on a secret.
-- Distribution intent (Citus): api_keys, api_secrets and audit_log are small reference tables.

CREATE TABLE IF NOT EXISTS api_keys (
    id            bigserial PRIMARY KEY,
    key_id        text        NOT NULL UNIQUE,
    secret_sha256 bytea       NOT NULL,
    name          text        NOT NULL,
    scopes        text[]      NOT NULL CHECK (scopes <@ ARRAY['read', 'trace', 'admin']::text[]
                                              AND cardinality(scopes) > 0),
    created_by    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX IF NOT EXISTS api_keys_active ON api_keys (id) WHERE revoked_at IS NULL;

-- Server-wide secrets shared by every API process on this database (the HMAC key signing
-- pagination cursors), so a cursor from one replica is accepted by another and survives restarts.
CREATE TABLE IF NOT EXISTS api_secrets (
    name          text        PRIMARY KEY,
    value         bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Who started, labelled, cancelled or deleted what. Append-only; target is free text such as
-- "trace:42" or "address:ethereum:0x…" because targets outlive the rows they name (a deleted trace).
CREATE TABLE IF NOT EXISTS audit_log (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    actor         text        NOT NULL,          -- key name, "open" (no keys configured) or "cli"
    api_key_id    bigint      REFERENCES api_keys (id) ON DELETE SET NULL,
    action        text        NOT NULL,          -- trace.create, trace.cancel, trace.delete, label.create, key.*
    target        text        NOT NULL,
    details       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    remote        text
);
CREATE INDEX IF NOT EXISTS audit_log_target ON audit_log (target, id);

-- GET /v1/addresses/{chain}/{address}: the traces an address appears in. jobs has one row per
-- (trace, address reached), far fewer than hops, so this index is cheap for the workers to keep.
CREATE INDEX IF NOT EXISTS jobs_address ON jobs (address, trace_id);
-- GET /v1/traces/{id}/exits: exit hops are a small share of a trace but lie scattered over its
-- heap pages; this partial covering index answers the exits aggregate with an index-only scan.
CREATE INDEX IF NOT EXISTS hops_exit_cover ON hops (trace_id, to_addr, asset)
    INCLUDE (amount, from_addr, depth, block_number, transfer_id) WHERE status = 'exit';
-- GET /v1/traces/{id}/hops?depth=N: depth grows with block height in any trace, so walking
-- hops_block and filtering on depth reads most of a big trace before it finds a page; this index
-- serves the depth filter in block order directly.
CREATE INDEX IF NOT EXISTS hops_depth ON hops (trace_id, depth, block_number, transfer_id);
-- GET /v1/traces?label=…: exact-match filter, newest first.
CREATE INDEX IF NOT EXISTS traces_label ON traces (label, id) WHERE label IS NOT NULL;
