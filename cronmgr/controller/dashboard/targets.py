"""The targets page: the HTTP targets, a page at a time, their URLs and headers shown
redacted.
"""

from __future__ import annotations

from aiohttp import web

from cronmgr.controller.dashboard.common import PAGE_SIZE, page_offset, paging, render
from cronmgr.controller.keys import STORE
from cronmgr.core.secret_refs import redact


async def targets_page(request: web.Request) -> web.Response:
    """GET /ui/targets: the HTTP targets, their URLs and headers redacted."""
    offset = page_offset(request)
    found = await request.app[STORE].list_targets(limit=PAGE_SIZE + 1, offset=offset)
    rows = [
        {"target": t, "url": redact(t.url), "headers": redact(t.headers)} for t in found[:PAGE_SIZE]
    ]
    context = {"rows": rows, "paging": paging(request, offset, len(found))}
    return render(request, "ui_targets.html", context)
