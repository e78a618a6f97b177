"""The log page: the last lines of the log file that pass the level and run filters, in
columns, and the event stream the page's script follows it with (the API's, behind the
dashboard's session).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web

from cronmgr.controller.api.logs import stream_logs
from cronmgr.controller.dashboard.common import P, render
from cronmgr.controller.keys import SETTINGS
from cronmgr.core.specs.queries import FollowQuery
from cronmgr.core.specs.validation import validate_query
from cronmgr.observability.log_cursor import LEVELS, LogFilter
from cronmgr.observability.log_pages import read_page

LOG_LINES = 200
"""Log lines the log page starts with."""

_ENTRY_FIELDS = ("timestamp", "level", "event", "run_id", "step")


def log_entry(text: str) -> dict[str, Any]:
    """A log line in columns: time, level, event, run, step and the other fields as text."""
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
        if key not in _ENTRY_FIELDS
    )
    return entry


def _shown(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _filled(query: Mapping[str, str]) -> dict[str, str]:
    # A GET form sends its empty fields too; an empty filter is no filter.
    return {key: value for key, value in query.items() if value.strip()}


async def logs_page(request: web.Request) -> web.Response:
    """GET /ui/logs: the last lines that pass the level and run filters; the script follows."""
    params = _filled(request.query)
    params.setdefault("lines", str(LOG_LINES))
    query = validate_query(FollowQuery, params)
    keep = LogFilter(level=query.level, run_id=query.run_id)
    path = request.app[SETTINGS].log_file
    page = await asyncio.to_thread(read_page, path, None, keep, initial_lines=query.lines)
    follow = {"level": query.level, "run_id": query.run_id, "cursor": str(page.cursor)}
    context = {
        "entries": [log_entry(line.text) for line in page.lines],
        "levels": LEVELS,
        "level": query.level or "",
        "run_id": query.run_id or "",
        "lines": query.lines,
        "stream": f"{P}/logs/stream?" + urlencode({k: v for k, v in follow.items() if v}),
    }
    return render(request, "ui_logs.html", context)


async def log_stream(request: web.Request) -> web.StreamResponse:
    """GET /ui/logs/stream: the API's log event stream, behind the dashboard's session."""
    return await stream_logs(request)
