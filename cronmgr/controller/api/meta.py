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


# The reference pages are rendered here from the document: nothing to load, nothing to run.
# The one inline <style> is all they need; the policy forbids every script and fetch.
REFERENCE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def _reference_page(request: web.Request) -> web.Response:
    response = aiohttp_jinja2.render_template(
        "docs.html", request, docs_context(request.app[OPENAPI])
    )
    response.headers["Content-Security-Policy"] = REFERENCE_CSP
    return response


async def docs_page(request: web.Request) -> web.Response:
    """GET /docs: the OpenAPI document as one self-contained page (no script, no CDN)."""
    return _reference_page(request)


async def redoc_page(request: web.Request) -> web.Response:
    """GET /redoc: where the seeds' READMEs send readers for ReDoc. The same page as /docs,
    rendered on the server: ReDoc itself is a script bundle that would need a CDN or a
    vendored copy, and script and styles this page's policy does not allow."""
    return _reference_page(request)


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
    Endpoint(
        "GET",
        "/redoc",
        redoc_page,
        "The API description as a page, at the seeds' ReDoc address (no token, no network)",
        "meta",
        Reply(200, "The page (the same as /docs).", _HTML, media_type="text/html"),
    ),
)
