-- tracer schema, version 20: backward traces (source of funds, issue 20).
--
-- A trace walks forward (where did the seeds' money go: the default) or backward (where did the
-- money the seeds received come from). A backward trace uses the same jobs, hops and events:
-- its address jobs walk inflows back level by level, and one `colour` job, runnable only once no
-- other job of the trace is left, colours every walked transfer by how much of it reached the
-- seeds and writes the hops in one transaction (tracer/engine/backward_jobs.py). Its hops point
-- the way the money moved (source -> seed); its exits are the sources the walk stopped at.
ALTER TABLE traces ADD COLUMN IF NOT EXISTS direction text NOT NULL DEFAULT 'forward'
    CHECK (direction IN ('forward', 'backward'));
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check CHECK (kind IN ('start', 'address', 'colour'));
