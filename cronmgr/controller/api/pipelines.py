"""`/api/v1/pipelines`: the pipelines their files declare, one with its steps, schedule and
recent runs, and a manual run asked of the daemon (the dashboard asks through here too).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from cronmgr.controller.api.common import _store
from cronmgr.controller.api.runs import run_summary
from cronmgr.controller.control import DaemonControl
from cronmgr.controller.keys import CONTROL, SETTINGS
from cronmgr.controller.openapi import Endpoint, Reply, array_of, ref
from cronmgr.controller.responses import json_response
from cronmgr.core.errors import Conflict, NotFound
from cronmgr.core.models import OverlapPolicy, Run, RunStatus, Trigger, new_id, pipeline_job, utcnow
from cronmgr.core.pipelines.loading import load_pipelines
from cronmgr.core.pipelines.pipeline import Pipeline, PipelineSet
from cronmgr.store import Store
from cronmgr.store.pipeline_sync import file_schedule_id


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


ENDPOINTS: tuple[Endpoint, ...] = (
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
)
