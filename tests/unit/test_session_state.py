"""The pools of `tracer worker` and `tracer serve` give connections back without asyncpg's reset query
(tracer.store.db.keep_session): that is only right while nothing run on them leaves session state
behind. Every place in tracer/ that takes some (a session advisory lock, LISTEN, a SET or set_config
beyond the transaction, a cursor WITH HOLD) is named here with why it is safe; a new one fails until
it is looked at and added."""

from __future__ import annotations

import re
from pathlib import Path

TRACER = Path(__file__).resolve().parents[2] / "tracer"

SESSION_STATE = re.compile(
    r"(?i:pg_(try_)?advisory_lock(_shared)?\s*\()"  # session advisory locks (the _xact_ ones end with the transaction)
    r"|[\"']\s*(UN)?LISTEN\s|\badd_listener\s*\("  # notifications (SQL, or asyncpg's)
    r"|(?i:set_config\s*\([^)]*,\s*false\s*\))"  # a setting for the session
    r"|[\"']\s*(?i:SET\s+(SESSION\s+)?(?!LOCAL\b)[a-z_.]+\s*(=|TO\b))"  # SET x = ... (not UPDATE ... SET)
    r"|(?i:\bWITH\s+HOLD\b)",  # a cursor that outlives its transaction
)

#: file -> why its session state never reaches a pool that skips the reset query.
KNOWN = {
    # The alert monitor's per-chain leader lock: `tracer alerts` runs it on its own pool (default reset).
    "store/follow.py": "monitor leadership, not on the worker's or the API's pools",
    # Workers' wake-ups: the owner unlistens (a stray LISTEN only sends notifications nobody reads).
    "store/job_signals.py": "LISTEN undone by its owner",
    # The Citus set-up script `tracer db citus-plan` prints for psql: never run on a pool.
    "store/distribution.py": "a script for psql",
    # Dedicated connections outside any pool.
    "store/listen.py": "its own connection",
}


def _uses() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(TRACER.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        hits = [m.group(0) for m in SESSION_STATE.finditer(text)]
        if hits:
            found[path.relative_to(TRACER).as_posix()] = hits
    return found


def test_only_the_known_places_take_session_state() -> None:
    assert set(_uses()) == set(KNOWN), _uses()


def test_the_scan_sees_each_kind_of_session_state() -> None:
    for text in ('"SELECT pg_advisory_lock(1)"', '"SELECT pg_try_advisory_lock(1, 2)"', '"LISTEN ch"',
                 "conn.add_listener(ch, cb)", "\"SELECT set_config('a.b', 'x', false)\"", '"SET search_path = x"',
                 "'SET statement_timeout TO 5'", '"DECLARE c CURSOR WITH HOLD FOR SELECT 1"'):
        assert SESSION_STATE.search(text), text
    for text in ('"SELECT pg_advisory_xact_lock(1)"', '"UPDATE t SET a = 1"', '"SET LOCAL statement_timeout = 5"',
                 "\"SELECT set_config('a.b', 'x', true)\"", "UPDATE jobs SET state = 'done'"):
        assert not SESSION_STATE.search(text), text
