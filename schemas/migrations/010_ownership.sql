-- tracer schema, version 10: who owns what, and limits shared by every API process.
--
-- Traces, subscriptions and labels belong to the API key that made them, or to the key's team
-- when it has one (keys of one team share their traces, subscriptions and private labels). Only
-- the owner or an admin key cancels, deletes or replays. NULL owner: made in open mode, by the
-- CLI or before this version; only admins act on those.
--
-- A label made by a non-admin key is private to its owner (`private`) until an admin publishes
-- it: screening and the engine see public labels plus the caller's own, so one key can no longer
-- mark an address sanctioned for everyone. Its source names the owner ("investigator:key:12",
-- "investigator:team:fraud"), which keeps one owner's claim apart from another's under the
-- labels' unique key.

ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS team text;

ALTER TABLE traces ADD COLUMN IF NOT EXISTS owner_key_id bigint;
ALTER TABLE traces ADD COLUMN IF NOT EXISTS owner_team text;
-- Quotas count a key's (or team's) unfinished traces.
CREATE INDEX IF NOT EXISTS traces_owner_active ON traces (owner_key_id)
    WHERE status IN ('queued', 'running', 'watching');
CREATE INDEX IF NOT EXISTS traces_owner_team_active ON traces (owner_team)
    WHERE status IN ('queued', 'running', 'watching') AND owner_team IS NOT NULL;

ALTER TABLE subscriptions ADD COLUMN IF NOT EXISTS owner_team text;
CREATE INDEX IF NOT EXISTS subscriptions_owner ON subscriptions (api_key_id);

ALTER TABLE labels ADD COLUMN IF NOT EXISTS private boolean NOT NULL DEFAULT false;
ALTER TABLE labels ADD COLUMN IF NOT EXISTS owner_key_id bigint;
ALTER TABLE labels ADD COLUMN IF NOT EXISTS owner_team text;
CREATE INDEX IF NOT EXISTS labels_private ON labels (owner_key_id) WHERE private;

-- Per-key request rate, one token bucket per caller shared by every API process. UNLOGGED: a
-- crash forgets the buckets, which only means full ones, and writes skip the WAL.
CREATE UNLOGGED TABLE IF NOT EXISTS api_rate_buckets (
    caller   text             PRIMARY KEY,
    tokens   double precision NOT NULL,
    at       timestamptz      NOT NULL
);
