-- tracer schema, version 2: label provenance and history.
--
-- A row of `labels` is one claim (chain, address, source, entity, category) over one validity
-- interval [valid_from, valid_to). A sanctions list that drops an address closes the interval
-- (valid_to = the list's date) instead of deleting the row; a list that adds it back opens a new
-- row. So "was it listed when this transfer happened" is a range test on one table, and the
-- unique key therefore includes valid_from (NULL = listed since before we know).

ALTER TABLE labels ADD COLUMN IF NOT EXISTS scope text;        -- the complete list this row is reconciled against
ALTER TABLE labels ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();

ALTER TABLE labels DROP CONSTRAINT IF EXISTS labels_chain_address_source_entity_category_key;
CREATE UNIQUE INDEX IF NOT EXISTS labels_claim_interval
    ON labels (chain, address, source, entity, category, valid_from) NULLS NOT DISTINCT;
CREATE INDEX IF NOT EXISTS labels_scope ON labels (scope) WHERE scope IS NOT NULL;

-- One row per file imported (or default set loaded): what it was, its hash and the list's date.
CREATE TABLE IF NOT EXISTS label_imports (
    id            bigserial PRIMARY KEY,
    source        text        NOT NULL,
    scope         text,                    -- NULL: not a complete list (nothing is delisted by it)
    format        text        NOT NULL,
    file_name     text,
    file_sha256   text        NOT NULL,
    list_date     timestamptz,             -- the list's own publication date
    stats         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_by    text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
CREATE INDEX IF NOT EXISTS label_imports_scope ON label_imports (scope, list_date DESC);
CREATE INDEX IF NOT EXISTS label_imports_hash ON label_imports (file_sha256);

-- What happened to a label and when: added, delisted, relisted, changed (old values in details).
CREATE TABLE IF NOT EXISTS label_events (
    id            bigserial PRIMARY KEY,
    label_id      bigint      NOT NULL REFERENCES labels (id) ON DELETE CASCADE,
    import_id     bigint      REFERENCES label_imports (id) ON DELETE SET NULL,
    event         text        NOT NULL CHECK (event IN ('added', 'delisted', 'relisted', 'changed')),
    at            timestamptz,             -- when it happened on the list (list date), if known
    details       jsonb,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS label_events_label ON label_events (label_id, id);
CREATE INDEX IF NOT EXISTS label_events_import ON label_events (import_id);
