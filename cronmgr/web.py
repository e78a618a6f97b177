"""The controller's HTTP face: the app factory, middlewares and routes."""

from __future__ import annotations

import asyncio
import contextlib
import errno
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
from cronmgr.control import DaemonControl, LaunchSpec, launch_spec
from cronmgr.errors import (
    BadRequest,
    CronmgrError,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    StoreFull,
    TooManyRequests,
    Unauthorized,
)
from cronmgr.lockout import Lockout
from cronmgr.log_follow import Cursor, LogFilter, StreamSpec, read_page, stream
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
    LogStreamQuery,
    StartRequest,
    parse_json_object,
    validate,
    validate_query,
)
from cronmgr.store import Store, open_store
from cronmgr.supervision import describe, spawn

log = structlog.get_logger("cronmgr.web")

SETTINGS = web.AppKey("settings", Settings)
CONTROL = web.AppKey("control", DaemonControl)
TOKEN = web.AppKey("token", str)
LOCKOUT = web.AppKey("lockout", Lockout)
"""Wrong tokens per client address, bearer header and login form alike."""
# A Protocol cannot be passed as the key's type at run time; the annotation carries it.
STORE: web.AppKey[Store] = web.AppKey("store")
OPENAPI = web.AppKey("openapi", dict[str, Any])
LOG_STREAMS_CLOSING = web.AppKey("log_streams_closing", asyncio.Event)
# Readable without the token: health checks for probes, and the pages that describe the
# API (the landing page, the OpenAPI document, its rendering). None of them holds state
# or secrets, and a client needs the description before it has a token.
OPEN_PATHS = frozenset({"/", "/health", "/api/v1/health", "/openapi.json", "/docs"})
# The dashboard's pages: a browser cannot send the bearer token, so they pass this check
# and `cronmgr.dashboard` guards them with its own login and session cookie instead.
DASHBOARD_PREFIX = "/ui"

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
    if isinstance(error, TooManyRequests):
        add_retry_after(response, error)
    return response


def add_retry_after(response: web.StreamResponse, refusal: TooManyRequests) -> None:
    """Say in `Retry-After` how long a refused client should wait, when that is known."""
    if refusal.retry_after is not None:
        response.headers["Retry-After"] = str(refusal.retry_after)


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


async def read_body(request: web.Request, *, required: bool = False) -> dict[str, Any]:
    """The request's JSON object body (empty body → {}, or 400 when `required`)."""
    raw = await request.read()
    if required and not raw.strip():
        raise BadRequest(f"{request.method} needs a JSON object body (a merge patch such as {{}})")
    return parse_json_object(raw)


# --- daemon control -------------------------------------------------------------------


def _spec(request: web.Request, body: StartRequest) -> LaunchSpec:
    # The rule the dashboard's controls use too: asked, else the last start's, else defaults.
    last = request.app[CONTROL].desired_spec()
    return launch_spec(request.app[SETTINGS], last, body.interval_seconds, body.pipeline)


async def start_daemon(request: web.Request) -> web.Response:
    """POST /api/cron/start: launch the daemon (see `launch_spec`); 409 when it runs already."""
    body = validate(StartRequest, await read_body(request), "request body")
    spec = _spec(request, body)
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
    spec = _spec(request, body)  # before the stop, which forgets the last spec
    await control.check(spec)  # before the stop: a restart that can't start stops nothing
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

_EVENT_STREAM_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    # Proxies that buffer (nginx) would hold the events back until the stream ends.
    "X-Accel-Buffering": "no",
}


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


def _log_filter(query: FollowQuery) -> LogFilter:
    events = frozenset(e.strip() for e in (query.event or "").split(",") if e.strip())
    return LogFilter(query.level, query.run_id, query.schedule_id, events, query.since)


async def follow_logs(request: web.Request) -> web.Response:
    """GET /api/v1/logs?cursor=C: the lines written since C and the cursor to go on from."""
    query = validate_query(FollowQuery, request.query)
    path = request.app[SETTINGS].log_file
    cursor = Cursor.parse(query.cursor) if query.cursor else None
    try:
        page = await asyncio.to_thread(
            read_page, path, cursor, _log_filter(query), initial_lines=query.lines
        )
    except OSError as exc:  # not a bug of ours: say what, rather than "internal error"
        log.error("log_unreadable", path=str(path), error=describe(exc))
        raise CronmgrError(f"the log file can't be read: {describe(exc)}") from exc
    return json_response(page.as_dict())


def _stream_start(request: web.Request, query: LogStreamQuery) -> Cursor | None:
    """Where a stream starts: `Last-Event-ID` (a client reconnecting), else `cursor`."""
    resumed = request.headers.get("Last-Event-ID", "").strip()
    if not resumed:
        return Cursor.parse(query.cursor) if query.cursor else None
    try:
        return Cursor.parse(resumed)
    except ValueError as exc:
        message = "not a log cursor (<inode>:<offset>:<check>)"
        raise InvalidInput(
            f"invalid Last-Event-ID header: {message}",
            errors=[{"field": "Last-Event-ID", "message": message, "type": "pattern"}],
        ) from exc


async def stream_logs(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/logs/stream: the log as server-sent events, until either side stops."""
    query = validate_query(LogStreamQuery, request.query)
    spec = StreamSpec(
        request.app[SETTINGS].log_file,
        _stream_start(request, query),
        _log_filter(query),
        initial_lines=query.lines,
        keepalive_seconds=query.keepalive_seconds,
    )
    response = web.StreamResponse(headers=_EVENT_STREAM_HEADERS)
    events = stream(spec, request.app[LOG_STREAMS_CLOSING])
    # A client that goes away shows as a failed write; that ends the stream, nothing more.
    with contextlib.suppress(ConnectionResetError):
        async with contextlib.aclosing(events):
            # The first page is read before the answer starts: a client that writes to
            # the log once it has the headers finds those lines in the stream.
            first = await anext(events)
            await response.prepare(request)
            if request.method != "HEAD":
                await response.write(first)
                async for chunk in events:
                    await response.write(chunk)
    return response


async def close_log_streams(app: web.Application) -> None:
    """On shutdown: end the open log streams at once, so that none holds the stop up."""
    app[LOG_STREAMS_CLOSING].set()


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
_SSE_EVENT = {
    "type": "object",
    "description": "One server-sent event, as its fields.",
    "properties": {
        "event": {"type": "string", "description": "`rotated` or `cleared`; none for a line."},
        "data": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}

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
        "Follow the log from a cursor, with filters",
        "logs",
        Reply(200, "The lines since the cursor and the cursor to go on from.", ref("LogChunk")),
        description=(
            "Without `cursor`: the last `lines` lines that pass the filters. With it: the "
            "lines written after it, across rotations (the rest of the rotated file comes "
            "first) and clears. One answer reads at most 1 MiB of log, filtered lines "
            "included; `more` says to ask again at once."
        ),
        query=FollowQuery,
    ),
    Endpoint(
        "GET",
        "/api/v1/logs/stream",
        stream_logs,
        "Follow the log as server-sent events, with filters",
        "logs",
        Reply(
            200,
            "Events: each line as `data`, its `id` the cursor after it; `event: rotated` and "
            "`event: cleared` where that happened; `: keep-alive` comments.",
            _SSE_EVENT,
            media_type="text/event-stream",
        ),
        description=(
            "Starts as `GET /api/v1/logs` would (`cursor`, else the last `lines` lines) and "
            "goes on until the client or the controller stops. A client that reconnects "
            "with the header `Last-Event-ID` (which wins over `cursor`) resumes exactly "
            "after the last event it got."
        ),
        query=LogStreamQuery,
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


async def notifications(app: web.Application) -> AsyncIterator[None]:
    """The controller's webhooks (daemon deaths, test events), for the life of the app."""
    async with app[CONTROL].notifier:
        yield


async def supervision(app: web.Application) -> AsyncIterator[None]:
    """Attach to (or resume) the daemon at start-up and watch it until shutdown."""
    control = app[CONTROL]
    await control.attach()
    task = spawn("daemon supervisor", control.supervise())
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
    app[LOG_STREAMS_CLOSING] = asyncio.Event()
    app.on_shutdown.append(close_log_streams)
    token = ensure_token(settings)
    if token is not None:
        app[TOKEN] = token
    app[LOCKOUT] = Lockout(limit=settings.lockout_failures)
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(bundled_path("templates")),
        autoescape=jinja2.select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    endpoints = all_endpoints()
    add_routes(app, endpoints)
    # Imported here: it builds on this module's keys. Its HTML pages and forms are not
    # API, so they stay out of the endpoint table and the OpenAPI document.
    from cronmgr.dashboard import add_dashboard

    add_dashboard(app)
    app[OPENAPI] = build_document(endpoints, version=__version__, open_paths=OPEN_PATHS)
    app.cleanup_ctx.append(store_context)
    app.cleanup_ctx.append(notifications)  # before supervision: it outlives the watching
    app.cleanup_ctx.append(supervision)
    return app
