"""A real PostgreSQL primary and streaming replica on this machine, for tests (issue 22 item 4).

The system PostgreSQL 15 binaries: `initdb` a primary in a temp dir on a free port, copy it with
`pg_basebackup -R` (which writes the standby's primary_conninfo and standby.signal) and start the
copy as a hot standby on another port. Run as the `postgres` system user when the tests run as
root (PostgreSQL refuses root). Both are stopped and removed on exit.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(os.environ.get("TRACER_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def available() -> bool:
    return all((BIN / tool).exists() for tool in ("initdb", "pg_ctl", "pg_basebackup"))


@contextmanager
def primary_and_replica() -> Iterator[tuple[str, str]]:
    """(primary URL, replica URL) of the `postgres` database on each, trust auth on 127.0.0.1."""
    root = Path(tempfile.mkdtemp(prefix="tracer-replica-"))
    as_root = os.geteuid() == 0
    user = "postgres" if as_root else None
    if as_root:
        entry = pwd.getpwnam("postgres")
        os.chown(root, entry.pw_uid, entry.pw_gid)

    def run(*args: str) -> None:
        subprocess.run([str(a) for a in args], check=True, user=user, cwd=root, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=120)

    primary, replica = root / "primary", root / "replica"
    p_port, r_port = _free_port(), _free_port()
    started: list[Path] = []
    try:
        run(BIN / "initdb", "-D", str(primary), "-U", "postgres", "-A", "trust", "--no-sync")
        # wal_level replica and max_wal_senders are the defaults; fsync off: a throwaway cluster.
        opts = f"-p {p_port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
        run(BIN / "pg_ctl", "-D", str(primary), "-o", opts, "-l", str(root / "primary.log"), "-w", "start")
        started.append(primary)
        run(BIN / "pg_basebackup", "-h", "127.0.0.1", "-p", str(p_port), "-U", "postgres", "-D", str(replica),
            "-R", "-X", "stream", "--no-sync")
        opts = f"-p {r_port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c hot_standby=on"
        run(BIN / "pg_ctl", "-D", str(replica), "-o", opts, "-l", str(root / "replica.log"), "-w", "start")
        started.append(replica)
        yield (f"postgresql://postgres@127.0.0.1:{p_port}/postgres",
               f"postgresql://postgres@127.0.0.1:{r_port}/postgres")
    finally:
        for data in reversed(started):
            subprocess.run([str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], user=user,
                           cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)
