"""The `/api/v1` resources: targets, schedules, runs and pipelines, with the seed's names.

Lists are bare JSON arrays (the API Scheduler's clients read arrays), paged with `limit`
and `offset`; a page that may not be the last carries `X-Next-Offset` and a `Link: rel=
"next"` header. Every successful definition write signals a running daemon, so the change
takes effect at once. Target headers and URLs are redacted on the way out, always.
"""

from __future__ import annotations

import asyncio
import socket
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel

from cronmgr.controller.control import DaemonControl
from cronmgr.controller.keys import CONTROL, SETTINGS, STORE
from cronmgr.controller.openapi import Endpoint, Reply, Schema, array_of, ref
from cronmgr.controller.responses import json_response, read_body, timestamp
from cronmgr.core.errors import Conflict, InvalidInput, NotFound
from cronmgr.core.launch import STATE_FILENAME, read_json
from cronmgr.core.models import (
    OverlapPolicy,
    Run,
    RunStatus,
    Schedule,
    ScheduleStatus,
    StepResult,
    Target,
    Trigger,
    new_id,
    pipeline_job,
    utcnow,
)
from cronmgr.core.pipelines.loading import load_pipelines
from cronmgr.core.pipelines.pipeline import Pipeline, PipelineSet
from cronmgr.core.secret_refs import redact
from cronmgr.core.specs.metrics import IncidentBody, IncidentListQuery, MetricsQuery, MetricsReport
from cronmgr.core.specs.notifications import (
    NotificationTestQuery,
    NotificationTestReport,
    WebhookDelivery,
)
from cronmgr.core.specs.queries import (
    DeleteTargetQuery,
    NextQuery,
    PageQuery,
    RunListQuery,
    ScheduleListQuery,
)
from cronmgr.core.specs.schedules import ScheduleSpec
from cronmgr.core.specs.targets import TargetSpec
from cronmgr.core.specs.validation import validate, validate_query
from cronmgr.core.triggers.schedules import upcoming
from cronmgr.observability.incidents import incident_body
from cronmgr.observability.metrics import metrics_report, window_start
from cronmgr.observability.notify import TEST_EVENT, Webhook
from cronmgr.observability.prometheus import CONTENT_TYPE, CronmgrCollector, exposition
from cronmgr.store import Store
from cronmgr.store.base import IncidentStatus
from cronmgr.store.pipeline_sync import file_schedule_id, is_file_schedule

BODY = "request body"


def _store(request: web.Request) -> Store:
    return request.app[STORE]


def _id(request: web.Request) -> str:
    return request.match_info["id"]


def _changed(request: web.Request) -> None:
    # The daemon re-reads only what changed since its last revision; without a daemon
    # running this is a no-op.
    request.app[CONTROL].definitions_changed()


def invalid(field: str, message: str, kind: str) -> InvalidInput:
    """A 422 naming `field`, shaped like the model validation errors."""
    return InvalidInput(
        f"invalid {BODY}: {field}: {message}",
        errors=[{"field": field, "message": message, "type": kind}],
    )


def page(request: web.Request, query: PageQuery, items: list[dict[str, Any]]) -> web.Response:
    """A bare array of at most `limit` items; `items` holds one more when a next page exists."""
    response = json_response(items[: query.limit])
    if len(items) > query.limit:
        following = query.offset + query.limit
        response.headers["X-Next-Offset"] = str(following)
        link = request.rel_url.update_query(offset=following)
        response.headers["Link"] = f'<{link}>; rel="next"'
    return response


def deleted(what: str, item_id: str, **extra: Any) -> web.Response:
    """The answer of a successful DELETE: 200 with what went."""
    body = {"success": True, "message": f"{what} deleted", "id": item_id, **extra}
    return json_response({**body, "timestamp": timestamp()})


# --- targets ------------------------------------------------------------------------------


def target_body(target: Target) -> dict[str, Any]:
    """A target as the API shows it: credential headers and URL secrets redacted."""
    return {
        "id": target.id,
        **TargetSpec.fields_of(target),
        "url": redact(target.url),
        "headers": redact(target.headers),
        "created_at": target.created_at.isoformat(),
        "updated_at": target.updated_at.isoformat(),
        "status": "error" if target.status_reason else "ok",
        "status_reason": target.status_reason,
    }


def keep_hidden_secrets(patch: dict[str, Any], stored: Target) -> dict[str, Any]:
    """`patch` with values that are exactly what GET showed of a secret put back.

    A client that GETs a target, edits one field and sends the whole object back must not
    overwrite `Authorization: Bearer s3cr3t` with the `***` it was shown; the read-only
    `status` and `status_reason` it sends back as shown are dropped.
    """
    shown_status = target_body(stored)
    patch = {
        k: v
        for k, v in patch.items()
        if k not in TargetSpec.ECHOED_READ_ONLY or v != shown_status[k]
    }
    if "url" in patch and patch["url"] == redact(stored.url):
        patch["url"] = stored.url
    headers = patch.get("headers")
    if isinstance(headers, dict):
        shown = redact(stored.headers)
        patch["headers"] = {
            name: stored.headers[name] if name in shown and value == shown[name] else value
            for name, value in headers.items()
        }
    return patch


async def create_target(request: web.Request) -> web.Response:
    """POST /api/v1/targets: 201 with the new target; 409 when the name is taken."""
    spec = validate(TargetSpec, await read_body(request), BODY)
    target = spec.to_target(new_id())
    await _store(request).insert_target(target)
    _changed(request)
    return json_response(target_body(target), status=201)


async def list_targets(request: web.Request) -> web.Response:
    """GET /api/v1/targets: targets by name."""
    query = validate_query(PageQuery, request.query)
    found = await _store(request).list_targets(limit=query.limit + 1, offset=query.offset)
    return page(request, query, [target_body(t) for t in found])


async def get_target(request: web.Request) -> web.Response:
    """GET /api/v1/targets/{id}."""
    return json_response(target_body(await _store(request).get_target(_id(request))))


async def update_target(request: web.Request) -> web.Response:
    """PATCH /api/v1/targets/{id}: merge, validate the whole, store."""
    store = _store(request)
    stored = await store.get_target(_id(request))
    patch = keep_hidden_secrets(await read_body(request, required=True), stored)
    spec = validate(TargetSpec, TargetSpec.patched(stored, patch), BODY)
    target = spec.to_target(stored.id, created_at=stored.created_at)
    await store.update_target(target)
    _changed(request)
    return json_response(target_body(target))


async def delete_target(request: web.Request) -> web.Response:
    """DELETE /api/v1/targets/{id}: 409 while schedules use it, unless `?cascade=true`."""
    query = validate_query(DeleteTargetQuery, request.query)
    target_id = _id(request)
    schedule_ids = await _store(request).delete_target(target_id, cascade=query.cascade)
    _changed(request)
    return deleted("Target", target_id, deleted_schedules=schedule_ids)


# --- schedules ----------------------------------------------------------------------------


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


async def create_schedule(request: web.Request) -> web.Response:
    """POST /api/v1/schedules: 201 with the new schedule."""
    spec = validate(ScheduleSpec, await read_body(request), BODY)
    await _check_references(request, spec)
    store = _store(request)
    schedule = spec.to_schedule(new_id())
    try:
        await store.insert_schedule(schedule)
    except NotFound as exc:  # the target went away since the check
        raise invalid("target_id", exc.detail, "not_found") from exc
    _changed(request)
    return json_response((await store.get_schedule(schedule.id)).as_dict(), status=201)


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
    store = _store(request)
    stored = await store.get_schedule(_id(request))
    refuse_file_schedule(stored, "edit")
    data = ScheduleSpec.patched(stored, await read_body(request, required=True))
    spec = validate(ScheduleSpec, data, BODY)
    await _check_references(request, spec)
    await store.update_schedule(spec.applied_to(stored))
    _changed(request)
    return json_response((await store.get_schedule(stored.id)).as_dict())


async def delete_schedule(request: web.Request) -> web.Response:
    """DELETE /api/v1/schedules/{id}: the schedule goes, its runs stay."""
    store = _store(request)
    refuse_file_schedule(await store.get_schedule(_id(request)), "remove")
    await store.delete_schedule(_id(request))
    _changed(request)
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
    return json_response(resumed.as_dict())


async def next_fire_times(request: web.Request) -> web.Response:
    """GET /api/v1/schedules/{id}/next?count=N: ISO times in the schedule's timezone."""
    query = validate_query(NextQuery, request.query)
    schedule = await _store(request).get_schedule(_id(request))
    zone = ZoneInfo(schedule.timezone)
    times = upcoming(schedule, query.count, utcnow())
    return json_response([t.astimezone(zone).isoformat() for t in times])


# --- runs ---------------------------------------------------------------------------------


def run_summary(run: Run) -> dict[str, Any]:
    """A run without its steps, as lists show it."""
    body = run.as_dict()
    del body["steps"]
    return body


def group_steps(results: tuple[StepResult, ...]) -> list[dict[str, Any]]:
    """Attempt rows (ordered by step position, then attempt) as one entry per step."""
    groups: dict[int, dict[str, Any]] = {}
    for result in results:
        group = groups.setdefault(
            result.position, {"step": result.step, "position": result.position, "attempts": []}
        )
        attempt = result.as_dict()
        del attempt["step"], attempt["position"]
        group["attempts"].append(attempt)
        group["status"] = attempt["status"]  # the last attempt decides
    return [groups[position] for position in sorted(groups)]


async def list_runs(request: web.Request) -> web.Response:
    """GET /api/v1/runs: newest first, filtered by schedule, target, status and time."""
    query = validate_query(RunListQuery, request.query)
    found = await _store(request).list_runs(
        schedule_id=query.schedule_id,
        status=query.status,
        since=query.since,
        target_id=query.target_id,
        limit=query.limit + 1,
        offset=query.offset,
    )
    return page(request, query, [run_summary(r) for r in found])


async def get_run(request: web.Request) -> web.Response:
    """GET /api/v1/runs/{id}: the run with its steps and every attempt of each."""
    run = await _store(request).get_run(_id(request))
    return json_response({**run_summary(run), "steps": group_steps(run.steps)})


# --- pipelines ----------------------------------------------------------------------------


async def read_pipelines(request: web.Request) -> PipelineSet:
    """The pipelines as their files say now, loaded in a worker thread (API and dashboard).

    Read per request: the files are the source of truth and small; a cache would need
    invalidation on every edit for no measurable gain.
    """
    return await asyncio.to_thread(load_pipelines, request.app[SETTINGS].pipelines_path)


RECENT_RUNS = 10
"""Runs `GET /api/v1/pipelines/{name}` shows, newest first."""


def pipeline_summary(pipeline: Pipeline) -> dict[str, Any]:
    """A pipeline as the list shows it."""
    return {
        "name": pipeline.name,
        "description": pipeline.description,
        "step_count": len(pipeline.steps),
        "file": str(pipeline.path),
        "schedule_id": file_schedule_id(pipeline.name) if pipeline.schedule else None,
    }


def pipeline_body(pipeline: Pipeline) -> dict[str, Any]:
    """A pipeline with its steps; of each step's environment only the names."""
    steps = []
    for step in pipeline.steps:
        data = step.as_dict()
        data["env_names"] = sorted(data.pop("env"))
        steps.append(data)
    return {
        **pipeline_summary(pipeline),
        "max_concurrent_runs": pipeline.max_concurrent_runs,
        "overlap_policy": pipeline.overlap_policy.value,
        "steps": steps,
    }


async def list_pipelines(request: web.Request) -> web.Response:
    """GET /api/v1/pipelines: every pipeline that loaded (not paged: they are files)."""
    found = await read_pipelines(request)
    return json_response([pipeline_summary(p) for p in found])


async def get_pipeline(request: web.Request) -> web.Response:
    """GET /api/v1/pipelines/{name}: steps, schedule (as declared and as it stands), runs.

    404 says why: an unknown name, or the file that failed to load.
    """
    pipeline = (await read_pipelines(request)).get(request.match_info["name"])
    store = _store(request)
    body = pipeline_body(pipeline)
    body["schedule"] = await _schedule_state(store, pipeline)
    runs = await store.list_runs(job=pipeline_job(pipeline.name), limit=RECENT_RUNS)
    body["recent_runs"] = [run_summary(run) for run in runs]
    return json_response(body)


async def _schedule_state(store: Store, pipeline: Pipeline) -> dict[str, Any] | None:
    # The file's table, then what the store knows: status, next and last run. Before the
    # daemon has synced the file (it never ran since), only the table.
    if pipeline.schedule is None:
        return None
    declared = {"id": file_schedule_id(pipeline.name), **pipeline.schedule.as_dict()}
    try:
        stored = await store.get_schedule(declared["id"])
    except NotFound:
        return {**declared, "status": None, "synced": False}
    live = {name: stored.as_dict()[name] for name in _LIVE_SCHEDULE_FIELDS}
    return {**declared, **live, "synced": True}


_LIVE_SCHEDULE_FIELDS = (
    "status",
    "status_reason",
    "next_run_at",
    "last_run_at",
    "run_count",
    "consecutive_failures",
    "circuit_open_until",
)


async def run_pipeline(request: web.Request) -> web.Response:
    """POST /api/v1/pipelines/{name}/run: ask the daemon for a run now; 202 with its id.

    409 when the daemon is not running, or when the pipeline's overlap policy is `skip`
    (the default without a schedule) and a run of it is in flight or waiting.
    """
    pipeline = (await read_pipelines(request)).get(request.match_info["name"])
    run = await request_pipeline_run(
        _store(request), request.app[CONTROL], pipeline, "POST /api/cron/start"
    )
    return json_response({**run_summary(run), "pipeline": pipeline.name}, status=202)


async def request_pipeline_run(
    store: Store, control: DaemonControl, pipeline: Pipeline, how_to_start: str
) -> Run:
    """Record a pending manual run of `pipeline` and wake the daemon to carry it out.

    Conflict when the daemon is not running (`how_to_start` says how to start it), or when
    the overlap policy is `skip` and a run of the pipeline is in flight or waiting. The API
    and the dashboard both ask for runs through here.
    """
    if not control.is_running():
        raise Conflict(
            f"the daemon is not running, so pipeline {pipeline.name!r} cannot run: "
            f"start it first ({how_to_start})"
        )
    job = pipeline_job(pipeline.name)
    if pipeline.overlap_policy is OverlapPolicy.SKIP:
        await _refuse_overlap(store, pipeline.name, job)
    run = Run(id=new_id(), job=job, scheduled_for=utcnow(), trigger=Trigger.API)
    await store.insert_run(run)
    control.definitions_changed()
    return run


async def _refuse_overlap(store: Store, name: str, job: str) -> None:
    for status in (RunStatus.RUNNING, RunStatus.PENDING):
        busy = await store.list_runs(job=job, status=status, limit=1)
        if busy:
            raise Conflict(
                f"pipeline {name!r} has a run {status.value} ({busy[0].id}) and its "
                "overlap_policy is 'skip': wait for it to end, or declare "
                'overlap_policy = "queue", "allow" or "replace" in its [schedule]',
                errors=[{"run_id": busy[0].id, "status": status.value}],
            )


# --- metrics and incidents ----------------------------------------------------------------

INCIDENTS_READ = 100_000
"""Most incidents one metrics answer takes into account (those of the last 7 days)."""


def _daemon_state(request: web.Request) -> dict[str, Any] | None:
    """The running daemon's state file (heartbeat, engine figures); None when it is not
    running, so that a dead daemon's last words are not shown as current."""
    if not request.app[CONTROL].is_running():
        return None
    return read_json(request.app[SETTINGS].state_path / STATE_FILENAME) or {}


async def get_metrics(request: web.Request) -> web.Response:
    """GET /api/v1/metrics: per schedule, target and pipeline, and the daemon's figures."""
    query = validate_query(MetricsQuery, request.query)
    store = _store(request)
    now = utcnow()
    summary = await store.metrics_summary(window_start(now, query.window_hours))
    incidents = await store.list_incidents(since=now - timedelta(days=7), limit=INCIDENTS_READ)
    daemon = await asyncio.to_thread(_daemon_state, request)
    body = metrics_report(summary, incidents, daemon, now=now, hours=query.window_hours)
    return json_response(body)


async def get_prometheus_metrics(request: web.Request) -> web.Response:
    """GET /api/v1/metrics/prometheus: the text exposition, built at each scrape."""
    store = _store(request)
    summary = await store.metrics_summary(utcnow())
    open_incidents = await store.list_incidents(status=IncidentStatus.OPEN, limit=INCIDENTS_READ)
    daemon = await asyncio.to_thread(_daemon_state, request)
    collector = CronmgrCollector(summary, open_incidents, daemon)
    # Rendering is plain CPU work, a lot of it with many schedules: off the event loop.
    text = await asyncio.to_thread(exposition, collector)
    return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE})


async def list_incidents(request: web.Request) -> web.Response:
    """GET /api/v1/incidents: newest first, filtered by status, job and time."""
    query = validate_query(IncidentListQuery, request.query)
    jobs = {
        job
        for job in (
            query.job,
            f"target:{query.target_id}" if query.target_id else None,
            pipeline_job(query.pipeline) if query.pipeline else None,
        )
        if job
    }
    if len(jobs) > 1:
        return page(request, query, [])  # two different jobs asked for: none matches both
    found = await _store(request).list_incidents(
        status=IncidentStatus(query.status) if query.status else None,
        job=jobs.pop() if jobs else None,
        since=query.since,
        limit=query.limit + 1,
        offset=query.offset,
    )
    now = utcnow()
    return page(request, query, [incident_body(incident, now) for incident in found])


# --- the route table ----------------------------------------------------------------------

_PAGED = "Pages with `limit`/`offset`; see `X-Next-Offset` and `Link`."


# --- notifications ------------------------------------------------------------------------

TEST_WAIT_SECONDS = 30.0
"""Longest `POST /api/v1/notifications/test` waits for the deliveries (retries included)."""


def _chosen_webhooks(request: web.Request) -> list[Webhook]:
    notifier = request.app[CONTROL].notifier
    if not notifier.webhooks:
        raise Conflict(
            "no webhook is configured: add a [[webhooks]] table to the config file "
            "and restart the controller"
        )
    query = validate_query(NotificationTestQuery, request.query)
    if query.webhook is None:
        return list(notifier.webhooks)
    found = notifier.find(query.webhook)
    if found is None:
        known = ", ".join(str(h.config.name or h.index) for h in notifier.webhooks)
        message = f"no webhook is called or numbered {query.webhook!r}; configured: {known}"
        raise InvalidInput(
            f"invalid query: webhook: {message}",
            errors=[{"field": "webhook", "message": message, "type": "not_found"}],
        )
    return [found]


async def test_notifications(request: web.Request) -> web.Response:
    """POST /api/v1/notifications/test: send a `test` event, answer what became of it."""
    hooks = _chosen_webhooks(request)
    data = {"message": "This is a test notification from cronmgr.", "host": socket.gethostname()}
    notifier = request.app[CONTROL].notifier
    results = await notifier.send_now(TEST_EVENT, data, hooks, TEST_WAIT_SECONDS)
    delivered = sum(result.delivered for result in results)
    report = NotificationTestReport(
        success=delivered == len(results),
        message=f"test event delivered to {delivered} of {len(results)} webhooks",
        results=[WebhookDelivery(**result.as_dict()) for result in results],
        timestamp=utcnow(),
    )
    return json_response(report.model_dump(mode="json"))


def inline_schema(model: type[BaseModel]) -> Schema:
    """A reply model's JSON schema with its definitions written in place, no `$ref` left."""
    schema = model.model_json_schema(mode="serialization")
    definitions = schema.pop("$defs", {})

    def expand(node: Any) -> Any:
        if isinstance(node, list):
            return [expand(item) for item in node]
        if not isinstance(node, dict):
            return node
        target = node.get("$ref", "")
        if target.startswith("#/$defs/"):
            return expand(definitions[target.removeprefix("#/$defs/")])
        return {key: expand(value) for key, value in node.items()}

    expanded: Schema = expand(schema)
    return expanded


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/api/v1/targets",
        create_target,
        "Create a target",
        "targets",
        Reply(201, "The new target.", ref("Target")),
        body=TargetSpec,
        errors=(409,),
    ),
    Endpoint(
        "GET",
        "/api/v1/targets",
        list_targets,
        "List targets (by name)",
        "targets",
        Reply(200, "Targets.", array_of(ref("Target")), paginated=True),
        description=_PAGED,
        query=PageQuery,
    ),
    Endpoint(
        "GET",
        "/api/v1/targets/{id}",
        get_target,
        "Get a target",
        "targets",
        Reply(200, "The target.", ref("Target")),
    ),
    Endpoint(
        "PATCH",
        "/api/v1/targets/{id}",
        update_target,
        "Update a target (JSON merge patch)",
        "targets",
        Reply(200, "The updated target.", ref("Target")),
        description="A header value sent back exactly as shown (`***`) keeps the stored one.",
        body=TargetSpec,
        partial_body=True,
        errors=(409,),
    ),
    Endpoint(
        "DELETE",
        "/api/v1/targets/{id}",
        delete_target,
        "Delete a target",
        "targets",
        Reply(200, "Deleted; with the ids of the schedules deleted along.", ref("Deleted")),
        description="409 while schedules use the target, unless `cascade=true` deletes them.",
        query=DeleteTargetQuery,
        errors=(409,),
    ),
    Endpoint(
        "POST",
        "/api/v1/schedules",
        create_schedule,
        "Create a schedule",
        "schedules",
        Reply(201, "The new schedule.", ref("Schedule")),
        description="422 names the field: an unknown target_id or pipeline included.",
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
        Reply(200, "The active schedule.", ref("Schedule")),
        description="Also resets the failure count and closes the circuit breaker.",
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
    Endpoint(
        "GET",
        "/api/v1/runs",
        list_runs,
        "List runs (newest first)",
        "runs",
        Reply(200, "Runs, without their steps.", array_of(ref("Run")), paginated=True),
        description=_PAGED,
        query=RunListQuery,
    ),
    Endpoint(
        "GET",
        "/api/v1/runs/{id}",
        get_run,
        "Get a run with its steps and attempts",
        "runs",
        Reply(200, "The run.", ref("RunDetail")),
    ),
    Endpoint(
        "GET",
        "/api/v1/pipelines",
        list_pipelines,
        "List pipelines",
        "pipelines",
        Reply(200, "Every pipeline that loaded, by name.", array_of(ref("PipelineSummary"))),
    ),
    Endpoint(
        "GET",
        "/api/v1/pipelines/{name}",
        get_pipeline,
        "Get a pipeline with its steps",
        "pipelines",
        Reply(200, "The pipeline.", ref("Pipeline")),
        description="404 says why: an unknown name, or the file that failed to load.",
    ),
    Endpoint(
        "POST",
        "/api/v1/pipelines/{name}/run",
        run_pipeline,
        "Run a pipeline now",
        "pipelines",
        Reply(202, "The run, pending until the daemon takes it.", ref("Run")),
        description=(
            "The daemon runs it under the pipeline's overlap policy. 409 when the daemon "
            "is not running, or when the policy is `skip` (the default) and a run of the "
            "pipeline is running or pending."
        ),
        errors=(409,),
    ),
    Endpoint(
        "POST",
        "/api/v1/notifications/test",
        test_notifications,
        "Send a test event to the webhooks",
        "notifications",
        Reply(
            200, "What became of the event at each webhook.", inline_schema(NotificationTestReport)
        ),
        description=(
            "Sends a `test` event to every configured webhook (or to `?webhook=`), signed "
            "and retried as any event, and waits for the outcomes (30 s at most). 200 even "
            "when a delivery failed: `success` and `results` tell. 409 when no webhook is "
            "configured."
        ),
        query=NotificationTestQuery,
        errors=(409,),
    ),
    Endpoint(
        "GET",
        "/api/v1/metrics",
        get_metrics,
        "Run and daemon metrics (JSON)",
        "metrics",
        Reply(200, "Figures per schedule, target and pipeline.", inline_schema(MetricsReport)),
        description=(
            "Runs by status, success rate, duration percentiles (interpolated within "
            "histogram buckets) and error classes over the newest `window_hours` hour "
            "buckets; last run, failures in a row, availability over 24 h and 7 days (the "
            "time not spent in incidents) and the open incident; the daemon's runs per "
            "second, schedule lag and queue depth. Maintained as runs finish, so it costs "
            "the same however long the run history is."
        ),
        query=MetricsQuery,
    ),
    Endpoint(
        "GET",
        "/api/v1/metrics/prometheus",
        get_prometheus_metrics,
        "Metrics in the Prometheus text format",
        "metrics",
        Reply(
            200,
            "The Prometheus text format, as prometheus_client writes it.",
            {"type": "string"},
            media_type="text/plain",
        ),
        description=(
            "Counters `cronmgr_runs_total` and `cronmgr_run_failures_total`, histograms "
            "`cronmgr_run_duration_seconds` and `cronmgr_schedule_lag_seconds`, gauges "
            "`cronmgr_daemon_up`, `cronmgr_schedules` (by status), `cronmgr_incidents_open` "
            "and more; labels `kind`, `job_id`, `schedule_id`, `status`, `error_class`."
        ),
    ),
    Endpoint(
        "GET",
        "/api/v1/incidents",
        list_incidents,
        "List incidents (newest first)",
        "incidents",
        Reply(200, "Incidents.", array_of(inline_schema(IncidentBody)), paginated=True),
        description=(
            "Downtime windows of targets and pipelines: opened after `incident_threshold` "
            "failed runs in a row, resolved by the next success. " + _PAGED
        ),
        query=IncidentListQuery,
    ),
)
