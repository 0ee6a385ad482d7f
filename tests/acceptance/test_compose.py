"""docker-compose.yml, run without Docker (there is no engine here): its services' commands are
started in the order their depends_on give, with the environment the file sets, as real processes
against a throwaway database and free ports, and the trace its `trace` job starts must find the
scenario's exits. Before the labels job existed the same stack traced the scenario to status done
with 0 exits.

What Docker would do and this does instead: the `postgres` image is the test's Postgres server
(a fresh database); the named volume is a temporary folder; service host names and published ports
become 127.0.0.1 and free ports; `tracer` (the image's entrypoint) is `python -m tracer.cli`.
As compose does, each service starts as soon as what it depends on is there (so independent ones
start together): a job (restart: on-failure) is there when it has exited 0, a service (restart:
unless-stopped, started `deploy.replicas` times) when it is started, and healthy when the ports it
publishes accept connections.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tracer.devchain.scenario import Scenario
from tracer.engine import report as treport
from tracer.store.db import create_pool
from tracer.store.urls import quote_ident, with_database

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


def _deps(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("depends_on", {})
    if isinstance(raw, list):
        return {name: "service_started" for name in raw}
    return {name: spec.get("condition", "service_started") for name, spec in raw.items()}


def _order(services: dict[str, Any]) -> list[str]:
    """Services in an order compose could start them: every dependency first (file order otherwise)."""
    done: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"depends_on cycle: {' -> '.join((*path, name))}"
        if name in done:
            return
        for dep in _deps(services[name]):
            visit(dep, (*path, name))
        done.append(name)

    for name in services:
        visit(name, ())
    return done


def _needs(services: dict[str, Any], name: str) -> set[str]:
    """Everything `name` waits for, directly or not."""
    out: set[str] = set()
    todo = list(_deps(services[name]))
    while todo:
        dep = todo.pop()
        if dep not in out:
            out.add(dep)
            todo.extend(_deps(services[dep]))
    return out


def _is_job(service: dict[str, Any]) -> bool:
    return str(service.get("restart", "no")).startswith("on-failure")


def test_compose_file_wires_postgres_api_workers_and_devchain() -> None:
    services = _doc()["services"]
    assert {"postgres", "devchain", "api", "worker", "migrate", "monitor", "deliver", "labels", "trace"} <= set(
        services)
    for name in ("api", "worker", "migrate", "monitor", "deliver", "labels", "trace"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql://")
        for dep in services[name].get("depends_on", {}):
            assert dep in services
    assert services["worker"]["command"][0] == "worker"
    assert services["api"]["command"][0] == "serve"
    assert services["devchain"]["command"][0] == "devchain"
    assert services["monitor"]["command"][0] == "monitor"
    assert services["deliver"]["command"][:2] == ["alerts", "deliver"]
    assert (ROOT / "Dockerfile").exists()


def test_labels_are_imported_before_anything_traces_and_failed_services_restart() -> None:
    services = _doc()["services"]
    labels = services["labels"]["command"]
    assert labels[:2] == ["labels", "import"]
    # The file it imports is the one the scenario job writes, on a volume both mount.
    written = services["scenario"]["command"]
    assert written[written.index("--labels-out") + 1] == labels[2]
    for name in ("worker", "api", "trace"):
        assert "labels" in _needs(services, name), f"{name} can start before the labels are imported"
        assert _deps(services[name]).get("labels") == "service_completed_successfully"
    for name, service in services.items():
        restart = service.get("restart")
        assert restart, f"{name} has no restart policy"
        if name in ("postgres", "devchain", "api", "worker", "monitor", "deliver"):
            assert restart in ("unless-stopped", "always"), (name, restart)
        else:
            assert _is_job(service), (name, restart)  # jobs retry until they succeed, then stay done


# ------------------------------------------------------------------------------ the stack, run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 1):
            return True
    except OSError:
        return False


@dataclass
class Stack:
    """The compose services as processes: what Docker names become here, and what is running."""

    database_url: str
    volume: Path
    ports: dict[str, dict[str, int]] = field(default_factory=dict)  # service -> container port -> free port
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: Path = Path()
    running: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)  # started, by service
    healthy: set[str] = field(default_factory=set)  # services whose published ports accept connections
    completed: set[str] = field(default_factory=set)  # jobs that exited 0

    def value(self, text: str) -> str:
        text = re.sub(r"postgresql://[^\s]*@postgres:5432/\w+", self.database_url, text)
        for service, mapping in self.ports.items():
            for inner, outer in mapping.items():
                text = text.replace(f"{service}:{inner}", f"127.0.0.1:{outer}")
        return text.replace("/scenario", str(self.volume))

    def command(self, name: str, service: dict[str, Any]) -> list[str]:
        args = [self.value(str(a)) for a in service["command"]]
        for i, a in enumerate(args[:-1]):
            if a == "--host":
                args[i + 1] = "127.0.0.1"
            if a == "--port" and args[i + 1] in self.ports.get(name, {}):
                args[i + 1] = str(self.ports[name][args[i + 1]])
        return [sys.executable, "-m", "tracer.cli", *args]

    def env(self, service: dict[str, Any]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TRACER_RPC_URL")}
        env.update({k: self.value(str(v)) for k, v in (service.get("environment") or {}).items()})
        env["TRACER_LOG_LEVEL"] = "WARNING"
        return env

    def publish(self, name: str, service: dict[str, Any]) -> None:
        mapping = {}
        for spec in service.get("ports", []):
            inner = str(spec).split(":")[-1]
            mapping[inner] = _free_port()
        self.ports[name] = mapping

    def ready(self, services: dict[str, Any], name: str) -> bool:
        """Whether every condition `name` depends on holds now."""
        for dep, condition in _deps(services[name]).items():
            if condition == "service_completed_successfully":
                held = dep in self.completed
            elif condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}'s health, which has no check"
                held = dep == "postgres" or dep in self.healthy  # the test's server stands in for postgres
            else:
                held = dep in self.running
            if not held:
                return False
        return True

    def start(self, name: str, service: dict[str, Any], cwd: Path) -> None:
        cmd, env = self.command(name, service), self.env(service)
        n = 1 if _is_job(service) else int(service.get("deploy", {}).get("replicas", 1))
        self.running[name] = []
        for i in range(n):
            with (self.logs / f"{name}-{i}.log").open("wb") as out, (self.logs / f"{name}-{i}.err").open("wb") as err:
                proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err)
            self.running[name].append(proc)
            if not _is_job(service):
                self.procs.append(proc)

    def log(self, name: str) -> str:
        return "\n".join((self.logs / f"{name}-0.{ext}").read_text(errors="replace")[-3000:] for ext in ("log", "err"))


def _admin(server: str, sql: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(server)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture
def compose_database(pg_server_url: str) -> Iterator[str]:
    """An empty database (the stack's migrate job makes the schema), dropped after."""
    name = f"tracer_compose_{secrets.token_hex(4)}"
    _admin(pg_server_url, f"CREATE DATABASE {quote_ident(name)}")
    try:
        yield with_database(pg_server_url, name)
    finally:
        _admin(pg_server_url, f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")


def test_the_compose_stack_traces_the_scenario_to_its_exits(compose_database: str, tmp_path: Path) -> None:
    doc = _doc()
    services = doc["services"]
    volume = tmp_path / "scenario"
    volume.mkdir()
    stack = Stack(compose_database, volume, logs=tmp_path)
    for name, service in services.items():
        stack.publish(name, service)
    pending = [name for name in _order(services) if "build" in services[name]]
    assert [name for name in services if name not in pending] == ["postgres"]  # the test's server stands in
    assert "healthcheck" in services["postgres"]
    deadline = time.monotonic() + 600
    try:
        while pending or set(stack.running) - stack.completed - stack.healthy:
            for name in [n for n in pending if stack.ready(services, n)]:
                pending.remove(name)
                stack.start(name, services[name], tmp_path)
            for name, procs in stack.running.items():
                if name in stack.completed or name in stack.healthy:
                    continue
                if _is_job(services[name]):
                    rc = procs[0].poll()
                    assert rc in (None, 0), f"{name} exited {rc}: {stack.log(name)}"
                    if rc == 0:
                        stack.completed.add(name)
                    continue
                died = [p.returncode for p in procs if p.poll() is not None]
                assert not died, f"{name} exited {died}: {stack.log(name)}"
                if all(_port_open(port) for port in stack.ports[name].values()):
                    stack.healthy.add(name)  # no port published: started is all there is to wait for
            assert time.monotonic() < deadline, f"still starting: {pending}, running: {list(stack.running)}"
            time.sleep(0.05)
        for proc in stack.procs:
            assert proc.poll() is None, f"a service died: {proc.args}"
    finally:
        everything = [p for procs in stack.running.values() for p in procs]
        for proc in everything:
            if proc.poll() is None:
                proc.terminate()
        for proc in everything:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    scenario = Scenario.load(volume / "chain.json.gz")
    assert scenario.truth.offramps
    seeds = (volume / "seeds.txt").read_text().split()
    assert seeds == scenario.seeds
    rep = _report(compose_database)
    assert rep.status == "done"
    assert sorted(rep.seeds) == sorted(seeds)
    found = {(e.address, e.asset): e.amount for e in rep.exits}
    missing = [o for o in scenario.truth.offramps if (o.address, o.asset) not in found]
    assert not missing, f"{len(missing)} of {len(scenario.truth.offramps)} off-ramps not reached: {missing[:3]}"
    for o in scenario.truth.offramps:
        # The default model's amounts against the generator's haircut truth.
        assert abs(found[(o.address, o.asset)] - o.amount) <= o.amount * 0.01, (o, found[(o.address, o.asset)])
    # The job printed the report: every exit is in it (addresses shortened as 0x1234ab…cdef01).
    printed = (tmp_path / "trace-0.log").read_text().lower()
    for o in scenario.truth.offramps:
        assert f"{o.address[:8]}…{o.address[-6:]}" in printed, (o.address, printed[-2000:])


def _report(url: str) -> treport.Report:
    import asyncio

    async def read() -> treport.Report:
        pool = await create_pool(url, min_size=1, max_size=2)
        try:
            trace_id = await pool.fetchval("SELECT max(id) FROM traces")
            return await treport.build(pool, trace_id)
        finally:
            await pool.close()

    return asyncio.run(read())
