"""The depth rule: a max_depth stop is lifted by a shorter path found later.

An address's depth is the fewest hops from a seed over followed hops (the smallest depth of the
hops into it: jobs and hops keep LEAST of every depth written). It is stopped with reason
max_depth when that depth reaches policy.max_depth. Workers find paths in any order, so the
first path to reach an address need not be its shortest; the stop therefore is not final:

- a hop into an address stopped at max_depth is written as followed (with the reason it has on
  its own), never copied from the stop, so it wakes the address like any new flagged money;
- the woken address is judged again at its (LEAST) depth: still too deep, it is stopped again and
  the hops into it say so (the reason they had is kept in `hops.followed_reason`); shallower now,
  it is followed, and the hops the stop had marked are reopened with the reason they had.

So the set of addresses stopped at max_depth, and every hop's status, depend on the graph alone,
not on the order the workers found the paths in (tests/integration/test_determinism.py).
"""

from __future__ import annotations

from tracer.domain.verdicts import Reason

MAX_DEPTH = Reason.MAX_DEPTH  # the verdict reason of an address left unexpanded at policy.max_depth
# The rule itself is tracer.domain.verdicts.Judged's: `liftable` (a max_depth stop) and `final`
# (any other exit or stop, which hops into the address copy).
