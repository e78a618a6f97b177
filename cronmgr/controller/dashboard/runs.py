"""The runs pages: the runs, newest first, by status and schedule; and one run with its
steps and every attempt of each with its output excerpt.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cronmgr.controller.dashboard.common import PAGE_SIZE, page_offset, paging, render
from cronmgr.controller.dashboard.names import Names, run_rows
from cronmgr.controller.keys import STORE
from cronmgr.core.models import Run, RunStatus


def _run_status(request: web.Request) -> RunStatus | None:
    try:
        return RunStatus(request.query["status"])
    except (KeyError, ValueError):
        return None


async def runs_page(request: web.Request) -> web.Response:
    """GET /ui/runs: runs, newest first, by status and schedule."""
    store, offset, status = request.app[STORE], page_offset(request), _run_status(request)
    schedule_id = request.query.get("schedule_id") or None
    found = await store.list_runs(
        status=status, schedule_id=schedule_id, limit=PAGE_SIZE + 1, offset=offset
    )
    names = Names(store)
    context = {
        "rows": await run_rows(names, found[:PAGE_SIZE]),
        "paging": paging(request, offset, len(found)),
        "statuses": [s.value for s in RunStatus],
        "status": status.value if status else "",
        "schedule_id": schedule_id or "",
        "schedule": await names.schedule(schedule_id),
    }
    return render(request, "ui_runs.html", context)


def attempts_by_step(run: Run) -> list[dict[str, Any]]:
    """The run's attempt rows as one entry per step, the last attempt deciding its status."""
    steps: dict[int, dict[str, Any]] = {}
    for result in run.steps:
        step = steps.setdefault(result.position, {"name": result.step, "attempts": []})
        step["attempts"].append(result)
        step["status"] = result.status.value
    return [steps[position] for position in sorted(steps)]


async def run_page(request: web.Request) -> web.Response:
    """GET /ui/runs/{id}: the run, its steps and every attempt with its output excerpt."""
    store = request.app[STORE]
    run = await store.get_run(request.match_info["id"])
    names = Names(store)
    (row,) = await run_rows(names, [run])
    context = {"row": row, "run": run, "steps": attempts_by_step(run)}
    return render(request, "ui_run.html", context)
