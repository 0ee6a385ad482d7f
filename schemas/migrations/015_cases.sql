-- tracer schema, version 15: cases, the investigations that span traces.
--
-- A case groups traces with the notes and tags an investigator keeps on them. It belongs to the
-- key that made it, or to the key's team (owner_key_id, owner_team as in 010_ownership): only
-- they and admins see it, change it or delete it, since notes name suspects and subpoenas. NULL
-- owner: made by the CLI or in open mode; only admins see those.
--
-- Notes and tags hang on the case itself or on something inside it: a trace, an address
-- ("chain:address") or a hop ("trace_id:transfer_id"). They live inside the case, so another
-- team's case never shows them. Deleting a case deletes its notes and tags, never its traces.

CREATE TABLE IF NOT EXISTS cases (
    id            bigserial   PRIMARY KEY,
    title         text        NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description   text        NOT NULL DEFAULT '' CHECK (length(description) <= 20000),
    status        text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed', 'archived')),
    owner_key_id  bigint,
    owner_team    text,
    created_by    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS cases_owner ON cases (owner_key_id, id);
CREATE INDEX IF NOT EXISTS cases_team ON cases (owner_team, id) WHERE owner_team IS NOT NULL;

CREATE TABLE IF NOT EXISTS case_traces (
    case_id       bigint      NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    trace_id      bigint      NOT NULL REFERENCES traces (id) ON DELETE CASCADE,
    added_by      text,
    added_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, trace_id)
);
-- "also in case N": from a trace to the cases holding it.
CREATE INDEX IF NOT EXISTS case_traces_trace ON case_traces (trace_id);

CREATE TABLE IF NOT EXISTS case_notes (
    id            bigserial   PRIMARY KEY,
    case_id       bigint      NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    target_kind   text        NOT NULL CHECK (target_kind IN ('case', 'trace', 'address', 'hop')),
    target        text        NOT NULL DEFAULT '',
    body          text        NOT NULL CHECK (length(body) BETWEEN 1 AND 20000),
    author        text,
    author_key_id bigint,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS case_notes_case ON case_notes (case_id, id);
CREATE INDEX IF NOT EXISTS case_notes_target ON case_notes (target_kind, target);

CREATE TABLE IF NOT EXISTS case_tags (
    case_id       bigint      NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    target_kind   text        NOT NULL CHECK (target_kind IN ('case', 'trace', 'address', 'hop')),
    target        text        NOT NULL DEFAULT '',
    tag           text        NOT NULL CHECK (length(tag) BETWEEN 1 AND 64),
    author        text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, target_kind, target, tag)
);
CREATE INDEX IF NOT EXISTS case_tags_target ON case_tags (target_kind, target);
