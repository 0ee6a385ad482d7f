"""The architecture the code promises (issue 18), checked on every run:

- imports run one way, domain <- chains <- store <- engine <- workers/alerts <- api/cli: the
  import-linter contracts in pyproject.toml ([tool.importlinter]), run in process;
- SQL only in tracer/store/: no SQL text reaches a connection's fetch/execute/... elsewhere;
- node JSON only in tracer/chains/ (and tracer/devchain/, which is a node): no raw JSON-RPC method
  name ("eth_getBlockByNumber", "trace_filter", ...) as a string anywhere else;
- bench/ imports nothing from tests/;
- no module under tracer/ over 500 lines.

The lists of known exceptions below only shrink: each entry names its issue, and a fixed file must
leave its list (a stale entry fails too).
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRACER = ROOT / "tracer"
MAX_LINES = 500

# Modules over MAX_LINES while the renovation of issue 18 splits them. Shrinking: remove a file
# when it is split; the lead empties the list when issue 18 closes.
OVERSIZED: set[str] = set()

# Files outside tracer/chains/ that still send raw JSON-RPC. Shrinking, as above.
RAW_RPC_OUTSIDE_CHAINS: set[str] = set()

# Files outside tracer/store/ that still hand SQL to a connection. Shrinking, as above.
SQL_OUTSIDE_STORE: set[str] = set()

NODE_DIRS = ("tracer/chains/", "tracer/devchain/")
SQL_METHODS = {"fetch", "fetchrow", "fetchval", "execute", "executemany", "copy_records_to_table", "cursor",
               "prepare"}
SQL = re.compile(r"\b(SELECT|INSERT\s+INTO|UPDATE|DELETE\s+FROM|CREATE|ALTER|DROP|TRUNCATE|LISTEN|NOTIFY|"
                 r"UNLISTEN|WITH\s+\w+\s+AS|LOCK\s+TABLE|VACUUM|ANALYZE)\b")
# JSON-RPC method names: the namespaced ones (eth_getLogs, debug_traceTransaction, ...) and
# the trace_* module's (trace_id, trace_status are our own words, not methods).
RPC_METHOD = re.compile(r"^((eth|debug|net|web3|ots|erigon|parity|txpool|arbtrace|anvil|evm|hardhat)_[a-z][A-Za-z]*|"
                        r"trace_(filter|block|transaction|get|call|callMany|rawTransaction|replayTransaction|"
                        r"replayBlockTransactions))$")


def _rel(path: Path, root: Path = ROOT) -> str:
    return path.relative_to(root).as_posix()


def _modules(folder: Path) -> Iterator[Path]:
    yield from sorted(p for p in folder.rglob("*.py") if "node_modules" not in p.parts)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


# --------------------------------------------------------------------------------- import-linter


def test_the_import_contracts_hold() -> None:
    from importlinter.cli import lint_imports

    out = io.StringIO()
    with contextlib.redirect_stdout(out), _in(ROOT):
        code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    assert code == 0, out.getvalue()


@contextlib.contextmanager
def _in(folder: Path) -> Iterator[None]:
    with contextlib.chdir(folder):
        yield


# ----------------------------------------------------------------------------------------- SQL


def _strings_in(node: ast.AST, constants: dict[str, str]) -> Iterator[str]:
    """String text a call argument can carry: literals, f-string parts, and names of the module's
    string constants."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            yield sub.value
        elif isinstance(sub, ast.Name) and sub.id in constants:
            yield constants[sub.id]


def _string_constants(tree: ast.Module) -> dict[str, str]:
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = node.value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                for t in targets:
                    if isinstance(t, ast.Name):
                        out[t.id] = value.value
    return out


def sql_calls(path: Path, root: Path = ROOT) -> list[str]:
    """`file:line method` of every call of a connection method that carries SQL text."""
    tree = _tree(path)
    constants = _string_constants(tree)
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_METHODS
                and any(SQL.search(s) for arg in node.args for s in _strings_in(arg, constants))):
            found.append(f"{_rel(path, root)}:{node.lineno} {node.func.attr}")
    return found


def test_sql_is_only_in_the_store() -> None:
    outside = [c for p in _modules(TRACER) if not _rel(p).startswith("tracer/store/") for c in sql_calls(p)]
    files = {c.split(":")[0] for c in outside}
    assert files - SQL_OUTSIDE_STORE == set(), "SQL outside tracer/store/ (move it into a store function):\n" + \
        "\n".join(c for c in outside if c.split(":")[0] not in SQL_OUTSIDE_STORE)
    assert SQL_OUTSIDE_STORE - files == set(), "no SQL left there any more: remove from SQL_OUTSIDE_STORE"


def test_the_sql_check_sees_sql(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('Q = "SELECT 1 FROM hops"\n'
                      'async def f(conn, pool, x):\n'
                      '    await conn.fetch(Q)\n'
                      '    await pool.execute(f"UPDATE jobs SET state = {x}")\n'
                      '    await conn.fetchval("select-free text")\n'
                      '    await conn.execute(x)\n')
    assert sql_calls(sample, tmp_path) == ["sample.py:3 fetch", "sample.py:4 execute"]


# ------------------------------------------------------------------------------------ node JSON


def raw_rpc_methods(path: Path) -> list[str]:
    return [f"{_rel(path)}:{node.lineno} {node.value}" for node in ast.walk(_tree(path))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and RPC_METHOD.match(node.value)]


def test_node_json_is_only_in_the_chain_layer() -> None:
    outside = [m for p in _modules(TRACER) if not _rel(p).startswith(NODE_DIRS) for m in raw_rpc_methods(p)]
    files = {m.split(":")[0] for m in outside}
    assert files - RAW_RPC_OUTSIDE_CHAINS == set(), \
        "raw JSON-RPC outside tracer/chains/ (give the chain client a method for it):\n" + \
        "\n".join(m for m in outside if m.split(":")[0] not in RAW_RPC_OUTSIDE_CHAINS)
    assert RAW_RPC_OUTSIDE_CHAINS - files == set(), "no raw JSON-RPC left there: remove from RAW_RPC_OUTSIDE_CHAINS"
    # The check sees the methods where they belong.
    assert any(raw_rpc_methods(p) for p in _modules(TRACER / "chains"))


# ---------------------------------------------------------------------------------- bench/tests


def imports_from_tests(path: Path, test_modules: set[str], bench_modules: set[str]) -> list[str]:
    """Imports of tests/ from a bench script: `tests.x`, or a bare name only tests/ holds (the
    scripts put their own folder and the repository root on sys.path)."""
    found = []
    for node in ast.walk(_tree(path)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top == "tests" or (top in test_modules and top not in bench_modules):
                found.append(f"{_rel(path)}:{node.lineno} {name}")
    return found


def test_bench_imports_nothing_from_tests() -> None:
    test_modules = {p.stem for p in (ROOT / "tests").rglob("*.py")}
    bench = list(_modules(ROOT / "bench"))
    bench_modules = {p.stem for p in bench}
    found = [x for p in bench for x in imports_from_tests(p, test_modules, bench_modules)]
    assert not found, "bench/ imports from tests/ (move what it needs into bench/ or tracer/):\n" + "\n".join(found)


# ---------------------------------------------------------------------------------- module size


def test_no_module_under_tracer_is_over_500_lines() -> None:
    sizes = {_rel(p): len(p.read_text().splitlines()) for p in _modules(TRACER)}
    over = {f for f, n in sizes.items() if n > MAX_LINES}
    assert over - OVERSIZED == set(), f"over {MAX_LINES} lines (split by what they hold): " + \
        ", ".join(f"{f} ({sizes[f]})" for f in sorted(over - OVERSIZED))
    assert OVERSIZED - over == set(), f"no longer over {MAX_LINES} lines: remove from OVERSIZED: {OVERSIZED - over}"
