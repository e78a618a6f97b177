"""The schedule forms: create, edit and delete (after a confirmation page) a schedule.

A form is turned into `ScheduleSpec`'s shape (what runs: a target or a pipeline; when: the
timing field of the chosen type only) and goes through the API's own create and update
paths, so a bad field is refused in the API's words, next to it, with what was typed kept.
A schedule created while no daemon runs says so: it fires once the daemon starts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from cronmgr.controller.api.pipelines import read_pipelines
from cronmgr.controller.api.schedules import (
    add_schedule,
    change_schedule,
    refuse_file_schedule,
    remove_schedule,
)
from cronmgr.controller.dashboard.common import P, render, with_flash
from cronmgr.controller.dashboard.forms import form_context, or_none, refusal, values_of
from cronmgr.controller.firing import schedule_warnings
from cronmgr.controller.keys import STORE
from cronmgr.core.errors import Conflict, InvalidInput
from cronmgr.core.models import MisfirePolicy, OverlapPolicy, Schedule, ScheduleType
from cronmgr.core.specs.schedules import TIMING_FIELDS, ScheduleSpec

FIELDS = (
    "name",
    "target_id",
    "pipeline",
    "schedule_type",
    "interval_seconds",
    "cron_expression",
    "run_at",
    "timezone",
    "start_at",
    "end_at",
    "max_runs",
    "overlap_policy",
    "misfire_policy",
)
_KEPT_AS_TYPED = ("name", "schedule_type", "overlap_policy", "misfire_policy")


def schedule_data(values: dict[str, str]) -> dict[str, Any]:
    """The form's values in `ScheduleSpec`'s shape: an empty field is None (its default),
    and only the timing field of the chosen type is sent."""
    data: dict[str, Any] = {name: or_none(values[name]) for name in FIELDS}
    data.update({name: values[name] for name in _KEPT_AS_TYPED})
    wanted = TIMING_FIELDS.get(ScheduleType(data["schedule_type"])) if _known_type(data) else None
    for name in TIMING_FIELDS.values():
        if name != wanted:
            data[name] = None
    return data


def _known_type(data: dict[str, Any]) -> bool:
    return data["schedule_type"] in {kind.value for kind in ScheduleType}


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def form_values(schedule: Schedule) -> dict[str, str]:
    """A stored schedule as its edit form shows it."""
    fields = ScheduleSpec.fields_of(schedule)
    return {name: _shown(fields[name]) for name in FIELDS}


def _new_values(request: web.Request) -> dict[str, str]:
    values = {name: "" for name in FIELDS}
    values.update(
        schedule_type="interval",
        interval_seconds="60",
        timezone="UTC",
        overlap_policy=OverlapPolicy.SKIP.value,
        misfire_policy=MisfirePolicy.SKIP.value,
        target_id=request.query.get("target_id", ""),
    )
    return values


async def _form_page(
    request: web.Request,
    values: dict[str, str],
    schedule: Schedule | None = None,
    refused: InvalidInput | None = None,
) -> web.Response:
    targets = await request.app[STORE].list_targets(limit=1000)
    pipelines = sorted(p.name for p in await read_pipelines(request))
    context = form_context(
        values,
        refusal(refused, FIELDS) if refused else None,
        schedule=schedule,
        targets=targets,
        pipelines=pipelines,
        types=[kind.value for kind in ScheduleType],
        overlap_policies=[policy.value for policy in OverlapPolicy],
        misfire_policies=[policy.value for policy in MisfirePolicy],
    )
    return render(request, "ui_schedule_form.html", context, status=422 if refused else 200)


async def new_schedule_form(request: web.Request) -> web.Response:
    """GET /ui/schedules/new: the create form (`?target_id=` picks the target)."""
    return await _form_page(request, _new_values(request))


async def create_schedule(request: web.Request) -> web.Response:
    """POST /ui/schedules: create; the form again (422) with the API's messages if refused."""
    values = values_of(await request.post(), FIELDS)
    data = {k: v for k, v in schedule_data(values).items() if v is not None}
    try:
        schedule = await add_schedule(request, data)
    except (InvalidInput, Conflict) as exc:
        return await _form_page(request, values, refused=_as_invalid(exc))
    back = f"{P}/schedules#schedule-{schedule.id}"
    warnings = await schedule_warnings(request.app, schedule)
    if warnings:  # the API's own note, as its answer carries it
        return with_flash(back, "warning", f"Schedule {schedule.name} created; {warnings[0]}")
    return with_flash(back, "ok", f"Schedule {schedule.name} created")


def _as_invalid(exc: InvalidInput | Conflict) -> InvalidInput:
    """A taken name (409) is the name field's problem to the person typing."""
    if isinstance(exc, InvalidInput):
        return exc
    return InvalidInput(exc.detail, errors=[{"field": "name", "message": exc.detail}])


async def edit_schedule_form(request: web.Request) -> web.Response:
    """GET /ui/schedules/{id}/edit: the edit form, filled in."""
    schedule = await request.app[STORE].get_schedule(request.match_info["id"])
    refuse_file_schedule(schedule, "edit")
    return await _form_page(request, form_values(schedule), schedule)


async def update_schedule(request: web.Request) -> web.Response:
    """POST /ui/schedules/{id}/edit: save; the form again (422) with the messages if refused."""
    schedule = await request.app[STORE].get_schedule(request.match_info["id"])
    refuse_file_schedule(schedule, "edit")  # 409 page: there is no form to show again
    values = values_of(await request.post(), FIELDS)
    try:
        # Every field the form shows is in the patch: an emptied one (null) goes back to
        # its default; what the form does not show is kept.
        changed = await change_schedule(request, schedule.id, schedule_data(values))
    except (InvalidInput, Conflict) as exc:
        return await _form_page(request, values, schedule, _as_invalid(exc))
    return with_flash(
        f"{P}/schedules#schedule-{changed.id}", "ok", f"Schedule {changed.name} saved"
    )


async def delete_schedule_form(request: web.Request) -> web.Response:
    """GET /ui/schedules/{id}/delete: the confirmation page."""
    schedule = await request.app[STORE].get_schedule(request.match_info["id"])
    return render(request, "ui_schedule_delete.html", {"schedule": schedule, "error": None})


async def delete_schedule(request: web.Request) -> web.Response:
    """POST /ui/schedules/{id}/delete: delete (its runs stay); 409 for a file's schedule."""
    schedule = await request.app[STORE].get_schedule(request.match_info["id"])
    try:
        await remove_schedule(request, schedule.id)
    except Conflict as exc:
        context = {"schedule": schedule, "error": exc.detail}
        return render(request, "ui_schedule_delete.html", context, status=409)
    return with_flash(f"{P}/schedules", "ok", f"Schedule {schedule.name} deleted")
