"""The log page: a page of the log's lines that pass the filters, oldest first so that
the newest is at the bottom, in columns, a traceback folded under its line; a link to
the page of older lines (which the page's script loads in place); and the event stream
the script follows the log with (the API's, behind the dashboard's session).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web

from cronmgr.controller.api.logs import _log_filter, stream_logs
from cronmgr.controller.dashboard.common import P, render
from cronmgr.controller.keys import SETTINGS
from cronmgr.core.specs.queries import LogHistoryQuery
from cronmgr.core.specs.validation import validate_query
from cronmgr.observability.log_cursor import LEVELS, Cursor
from cronmgr.observability.log_history import OlderPage, read_older

_ENTRY_FIELDS = ("timestamp", "level", "event", "run_id", "step")
_TRACE_FIELDS = ("exception", "stack")
_FILTERS = ("level", "run_id", "schedule_id", "event", "since")


def log_entry(text: str) -> dict[str, Any]:
    """A log line in columns: time, level, event, run, step, the other fields as text,
    and a traceback (`exception` or `stack`) apart, to be folded."""
    try:
        record = orjson.loads(text)
    except orjson.JSONDecodeError:
        record = None
    if not isinstance(record, dict):
        return {"event": text, "details": ""}
    entry: dict[str, Any] = {name: _shown(record.get(name)) for name in _ENTRY_FIELDS}
    entry["details"] = " ".join(
        f"{key}={value if isinstance(value, str) else orjson.dumps(value).decode()}"
        for key, value in record.items()
        if key not in _ENTRY_FIELDS and key not in _TRACE_FIELDS
    )
    trace = "\n".join(_shown(record[key]) or "" for key in _TRACE_FIELDS if record.get(key))
    if trace:
        entry["trace"] = trace.rstrip("\n")
        entry["trace_summary"] = trace_summary(trace)
    return entry


def trace_summary(trace: str) -> str:
    """What a folded traceback shows: its last line, the exception and its message."""
    lines = [line for line in trace.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "traceback"


def _shown(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _filled(query: Mapping[str, str]) -> dict[str, str]:
    # A GET form sends its empty fields too; an empty filter is no filter.
    return {key: value for key, value in query.items() if value.strip()}


async def logs_page(request: web.Request) -> web.Response:
    """GET /ui/logs: a page of the lines that pass the filters, the newest (or, with
    `before`, those before that place); the script follows the newest and loads older."""
    params = _filled(request.query)
    query = validate_query(LogHistoryQuery, params)
    before = Cursor.parse(query.before) if query.before else None
    path = request.app[SETTINGS].log_file
    page = await asyncio.to_thread(read_older, path, before, _log_filter(query), count=query.lines)
    filters = {name: params[name] for name in _FILTERS if name in params}
    context = {
        "entries": [log_entry(line.text) for line in page.lines],
        "levels": LEVELS,
        "level": query.level or "",
        "run_id": query.run_id or "",
        "hidden": {k: v for k, v in filters.items() if k not in ("level", "run_id")},
        "lines": query.lines,
        **_links(filters, query.lines, before, page),
    }
    return render(request, "ui_logs.html", context)


def _links(
    filters: Mapping[str, str], lines: int, before: Cursor | None, page: OlderPage
) -> dict[str, Any]:
    """The page's links: older lines, the newest lines, and the stream to follow from."""
    same = {**filters, "lines": str(lines)}
    older = page.older and f"{P}/logs?" + urlencode({**same, "before": str(page.older)})
    # Only a page of the newest lines follows the log: older ones stay as they are.
    follows = before is None or page.gone
    stream = {**filters, "cursor": str(page.end)}
    return {
        "older": older or None,
        "newest": f"{P}/logs?" + urlencode(same),
        "paged": not follows,
        "gone": page.gone,
        "stream": f"{P}/logs/stream?" + urlencode(stream) if follows else None,
    }


async def log_stream(request: web.Request) -> web.StreamResponse:
    """GET /ui/logs/stream: the API's log event stream, behind the dashboard's session."""
    return await stream_logs(request)
