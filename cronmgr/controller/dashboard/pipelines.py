"""The pipelines pages: every pipeline file with its schedule and last runs (and the files
that do not load); one pipeline with its steps and the form that asks for a run now.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cronmgr.controller.api.pipelines import read_pipelines, request_pipeline_run
from cronmgr.controller.dashboard.common import Form, P, act, render
from cronmgr.controller.dashboard.names import Names, run_rows
from cronmgr.controller.keys import CONTROL, STORE
from cronmgr.core.errors import NotFound
from cronmgr.core.models import pipeline_job
from cronmgr.core.pipelines.pipeline import Pipeline
from cronmgr.store import Store
from cronmgr.store.pipeline_sync import file_schedule_id


async def _pipeline_row(store: Store, pipeline: Pipeline) -> dict[str, Any]:
    schedule = None
    if pipeline.schedule is not None:
        try:
            schedule = await store.get_schedule(file_schedule_id(pipeline.name))
        except NotFound:
            schedule = None  # the daemon has not synced the file yet
    runs = await store.list_runs(job=pipeline_job(pipeline.name), limit=10)
    return {"pipeline": pipeline, "schedule": schedule, "runs": runs}


async def pipelines_page(request: web.Request) -> web.Response:
    """GET /ui/pipelines: every pipeline with its schedule and last run; the broken files."""
    store, found = request.app[STORE], await read_pipelines(request)
    rows = [await _pipeline_row(store, p) for p in sorted(found, key=lambda p: p.name)]
    context = {"rows": rows, "errors": found.errors}
    return render(request, "ui_pipelines.html", context)


async def pipeline_page(request: web.Request) -> web.Response:
    """GET /ui/pipelines/{name}: steps, schedule, recent runs, run now."""
    store = request.app[STORE]
    pipeline = (await read_pipelines(request)).get(request.match_info["name"])
    row = await _pipeline_row(store, pipeline)
    names = Names(store)
    context = {**row, "recent": await run_rows(names, row["runs"])}
    return render(request, "ui_pipeline.html", context)


async def _run_now(request: web.Request, form: Form) -> str:
    pipeline = (await read_pipelines(request)).get(request.match_info["name"])
    store, control = request.app[STORE], request.app[CONTROL]
    run = await request_pipeline_run(store, control, pipeline, "the Start button above")
    return f"Run {run.id} of pipeline {pipeline.name} asked for"


async def run_pipeline_now(request: web.Request) -> web.Response:
    """POST /ui/pipelines/{name}/run: ask the daemon for a run now."""
    return await act(request, _run_now, P + "/pipelines")
