"""Every error the API returns, as application/problem+json (RFC 9457), decided in one place.

Handlers raise typed exceptions (ApiError here, TraceInputError / PolicyError / InvalidAddress from
the engine, aiohttp's HTTPException for routing and body size); the middleware below turns each
into a problem body with status, title, detail and, for bad input, the offending field. Anything
else is a bug: it is logged with its traceback under a request id and the client gets a plain
500 naming only that id, never a stack trace.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg
from aiohttp import web

from tracer.addresses import InvalidAddress
from tracer.api.context import CTX, REQUEST_ID
from tracer.engine.policy import PolicyError
from tracer.engine.service import TraceInputError
from tracer.store.db import is_transient

log = logging.getLogger("tracer.api")

PROBLEM_TYPE = "application/problem+json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error with an HTTP status; `field` names the offending input (query parameter, body
    member as a dotted path, or path parameter)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail or ''}")
        self.status = status
        self.title = title
        self.detail = detail
        self.field = field
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def bad_request(field: str, detail: str) -> ApiError:
    return ApiError(400, "Invalid request", detail, field=field)


def not_found(detail: str) -> ApiError:
    return ApiError(404, "Not found", detail)


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    field: str | None = None,
    request: web.Request | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if field:
        body["field"] = field
    if request is not None:
        body["instance"] = request.path
        rid = request.get(REQUEST_ID)
        if rid:
            body["request_id"] = rid
    body.update(extra or {})
    return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM_TYPE,
                        headers=dict(headers or {}))


def _http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    headers = {}
    if "Allow" in exc.headers:  # 405 must say which methods exist
        headers["Allow"] = exc.headers["Allow"]
    detail = None
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        detail = f"request body larger than {request.app[CTX].settings.max_body} bytes"
    elif isinstance(exc, web.HTTPNotFound):
        detail = f"no resource at {request.path}"
    elif isinstance(exc, web.HTTPMethodNotAllowed):
        detail = f"{request.method} is not allowed here"
    elif exc.text and not exc.text.startswith(f"{exc.status}:"):
        detail = exc.text
    return problem(exc.status, exc.reason, detail, request=request, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return problem(exc.status, exc.title, exc.detail, field=exc.field, request=request,
                       headers=exc.headers, extra=exc.extra)
    except TraceInputError as exc:
        return problem(400, "Invalid trace request", exc.message, field=exc.field, request=request)
    except PolicyError as exc:
        return problem(400, "Invalid policy", exc.message, field=f"policy.{exc.field}".rstrip("."),
                       request=request)
    except InvalidAddress as exc:
        return problem(400, "Invalid address", str(exc), request=request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and 204s raised as exceptions pass through unchanged
        return _http_exception(request, exc)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if not (isinstance(exc, (asyncpg.CannotConnectNowError, ConnectionRefusedError)) or is_transient(exc)):
            log.exception("event=unhandled_error method=%s path=%s request_id=%s", request.method, request.path,
                          request.get(REQUEST_ID))
            return problem(500, "Internal server error",
                           "an unexpected error occurred; quote the request_id when reporting it", request=request)
        # The database restarting or unreachable (refused, reset, socket gone, shutting down).
        log.warning("event=db_unavailable path=%s error=%r request_id=%s", request.path, exc,
                    request.get(REQUEST_ID))
        return problem(503, "Service unavailable", "the database is unreachable; try again shortly",
                       request=request, headers={"Retry-After": "5"})
