"""API keys end to end: `tracer keys` creates/lists/revokes them for real (CLI processes), the
server checks them on every request with scopes, stores only hashes, and runs open on loopback
only when no key exists (and `tracer serve` refuses to run open on any other host)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.api_support import running_api
from tests.fixtures_db import temporary_database
from tracer.api.app import OpenServerRefused
from tracer.api.context import Settings
from tracer.store.db import Database

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROOT = Path(__file__).resolve().parents[2]
ADDRESS = "0x" + "33" * 20


async def _cli(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    env = dict(os.environ, TRACER_LOG_LEVEL="WARNING")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "tracer.cli", *args, cwd=ROOT, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _create_key(url: str, *scopes: str, name: str) -> dict[str, Any]:
    args = ["keys", "create", "--database-url", url, "--name", name, "--json"]
    for s in scopes:
        args += ["--scope", s]
    rc, out, err = await _cli(*args)
    assert rc == 0, err
    return dict(json.loads(out))


async def test_open_mode_is_loopback_only(pg_server_url: str, migrated_template: str) -> None:
    async with temporary_database(pg_server_url, template=migrated_template) as url:
        db = await Database.connect(url, migrate=False)
        try:
            async with running_api(db) as api:
                _, body, _ = await api.call("POST", f"/v1/addresses/ethereum/{ADDRESS}/labels", expect=201,
                                            json={"entity": "Some desk", "category": "otc"})
                assert body["created_by"] == "open"
                await api.call("GET", "/v1/audit", expect=200)
            with pytest.raises(OpenServerRefused, match="not a loopback address"):
                async with running_api(db, settings=Settings(host="0.0.0.0")):
                    pass
        finally:
            await db.close()
        # The real command: refuses to serve open beyond loopback, says so when open on loopback.
        rc, _, err = await _cli("serve", "--host", "0.0.0.0", "--port", "0", "--database-url", url)
        assert rc == 2 and "refusing to serve an open API" in err
        env = dict(os.environ, TRACER_LOG_LEVEL="WARNING")
        env.pop("TRACER_RPC_URL", None)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tracer.cli", "serve", "--port", "0", "--database-url", url, cwd=ROOT, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        assert proc.stderr is not None
        try:
            text = ""
            while "listening on" not in text:
                line = await asyncio.wait_for(proc.stderr.readline(), 60)
                assert line, text
                text += line.decode()
            assert "OPEN" in text and "loopback only" in text
            base = re.search(r"listening on (http://\S+)", text)
            assert base is not None
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_keys_scopes_hashing_and_revocation(db: Database, database_url: str) -> None:
    reader = await _create_key(database_url, "read", name="dashboard")
    tracer_key = await _create_key(database_url, "trace", name="analyst-ann")
    admin = await _create_key(database_url, "admin", name="ops")
    # only a hash is stored: the secret part appears nowhere in the table
    secret = reader["key"].split("_", 2)[2]
    row = await db.pool.fetchrow("SELECT * FROM api_keys WHERE key_id = $1", reader["key_id"])
    assert bytes(row["secret_sha256"]) == hashlib.sha256(secret.encode()).digest()
    assert secret not in json.dumps({k: str(v) for k, v in dict(row).items()})

    async with running_api(db, settings=Settings(key_cache_seconds=0.2)) as api:
        # public routes need no key
        for path in ("/v1/health", "/metrics", "/v1/openapi.json"):
            await api.call("GET", path, expect=200)
        _, p, headers = await api.call("GET", "/v1/traces", expect=401)
        assert "Bearer" in headers["WWW-Authenticate"]
        for bad in ("nonsense", "trk_nope_nope", reader["key"] + "x", reader["key"].upper()):
            await api.call("GET", "/v1/traces", key=bad, expect=401)
        await api.call("GET", "/v1/traces", expect=401, headers={"Authorization": "Basic dXNlcjpwYXNz"})

        # read: GETs only
        await api.call("GET", "/v1/traces", key=reader["key"], expect=200)
        await api.call("GET", f"/v1/addresses/ethereum/{ADDRESS}", key=reader["key"], expect=200)
        _, p, _ = await api.call("POST", "/v1/traces", key=reader["key"], json={"seeds": [ADDRESS]}, expect=403)
        assert "trace" in p["detail"]
        await api.call("GET", "/v1/audit", key=reader["key"], expect=403)
        # trace: writes an investigator may do, and reads; not deletes or the audit log
        _, label, _ = await api.call("POST", f"/v1/addresses/ethereum/{ADDRESS}/labels", key=tracer_key["key"],
                                     json={"entity": "Desk", "category": "otc"}, expect=201)
        assert label["created_by"] == "analyst-ann"
        await api.call("GET", "/v1/traces", key=tracer_key["key"], expect=200)
        await api.call("DELETE", "/v1/traces/1", key=tracer_key["key"], expect=403)
        await api.call("GET", "/v1/audit", key=tracer_key["key"], expect=403)
        # admin, as a bearer token
        _, audit, _ = await api.call("GET", "/v1/audit?action=label.create", expect=200,
                                     headers={"Authorization": f"Bearer {admin['key']}"})
        entry = audit["items"][0]
        assert entry["actor"] == "analyst-ann" and entry["api_key_id"] == tracer_key["id"]
        await api.call("DELETE", "/v1/traces/424242", key=admin["key"], expect=404)

        # revoke through the CLI: within the cache period the server stops accepting the key
        rc, out, _ = await _cli("keys", "revoke", reader["key_id"], "--database-url", database_url)
        assert rc == 0 and "revoked" in out
        await asyncio.sleep(0.3)
        _, p, _ = await api.call("GET", "/v1/traces", key=reader["key"], expect=401)
        assert "revoked" in p["detail"]
        await api.call("GET", "/v1/traces", key=admin["key"], expect=200)

    rc, out, _ = await _cli("keys", "list", "--json", "--database-url", database_url)
    listed = {k["name"]: k for k in json.loads(out)}
    assert listed["dashboard"]["revoked_at"] and not listed["ops"]["revoked_at"]
    assert listed["ops"]["last_used_at"]  # touched by its requests
    assert all("key" not in k for k in listed.values())  # secrets are never shown again
    rc, out, _ = await _cli("keys", "list", "--database-url", database_url)
    assert "revoked" in out and "trk_" + admin["key_id"] in out
    rc, _, err = await _cli("keys", "revoke", "nosuchkey", "--database-url", database_url)
    assert rc == 2 and "no key" in err
    # with keys configured the server is no longer open, even on loopback
    actions = [r["action"] for r in await db.pool.fetch("SELECT action FROM audit_log ORDER BY id")]
    assert actions.count("key.create") == 3 and "key.revoke" in actions
