-- A max_depth stop is lifted when a shorter path reaches the address later (tracer/engine/depth.py):
-- the hops the stop marked then reopen with the reason they had, kept here while they are stopped.
ALTER TABLE hops ADD COLUMN IF NOT EXISTS followed_reason text;
