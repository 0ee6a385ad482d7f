-- GET /v1/traces/{id}/exits of a running trace without joining the verdicts or dividing by the totals
-- on every request (#22): each trace_exits row also keeps its line's verdict part and its share of
-- the trace's totals, written with the row by the trigger of migration 030 (replaced here).
--
-- The verdict part (",entity ... recognised_by", tracer.api.serialize.exit_line's fields in its order)
-- comes from the trace's jobs row on the exit's address. That row can change without the exit's row
-- (a verdict written in the commit after the hops into it, or in the same commit before or after
-- them), so a trigger on jobs rewrites the exit rows of an address whose verdict changed, in the
-- transaction that changed it: either order inside one transaction ends with the verdict written
-- last. Across transactions: commits of one trace hold its commit lock (tracer.store.mixers.lock_trace),
-- and besides, an exit row being rewritten is row-locked, so a verdict committed meanwhile rewrites it
-- after (its UPDATE waits for the lock, then reads the committed row); a new exit row reads the jobs
-- row FOR SHARE, so it waits for a verdict being changed and reads it once committed.
--
-- The share is written with the total it was computed from (share_of: the trace's total of that asset
-- when the row is on the trace's chain, else NULL); totals change without the exits (a watching trace
-- extends them), so a read uses the stored share only while share_of still equals the total it reads,
-- and computes it otherwise (tracer.store.exits).
ALTER TABLE trace_exits ADD COLUMN IF NOT EXISTS line_verdict text;
ALTER TABLE trace_exits ADD COLUMN IF NOT EXISTS verdict_category text;
-- Whether a stored Tron address (0x41 + 40 hex) may be in the line: the API shows those as T...
ALTER TABLE trace_exits ADD COLUMN IF NOT EXISTS tron boolean;
ALTER TABLE trace_exits ADD COLUMN IF NOT EXISTS share_of numeric(78, 0);
ALTER TABLE trace_exits ADD COLUMN IF NOT EXISTS line_share text;

-- tracer.api.serialize's entity, category, reason and recognised_by (an event its contract emitted, a
-- label, the deposit-address behaviour, or the reason as it is; the evidence as Postgres writes
-- jsonb), as JSON members after the line's head. The prefixes are tracer.domain.verdicts'
-- LABEL_REASON_PREFIX and Reason.DEPOSIT_ADDRESS (tests/integration/test_exit_lines.py holds the
-- lines to the serializer's).
CREATE OR REPLACE FUNCTION tracer_exit_verdict(reason text, entity text, category text, evidence jsonb)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT ',"entity":' || coalesce(to_json(entity)::text, 'null')
           || ',"category":' || coalesce(to_json(category)::text, 'null')
           || ',"reason":' || coalesce(to_json(reason)::text, 'null')
           || ',"recognised_by":' || CASE
        WHEN evidence ->> 'recognised_by' = 'event'
            THEN '{"method":"event","source":'
                 || coalesce(to_json(coalesce(nullif(
                        (SELECT string_agg(x, ', ' ORDER BY n)
                         FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof(evidence -> 'events') = 'array'
                                                             THEN evidence -> 'events' END)
                              WITH ORDINALITY AS v(x, n)), ''), reason))::text, 'null')
                 || ',"evidence":' || coalesce(evidence::text, 'null') || '}'
        WHEN starts_with(reason, 'label:')
            THEN '{"method":"label","source":' || coalesce(to_json(substr(reason, 7))::text, 'null')
                 || ',"evidence":' || coalesce(evidence::text, 'null') || '}'
        WHEN reason = 'deposit_address'
            THEN '{"method":"behaviour","source":'
                 || CASE WHEN jsonb_typeof(evidence) = 'object' AND evidence ? 'source'
                         THEN (evidence -> 'source')::text ELSE '"behaviour"' END
                 || ',"evidence":' || coalesce(evidence::text, 'null') || '}'
        ELSE '{"method":"other","source":' || coalesce(to_json(reason)::text, 'null')
             || ',"evidence":' || coalesce(evidence::text, 'null') || '}' END
$$;

-- A line's share of its asset's total: the exact ratio rounded half up to 9 decimals in integers
-- (q9 = (2 a 10^9 + t) div 2t, as tracer.api.serialize.ratio9), written as the API writes a float
-- (a whole number with ".0"); 0.0 without a total. One expression, so a read inlines it.
CREATE OR REPLACE FUNCTION tracer_exit_share(amount numeric, total numeric) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN total IS NULL OR total <= 0 THEN '0.0'
                WHEN mod(div(amount * 2000000000 + total, 2 * total), 1000000000) = 0
                    THEN div(div(amount * 2000000000 + total, 2 * total), 1000000000)::text || '.0'
                ELSE trim_scale(div(amount * 2000000000 + total, 2 * total) * 1e-9)::text END
$$;

CREATE OR REPLACE FUNCTION tracer_exit_lines() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v record;
    total numeric;
BEGIN
    -- The head and tail again only when what they say changed (a verdict rewrites rows whose values
    -- stay), or when NULL (rows of before a migration, values not known yet).
    IF TG_OP = 'INSERT' OR NEW.line_head IS NULL
       OR (NEW.chain, NEW.address, NEW.address_checksum) IS DISTINCT FROM (OLD.chain, OLD.address, OLD.address_checksum)
    THEN
        NEW.line_head := '{"chain":' || to_json(NEW.chain)::text || ',"address":' || to_json(NEW.address)::text
                         || ',"address_checksum":' || coalesce(to_json(NEW.address_checksum)::text, 'null');
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.line_tail IS NOT NULL
       AND (NEW.chain, NEW.asset, NEW.amount, NEW.hops, NEW.senders, NEW.depth, NEW.first_block, NEW.last_block,
            NEW.first_time, NEW.last_time, NEW.symbol, NEW.decimals)
           IS NOT DISTINCT FROM (OLD.chain, OLD.asset, OLD.amount, OLD.hops, OLD.senders, OLD.depth, OLD.first_block,
                                 OLD.last_block, OLD.first_time, OLD.last_time, OLD.symbol, OLD.decimals) THEN
        NULL;  -- the tail written before still holds
    -- the conditions of tracer.store.hops.FIRST_UNKNOWN and LAST_UNKNOWN
    ELSIF NEW.first_time IS NULL OR NEW.first_time < 0 OR (NEW.asset <> 'native' AND NEW.symbol IS NULL)
       OR NEW.last_time IS NULL OR NEW.last_time < 0 THEN
        NEW.line_tail := NULL;
    ELSE
        NEW.line_tail := tracer_exit_line_tail(NEW.chain, NEW.asset, NEW.amount, NEW.hops, NEW.senders, NEW.depth,
                                               NEW.first_block, NEW.last_block, NEW.first_time, NEW.last_time,
                                               NEW.symbol, NEW.decimals);
    END IF;
    IF TG_OP = 'INSERT' THEN  -- a new exit row: wait for a verdict being changed (see the top)
        SELECT j.reason, j.entity, j.category, j.evidence INTO v FROM jobs j
        WHERE j.trace_id = NEW.trace_id AND j.address = NEW.address AND j.chain = NEW.chain FOR SHARE;
    ELSE
        SELECT j.reason, j.entity, j.category, j.evidence INTO v FROM jobs j
        WHERE j.trace_id = NEW.trace_id AND j.address = NEW.address AND j.chain = NEW.chain;
    END IF;
    NEW.line_verdict := tracer_exit_verdict(v.reason, v.entity, v.category, v.evidence);
    NEW.verdict_category := v.category;
    NEW.tron := strpos(concat(NEW.address, NEW.asset, v.entity, v.category, v.reason, v.evidence::text, NEW.symbol),
                       '0x41') > 0;
    SELECT CASE WHEN t.chain = NEW.chain THEN (t.totals ->> NEW.asset)::numeric END INTO total
    FROM traces t WHERE t.id = NEW.trace_id;
    NEW.share_of := total;
    NEW.line_share := tracer_exit_share(NEW.amount, total);
    RETURN NEW;
END
$$;

-- A verdict written, changed or dropped: the exit rows of its address are written again (the
-- trigger above reads the verdict as it is now). A job row without a verdict says what no row says.
CREATE OR REPLACE FUNCTION tracer_exit_verdicts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE trace_exits SET line_verdict = NULL
        WHERE trace_id = OLD.trace_id AND chain = OLD.chain AND address = OLD.address;
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND (NEW.trace_id, NEW.chain, NEW.address)
                                                 IS DISTINCT FROM (OLD.trace_id, OLD.chain, OLD.address)) THEN
        UPDATE trace_exits SET line_verdict = NULL
        WHERE trace_id = NEW.trace_id AND chain = NEW.chain AND address = NEW.address;
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS jobs_exit_verdict_insert ON jobs;
CREATE TRIGGER jobs_exit_verdict_insert AFTER INSERT ON jobs FOR EACH ROW
    WHEN (NEW.reason IS NOT NULL OR NEW.entity IS NOT NULL OR NEW.category IS NOT NULL OR NEW.evidence IS NOT NULL)
    EXECUTE FUNCTION tracer_exit_verdicts();
DROP TRIGGER IF EXISTS jobs_exit_verdict_update ON jobs;
CREATE TRIGGER jobs_exit_verdict_update AFTER UPDATE OF reason, entity, category, evidence, trace_id, chain, address
    ON jobs FOR EACH ROW
    WHEN ((OLD.reason, OLD.entity, OLD.category, OLD.evidence, OLD.trace_id, OLD.chain, OLD.address)
          IS DISTINCT FROM (NEW.reason, NEW.entity, NEW.category, NEW.evidence, NEW.trace_id, NEW.chain, NEW.address))
    EXECUTE FUNCTION tracer_exit_verdicts();
DROP TRIGGER IF EXISTS jobs_exit_verdict_delete ON jobs;
CREATE TRIGGER jobs_exit_verdict_delete AFTER DELETE ON jobs FOR EACH ROW
    WHEN (OLD.reason IS NOT NULL OR OLD.entity IS NOT NULL OR OLD.category IS NOT NULL OR OLD.evidence IS NOT NULL)
    EXECUTE FUNCTION tracer_exit_verdicts();

-- The rows written before: the trigger writes their verdicts and shares.
UPDATE trace_exits SET line_verdict = NULL;
