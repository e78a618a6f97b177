"""`/api/v1/incidents`: the downtime windows of targets and pipelines, newest first, filtered
by status, job and time.
"""

from __future__ import annotations

from aiohttp import web

from cronmgr.controller.api.common import _PAGED, _store, inline_schema, page
from cronmgr.controller.openapi import Endpoint, Reply, array_of
from cronmgr.core.models import pipeline_job, utcnow
from cronmgr.core.specs.metrics import IncidentBody, IncidentListQuery
from cronmgr.core.specs.validation import validate_query
from cronmgr.observability.incidents import incident_body
from cronmgr.store.records import IncidentStatus


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


ENDPOINTS: tuple[Endpoint, ...] = (
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
