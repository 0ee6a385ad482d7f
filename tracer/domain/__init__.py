"""The trace's own words and records, shared by every layer: no I/O, no imports from the rest of tracer.

Layers import in one direction, domain <- chains <- store <- engine <- workers/alerts <- api/cli, so a
record read by two layers lives here rather than in the lower one that happens to produce it.
"""
