"""`GET /api/v1/metrics/prometheus`: the run statistics and the daemon's state as Prometheus text.

Built per scrape by a collector on a private registry (never prometheus_client's global
one: nothing here exists at import time) from what the store counted, its nodes table and
the state file of this host's daemon. Label sets stay bounded: `kind` (target or
pipeline), `job_id` (the target's id or the pipeline's name), `schedule_id` ('' for manual
runs), `node` and `host` (one per daemon of the store), and small enumerations (status,
error_class); never a run id or an error message. The label is not called `job`, which
Prometheus reserves for the scrape job. The `cronmgr_daemon_*` families are this host's
daemon, labelled with its node id ('' while it does not run); the `cronmgr_node_*`
families are every node of the store, as its row says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from cronmgr.core.models import Node, RunStatus, ScheduleStatus, utcnow
from cronmgr.observability.metrics import LAG_BOUNDS, job_labels
from cronmgr.observability.nodes import is_up, lease_seconds_left
from cronmgr.store.records import DURATION_BOUNDS, Incident, LatestRun, MetricsSummary, RunStats

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The exposition's media type, as the library names it."""

RUN_LABELS = ("kind", "job_id", "schedule_id")
JOB_LABELS = ("kind", "job_id")
FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.SKIPPED)


class CronmgrCollector:
    """Metric families from one reading of the store (its nodes among it, read at `now`)
    and the daemon's state file (None: the daemon is not running)."""

    def __init__(
        self,
        summary: MetricsSummary,
        open_incidents: Sequence[Incident],
        daemon: Mapping[str, Any] | None,
        nodes: Sequence[Node] = (),
        now: datetime | None = None,
    ) -> None:
        self._summary = summary
        self._open = open_incidents
        self._daemon = daemon
        self._nodes = nodes
        self._now = now or utcnow()

    def collect(self) -> Iterator[Metric]:
        """Every family, built now (prometheus_client calls this once per exposition)."""
        lifetime = sorted(self._summary.lifetime, key=lambda s: (s.job, s.schedule_id))
        yield _runs(lifetime)
        yield _failures(lifetime)
        yield _durations(lifetime)
        jobs = [r for r in self._summary.latest if r.schedule_id is None]
        yield from _job_gauges(jobs, self._open)
        yield _schedules(self._summary.schedules)
        yield from self._daemon_families()
        yield from _node_gauges(self._nodes, self._now)

    def _daemon_families(self) -> Iterator[Metric]:
        state = self._daemon or {}
        engine: Mapping[str, Any] = state.get("metrics") or {}
        node = [str(state.get("node") or "")]  # older daemons wrote no node: ''
        yield _gauge(
            "cronmgr_daemon_up", "1 when the daemon runs, 0 when it does not.", node, bool(state)
        )
        if state.get("heartbeat_at"):
            yield _gauge(
                "cronmgr_daemon_heartbeat_timestamp_seconds",
                "When the daemon last published its state (Unix time).",
                node,
                datetime.fromisoformat(state["heartbeat_at"]).timestamp(),
            )
        yield _gauge(
            "cronmgr_daemon_active_runs",
            "Runs executing now.",
            node,
            len(state.get("active_runs", [])),
        )
        yield _gauge(
            "cronmgr_daemon_queue_depth",
            "Runs waiting for a free slot (concurrency limits, manual runs) and slots queued"
            " behind a running run (overlap queue).",
            node,
            engine.get("queue_depth", 0),
        )
        yield _lag(engine.get("lag_histogram"), node)


def _gauge(name: str, documentation: str, node: list[str], value: float) -> Metric:
    """A gauge of this host's daemon, with its one sample labelled by node."""
    family = GaugeMetricFamily(name, documentation, labels=["node"])
    family.add_metric(node, float(value))
    return family


NodeFigure = Callable[[Node, datetime], float]
_NODE_FIGURES: tuple[tuple[str, str, NodeFigure], ...] = (
    (
        "cronmgr_node_schedules_owned",
        "Schedules a node fires, as it counted them at its last renewal.",
        lambda node, _: node.schedules_owned,
    ),
    (
        "cronmgr_node_runs_in_flight",
        "Runs executing on a node, as it counted them at its last renewal.",
        lambda node, _: node.runs_in_flight,
    ),
    (
        "cronmgr_node_lease_expires_seconds",
        "Seconds until a node's lease runs out (by the controller's clock); negative once it has.",
        lease_seconds_left,
    ),
    (
        "cronmgr_node_heartbeat_timestamp_seconds",
        "When a node last renewed its lease (Unix time).",
        lambda node, _: node.heartbeat_at.timestamp(),
    ),
)


def _node_gauges(nodes: Sequence[Node], now: datetime) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "cronmgr_node_up",
        "1 while a node of the store is live with a lease that holds, else 0.",
        labels=["node", "host"],
    )
    for node in nodes:
        up.add_metric([node.id, node.host], int(is_up(node, now)))
    yield up
    for name, documentation, figure in _NODE_FIGURES:
        family = GaugeMetricFamily(name, documentation, labels=["node"])
        for node in nodes:
            family.add_metric([node.id], figure(node, now))
        yield family


def _labels(stats: RunStats) -> list[str]:
    return [*job_labels(stats.job), stats.schedule_id]


def _runs(lifetime: Sequence[RunStats]) -> Metric:
    family = CounterMetricFamily(
        "cronmgr_runs",
        "Finished runs by status (purged runs included).",
        labels=[*RUN_LABELS, "status"],
    )
    for stats in lifetime:
        for status in FINISHED:
            family.add_metric([*_labels(stats), status.value], getattr(stats, status.value))
    return family


def _failures(lifetime: Sequence[RunStats]) -> Metric:
    family = CounterMetricFamily(
        "cronmgr_run_failures",
        "Failed runs by error class (of the first failed step's last attempt).",
        labels=[*RUN_LABELS, "error_class"],
    )
    for stats in lifetime:
        for error_class, count in sorted(stats.errors.items()):
            family.add_metric([*_labels(stats), error_class], count)
    return family


def _buckets(bounds: Sequence[float], cumulative: Sequence[int]) -> list[tuple[str, float]]:
    """Histogram buckets as the library takes them: `le` labels and cumulative counts."""
    found = [(repr(float(b)), float(c)) for b, c in zip(bounds, cumulative, strict=False)]
    return [*found, ("+Inf", float(cumulative[-1]))]


def _durations(lifetime: Sequence[RunStats]) -> Metric:
    family = HistogramMetricFamily(
        "cronmgr_run_duration_seconds",
        "How long runs took, from start to finish (skipped slots excluded).",
        labels=RUN_LABELS,
    )
    for stats in lifetime:
        cumulative = [*stats.duration_buckets, stats.timed]
        family.add_metric(_labels(stats), _buckets(DURATION_BOUNDS, cumulative), stats.duration_sum)
    return family


def _job_gauges(jobs: Sequence[LatestRun], open_incidents: Sequence[Incident]) -> Iterator[Metric]:
    opened = {incident.job for incident in open_incidents}
    failures = GaugeMetricFamily(
        "cronmgr_job_consecutive_failures",
        "Failed runs in a row of a target or pipeline, up to its last run.",
        labels=JOB_LABELS,
    )
    last = GaugeMetricFamily(
        "cronmgr_job_last_run_timestamp_seconds",
        "When the last run of a target or pipeline finished (Unix time; skipped slots excluded).",
        labels=JOB_LABELS,
    )
    incidents = GaugeMetricFamily(
        "cronmgr_incidents_open",
        "1 while a target or pipeline has an open incident.",
        labels=JOB_LABELS,
    )
    for latest in sorted(jobs, key=lambda r: r.job):
        labels = list(job_labels(latest.job))
        failures.add_metric(labels, latest.consecutive_failures)
        last.add_metric(labels, latest.finished_at.timestamp())
        incidents.add_metric(labels, int(latest.job in opened))
    known = {latest.job for latest in jobs}
    for job in sorted(opened - known):
        incidents.add_metric(list(job_labels(job)), 1)
    yield from (failures, last, incidents)


def _schedules(counts: Mapping[ScheduleStatus, int]) -> Metric:
    family = GaugeMetricFamily("cronmgr_schedules", "Schedules by status.", labels=["status"])
    for status in ScheduleStatus:
        family.add_metric([status.value], counts.get(status, 0))
    return family


def _lag(histogram: Mapping[str, Any] | None, node: list[str]) -> Metric:
    family = HistogramMetricFamily(
        "cronmgr_schedule_lag_seconds",
        "How late the engine fired due slots after their planned moment (since daemon start).",
        labels=["node"],
    )
    if histogram:
        buckets = _buckets(histogram["bounds"], histogram["buckets"])
        family.add_metric(node, buckets, histogram["sum"])
    else:
        family.add_metric(node, _buckets(LAG_BOUNDS, [0] * (len(LAG_BOUNDS) + 1)), 0.0)
    return family


def exposition(collector: CronmgrCollector) -> bytes:
    """The text exposition of `collector`, through a registry of its own."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
