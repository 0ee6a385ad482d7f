"""The unit tier needs nothing outside the process: no database, no network, no subprocess.

The session's Postgres and devchain fixtures are overridden here to fail, and every test runs with
outbound and listening internet sockets and process creation refused, so a test that needs one of
them fails in this folder instead of making ``pytest -m unit`` slow; move it to integration/.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest


class NotInUnitTier(RuntimeError):
    """A unit test reached for something outside the process."""


def _refuse(what: str) -> Any:
    raise NotInUnitTier(f"{what} is not available in tests/unit/ (move the test to tests/integration/)")


# Every fixture of tests/fixtures_db.py and tests/fixtures_chain.py that reaches outside the process.
OUTSIDE_FIXTURES = ("pg_server_url", "migrated_template", "database_url", "db", "devchain", "devchain_factory")


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    return _refuse("Postgres (pg_server_url)")


@pytest.fixture(scope="session")
def migrated_template() -> str:
    return _refuse("Postgres (migrated_template)")


@pytest.fixture(scope="module")
def database_url() -> str:
    return _refuse("Postgres (database_url)")


@pytest.fixture(scope="module")
def db() -> Any:
    return _refuse("Postgres (db)")


@pytest.fixture
def devchain() -> Any:
    return _refuse("a devchain server (devchain)")


@pytest.fixture(scope="module")
def devchain_factory() -> Any:
    return _refuse("a devchain server (devchain_factory)")


@pytest.fixture(autouse=True)
def _nothing_outside_the_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    connect, connect_ex, bind = socket.socket.connect, socket.socket.connect_ex, socket.socket.bind

    def guarded(original: Any, what: str) -> Any:
        def call(self: socket.socket, address: Any) -> Any:
            # Unix sockets and socketpairs (the event loop's self-pipe) stay allowed.
            if self.family in (socket.AF_INET, socket.AF_INET6):
                _refuse(f"the network ({what} {address!r})")
            return original(self, address)

        return call

    def no_process(*args: Any, **kwargs: Any) -> Any:
        return _refuse(f"a subprocess ({args[1] if len(args) > 1 else kwargs.get('args')!r})")

    monkeypatch.setattr(socket.socket, "connect", guarded(connect, "connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(connect_ex, "connect_ex"))
    monkeypatch.setattr(socket.socket, "bind", guarded(bind, "bind"))
    monkeypatch.setattr(subprocess.Popen, "__init__", no_process)
    yield
