"""`POST /v1/labels/import`: a label file (OFAC SDN XML / advanced XML / JSON / CSV, tagpacks,
plain CSV) uploaded as the request body and applied like `tracer labels import`.

The body streams to a temporary file under its own size cap (sanctions lists run to tens of MB,
far past the API's JSON body limit). A file that does not parse, or that the importer refuses, is
a 400 naming the file and the position and leaves nothing behind: parse first, then one
transaction holding the import, its labels and the audit entry.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from tracer.api import params
from tracer.api.auth import audit, principal_of
from tracer.api.errors import ApiError, bad_request
from tracer.api.handlers.common import ctx_of, ok
from tracer.labels.formats import FORMATS
from tracer.labels.importer import apply_parsed, parse_file
from tracer.labels.parsed import LabelImportError, parse_date, sha256_file

#: Bigger than any list OFAC publishes today (the advanced XML is ~100 MB zipped ~10: refuse
#: that and ask for the smaller formats) while bounding what one request can make us store.
MAX_FILE = 64 << 20
_CHUNK = 1 << 16
#: Content types a label file may come as, with the file suffix that steers format detection.
#: A file must declare its type: no type at all and text/plain (what a browser sends cross-site
#: without asking) are refused, except text/plain for OFAC's plain address lists (.txt).
_SUFFIXES = {
    "application/octet-stream": "", "text/plain": ".txt",
    "text/csv": ".csv", "application/csv": ".csv",
    "application/json": ".json",
    "application/xml": ".xml", "text/xml": ".xml",
    "application/yaml": ".yaml", "application/x-yaml": ".yaml", "text/yaml": ".yaml",
}
#: The suffixes and formats each declared type may carry (octet-stream: any, the format decides).
_FAMILY = {".csv": ({".csv"}, {"csv", "ofac-flat", "tagpack"}), ".json": ({".json"}, {"ofac-json", "ofac-asset-list"}),
           ".xml": ({".xml"}, {"sdn-xml", "sdn-advanced"}), ".yaml": ({".yaml", ".yml"}, {"tagpack"}),
           ".txt": ({".txt"}, {"ofac-asset-list"})}


def _check_declared(ctype: str, name: str, fmt: str, named: bool) -> None:
    suffix = _SUFFIXES[ctype]
    if not suffix:
        return
    suffixes, formats = _FAMILY[suffix]
    own = Path(name).suffix.lower()
    if named and own in {s for f in _FAMILY.values() for s in f[0]} and own not in suffixes:
        raise ApiError(415, "Unsupported media type", f"a {own} file sent as {ctype}", field="Content-Type")
    if fmt != "auto" and fmt not in formats:
        raise ApiError(415, "Unsupported media type", f"format {fmt} is not sent as {ctype}", field="Content-Type")
    asset_list = named and Path(name).name.lower().startswith("sanctioned_addresses_")
    if suffix == ".txt" and fmt == "auto" and not asset_list:
        raise ApiError(415, "Unsupported media type", "text/plain is only for OFAC address lists "
                       "(sanctioned_addresses_*.txt or format=ofac-asset-list); declare the file's type",
                       field="Content-Type")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def _file_name(request: web.Request, ctype: str) -> str:
    name = params.str_param(request, "filename", max_len=200)
    if name is None:
        return "upload" + _SUFFIXES[ctype]
    if not _NAME.fullmatch(name) or ".." in name:
        raise bad_request("filename", "a plain file name (letters, digits, '.', '_', '-'), such as sdn.xml")
    return name


async def _spool(request: web.Request, path: Path) -> int:
    size = 0
    with path.open("wb") as fh:
        async for chunk in request.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > MAX_FILE:
                raise ApiError(413, "Request Entity Too Large", f"label file larger than {MAX_FILE} bytes",
                               field="body")
            fh.write(chunk)
    return size


async def create(request: web.Request) -> web.Response:
    params.reject_unknown(request, ("format", "filename", "list_date"))
    ctx = ctx_of(request)
    ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype not in _SUFFIXES:
        raise ApiError(415, "Unsupported media type",
                       f"send the file as one of {', '.join(sorted(t for t in _SUFFIXES if t))}",
                       field="Content-Type")
    fmt = params.enum_param(request, "format", FORMATS, default="auto") or "auto"
    name = _file_name(request, ctype)
    _check_declared(ctype, name, fmt, "filename" in request.query)
    date_text = params.str_param(request, "list_date", max_len=32)
    try:
        list_date = parse_date(date_text) if date_text else None
    except LabelImportError as exc:
        raise bad_request("list_date", str(exc)) from None
    principal = principal_of(request)
    with tempfile.TemporaryDirectory(prefix="tracer-label-import-") as folder:
        path = Path(folder) / name
        if await _spool(request, path) == 0:
            raise bad_request("body", "the label file is empty")
        try:
            # Parsing a large list takes seconds of CPU: off the event loop.
            parsed = await asyncio.to_thread(parse_file, path, fmt, list_date)
            sha = await asyncio.to_thread(sha256_file, path)
            async with ctx.pool.acquire() as conn, conn.transaction():
                result = await apply_parsed(conn, parsed, file_name=name, file_sha256=sha,
                                            created_by=principal.name)
                if result.duplicate_of is None:
                    await audit(request, conn, "label.import", f"import:{result.import_id}", {
                        "file": name, "format": result.format, "source": result.source, "scope": result.scope,
                        "sha256": sha})
        except LabelImportError as exc:
            # The importer's message names the temporary path; the caller knows the file by its name.
            raise bad_request("body", str(exc).replace(str(path), name).replace(folder, "")) from None
    body: dict[str, Any] = {
        "import_id": result.import_id if result.duplicate_of is None else result.duplicate_of,
        "duplicate": result.duplicate_of is not None,
        "file": name, "format": result.format, "source": result.source, "scope": result.scope,
        "list_date": result.list_date.date().isoformat() if result.list_date else None,
        "stats": {k: v for k, v in result.stats.items() if k != "duplicate_of"},
    }
    return ok(body, status=200 if result.duplicate_of is not None else 201)
