"""What README.md and docs/*.md name must exist, so the docs cannot rot unseen.

Checked in the four documents of DOCS:
- file and folder paths (`tracer/engine/step/decide.py`, `store/cases.py`, `tests/unit/...`,
  `schemas/migrations/NNN_*.sql`), from the repository root or from tracer/, tracer/engine/ or tests/
  (the docs write `store/x.py` for tracer/store/x.py); bare `x.py` names somewhere in the repository;
- names after a module: `tracer.a.b.name`, `store/outbox.name`, `` `outbox.name` `` (a name the
  module defines anywhere: function, class, assignment, field, import); other names in backticks
  (`claim_jobs`, `_private`, `CamelCase`): spelled somewhere in the code or the schemas;
- environment variables (`TRACER_*`, `DATABASE_URL`): read somewhere in the code;
- endpoints (`GET /v1/traces/{id}/exits?...`): a route of tracer/api/routes.py;
- `tracer VERB ... --flag`: a subcommand of `tracer.cli.build_parser()` and one of its options;
  `python bench/x.py --flag`: an option that script spells; any other `--flag`: an option of some
  tracer command or a string the code spells.

Everything is read from files (and the argparse tree built in process); nothing is run.
"""

from __future__ import annotations

import argparse
import ast
import functools
import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "docs/ARCHITECTURE.md", "docs/API.md", "docs/SECURITY.md")
# Where a relative path in the docs may start.
BASES = ("", "tracer/", "tracer/engine/", "tests/")
EXTENSIONS = ("py", "sql", "json", "yaml", "yml", "toml", "md", "png", "csv", "sol", "txt", "js", "html", "css")
TOP_DIRS = ("tracer", "tests", "bench", "schemas", "docs", ".ci")
SKIP_PARTS = {".venv", "node_modules", ".git", "__pycache__", "build", "dist"}

# Paths the code writes or the reader makes, not files of the repository.
NOT_IN_REPO = {"web3.py", "bench/results/web/", "~/.local/share/tracer/pg", "$TRACER_DATA_DIR/pg", "case-42.pdf",
               "labels.csv", "btc-labels.csv", "tron-labels.csv"}

# Flags of npm, docker compose, curl and pip in the docs' examples.
OTHER_TOOLS_FLAGS = {"--prefix", "--scale", "--help"}
# `chain.transfers(...)`: a client variable, not devchain/chain.py.
NOT_NAMES = {"chain.transfers"}

PATH = re.compile(r"(?<![\w/.$~:-])((?:[\w.{},*<>-]+/)+[\w.{},*<>-]*)")
BARE_FILE = re.compile(r"(?<![\w/.*-])([\w-]+\.(?:py|sql|yaml|toml|sol))\b")
PATH_ATTR = re.compile(r"(?<![\w/.-])((?:\w+/)+\w+)\.([A-Za-z_]\w*)")
DOTTED = re.compile(r"`([a-z_]\w*(?:\.[A-Za-z_]\w*)+)(?:\(|`|\[)")
TRACER_DOTTED = re.compile(r"\btracer(?:\.[A-Za-z_]\w*)+")
ENV = re.compile(r"\b((?:TRACER_[A-Z0-9_]*[A-Z0-9])|DATABASE_URL)(_<)?")
ENDPOINT = re.compile(r"(?:\b(?:GET|POST|PATCH|DELETE|PUT)(?:`?\s*/\s*`?(?:GET|POST|PATCH|DELETE|PUT))*\s+)?"
                      r"(?<![\w.:/])(/v1/[\w{}./-]*|/metrics)")
TRACER_CMD = re.compile(r"(?:^|[`|&;(]\s*|^\s*|\$\s+|\s{2,}|=\S+\s+)tracer\s+([a-z][\w-]*)((?:[ \t]+[^\s`#|&;)]+)*)",
                        re.MULTILINE)
BENCH_CMD = re.compile(r"python (bench/\w+\.py)((?:[ \t]+[^\s`#|&;),]+)*)")
FLAG = re.compile(r"(?<![\w-])(--[a-z][\w-]*)")


def doc_text(name: str) -> str:
    return (ROOT / name).read_text()


def _walk(top: Path) -> Iterator[Path]:
    """Files and folders under top, not descending into SKIP_PARTS (a venv, node_modules)."""
    for folder, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d not in SKIP_PARTS]
        yield from (Path(folder) / name for name in (*dirs, *files))


@functools.cache
def repo_files() -> tuple[Path, ...]:
    return tuple(_walk(ROOT))


@functools.cache
def file_names() -> frozenset[str]:
    return frozenset(p.name for p in repo_files())


# ------------------------------------------------------------------------------------------ paths


def _expand(path: str) -> list[str]:
    """`store/{a,b}.py` -> both; placeholders (`<name>`, `NNN`) become globs."""
    m = re.search(r"\{([^{}]*,[^{}]*)\}", path)
    if m:
        return [x for alt in m.group(1).split(",") for x in _expand(path[:m.start()] + alt + path[m.end():])]
    return [re.sub(r"<\w+>", "*", path).replace("NNN", "[0-9][0-9][0-9]")]


def _exists(path: str) -> bool:
    for candidate in _expand(path):
        for base in BASES:
            full = base + candidate.rstrip("/")
            if any(c in full for c in "*["):
                if any(ROOT.glob(full)):
                    return True
            elif (ROOT / full).exists():
                return True
    return False


def _is_path(token: str) -> bool:
    token = token.rstrip(".,:")
    if token in NOT_IN_REPO or "://" in token or token.startswith("/"):
        return False
    last = token.rstrip("/").rsplit("/", 1)[-1]
    if re.search(r"\.(" + "|".join(EXTENSIONS) + r")$", last):
        return True
    return token.split("/")[0] in TOP_DIRS or (token.endswith("/") and re.fullmatch(r"[\w/.-]+", token) is not None
                                               and token.split("/")[0] in _top_package_names())


@functools.cache
def _top_package_names() -> frozenset[str]:
    return frozenset(p.name for p in (ROOT / "tracer").iterdir() if p.is_dir())


def missing_paths(text: str) -> list[str]:
    out = []
    for m in PATH.finditer(text):
        token = m.group(1).rstrip(".,:")
        # `a/b.attr` (a name inside a module) is the attribute check's.
        if not _is_path(token) or token in NOT_IN_REPO:
            continue
        if not _exists(token) and not (PATH_ATTR.fullmatch(token) and _exists(token.rsplit(".", 1)[0] + ".py")):
            out.append(token)
    for m in BARE_FILE.finditer(text):
        if m.group(1) not in file_names() and m.group(1) not in NOT_IN_REPO:
            out.append(m.group(1))
    return out


# ----------------------------------------------------------------------------- names in modules


@functools.cache
def defined_names(path: Path) -> frozenset[str]:
    """Every name a module defines anywhere (top level, classes, fields, self.x = ...)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module and any(a.name == "*" for a in node.names):
            # `from tracer.x import *` (a package re-exporting a module whole): the module's names.
            star, _ = _module_file(node.module.split("."))
            names.update(defined_names(star) if star is not None else ())
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return frozenset(names)


@functools.cache
def modules_by_stem() -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for p in (ROOT / "tracer").rglob("*.py"):
        out.setdefault(p.stem if p.stem != "__init__" else p.parent.name, []).append(p)
    return out


def _module_file(dotted: list[str]) -> tuple[Path | None, list[str]]:
    """The longest prefix of tracer.a.b.c that is a module, and what follows it."""
    for n in range(len(dotted), 0, -1):
        base = ROOT.joinpath(*dotted[:n])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate, dotted[n:]
    return None, dotted


@functools.cache
def mapped_packages() -> dict[str, str]:
    """Packages pyproject.toml maps onto other folders (`tracer.schemas` is schemas/)."""
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text()).get("tool", {}).get("setuptools", {})
    return dict(setup.get("package-dir", {}))


def missing_names(text: str) -> list[str]:
    out = []
    for m in TRACER_DOTTED.finditer(text):
        if m.group(0) in mapped_packages() and (ROOT / mapped_packages()[m.group(0)]).is_dir():
            continue
        parts = m.group(0).split(".")
        module, rest = _module_file(parts)
        if module is None or (rest and rest[0] not in defined_names(module)):
            out.append(m.group(0))
    for m in PATH_ATTR.finditer(text):
        path, attr = m.group(1), m.group(2)
        if attr in EXTENSIONS:
            continue
        files = [ROOT / (base + path + ".py") for base in BASES if (ROOT / (base + path + ".py")).is_file()]
        if files and not any(attr in defined_names(f) for f in files):
            out.append(f"{path}.{attr}")
    for m in DOTTED.finditer(text):
        parts = m.group(1).split(".")
        if parts[0] == "tracer" or parts[-1] in EXTENSIONS:
            continue
        # `store.outbox.x`: a package and a module of it; `outbox.x`: a module named so.
        module, rest = _module_file(["tracer", *parts])
        if module is not None and len(rest) < len(parts):
            if rest and rest[0] not in defined_names(module):
                out.append(m.group(1))
            continue
        candidates = modules_by_stem().get(parts[0], [])
        if candidates and not any(parts[1] in defined_names(c) for c in candidates) \
                and parts[1] not in table_columns().get(parts[0], ()) and m.group(1) not in NOT_NAMES:
            out.append(m.group(1))
    return out


@functools.cache
def table_columns() -> dict[str, frozenset[str]]:
    """table -> the words of its CREATE/ALTER statements in the migrations (`traces.hop_count` is
    a column, not a name of tracer/store/traces.py)."""
    sql = "\n".join(p.read_text() for p in sorted((ROOT / "schemas" / "migrations").glob("*.sql")))
    out: dict[str, set[str]] = {}
    for m in re.finditer(r"(?:CREATE TABLE|ALTER TABLE)\s+(?:IF NOT EXISTS\s+)?(\w+)(.*?);", sql, re.S | re.I):
        out.setdefault(m.group(1), set()).update(re.findall(r"\w+", m.group(2)))
    return {k: frozenset(v) for k, v in out.items()}


# In backticks: `snake_case`, `_private` and `CamelCase` words are names (functions, fields, columns,
# event types, JSON keys): the code or the schemas must spell them.
IDENTIFIER = re.compile(r"(?<![\w./*-])(_?[a-z]\w*_\w+|_[A-Za-z]\w+|[A-Z]\w*[a-z]\w*[A-Z]\w*)(?![\w/.])")
NOT_OURS = {"PyPI"}


@functools.cache
def spelled_words() -> frozenset[str]:
    schemas = [p.read_text() for p in _walk(ROOT / "schemas") if p.is_file()]
    return frozenset(re.findall(r"\w+", "\n".join([code_text(), *schemas])))


def missing_identifiers(text: str) -> list[str]:
    return [m.group(1) for span in re.findall(r"`([^`]+)`", text) for m in IDENTIFIER.finditer(span)
            if m.group(1) not in spelled_words() and m.group(1) not in NOT_OURS]


# ---------------------------------------------------------------------- environment variables


@functools.cache
def code_text() -> str:
    folders = ("tracer", "tests", "bench", ".ci")
    # This file spells missing names on purpose (test_the_check_sees_rot).
    texts = [p.read_text(errors="replace") for f in folders for p in _walk(ROOT / f)
             if p.is_file() and p.suffix in (".py", "") and p != Path(__file__).resolve()]
    texts += [(ROOT / f).read_text() for f in ("docker-compose.yml", "Dockerfile") if (ROOT / f).is_file()]
    return "\n".join(texts)


def missing_env(text: str) -> list[str]:
    out = []
    for m in ENV.finditer(text):
        name = m.group(1) + ("_" if m.group(2) else "")
        if name in code_text():
            continue
        # TRACER_RPC_URL_ARBITRUM: made from a prefix the code spells.
        if any(name.startswith(prefix) and len(name) > len(prefix)
               for prefix in re.findall(r"\b(TRACER_\w+_)[\"'{]", code_text())):
            continue
        out.append(name)
    return out


# ------------------------------------------------------------------------------------- endpoints


@functools.cache
def route_patterns() -> tuple[tuple[str, str], ...]:
    source = (ROOT / "tracer" / "api" / "routes.py").read_text()
    return tuple(re.findall(r'Route\("(\w+)", "([^"]+)"', source))


def _route_matches(doc_path: str, route: str) -> bool:
    a, b = doc_path.strip("/").split("/"), route.strip("/").split("/")
    return len(a) == len(b) and all(x == y or y.startswith("{") for x, y in zip(a, b, strict=True))


def missing_endpoints(text: str) -> list[str]:
    out = []
    for m in ENDPOINT.finditer(text):
        path = re.split(r"[?`]", m.group(1))[0].rstrip(".,/")
        if path.endswith("..."):
            path = path[:-3].rstrip("/")
        if path in ("/v1", ""):
            continue
        methods = re.findall(r"GET|POST|PATCH|DELETE|PUT", m.group(0).split("/v1")[0])
        routes = [(meth, r) for meth, r in route_patterns() if _route_matches(path, r)]
        # A doc path ending in a placeholder's value (`/v1/addresses/...`) may stop short of a route.
        if not routes and not any(r.startswith(path + "/") for _, r in route_patterns()):
            out.append(m.group(0).strip())
        elif routes and methods and not set(methods) <= {meth for meth, _ in routes}:
            out.append(m.group(0).strip())
    return out


# ------------------------------------------------------------------------------------------- CLI


@functools.cache
def cli_tree() -> dict[str, set[str]]:
    """Verb (and `verb sub`) -> its option strings; "" -> the top level's."""
    from tracer.cli import build_parser

    tree: dict[str, set[str]] = {}

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        tree[name] = {o for a in parser._actions for o in a.option_strings}
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for verb, sub in action.choices.items():
                    walk(sub, f"{name} {verb}".strip())

    walk(build_parser(), "")
    return tree


def missing_cli(text: str) -> list[str]:
    out = []
    tree = cli_tree()
    for m in TRACER_CMD.finditer(text):
        rest = re.sub(r"'[^']*'|\"[^\"]*\"", "", m.group(2))  # a quoted value is another tool's
        verb, args = m.group(1), rest.split()
        if verb not in tree:
            # `tracer` as a word in a sentence ("tracer reads ...") is no command.
            if m.group(0).lstrip()[:1] in "`$|&;(" or "--" in m.group(2):
                out.append(f"tracer {verb}")
            continue
        command = verb
        if args and f"{verb} {args[0]}" in tree:
            command = f"{verb} {args[0]}"
        elif args and re.fullmatch(r"[a-z][a-z-]+", args[0]) and any(k.startswith(verb + " ") for k in tree) \
                and args[0].split("|")[0] not in tree[verb]:
            out.append(f"tracer {verb} {args[0]}")
            continue
        for flag in FLAG.findall(rest):
            if flag not in tree[command] | tree[""] | {"--help"}:
                out.append(f"tracer {command} {flag}")
    # Any other flag: an option of some tracer command, or spelled by the code (bench scripts, tests).
    options = set().union(*tree.values())
    pyproject = (ROOT / "pyproject.toml").read_text()  # pytest's addopts
    out += [flag for flag in FLAG.findall(text) if flag not in options | OTHER_TOOLS_FLAGS
            and f'"{flag}"' not in code_text() and not re.search(re.escape(flag) + r"(?![\w-])", pyproject)]
    for m in BENCH_CMD.finditer(text):
        script = ROOT / m.group(1)
        if not script.is_file():
            out.append(m.group(1))
            continue
        source = script.read_text() + (ROOT / "bench" / "common.py").read_text()
        rest = re.sub(r"'[^']*'|\"[^\"]*\"", "", m.group(2))
        out += [f"{m.group(1)} {flag}" for flag in FLAG.findall(rest) if f'"{flag}"' not in source]
    return out


# ----------------------------------------------------------------------------------------- tests


def rotten(text: str) -> dict[str, list[str]]:
    found = {"paths": missing_paths(text), "names": missing_names(text) + missing_identifiers(text),
             "env": missing_env(text),
             "endpoints": missing_endpoints(text), "cli": missing_cli(text)}
    return {k: sorted(set(v)) for k, v in found.items() if v}


@pytest.mark.parametrize("doc", DOCS)
def test_what_the_doc_names_exists(doc: str) -> None:
    assert rotten(doc_text(doc)) == {}, f"{doc} names what the code does not hold"


def documented_routes(text: str) -> set[tuple[str, str]]:
    """(method, route) of tracer/api/routes.py that the text names with its method."""
    found = set()
    for m in ENDPOINT.finditer(text):
        path = re.split(r"[?`]", m.group(1))[0].rstrip(".,/")
        methods = set(re.findall(r"GET|POST|PATCH|DELETE|PUT", m.group(0).split("/v1")[0].split("/metrics")[0]))
        found |= {(meth, r) for meth, r in route_patterns() if meth in methods and _route_matches(path, r)}
    return found


def test_every_route_is_in_the_api_doc() -> None:
    assert set(route_patterns()) - documented_routes(doc_text("docs/API.md")) == set(), \
        "routes docs/API.md does not list (add a row to its table)"


def test_the_check_sees_rot() -> None:
    text = ("`tracer/engine/step/decide.py` and tests/unit/test_gone.py, `store/nothing.py`, `ghost.py`;\n"
            "`tracer.engine.step.decide.decide` and `tracer.engine.step.decide.no_such_name`,\n"
            "`store/outbox.insert_hop_events`, `store/outbox.no_such`, `outbox.no_such_either()`,\n"
            "`claim_jobs` and `_claim_jobs_gone`, `TraceInfo` and `TraceInfoGone`,\n"
            "TRACER_RPC_URL, TRACER_NO_SUCH_VAR, GET /v1/traces/{id}/exits, GET /v1/nothing,\n"
            "DELETE /v1/screen, `tracer demo --json`, `tracer demo --no-such-flag`, `tracer vanish`,\n"
            "python bench/screen.py --smoke, python bench/nothing.py\n")
    assert rotten(text) == {
        "paths": ["bench/nothing.py", "ghost.py", "store/nothing.py", "tests/unit/test_gone.py"],
        "names": ["TraceInfoGone", "_claim_jobs_gone", "outbox.no_such_either", "store/outbox.no_such",
                  "tracer.engine.step.decide.no_such_name"],
        "env": ["TRACER_NO_SUCH_VAR"],
        "endpoints": ["DELETE /v1/screen", "GET /v1/nothing"],
        "cli": ["--no-such-flag", "bench/nothing.py", "tracer demo --no-such-flag", "tracer vanish"],
    }


if __name__ == "__main__":
    for name in DOCS:
        for kind, items in rotten(doc_text(name)).items():
            for item in items:
                print(f"{name}: {kind}: {item}")
