"""The `tracer` command line as a parser: one `--database-url` rule for every command (issue 18)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from tracer.cli import build_parser


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every command the parser runs, as (words, its parser): the leaves of the sub-command tree."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _commands(sub, (*path, name))


def _database_url(parser: argparse.ArgumentParser) -> argparse.Action | None:
    return next((a for a in parser._actions if "--database-url" in a.option_strings), None)


def test_every_database_command_resolves_the_url_when_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # Set while the parser is built: a default read from it here would be frozen into the parser.
    monkeypatch.setenv("DATABASE_URL", "postgresql://from-env/db")
    commands = {" ".join(words): _database_url(p) for words, p in _commands(build_parser())}
    with_flag = {name: action for name, action in commands.items() if action is not None}
    # The commands that open the database, from every module that registers some.
    assert {"demo", "trace", "worker", "serve", "db migrate", "labels show", "alerts deliver", "prices import",
            "cases list", "cases note"} <= set(with_flag)
    for name, action in with_flag.items():
        assert action.default is None, f"tracer {name}: --database-url defaults to {action.default!r}"
        assert action.metavar == "URL" and action.help and "$DATABASE_URL" in action.help, name


def test_a_given_url_wins_and_cases_runs_from_the_cli_layer() -> None:
    args = build_parser().parse_args(["cases", "list", "--database-url", "postgresql://flag/db"])
    assert args.database_url == "postgresql://flag/db"
    assert args.func.__module__ == "tracer.cases_cli"


def test_rpc_is_read_when_the_command_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # Set while the parser is built: each handler reads it when it runs (tracer.config.rpc_urls).
    monkeypatch.setenv("TRACER_RPC_URL", "http://from-env:8545")
    parser = build_parser()
    for argv in (["trace", "0x00"], ["worker"], ["monitor"], ["report", "1"], ["serve"]):
        assert parser.parse_args(argv).rpc is None, argv


def test_serve_help_shows_the_api_defaults() -> None:
    from tracer.api.context import Settings
    from tracer.api.limit_flags import LIMITS

    # The parser prints its defaults without importing the API: they must be the ones it runs with.
    for flag, _, _, _, default in LIMITS:
        assert getattr(Settings(), flag[2:].replace("-", "_")) == default, flag
