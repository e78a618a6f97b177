"""The controller's HTTP face: the app factory, middlewares and routes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import aiohttp_jinja2
import jinja2
import orjson
import structlog
from aiohttp import web

from cronmgr import __version__, logs
from cronmgr.auth import ensure_token, token_matches
from cronmgr.config import Settings, bundled_path
from cronmgr.control import DaemonControl, LaunchSpec
from cronmgr.errors import (
    CronmgrError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from cronmgr.models import utcnow
from cronmgr.openapi import (
    Endpoint,
    Reply,
    build_document,
    docs_context,
    operations,
    ref,
)
from cronmgr.payloads import (
    FollowQuery,
    LinesQuery,
    StartRequest,
    parse_json_object,
    validate,
    validate_query,
)
from cronmgr.store import Store, open_store

log = structlog.get_logger("cronmgr.web")

SETTINGS = web.AppKey("settings", Settings)
CONTROL = web.AppKey("control", DaemonControl)
TOKEN = web.AppKey("token", str)
# A Protocol cannot be passed as the key's type at run time; the annotation carries it.
STORE: web.AppKey[Store] = web.AppKey("store")
OPENAPI = web.AppKey("openapi", dict[str, Any])
# Readable without the token: health checks for probes, and the pages that describe the
# API (the landing page, the OpenAPI document, its rendering). None of them holds state
# or secrets, and a client needs the description before it has a token.
OPEN_PATHS = frozenset({"/", "/health", "/api/v1/health", "/openapi.json", "/docs"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
    return response


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
        return error_response(_translate_http(exc, request))
    except asyncio.CancelledError:
        raise
    except Exception:
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
    if not token_matches(token, header):
        raise Unauthorized("invalid bearer token")
    return await handler(request)


def _is_open(path: str) -> bool:
    return path in OPEN_PATHS


async def read_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body (empty body → {})."""
    return parse_json_object(await request.read())


# --- daemon control -------------------------------------------------------------------


def _spec(settings: Settings, body: StartRequest, last: LaunchSpec | None) -> LaunchSpec:
    interval = body.interval_seconds or (last.interval_seconds if last else None)
    pipeline = body.pipeline or (last.pipeline if last else None)
    return LaunchSpec(
        interval or settings.default_interval_seconds, pipeline or settings.default_pipeline
    )


async def start_daemon(request: web.Request) -> web.Response:
    """POST /api/cron/start: launch the daemon; 409 when it runs already."""
    body = validate(StartRequest, await read_body(request), "request body")
    settings = request.app[SETTINGS]
    spec = _spec(settings, body, None)
    pid = await request.app[CONTROL].start(spec)
    return json_response(_started(spec, pid))


def _started(spec: LaunchSpec, pid: int) -> dict[str, Any]:
    return {
        "success": True,
        "message": (
            f"Daemon started successfully with interval: {spec.interval_seconds} seconds "
            f"(PID: {pid})"
        ),
        "timestamp": timestamp(),
        "pid": pid,
        "interval_seconds": spec.interval_seconds,
        "pipeline": spec.pipeline,
    }


async def stop_daemon(request: web.Request) -> web.Response:
    """POST /api/cron/stop: stop the daemon; fine when it is not running."""
    outcome = await request.app[CONTROL].stop()
    if not outcome.was_running:
        message = "Daemon is not running"
    elif outcome.killed:
        message = f"Daemon stopped (PID: {outcome.pid}; killed after the grace period)"
    else:
        message = "Daemon stopped successfully"
    return json_response(
        {"success": True, "message": message, "timestamp": timestamp(), "pid": outcome.pid}
    )


async def restart_daemon(request: web.Request) -> web.Response:
    """POST /api/cron/restart: stop, then start with the given or the last settings."""
    body = validate(StartRequest, await read_body(request), "request body")
    control = request.app[CONTROL]
    spec = _spec(request.app[SETTINGS], body, control.desired_spec())
    await control.stop()
    pid = await control.start(spec)
    data = _started(spec, pid)
    data["message"] = data["message"].replace("started", "restarted", 1)
    return json_response(data)


async def reload_daemon(request: web.Request) -> web.Response:
    """POST /api/cron/reload: SIGHUP the daemon (re-read definitions, reopen the log)."""
    if not request.app[CONTROL].reload():
        raise NotFound("Daemon is not running; nothing to reload")
    return json_response({"success": True, "message": "Reload signalled", "timestamp": timestamp()})


async def daemon_status(request: web.Request) -> web.Response:
    """GET /api/cron/status: the seed's fields plus process and supervision details."""
    body = await asyncio.to_thread(request.app[CONTROL].status)
    body["version"] = __version__
    body["timestamp"] = timestamp()
    return json_response(body)


# --- logs -------------------------------------------------------------------------------


def _lines(request: web.Request, default: int) -> int:
    settings = request.app[SETTINGS]
    query = validate_query(LinesQuery, request.query)
    return min(query.lines or default, settings.logs_max_lines)


async def get_logs(request: web.Request) -> web.Response:
    """GET /api/cron/logs?lines=N: the last N lines (a bounded default) as JSON."""
    settings = request.app[SETTINGS]
    count = _lines(request, settings.logs_default_lines)
    lines = await asyncio.to_thread(logs.tail_lines, settings.log_file, count)
    text = "\n".join(lines) + ("\n" if lines else "")
    return json_response({"logs": text, "line_count": len(lines)})


async def tail_logs(request: web.Request) -> web.Response:
    """GET /api/cron/logs/tail?lines=N: the last N lines (default 50) as plain text."""
    settings = request.app[SETTINGS]
    lines = await asyncio.to_thread(logs.tail_lines, settings.log_file, _lines(request, 50))
    return web.Response(text="\n".join(lines) + ("\n" if lines else ""))


async def follow_logs(request: web.Request) -> web.Response:
    """GET /api/v1/logs?cursor=C: the lines written since C and the cursor to go on from."""
    query = validate_query(FollowQuery, request.query)
    path = request.app[SETTINGS].log_file
    chunk = await asyncio.to_thread(logs.read_after, path, query.cursor, initial_lines=query.lines)
    return json_response({"lines": chunk.lines, "cursor": chunk.cursor, "reset": chunk.reset})


async def clear_logs(request: web.Request) -> web.Response:
    """DELETE /api/cron/logs: truncate the log in place; the daemon keeps writing to it."""
    await asyncio.to_thread(logs.clear_log, request.app[SETTINGS].log_file)
    return json_response(
        {"success": True, "message": "Logs cleared successfully", "timestamp": timestamp()}
    )


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


# --- the app ----------------------------------------------------------------------------


_HTML = {"type": "string", "contentMediaType": "text/html"}

CONTROLLER_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/api/cron/start",
        start_daemon,
        "Start the daemon",
        "daemon",
        Reply(200, "Started; the message ends with (PID: n).", ref("DaemonStarted")),
        description="Schedules the pipeline every interval_seconds (default 120, at least 10).",
        body=StartRequest,
        body_required=False,
        errors=(409, 503),
    ),
    Endpoint(
        "POST",
        "/api/cron/stop",
        stop_daemon,
        "Stop the daemon (idempotent)",
        "daemon",
        Reply(200, "Stopped, or it was not running.", ref("DaemonStopped")),
    ),
    Endpoint(
        "POST",
        "/api/cron/restart",
        restart_daemon,
        "Stop, then start (with the given or the last settings)",
        "daemon",
        Reply(200, "Restarted.", ref("DaemonStarted")),
        body=StartRequest,
        body_required=False,
        errors=(503,),
    ),
    Endpoint(
        "POST",
        "/api/cron/reload",
        reload_daemon,
        "Re-read pipelines and definitions, reopen the log (SIGHUP)",
        "daemon",
        Reply(200, "Signalled.", ref("Message")),
        description="404 when the daemon is not running.",
        errors=(404,),
    ),
    Endpoint(
        "GET",
        "/api/cron/status",
        daemon_status,
        "Daemon state, pid, uptime, cpu, memory, supervision",
        "daemon",
        Reply(200, "The status.", ref("DaemonStatus")),
    ),
    Endpoint(
        "GET",
        "/api/cron/logs",
        get_logs,
        "The last N log lines as JSON",
        "logs",
        Reply(200, "The lines.", ref("Logs")),
        description="Without `lines`, a bounded default (never the whole of a huge file).",
        query=LinesQuery,
    ),
    Endpoint(
        "GET",
        "/api/cron/logs/tail",
        tail_logs,
        "The last N log lines as text (default 50)",
        "logs",
        Reply(200, "The lines.", {"type": "string"}, media_type="text/plain"),
        query=LinesQuery,
    ),
    Endpoint(
        "DELETE",
        "/api/cron/logs",
        clear_logs,
        "Clear the log (the daemon keeps writing to it)",
        "logs",
        Reply(200, "Cleared.", ref("Message")),
    ),
    Endpoint(
        "GET",
        "/api/v1/logs",
        follow_logs,
        "Follow the log from a cursor",
        "logs",
        Reply(200, "The lines since the cursor and the cursor to go on from.", ref("LogChunk")),
        query=FollowQuery,
    ),
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


def all_endpoints() -> tuple[Endpoint, ...]:
    """Every endpoint of the controller: daemon control, logs, meta and /api/v1."""
    # Imported here, not at the top: the resource handlers build on this module's keys
    # and responses, so this module must be complete before they load.
    from cronmgr import api_v1

    return CONTROLLER_ENDPOINTS + api_v1.ENDPOINTS


def add_routes(app: web.Application, endpoints: Iterable[Endpoint]) -> None:
    """Route every endpoint of the table (GET routes answer HEAD too)."""
    for endpoint in endpoints:
        if endpoint.method == "GET":
            app.router.add_get(endpoint.path, endpoint.handler)
        else:
            app.router.add_route(endpoint.method, endpoint.path, endpoint.handler)


async def store_context(app: web.Application) -> AsyncIterator[None]:
    """The store, open for the life of the app."""
    async with open_store(app[SETTINGS].store_url) as store:
        app[STORE] = store
        yield


async def supervision(app: web.Application) -> AsyncIterator[None]:
    """Attach to (or resume) the daemon at start-up and watch it until shutdown."""
    control = app[CONTROL]
    await control.attach()
    task = asyncio.create_task(control.supervise())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(settings: Settings) -> web.Application:
    """The controller application for `settings`."""
    app = web.Application(
        middlewares=[error_middleware, auth_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[CONTROL] = DaemonControl(settings)
    token = ensure_token(settings)
    if token is not None:
        app[TOKEN] = token
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(bundled_path("templates")),
        autoescape=jinja2.select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    endpoints = all_endpoints()
    add_routes(app, endpoints)
    app[OPENAPI] = build_document(endpoints, version=__version__, open_paths=OPEN_PATHS)
    app.cleanup_ctx.append(store_context)
    app.cleanup_ctx.append(supervision)
    return app
