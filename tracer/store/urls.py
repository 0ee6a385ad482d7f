"""Database URLs: which one is in use, the same server's other databases, and how to show one safely.

Which server is used, first match wins: an explicit URL (``--database-url``, or
``Database.connect(url)``); ``$DATABASE_URL``; else the embedded server (tracer.store.embedded).
"""

from __future__ import annotations

import argparse
import os
from urllib.parse import quote, unquote, urlsplit, urlunsplit


def add_database_url(parser: argparse.ArgumentParser) -> None:
    """The ``--database-url`` option of every command that opens the database.

    Its default is None, resolved when the command connects (resolve_database_url, through
    ``Database.connect``), not ``$DATABASE_URL`` read while the parser is built: one rule for every
    command, and the environment seen is the one when it runs.
    """
    parser.add_argument("--database-url", default=None, metavar="URL",
                        help="PostgreSQL URL (default: $DATABASE_URL; if unset, the embedded server)")


def resolve_database_url(explicit: str | None) -> str | None:
    """Return the URL to use: ``explicit`` if given, else ``$DATABASE_URL``, else None (= embedded).

    Empty strings count as unset, so ``DATABASE_URL= tracer ...`` selects the embedded server.
    """
    if explicit:
        return explicit
    return os.environ.get("DATABASE_URL") or None


def with_database(url: str, database: str) -> str:
    """Return ``url`` pointing at another database on the same server (host, socket, user kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(database, safe="")))


def database_name(url: str) -> str:
    """The database a URL points at (``postgres`` when the URL names none, as libpq defaults to user)."""
    parts = urlsplit(url)
    name = unquote(parts.path.lstrip("/"))
    return name or (parts.username or "postgres")


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (for DDL, where bind parameters are not allowed)."""
    return '"' + name.replace('"', '""') + '"'


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for logs and error messages."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
