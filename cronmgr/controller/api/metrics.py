"""`/api/v1/metrics`: run and daemon figures per schedule, target and pipeline as JSON, and
the same, with the nodes of the store, in the Prometheus text format, built at each scrape.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from aiohttp import web

from cronmgr.controller.api.common import _store, inline_schema
from cronmgr.controller.keys import CONTROL, SETTINGS
from cronmgr.controller.openapi import Endpoint, Reply
from cronmgr.controller.responses import json_response
from cronmgr.core.launch import STATE_FILENAME, read_json
from cronmgr.core.models import utcnow
from cronmgr.core.specs.metrics import MetricsQuery, MetricsReport
from cronmgr.core.specs.validation import validate_query
from cronmgr.observability.metrics import metrics_report, window_start
from cronmgr.observability.prometheus import CONTENT_TYPE, CronmgrCollector, exposition
from cronmgr.store.records import IncidentStatus

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
    now = utcnow()
    summary = await store.metrics_summary(now)
    open_incidents = await store.list_incidents(status=IncidentStatus.OPEN, limit=INCIDENTS_READ)
    nodes = await store.list_nodes()
    daemon = await asyncio.to_thread(_daemon_state, request)
    collector = CronmgrCollector(summary, open_incidents, daemon, nodes, now)
    # Rendering is plain CPU work, a lot of it with many schedules: off the event loop.
    text = await asyncio.to_thread(exposition, collector)
    return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE})


ENDPOINTS: tuple[Endpoint, ...] = (
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
            "and more; labels `kind`, `job_id`, `schedule_id`, `status`, `error_class`. This "
            "host's daemon (`cronmgr_daemon_*`, the lag) is labelled with its `node`; every "
            "node of the store has `cronmgr_node_up` (with `host`), "
            "`cronmgr_node_schedules_owned`, `cronmgr_node_runs_in_flight`, "
            "`cronmgr_node_lease_expires_seconds` and "
            "`cronmgr_node_heartbeat_timestamp_seconds`."
        ),
    ),
)
