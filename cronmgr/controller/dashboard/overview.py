"""The overview page: the daemon (state, process, supervision, and the controls of
`controls`), what runs next, the latest runs and the open incidents.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from aiohttp import web

from cronmgr.controller.api.pipelines import read_pipelines
from cronmgr.controller.control import launch_spec
from cronmgr.controller.dashboard.common import P, render, see_other
from cronmgr.controller.dashboard.incidents import incident_rows
from cronmgr.controller.dashboard.names import Names, run_rows
from cronmgr.controller.keys import CONTROL, SETTINGS, STORE
from cronmgr.store.records import IncidentStatus


async def to_overview(request: web.Request) -> web.Response:
    """GET /ui: the overview lives at /ui/."""
    return see_other(P + "/")


async def _next_runs(names: Names, planned: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "at": datetime.fromisoformat(item["at"]),
            "job": await names.job(item["job"]),
            "schedule": await names.schedule(item.get("schedule_id")),
        }
        for item in planned
    ]


async def overview(request: web.Request) -> web.Response:
    """GET /ui/: the daemon (state, process, supervision, controls), what runs next, incidents."""
    control, settings, store = request.app[CONTROL], request.app[SETTINGS], request.app[STORE]
    status = await asyncio.to_thread(control.status)
    names = Names(store)
    start = launch_spec(settings, control.desired_spec())  # what a bare Start would run
    context = {
        "status": status,
        "pipelines": sorted(p.name for p in await read_pipelines(request)),
        "start_pipeline": start.pipeline,
        "start_interval": start.interval_seconds,
        "next_runs": await _next_runs(names, status.get("next_runs", [])),
        "recent": await run_rows(names, await store.list_runs(limit=10)),
        "incidents": await incident_rows(store, names, IncidentStatus.OPEN, 10, 0),
    }
    return render(request, "ui_overview.html", context)
