"""How the controller answers: JSON bodies, the uniform error body, request bodies read."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from cronmgr.core.errors import (
    BadRequest,
    CronmgrError,
    TooManyRequests,
    Unauthorized,
)
from cronmgr.core.models import utcnow
from cronmgr.core.specs.validation import parse_json_object


def timestamp() -> str:
    """Now, as the API writes times."""
    return utcnow().isoformat()


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON response rendered by orjson."""
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type="application/json",
    )


def error_response(error: CronmgrError) -> web.Response:
    """The uniform error body."""
    body = {"error": True, "detail": error.detail, "errors": error.errors, "timestamp": timestamp()}
    response = json_response(body, status=error.status)
    if isinstance(error, Unauthorized):
        response.headers["WWW-Authenticate"] = 'Bearer realm="cronmgr"'
    if isinstance(error, TooManyRequests):
        add_retry_after(response, error)
    return response


def add_retry_after(response: web.StreamResponse, refusal: TooManyRequests) -> None:
    """Say in `Retry-After` how long a refused client should wait, when that is known."""
    if refusal.retry_after is not None:
        response.headers["Retry-After"] = str(refusal.retry_after)


async def read_body(request: web.Request, *, required: bool = False) -> dict[str, Any]:
    """The request's JSON object body (empty body → {}, or 400 when `required`)."""
    raw = await request.read()
    if required and not raw.strip():
        raise BadRequest(f"{request.method} needs a JSON object body (a merge patch such as {{}})")
    return parse_json_object(raw)
