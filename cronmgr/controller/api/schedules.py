"""`/api/v1/schedules`: create, list, get, update and delete schedules, pause and resume
them, and their upcoming fire times; the schedules a pipeline file declares are edited there.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from cronmgr.controller.api.common import (
    _PAGED,
    BODY,
    _changed,
    _id,
    _store,
    deleted,
    invalid,
    page,
)
from cronmgr.controller.api.pipelines import read_pipelines
from cronmgr.controller.firing import schedule_warnings
from cronmgr.controller.openapi import Endpoint, Reply, array_of, ref
from cronmgr.controller.responses import json_response, read_body
from cronmgr.core.errors import Conflict, NotFound
from cronmgr.core.models import Schedule, ScheduleStatus, new_id, utcnow
from cronmgr.core.specs.queries import NextQuery, ScheduleListQuery
from cronmgr.core.specs.schedules import ScheduleSpec
from cronmgr.core.specs.validation import validate, validate_query
from cronmgr.core.triggers.schedules import upcoming
from cronmgr.store.pipeline_sync import is_file_schedule


async def _check_references(request: web.Request, spec: ScheduleSpec) -> None:
    """422 naming the field when the target or the pipeline does not exist."""
    if spec.target_id is not None:
        try:
            await _store(request).get_target(spec.target_id)
        except NotFound as exc:
            message = f"no target has the id {spec.target_id!r}"
            raise invalid("target_id", message, "not_found") from exc
    if spec.pipeline is not None:
        try:
            (await read_pipelines(request)).get(spec.pipeline)
        except NotFound as exc:
            raise invalid("pipeline", exc.detail, "not_found") from exc


async def add_schedule(request: web.Request, data: dict[str, Any]) -> Schedule:
    """Validate `data` as a schedule and store it: InvalidInput naming each bad field (an
    unknown target or pipeline included). The API and the dashboard's form create here."""
    spec = validate(ScheduleSpec, data, BODY)
    await _check_references(request, spec)
    store = _store(request)
    schedule = spec.to_schedule(new_id())
    try:
        await store.insert_schedule(schedule)
    except NotFound as exc:  # the target went away since the check
        raise invalid("target_id", exc.detail, "not_found") from exc
    _changed(request)
    return await store.get_schedule(schedule.id)


async def create_schedule(request: web.Request) -> web.Response:
    """POST /api/v1/schedules: 201 with the new schedule and its `warnings`."""
    schedule = await add_schedule(request, await read_body(request))
    return json_response(await _written(request, schedule), status=201)


async def _written(request: web.Request, schedule: Schedule) -> dict[str, object]:
    """A schedule as the answer to its creation or resumption: with `warnings` (empty, or
    that no daemon runs to fire it)."""
    return {**schedule.as_dict(), "warnings": await schedule_warnings(request.app, schedule)}


async def list_schedules(request: web.Request) -> web.Response:
    """GET /api/v1/schedules: by name, filtered by status and target_id."""
    query = validate_query(ScheduleListQuery, request.query)
    found = await _store(request).list_schedules(
        status=query.status,
        target_id=query.target_id,
        limit=query.limit + 1,
        offset=query.offset,
    )
    return page(request, query, [s.as_dict() for s in found])


async def get_schedule(request: web.Request) -> web.Response:
    """GET /api/v1/schedules/{id}: definition, status and the engine's bookkeeping."""
    return json_response((await _store(request).get_schedule(_id(request))).as_dict())


def refuse_file_schedule(schedule: Schedule, action: str) -> None:
    """409 for editing or deleting a schedule that a pipeline file declares."""
    if is_file_schedule(schedule.id):
        raise Conflict(
            f"schedule {schedule.id!r} is declared in the [schedule] table of pipeline "
            f"{schedule.pipeline!r}'s file; {action} it there and reload "
            "(pause and resume work here)"
        )


async def update_schedule(request: web.Request) -> web.Response:
    """PATCH /api/v1/schedules/{id}: merge, validate the whole, store; status is kept."""
    patch = await read_body(request, required=True)
    return json_response((await change_schedule(request, _id(request), patch)).as_dict())


async def change_schedule(
    request: web.Request, schedule_id: str, patch: dict[str, Any]
) -> Schedule:
    """Merge `patch` into the stored schedule, validate the whole and store it, status and
    progress kept; 409 for a pipeline file's schedule. The API and the dashboard edit here."""
    store = _store(request)
    stored = await store.get_schedule(schedule_id)
    refuse_file_schedule(stored, "edit")
    spec = validate(ScheduleSpec, ScheduleSpec.patched(stored, patch), BODY)
    await _check_references(request, spec)
    await store.update_schedule(spec.applied_to(stored))
    _changed(request)
    return await store.get_schedule(stored.id)


async def remove_schedule(request: web.Request, schedule_id: str) -> Schedule:
    """Delete a schedule (its runs stay); 409 for a pipeline file's schedule."""
    store = _store(request)
    schedule = await store.get_schedule(schedule_id)
    refuse_file_schedule(schedule, "remove")
    await store.delete_schedule(schedule_id)
    _changed(request)
    return schedule


async def delete_schedule(request: web.Request) -> web.Response:
    """DELETE /api/v1/schedules/{id}: the schedule goes, its runs stay."""
    await remove_schedule(request, _id(request))
    return deleted("Schedule", _id(request))


async def pause_schedule(request: web.Request) -> web.Response:
    """POST /api/v1/schedules/{id}/pause: stop firing; 409 for a completed schedule."""
    store = _store(request)
    schedule = await store.get_schedule(_id(request))
    if schedule.status is ScheduleStatus.COMPLETED:
        raise Conflict(
            f"schedule {schedule.id!r} is completed ({schedule.status_reason or 'window over'});"
            " there is nothing to pause"
        )
    paused = await store.set_schedule_status(schedule.id, ScheduleStatus.PAUSED, "paused")
    _changed(request)
    return json_response(paused.as_dict())


async def resume_schedule(request: web.Request) -> web.Response:
    """POST /api/v1/schedules/{id}/resume: fire again; clears failures and the circuit."""
    store = _store(request)
    schedule = await store.get_schedule(_id(request))
    resumed = await store.set_schedule_status(schedule.id, ScheduleStatus.ACTIVE)
    _changed(request)
    return json_response(await _written(request, resumed))


async def next_fire_times(request: web.Request) -> web.Response:
    """GET /api/v1/schedules/{id}/next?count=N: ISO times in the schedule's timezone."""
    query = validate_query(NextQuery, request.query)
    schedule = await _store(request).get_schedule(_id(request))
    zone = ZoneInfo(schedule.timezone)
    times = upcoming(schedule, query.count, utcnow())
    return json_response([t.astimezone(zone).isoformat() for t in times])


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/api/v1/schedules",
        create_schedule,
        "Create a schedule",
        "schedules",
        Reply(201, "The new schedule, with warnings.", ref("ScheduleWritten")),
        description=(
            "422 names the field: an unknown target_id or pipeline included. `warnings` "
            "is empty, or says that no daemon runs to fire the schedule yet."
        ),
        body=ScheduleSpec,
        errors=(409,),
    ),
    Endpoint(
        "GET",
        "/api/v1/schedules",
        list_schedules,
        "List schedules (by name)",
        "schedules",
        Reply(200, "Schedules.", array_of(ref("Schedule")), paginated=True),
        description=_PAGED,
        query=ScheduleListQuery,
    ),
    Endpoint(
        "GET",
        "/api/v1/schedules/{id}",
        get_schedule,
        "Get a schedule",
        "schedules",
        Reply(200, "The schedule.", ref("Schedule")),
    ),
    Endpoint(
        "PATCH",
        "/api/v1/schedules/{id}",
        update_schedule,
        "Update a schedule (JSON merge patch)",
        "schedules",
        Reply(200, "The updated schedule.", ref("Schedule")),
        description="Status and progress are kept; use pause and resume for the status.",
        body=ScheduleSpec,
        partial_body=True,
        errors=(409,),
    ),
    Endpoint(
        "DELETE",
        "/api/v1/schedules/{id}",
        delete_schedule,
        "Delete a schedule (its runs stay)",
        "schedules",
        Reply(200, "Deleted.", ref("Deleted")),
    ),
    Endpoint(
        "POST",
        "/api/v1/schedules/{id}/pause",
        pause_schedule,
        "Pause a schedule",
        "schedules",
        Reply(200, "The paused schedule.", ref("Schedule")),
        description="409 when the schedule is completed.",
        errors=(409,),
    ),
    Endpoint(
        "POST",
        "/api/v1/schedules/{id}/resume",
        resume_schedule,
        "Resume a schedule",
        "schedules",
        Reply(200, "The active schedule, with warnings.", ref("ScheduleWritten")),
        description=(
            "Also resets the failure count and closes the circuit breaker. `warnings` is "
            "empty, or says that no daemon runs to fire the schedule yet."
        ),
    ),
    Endpoint(
        "GET",
        "/api/v1/schedules/{id}/next",
        next_fire_times,
        "Upcoming fire times",
        "schedules",
        Reply(
            200,
            "ISO 8601 times in the schedule's timezone.",
            array_of({"type": "string", "format": "date-time"}),
        ),
        description=(
            "Nominal slots (without jitter) from now on, within the window and max_runs; "
            "an empty array for a schedule that is not active."
        ),
        query=NextQuery,
    ),
)
