"""What the controller says of itself: the landing page, health, the OpenAPI document."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from cronmgr.controller.keys import (
    OPENAPI,
)
from cronmgr.controller.openapi import (
    Endpoint,
    Reply,
    docs_context,
    operations,
    ref,
)
from cronmgr.controller.responses import (
    json_response,
    timestamp,
)
from cronmgr.core.version import __version__

_HTML = {"type": "string", "contentMediaType": "text/html"}


@aiohttp_jinja2.template("index.html")
async def index(request: web.Request) -> dict[str, Any]:
    """GET /: what this controller is and what it answers (no state, so no token)."""
    listed = [(m, p, op["summary"]) for p, m, op in operations(request.app[OPENAPI])]
    return {"version": __version__, "endpoints": listed}


async def openapi_document(request: web.Request) -> web.Response:
    """GET /openapi.json: the OpenAPI 3.1 description of every endpoint."""
    return json_response(request.app[OPENAPI])


@aiohttp_jinja2.template("docs.html")
async def docs_page(request: web.Request) -> dict[str, Any]:
    """GET /docs: the OpenAPI document as one self-contained page (no script, no CDN)."""
    return docs_context(request.app[OPENAPI])


async def health(request: web.Request) -> web.Response:
    """GET /health: the controller answers; no auth."""
    return json_response({"status": "healthy", "timestamp": timestamp(), "version": __version__})


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "GET",
        "/",
        index,
        "What this controller is and what it answers (no token)",
        "meta",
        Reply(200, "The page.", _HTML, media_type="text/html"),
    ),
    Endpoint(
        "GET",
        "/health",
        health,
        "Liveness (no token)",
        "meta",
        Reply(200, "Healthy.", ref("Health")),
    ),
    Endpoint(
        "GET",
        "/api/v1/health",
        health,
        "Liveness, under the API Scheduler's path (no token)",
        "meta",
        Reply(200, "Healthy.", ref("Health")),
        operation_id="health_v1",
    ),
    Endpoint(
        "GET",
        "/openapi.json",
        openapi_document,
        "This API description (OpenAPI 3.1, no token)",
        "meta",
        Reply(200, "The document.", {"type": "object"}),
    ),
    Endpoint(
        "GET",
        "/docs",
        docs_page,
        "The API description as a page (no token, no network)",
        "meta",
        Reply(200, "The page.", _HTML, media_type="text/html"),
    ),
)
