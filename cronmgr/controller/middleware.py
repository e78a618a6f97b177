"""The middlewares every request passes: one table of error statuses, then the bearer token."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from cronmgr.controller.auth import token_matches
from cronmgr.controller.keys import (
    DASHBOARD_PREFIX,
    LOCKOUT,
    OPEN_PATHS,
    SETTINGS,
    TOKEN,
)
from cronmgr.controller.responses import (
    error_response,
)
from cronmgr.core.errors import (
    CronmgrError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    StoreFull,
    Unauthorized,
)

log = structlog.get_logger("cronmgr.web")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _translate_http(exc: web.HTTPException, request: web.Request) -> CronmgrError:
    if isinstance(exc, web.HTTPNotFound):
        return NotFound(f"no such endpoint: {request.method} {request.path}")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return MethodNotAllowed(f"{request.method} is not allowed on {request.path}; use {allowed}")
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        limit = request.app[SETTINGS].max_body_bytes
        return PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
    error = CronmgrError(exc.reason)
    error.status = exc.status
    return error


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes the uniform JSON error body, with one table of statuses."""
    try:
        return await handler(request)
    except CronmgrError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(_translate_http(exc, request))
        if isinstance(exc, web.HTTPMethodNotAllowed):
            # RFC 9110 §15.5.6: a 405 says in Allow which methods the resource takes.
            response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        return response
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:  # not a bug: a full disk
            log.error("request_failed", method=request.method, path=request.path, error=str(exc))
            return error_response(StoreFull(f"no space left on the device: {exc}"))
        log.exception("request_failed", method=request.method, path=request.path)
        return error_response(CronmgrError("internal error; the controller log has details"))


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer token on everything but the health checks and the API description."""
    token = request.app.get(TOKEN)
    if token is None or _is_open(request.path):
        return await handler(request)
    header = request.headers.get("Authorization")
    if not header:
        raise Unauthorized(
            "authentication required: send 'Authorization: Bearer <token>' "
            "(the token is in the state directory's api-token file or CRONMGR_API_TOKEN)"
        )
    lockout = request.app[LOCKOUT]
    lockout.check(request.remote)
    if not token_matches(token, header):
        lockout.failed(request.remote)
        raise Unauthorized("invalid bearer token")
    return await handler(request)


def _is_open(path: str) -> bool:
    dashboard = path == DASHBOARD_PREFIX or path.startswith(DASHBOARD_PREFIX + "/")
    return dashboard or path in OPEN_PATHS
