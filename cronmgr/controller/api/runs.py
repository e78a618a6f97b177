"""`/api/v1/runs`: the runs, newest first, and one run with its steps, each step with
every attempt; `run_summary` is how lists (pipelines' included) show a run.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cronmgr.controller.api.common import _PAGED, _id, _store, page
from cronmgr.controller.openapi import Endpoint, Reply, array_of, ref
from cronmgr.controller.responses import json_response
from cronmgr.core.models import Run, StepResult
from cronmgr.core.specs.queries import RunListQuery
from cronmgr.core.specs.validation import validate_query


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


ENDPOINTS: tuple[Endpoint, ...] = (
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
)
