"""The architecture the code promises (issue 18), checked on every run:

- imports run one way, domain <- chains <- store <- engine <- workers/alerts <- api/cli: the
  import-linter contracts in pyproject.toml ([tool.importlinter]), run in process;
- SQL only in tracer/store/: no SQL text reaches a connection's fetch/execute/... elsewhere;
- node JSON only in tracer/chains/ (and tracer/devchain/, which is a node): no raw JSON-RPC method
  name ("eth_getBlockByNumber", "trace_filter", ...) as a string anywhere else;
- bench/ imports nothing from tests/;
- no module under tracer/ over 500 lines;
- no database row leaves the store: no public function of tracer/store/ returns asyncpg.Record or
  dict[str, Any] (a typed record from tracer/domain/ or the store instead), but for the free-form
  JSON documents of FREE_FORM_JSON.

The lists of known exceptions below only shrink: each entry names its issue, and a fixed file must
leave its list (a stale entry fails too).
"""

from __future__ import annotations

import ast
import contextlib
import io
import logging
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

# Store functions that still return rows or dicts of rows. Shrinking, as above.
UNTYPED_ROWS: set[str] = set()

# Store functions whose dict[str, Any] is a JSON document with no fixed shape: allowed for good.
FREE_FORM_JSON = {
    "tracer/store/hops.py:hop_evidence",  # each hop's evidence (jsonb): what the rule that decided it saw
    "tracer/store/backward.py:evidence_of",  # an exit's evidence JSON, as hop_evidence
    "tracer/store/label_rows.py:load_json",  # a label's evidence (jsonb), as its importer wrote it
}

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
    # import-linter configures logging with disable_existing_loggers: every logger created so far
    # (tracer's, by modules collected earlier) would stay silent for the rest of the session, and
    # later tests that read their logs (caplog) would see nothing.
    loggers = [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    disabled = {lg.name: lg.disabled for lg in loggers}
    try:
        with contextlib.redirect_stdout(out), _in(ROOT):
            code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    finally:
        for lg in loggers:
            lg.disabled = disabled[lg.name]
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


# ------------------------------------------------------------------------------ rows in the store


def _untyped(annotation: ast.expr) -> str | None:
    """What in a return annotation is a database row or an untyped dict: asyncpg.Record / Record
    (alone or inside list[...], AsyncIterator[...], X | None), dict[str, Any] or Mapping[str, Any]."""
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        annotation = ast.parse(annotation.value, mode="eval").body
    for node in ast.walk(annotation):
        name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
        if name == "Record":
            return ast.unparse(annotation)
        if (isinstance(node, ast.Subscript) and ast.unparse(node.value).split(".")[-1] in ("dict", "Dict", "Mapping")
                and isinstance(node.slice, ast.Tuple) and ast.unparse(node.slice.elts[-1]).split(".")[-1] == "Any"):
            return ast.unparse(annotation)
    return None


def untyped_returns(path: Path, root: Path = ROOT) -> dict[str, str]:
    """`file:function` -> its return annotation, for the public functions of a module (and public
    methods of its public classes) that hand out a row or an untyped dict."""
    found = {}
    defs = (ast.FunctionDef, ast.AsyncFunctionDef)
    tree = _tree(path)
    members = [n for n in tree.body if isinstance(n, defs)]
    members += [m for c in tree.body if isinstance(c, ast.ClassDef) and not c.name.startswith("_")
                for m in c.body if isinstance(m, defs)]
    for fn in members:
        if fn.name.startswith("_") or fn.returns is None:
            continue
        what = _untyped(fn.returns)
        if what is not None:
            found[f"{_rel(path, root)}:{fn.name}"] = what
    return found


def test_no_row_leaves_the_store() -> None:
    found = {k: v for p in _modules(TRACER / "store") for k, v in untyped_returns(p).items()}
    bad = set(found) - UNTYPED_ROWS - FREE_FORM_JSON
    assert not bad, "store functions returning asyncpg.Record or dict[str, Any] (return a typed record):\n" + \
        "\n".join(f"{k} -> {found[k]}" for k in sorted(bad))
    assert UNTYPED_ROWS - set(found) == set(), "typed now: remove from UNTYPED_ROWS: " + \
        ", ".join(sorted(UNTYPED_ROWS - set(found)))
    assert FREE_FORM_JSON - set(found) == set(), "no longer free-form JSON: remove from FREE_FORM_JSON: " + \
        ", ".join(sorted(FREE_FORM_JSON - set(found)))


def test_the_row_check_sees_rows(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import asyncpg\n"
                      "from asyncpg import Record\n"
                      "async def one(conn) -> asyncpg.Record | None: ...\n"
                      "async def many(conn) -> list[Record]: ...\n"
                      "async def stream(conn) -> AsyncIterator[asyncpg.Record]: ...\n"
                      "async def loose(conn) -> list[dict[str, Any]]: ...\n"
                      "async def quoted(conn) -> 'Mapping[str, typing.Any]': ...\n"
                      "async def typed(conn) -> list[Hop]: ...\n"
                      "async def counts(conn) -> dict[str, int]: ...\n"
                      "def _row(r: asyncpg.Record) -> asyncpg.Record: ...\n"
                      "class Store:\n"
                      "    async def get(self) -> Record: ...\n")
    assert untyped_returns(sample, tmp_path) == {
        "sample.py:one": "asyncpg.Record | None", "sample.py:many": "list[Record]",
        "sample.py:stream": "AsyncIterator[asyncpg.Record]", "sample.py:loose": "list[dict[str, Any]]",
        "sample.py:quoted": "Mapping[str, typing.Any]", "sample.py:get": "Record"}
