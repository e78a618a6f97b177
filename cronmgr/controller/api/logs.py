"""The daemon's log over HTTP: the seed's tail and clear, pages from a cursor, and a live stream."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiohttp import web

from cronmgr.controller.keys import (
    LOG_STREAMS_CLOSING,
    SETTINGS,
)
from cronmgr.controller.openapi import (
    Endpoint,
    Reply,
    ref,
)
from cronmgr.controller.responses import (
    json_response,
    timestamp,
)
from cronmgr.core.errors import (
    CronmgrError,
    InvalidInput,
)
from cronmgr.core.specs.queries import FollowQuery, LinesQuery, LogStreamQuery
from cronmgr.core.specs.validation import validate_query
from cronmgr.core.supervision import describe
from cronmgr.observability import logs
from cronmgr.observability.log_cursor import Cursor, LogFilter
from cronmgr.observability.log_pages import read_page
from cronmgr.observability.log_stream import StreamSpec, stream

log = structlog.get_logger("cronmgr.web")

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
    """GET /api/cron/logs?lines=N: the last N lines as JSON; without `lines`, the whole log
    (as the seed documents) up to `logs_default_lines`. `truncated: true` says that lines
    were left out of what was asked for (the whole log, or more than `logs_max_lines`)."""
    settings = request.app[SETTINGS]
    asked = validate_query(LinesQuery, request.query).lines
    count = min(asked or settings.logs_default_lines, settings.logs_max_lines)
    # One line more than the cap tells whether the cap left any out.
    lines = await asyncio.to_thread(logs.tail_lines, settings.log_file, count + 1)
    cut = len(lines) > count
    lines = lines[-count:]
    text = "\n".join(lines) + ("\n" if lines else "")
    body: dict[str, object] = {"logs": text, "line_count": len(lines)}
    if cut and (asked is None or asked > count):
        body["truncated"] = True
    return json_response(body)


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


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "GET",
        "/api/cron/logs",
        get_logs,
        "The last N log lines as JSON",
        "logs",
        Reply(200, "The lines.", ref("Logs")),
        description=(
            "Without `lines`, the whole log, as the Pipeline Cron Manager API documents it, "
            "up to the `logs_default_lines` setting (default 10000 lines); `lines` is capped at "
            "`logs_max_lines` (default 100000). When a cap left lines out, the answer says "
            "`truncated: true` (the field is absent otherwise)."
        ),
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
)
