"""Every `tracer` command answers bad input (a database URL that opens nothing, a node that answers
garbage, junk --policy, numbers out of range, files that are not what they should be, unknown ids)
with one line on stderr, `tracer: error: ...`, and exit status 2: never a traceback. What it refuses
leaves nothing in the database, not even a chain name pinned to a node's chain id.

The commands run at once, as separate processes (`python -m tracer.cli`), each case's test then
reads its answer: the whole module takes a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from aiohttp import web

from tests.fixtures_chain import DevChainFactory, serving
from tracer.devchain.scenario import Scenario
from tracer.store.db import Database
from tracer.store.urls import with_database

pytestmark = pytest.mark.asyncio(loop_scope="session")

REFUSED = "postgresql://postgres@127.0.0.1:1/x"


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]  # {db}, {node}, {junk}, {seed}, {tmp}, {absent_db} are filled in
    says: str  # part of the one line on stderr, after "tracer: error: "
    env: dict[str, str] = field(default_factory=dict)
    untouched: str | None = None  # SQL counting what the command must not have written


def case(name: str, argv: str, says: str, *, env: dict[str, str] | None = None, untouched: str | None = None) -> Case:
    return Case(name, tuple(argv.split()), says, env or {}, untouched)


CASES = [
    case("db-refused", f"cases list --database-url {REFUSED}",
         f"cannot open the database at {REFUSED}: Connect call failed"),
    case("db-not-a-url", "keys list --database-url not-a-url", "cannot open the database at not-a-url: invalid DSN"),
    case("db-missing", "labels load-default --database-url {absent_db}", 'database "tracer_t_absent" does not exist'),
    case("policy-not-json", "trace {seed} --policy max_depth=3 --rpc {junk} --database-url {db}",
         "--policy is not JSON"),
    case("policy-not-object", "trace {seed} --policy [1] --rpc {junk} --database-url {db}",
         "--policy must be a JSON object"),
    case("empty-window", "trace {seed} --from-block 30 --to-block 10 --rpc {junk} --database-url {db}",
         "policy.to_block: must be >= from_block"),
    case("depth-zero", "trace {seed} --max-depth 0 --rpc {junk} --database-url {db}",
         "policy.max_depth: must be between 1 and 200"),
    case("trace-workers", "trace {seed} --workers -1 --rpc {junk} --database-url {db}",
         "--workers must be 0 (leave the jobs to `tracer worker` processes) or more"),
    case("unknown-chain", "trace {seed} --chain nochain --rpc {node} --database-url {db}",
         "chain: unsupported chain 'nochain'", untouched="SELECT count(*) FROM chain_ids WHERE chain = 'nochain'"),
    case("binary-seed-file", "trace @{tmp}/seeds.bin --rpc {junk} --database-url {db}",
         "an @FILE of arguments is not text"),
    case("garbage-node", "worker --rpc {junk} --database-url {db}",
         "chain node: node at http://127.0.0.1:", untouched="SELECT count(*) FROM chain_ids WHERE chain = 'ethereum'"),
    case("node-url", "worker --rpc localhost:8545 --database-url {db}",
         "chain node: a node URL for chain ethereum must start with http:// or https:// (this one has no scheme)"),
    case("batch-size", "worker --batch-size 0 --rpc {junk} --database-url {db}", "--batch-size must be at least 1"),
    case("keep-blocks", "monitor --keep-blocks 0 --ws off --rpc {junk} --database-url {db}",
         "--keep-blocks must be more than 0"),
    case("deliver-timeout", "alerts deliver --timeout 0 --database-url {db}", "--timeout must be more than 0"),
    case("unknown-case", "cases note 987654 hello --database-url {db}", "no case 987654",
         untouched="SELECT count(*) FROM case_notes"),
    case("unknown-key", "keys revoke nosuchkey --database-url {db}", "no key 'nosuchkey'"),
    case("bad-address", "labels show 0xzz --database-url {db}", "invalid address '0xzz'"),
    case("report-unknown", "report 987654 --rpc {node} --chain reportonly --database-url {db}", "no trace 987654",
         untouched="SELECT count(*) FROM chain_ids WHERE chain = 'reportonly'"),
    case("scenario-junk", "devchain --scenario {tmp}/junk.json --save-only --save {tmp}/out.json",
         "junk.json: not a scenario saved by `tracer devchain --save` (JSONDecodeError"),
    case("replay-missing", "devchain --replay {tmp}/nothing --save-only --save {tmp}/out.json", "no such folder"),
    case("devchain-port", "devchain --port 70000", "--port must be 0 to 65535 (0 picks a free one), not 70000"),
    case("serve-port", "serve --port 70000 --database-url {db}", "--port must be 0 to 65535"),
    case("serve-port-env", "serve --database-url {db}", "TRACER_API_PORT must be a whole number, not 'abc'",
         env={"TRACER_API_PORT": "abc"}),
    case("demo-workers", "demo --workers 0 --database-url {db}", "--workers must be at least 1",
         untouched="SELECT count(*) FROM traces"),
    case("log-level", "--log-level loud db citus-plan", "no level 'LOUD'"),
    case("bitcoin-network", "trace bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq --chain bitcoin --rpc {junk} "
         "--database-url {db}", "unknown Bitcoin network 'bogus'", env={"TRACER_BITCOIN_NETWORK": "bogus"}),
]


async def _garbage(request: web.Request) -> web.StreamResponse:
    """A node answering every JSON-RPC request with an object where a number belongs."""
    body = json.loads(await request.read())
    answer = [{"jsonrpc": "2.0", "id": r.get("id"), "result": {"weird": [1]}} for r in
              (body if isinstance(body, list) else [body])]
    return web.json_response(answer if isinstance(body, list) else answer[0])


def _env(extra: dict[str, str]) -> dict[str, str]:
    # Nothing from the caller's environment decides a case: no database, node or limit set there.
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and
           (not k.startswith("TRACER_") or k.startswith("TRACER_TEST_"))}
    return {**env, **extra}


async def _run(c: Case, places: dict[str, str]) -> tuple[int, bytes, str]:
    argv = list(c.argv)
    for key, value in places.items():
        argv = [a.replace("{" + key + "}", value) for a in argv]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracer.cli", *argv, env=_env(c.env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        return -1, out, "timed out: " + err.decode(errors="replace")
    assert proc.returncode is not None
    return proc.returncode, out, err.decode(errors="replace")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def answers(database_url: str, devchain_factory: DevChainFactory, small_scenario: Scenario,
                  tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, tuple[int, bytes, str]]]:
    tmp = tmp_path_factory.mktemp("bad-input")
    (tmp / "junk.json").write_text("not json")
    (tmp / "seeds.bin").write_bytes(b"0x\xff\xfe\x00binary")
    node = await devchain_factory()
    async with serving(_garbage) as junk:
        places = {"db": database_url, "node": node.url, "junk": junk, "seed": small_scenario.seeds[0],
                  "tmp": str(tmp), "absent_db": with_database(database_url, "tracer_t_absent")}
        done = await asyncio.gather(*(_run(c, places) for c in CASES))
    yield {c.name: answer for c, answer in zip(CASES, done, strict=True)}


@pytest.mark.parametrize("c", CASES, ids=[c.name for c in CASES])
async def test_bad_input_gets_one_line_and_exit_2(c: Case, answers: dict[str, tuple[int, bytes, str]],
                                                  database_url: str) -> None:
    rc, out, err = answers[c.name]
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert (rc, len(lines)) == (2, 1), err
    assert lines[0].startswith("tracer: error: ") and c.says in lines[0], lines[0]
    assert out == b""
    if c.untouched is not None:
        async with await Database.connect(database_url, migrate=False, max_size=1) as db:
            assert await db.pool.fetchval(c.untouched) == 0, c.untouched
