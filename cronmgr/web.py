"""The controller's HTTP face: the app factory, middlewares and routes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
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
from cronmgr.payloads import (
    FollowQuery,
    LinesQuery,
    StartRequest,
    parse_json_object,
    validate,
    validate_query,
)

log = structlog.get_logger("cronmgr.web")

SETTINGS = web.AppKey("settings", Settings)
CONTROL = web.AppKey("control", DaemonControl)
TOKEN = web.AppKey("token", str)
OPEN_PATHS = frozenset({"/", "/health", "/api/v1/health"})

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


ENDPOINTS = (
    ("POST", "/api/cron/start", 'start the daemon ({"interval_seconds": N})'),
    ("POST", "/api/cron/stop", "stop the daemon (idempotent)"),
    ("POST", "/api/cron/restart", "stop, then start"),
    ("POST", "/api/cron/reload", "re-read pipelines, reopen the log (SIGHUP)"),
    ("GET", "/api/cron/status", "daemon state, pid, uptime, cpu, memory, restarts"),
    ("GET", "/api/cron/logs?lines=N", "the last N log lines as JSON"),
    ("GET", "/api/cron/logs/tail?lines=N", "the last N log lines as text"),
    ("DELETE", "/api/cron/logs", "clear the log"),
    ("GET", "/api/v1/logs?cursor=C", "follow the log from a cursor"),
    ("GET", "/health", "liveness, no token needed"),
)


@aiohttp_jinja2.template("index.html")
async def index(request: web.Request) -> dict[str, Any]:
    """GET /: what this controller is and what it answers (no state, so no token)."""
    return {"version": __version__, "endpoints": ENDPOINTS}


async def health(request: web.Request) -> web.Response:
    """GET /health: the controller answers; no auth."""
    return json_response({"status": "healthy", "timestamp": timestamp(), "version": __version__})


# --- the app ----------------------------------------------------------------------------


def add_routes(app: web.Application) -> None:
    """Every route of the controller."""
    app.router.add_post("/api/cron/start", start_daemon)
    app.router.add_post("/api/cron/stop", stop_daemon)
    app.router.add_post("/api/cron/restart", restart_daemon)
    app.router.add_post("/api/cron/reload", reload_daemon)
    app.router.add_get("/api/cron/status", daemon_status)
    app.router.add_get("/api/cron/logs", get_logs)
    app.router.add_get("/api/cron/logs/tail", tail_logs)
    app.router.add_delete("/api/cron/logs", clear_logs)
    app.router.add_get("/api/v1/logs", follow_logs)
    app.router.add_get("/", index)
    app.router.add_get("/health", health)
    app.router.add_get("/api/v1/health", health)


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
    )
    add_routes(app)
    app.cleanup_ctx.append(supervision)
    return app
