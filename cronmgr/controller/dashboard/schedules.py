"""The schedules page: each schedule's status, next run, last result and a sparkline of
its recent runs, and the pause and resume forms.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cronmgr.controller.dashboard.common import (
    PAGE_SIZE,
    Action,
    Form,
    P,
    act,
    page_offset,
    paging,
    render,
)
from cronmgr.controller.dashboard.names import Names
from cronmgr.controller.dashboard.sparklines import (
    SPARK_HEIGHT,
    SPARK_RUNS,
    SPARK_WIDTH,
    sparkline,
)
from cronmgr.controller.firing import schedule_warnings
from cronmgr.controller.keys import CONTROL, STORE
from cronmgr.core.errors import Conflict
from cronmgr.core.models import RunStatus, Schedule, ScheduleStatus
from cronmgr.store import Store
from cronmgr.store.pipeline_sync import is_file_schedule


async def _schedule_row(store: Store, names: Names, schedule: Schedule) -> dict[str, Any]:
    runs = await store.list_runs(schedule_id=schedule.id, limit=SPARK_RUNS)
    return {
        "schedule": schedule,
        "what": await names.job(schedule.job),
        "last": runs[0] if runs else None,
        "bars": sparkline(runs),
        "succeeded": sum(run.status is RunStatus.SUCCEEDED for run in runs),
        "counted": len(runs),
        "from_file": is_file_schedule(schedule.id),
    }


async def schedules_page(request: web.Request) -> web.Response:
    """GET /ui/schedules: status, next run, last result and a sparkline of each schedule."""
    store, offset = request.app[STORE], page_offset(request)
    found = await store.list_schedules(limit=PAGE_SIZE + 1, offset=offset)
    names = Names(store)
    rows = [await _schedule_row(store, names, s) for s in found[:PAGE_SIZE]]
    context = {
        "rows": rows,
        "paging": paging(request, offset, len(found)),
        "spark": {"width": SPARK_WIDTH, "height": SPARK_HEIGHT},
    }
    return render(request, "ui_schedules.html", context)


async def _pause(request: web.Request, form: Form) -> str:
    store = request.app[STORE]
    schedule = await store.get_schedule(request.match_info["id"])
    if schedule.status is ScheduleStatus.COMPLETED:
        raise Conflict(f"schedule {schedule.name!r} is completed; there is nothing to pause")
    await store.set_schedule_status(schedule.id, ScheduleStatus.PAUSED, "paused")
    request.app[CONTROL].definitions_changed()
    return f"Schedule {schedule.name} paused"


async def _resume(request: web.Request, form: Form) -> str:
    store = request.app[STORE]
    schedule = await store.get_schedule(request.match_info["id"])
    resumed = await store.set_schedule_status(schedule.id, ScheduleStatus.ACTIVE)
    request.app[CONTROL].definitions_changed()
    # The same note as the API's answer: resumed, but nothing fires it yet.
    return "; ".join(
        [f"Schedule {schedule.name} resumed", *await schedule_warnings(request.app, resumed)]
    )


SCHEDULE_ACTIONS: dict[str, Action] = {"pause": _pause, "resume": _resume}


async def schedule_action(request: web.Request) -> web.Response:
    """POST /ui/schedules/{id}/{pause|resume}."""
    action = SCHEDULE_ACTIONS[request.match_info["action"]]
    return await act(request, action, P + "/schedules")
