"""One trace step: a batch of frontier jobs of one trace on one chain, followed one hop further.

gather (every await: chain and store reads) -> decide (pure: no await, no I/O) -> follow_mixers,
follow_bridges (money that changes form: their own reads and decisions) -> commit (one
transaction through store functions). plan holds the records that pass between them; run ties
them together for the worker (tracer.workers.trace)."""
