"""aiohttp routes serving the web view: `/` and `/ui` (the page), `/ui/static/*` and `/ui/vendor/*`.

The routes are public (no API key): the page holds no data, every read it makes goes to `/v1`
with the key the user enters. Only files that exist directly in `static/` or `vendor/` with a
known type are served; names are checked before any path is built.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

WEB_DIR = Path(__file__).resolve().parent
FOLDERS = {"static": WEB_DIR / "static", "vendor": WEB_DIR / "vendor"}
CONTENT_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain",
    ".md": "text/plain",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

#: The page runs only its own scripts and talks only to its own origin. Cytoscape sets element
#: styles from script, hence 'unsafe-inline' for styles alone; PNG export goes through blob: URLs.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
# Revalidate every time (cheap: FileResponse answers If-None-Match / If-Modified-Since with 304), so
# an upgraded server never runs a stale script against a newer API.
_CACHE = "no-cache"


async def root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/ui")


async def page(request: web.Request) -> web.StreamResponse:
    if request.path.endswith("/"):
        raise web.HTTPFound("/ui" + (f"?{request.query_string}" if request.query_string else ""))
    return web.FileResponse(FOLDERS["static"] / "index.html", headers={
        "Content-Type": "text/html; charset=utf-8", "Cache-Control": _CACHE, "Content-Security-Policy": CSP,
        "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"})


async def asset(request: web.Request) -> web.StreamResponse:
    folder = FOLDERS[request.match_info["folder"]]
    name = request.match_info["name"]
    ctype = CONTENT_TYPES.get(Path(name).suffix)
    if not _NAME.match(name) or ctype is None or not (folder / name).is_file():
        raise web.HTTPNotFound()
    charset = "; charset=utf-8" if ctype.startswith("text/") or ctype.endswith("+xml") else ""
    return web.FileResponse(folder / name, headers={"Content-Type": ctype + charset, "Cache-Control": _CACHE})


def add_routes(app: web.Application) -> None:
    """Mount the web view. Its routes are not in tracer.api.routes.ROUTES: they are not part of the
    API contract (schemas/openapi.yaml) and need no scope."""
    app.router.add_get("/", root)
    app.router.add_get("/ui", page)
    app.router.add_get("/ui/", page)
    app.router.add_get("/ui/{folder:static|vendor}/{name}", asset)
