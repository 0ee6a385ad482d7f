"""The web view's files and routes, without a browser: what `/`, `/ui` and `/ui/{static,vendor}/*`
serve (types, security headers, no key needed even when keys exist, nothing outside the two
folders), that the page references only files that exist, and that every vendored library is the
one its README names (SHA-256) and ships its licence."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import sys
import tomllib
from pathlib import Path

import aiohttp
import pytest

from tests.api_support import running_api
from tracer.store import keys as key_store
from tracer.store.db import Database
from tracer.web import server as web_server

ASYNC = pytest.mark.asyncio(loop_scope="session")

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "tracer" / "web"


@ASYNC
async def test_page_and_assets_are_served_without_a_key_while_the_api_needs_one(db: Database) -> None:
    async with db.pool.acquire() as conn:
        await key_store.create_key(conn, "web-static-test", ["read"], created_by="test")
    async with running_api(db) as api:
        s = api.session
        async with s.get(api.base + "/", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/ui"
        async with s.get(api.base + "/ui/?trace=3", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/ui?trace=3"
        async with s.get(api.base + "/ui") as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "text/html; charset=utf-8"
            csp = r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["Cache-Control"] == "no-cache"
            html = await r.text()
        # The data is not public: the API itself still wants the key.
        async with s.get(api.base + "/v1/traces") as r:
            assert r.status == 401
        referenced = re.findall(r'(?:src|href)="(/ui/[^"]+)"', html)
        assert len(referenced) >= 9
        for path in referenced:
            async with s.get(api.base + path) as r:
                assert r.status == 200, path
                body = await r.read()
                assert body
                expected = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}[Path(path).suffix]
                assert r.headers["Content-Type"].split(";")[0] == expected, path
                assert r.headers["Cache-Control"] == "no-cache"
                etag = r.headers.get("ETag")
            if etag:  # revalidation is cheap: unchanged files answer 304
                async with s.get(api.base + path, headers={"If-None-Match": etag}) as r:
                    assert r.status == 304
        # ES modules imported by app.js are served too.
        async with s.get(api.base + "/ui/static/app.js") as r:
            app_js = await r.text()
        for module in re.findall(r'from "\./([\w.-]+\.js)"', app_js):
            async with s.get(api.base + f"/ui/static/{module}") as r:
                assert r.status == 200, module


@ASYNC
async def test_tracer_serve_says_where_the_page_is_and_serves_it(database_url: str) -> None:
    """The real command: its startup line names the page, which it serves with its scripts."""
    env = dict(os.environ, TRACER_LOG_LEVEL="WARNING")
    env.pop("TRACER_RPC_URL", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracer.cli", "serve", "--port", "0", "--database-url", database_url, cwd=ROOT,
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    try:
        text = ""
        while "listening on" not in text:
            line = await asyncio.wait_for(proc.stderr.readline(), 60)
            assert line, text
            text += line.decode()
        found = re.search(r"web view: (http://\S+/ui)", text)
        assert found is not None, text
        async with aiohttp.ClientSession() as s:
            async with s.get(found.group(1)) as r:
                assert r.status == 200 and "<title>tracer" in await r.text()
            async with s.get(found.group(1) + "/vendor/cytoscape.min.js") as r:
                assert r.status == 200 and len(await r.read()) > 100_000
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0


BAD_PATHS = (
    "/ui/static/server.py", "/ui/static/__init__.py", "/ui/vendor/../server.py", "/ui/static/..%2fserver.py",
    "/ui/static/%2e%2e%2fserver.py", "/ui/vendor/nope.js", "/ui/other/app.js", "/ui/static/.hidden.js",
    "/ui/static/app.js/x", "/ui/vendor/README.md/", "/ui/static/%00.js",
)


@ASYNC
async def test_nothing_outside_the_two_folders_is_served(db: Database) -> None:
    async with running_api(db) as api, aiohttp.ClientSession() as s:
        for path in BAD_PATHS:
            async with s.get(api.base + path, allow_redirects=False) as r:
                assert r.status == 404, (path, r.status)
                assert b"import " not in await r.read()


def test_vendored_libraries_match_their_readme_and_ship_their_licences() -> None:
    vendor = WEB / "vendor"
    readme = (vendor / "README.md").read_text()
    rows = re.findall(r"^\| ([\w.-]+\.js) \| .*\| ([0-9a-f]{64}) \|$", readme, flags=re.M)
    listed = {name: digest for name, digest in rows}
    shipped = {p.name for p in vendor.glob("*.js")}
    assert shipped == set(listed), "every vendored script is listed in vendor/README.md and vice versa"
    for name, digest in listed.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
    licences = {p.name for p in vendor.glob("LICENSE.*.txt")}
    for package in ("cytoscape", "cytoscape-dagre", "dagrejs-dagre", "dagrejs-graphlib", "d3-array", "internmap",
                    "d3-path", "d3-shape", "d3-sankey"):
        assert f"LICENSE.{package}.txt" in licences, package
        text = (vendor / f"LICENSE.{package}.txt").read_text()
        assert "Copyright" in text and ("Permission" in text or "Redistribution" in text), package


def test_every_served_file_is_package_data() -> None:
    """A wheel must carry the page: each file the server can serve matches a package-data glob."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["tracer"]
    package = ROOT / "tracer"
    packaged = {path for g in globs for path in package.glob(g)}  # what setuptools does with them
    for folder in web_server.FOLDERS.values():
        for path in folder.iterdir():
            if path.suffix in web_server.CONTENT_TYPES:
                assert path in packaged, path.relative_to(package)


def test_page_scripts_use_no_inline_code_or_html_injection() -> None:
    """The CSP forbids inline scripts; text from labels reaches the DOM only as text."""
    html = (WEB / "static" / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script> would be blocked by the CSP"
    assert not re.search(r"\son\w+=", html), "inline event handlers would be blocked by the CSP"
    for js in (WEB / "static").glob("*.js"):
        code = js.read_text()
        assert "innerHTML" not in code and "outerHTML" not in code and "insertAdjacentHTML" not in code, js.name
        assert "eval(" not in code and "new Function" not in code, js.name
