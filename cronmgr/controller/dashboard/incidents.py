"""The incidents page: the downtime windows of jobs, open ones first by default, and the
incident rows the overview shows too.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cronmgr.controller.dashboard.common import PAGE_SIZE, page_offset, paging, render
from cronmgr.controller.dashboard.names import Names
from cronmgr.controller.keys import STORE
from cronmgr.core.models import utcnow
from cronmgr.store import Store
from cronmgr.store.records import IncidentStatus


def cause_text(error_class: str | None, cause: str | None) -> str:
    """An incident's cause led by its error class, the class said once: a run's error
    already starts with it (`connection: cannot connect …`), a pipeline step's does not."""
    cause = cause or ""
    if not error_class or cause == error_class or cause.startswith(f"{error_class}: "):
        return cause
    return f"{error_class}: {cause}" if cause else error_class


async def incident_rows(
    store: Store, names: Names, status: IncidentStatus | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    found = await store.list_incidents(status=status, limit=limit, offset=offset)
    now = utcnow()
    return [
        {
            "incident": i,
            "job": await names.job(i.job),
            "seconds": i.duration_seconds(now),
            "cause": cause_text(i.error_class, i.cause),
        }
        for i in found
    ]


async def incidents_page(request: web.Request) -> web.Response:
    """GET /ui/incidents: downtime windows of jobs, open ones first by default."""
    wanted = request.query.get("status", "open")
    status = IncidentStatus(wanted) if wanted in {s.value for s in IncidentStatus} else None
    offset = page_offset(request)
    store = request.app[STORE]
    rows = await incident_rows(store, Names(store), status, PAGE_SIZE + 1, offset)
    context = {
        "rows": rows[:PAGE_SIZE],
        "status": status.value if status else "all",
        "paging": paging(request, offset, len(rows)),
    }
    return render(request, "ui_incidents.html", context)
