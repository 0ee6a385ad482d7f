"""No log call under tracer/ is handed a whole URL: providers keep API keys in RPC URLs, and log
lines travel to aggregators and bug reports. A node is logged by its name (`chains.urls.node_name`:
scheme, host and port), a database by `redact_url(...)`."""

from __future__ import annotations

import ast
from pathlib import Path

TRACER = Path(__file__).resolve().parents[2] / "tracer"
LEVELS = {"debug", "info", "warning", "error", "exception", "critical", "log"}
URLISH = {"url", "_url", "rpc_url", "ws_url", "node_url", "base_url", "api_url"}


def _url_arguments(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in LEVELS
                and isinstance(node.func.value, ast.Name) and node.func.value.id in {"log", "logger", "logging"}):
            continue
        for arg in [*node.args[1:], *(k.value for k in node.keywords)]:
            name = arg.attr if isinstance(arg, ast.Attribute) else arg.id if isinstance(arg, ast.Name) else None
            if name in URLISH:
                found.append((node.lineno, name))
    return found


def test_no_log_call_is_given_a_url() -> None:
    offenders = [f"{path.relative_to(TRACER.parent)}:{line} logs {name}"
                 for path in sorted(TRACER.rglob("*.py"))
                 for line, name in _url_arguments(ast.parse(path.read_text(encoding="utf-8")))]
    assert offenders == []


def test_the_check_sees_a_url_handed_to_a_log_call() -> None:
    tree = ast.parse('log.info("node at %s", self.url)\nlog.warning("x %s %s", a, url=rpc_url)\n'
                     'log.info("node at %s", self.name)\n')
    assert _url_arguments(tree) == [(1, "url"), (2, "rpc_url")]
