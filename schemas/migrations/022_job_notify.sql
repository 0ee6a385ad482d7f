-- tracer schema, version 22: workers are woken by NOTIFY when a job becomes runnable.
--
-- A job inserted pending (a trace's start, its seeds, a new frontier address) or moved back to
-- pending (woken by new flagged money, released after a failure, re-queued because its inputs
-- changed while it ran) notifies channel tracer_jobs with its chain; idle workers of that chain
-- claim at once instead of at their next poll (tracer/workers/wakeup.py). Claims stay FOR UPDATE
-- SKIP LOCKED: a notification only wakes, it hands out nothing, and polling remains the fallback
-- for what no notification announces (a lease lapsing, a backoff ending, a lost connection).
-- NOTIFY is sent at commit and repeated notifications of one transaction are folded into one.
CREATE OR REPLACE FUNCTION tracer_job_runnable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tracer_jobs', NEW.chain);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS jobs_notify_insert ON jobs;
CREATE TRIGGER jobs_notify_insert AFTER INSERT ON jobs
    FOR EACH ROW WHEN (NEW.state = 'pending') EXECUTE FUNCTION tracer_job_runnable();

DROP TRIGGER IF EXISTS jobs_notify_pending ON jobs;
CREATE TRIGGER jobs_notify_pending AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (NEW.state = 'pending' AND OLD.state <> 'pending') EXECUTE FUNCTION tracer_job_runnable();
