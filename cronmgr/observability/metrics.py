"""Measuring and summarising: the engine's schedule lag and firing rate, and run metrics.

Two halves. The daemon half (`EngineMetrics`) is fed by the engine as each slot fires and
published in the daemon's state file: it must cost the timer next to nothing, so it only
bumps counters in preallocated lists. The controller half turns what the store counted
(`Store.metrics_summary`, kept up to date by the store as runs finish) and the daemon's
state into the `GET /api/v1/metrics` answer; percentiles come from histogram buckets,
interpolated within the bucket as Prometheus' `histogram_quantile` does.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from cronmgr.core.models import PIPELINE_JOB_PREFIX
from cronmgr.store.records import (
    DURATION_BOUNDS,
    NO_SCHEDULE,
    Incident,
    LatestRun,
    MetricsSummary,
    RunStats,
)

LAG_BOUNDS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0
)  # fmt: skip
"""Upper bounds (seconds) of the schedule lag histogram; +Inf is implied."""

RECENT_LAGS = 1024
"""Firings the daemon's current lag percentiles are taken over."""

RATE_WINDOW_SECONDS = 60.0
"""Span the daemon's runs-per-second figure is averaged over."""

MAX_WINDOW_HOURS = 168
"""Longest window of `GET /api/v1/metrics`: the hour buckets the store keeps are a bit more."""

STATS_KEPT_HOURS = 8 * 24
"""Hour buckets of run statistics the daemon keeps (lifetime totals are kept forever)."""

STATS_COMPACT_SECONDS = 600.0
"""How often the daemon folds complete hours into the lifetime totals."""

AVAILABILITY_SPANS = {"availability_24h": timedelta(hours=24), "availability_7d": timedelta(days=7)}

TARGET_JOB_PREFIX = "target:"


def job_labels(job: str) -> tuple[str, str]:
    """(`target`, target id) or (`pipeline`, pipeline name) of a run's job."""
    if job.startswith(PIPELINE_JOB_PREFIX):
        return "pipeline", job.removeprefix(PIPELINE_JOB_PREFIX)
    return "target", job.removeprefix(TARGET_JOB_PREFIX)


def quantile(bounds: Sequence[float], cumulative: Sequence[int], q: float) -> float | None:
    """The q-quantile of a cumulative histogram (the last count is +Inf's), interpolated
    linearly within its bucket; the highest finite bound when it lies in the +Inf bucket."""
    count = cumulative[-1] if cumulative else 0
    if count == 0:
        return None
    rank = q * count
    lower, below = 0.0, 0
    for bound, seen in zip(bounds, cumulative, strict=False):
        if seen >= rank:
            inside = seen - below
            if inside == 0:
                return lower
            return lower + (bound - lower) * (rank - below) / inside
        lower, below = bound, seen
    return bounds[-1]


def window_start(now: datetime, hours: int) -> datetime:
    """The start of the `hours` newest hour buckets, the current (partial) one included."""
    top = now.replace(minute=0, second=0, microsecond=0)
    return top - timedelta(hours=hours - 1)


# --- the daemon half --------------------------------------------------------------------


class EngineMetrics:
    """Schedule lag (fired minus planned) and firing rate, as the engine fires slots."""

    __slots__ = ("_clock", "_counts", "_fired", "_recent", "_samples", "_sum")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # Per bucket, not cumulative, so that one firing touches one slot; the last is +Inf.
        self._counts = [0] * (len(LAG_BOUNDS) + 1)
        self._sum = 0.0
        self._fired = 0
        self._recent = [0.0] * RECENT_LAGS
        self._samples: deque[tuple[float, int]] = deque([(clock(), 0)])

    def fired(self, lag: float) -> None:
        """One slot fired `lag` seconds after its planned moment.

        Called by the timer for every due slot: a bisect and three stores into lists that
        exist already, no lock (the event loop is the only writer) and nothing to free.
        """
        self._counts[bisect_left(LAG_BOUNDS, lag)] += 1
        self._sum += lag
        self._recent[self._fired % RECENT_LAGS] = lag
        self._fired += 1

    def snapshot(self, queue_depth: int) -> dict[str, Any]:
        """The figures for the state file; also takes a rate sample, so call it periodically."""
        return {
            "fired_total": self._fired,
            "runs_per_second": self._rate(self._clock()),
            "queue_depth": queue_depth,
            "schedule_lag_seconds": self._recent_lag(),
            "lag_histogram": {
                "bounds": list(LAG_BOUNDS),
                "buckets": _cumulative(self._counts),
                "sum": self._sum,
            },
        }

    def _rate(self, now: float) -> float:
        samples = self._samples
        samples.append((now, self._fired))
        # Keep one sample at least a window old as the base: the rate spans a full window
        # once the daemon has run that long, and everything since the start before.
        while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW_SECONDS:
            samples.popleft()
        then, fired_then = samples[0]
        return (self._fired - fired_then) / (now - then) if now > then else 0.0

    def _recent_lag(self) -> dict[str, float | int] | None:
        taken = min(self._fired, RECENT_LAGS)
        if taken == 0:
            return None
        values = sorted(self._recent[:taken])
        return {
            "last": self._recent[(self._fired - 1) % RECENT_LAGS],
            "p50": _nearest_rank(values, 0.5),
            "p99": _nearest_rank(values, 0.99),
            "samples": taken,
        }


def _cumulative(counts: Iterable[int]) -> list[int]:
    total, found = 0, []
    for count in counts:
        total += count
        found.append(total)
    return found


def _nearest_rank(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


# --- the controller half ----------------------------------------------------------------


def metrics_report(
    summary: MetricsSummary,
    incidents: Sequence[Incident],
    daemon: Mapping[str, Any] | None,
    *,
    now: datetime,
    hours: int,
) -> dict[str, Any]:
    """The `GET /api/v1/metrics` answer.

    `summary` is the store's over `hours` hour buckets, `incidents` every incident open at
    some moment of the last 7 days, `daemon` the running daemon's state file (None when it
    is not running).
    """
    report = _Report(summary, incidents, now)
    return {
        "generated_at": now.isoformat(),
        "window": {"hours": hours, "since": window_start(now, hours).isoformat()},
        "daemon": daemon_report(daemon),
        "totals": report.totals(),
        "schedules": report.schedules(),
        "targets": report.jobs("target"),
        "pipelines": report.jobs("pipeline"),
    }


def daemon_report(state: Mapping[str, Any] | None) -> dict[str, Any]:
    """The daemon part of the metrics: what its state file says, or that it is not running."""
    engine: Mapping[str, Any] = (state or {}).get("metrics") or {}
    return {
        "running": state is not None,
        "heartbeat_at": state.get("heartbeat_at") if state else None,
        "runs_per_second": engine.get("runs_per_second"),
        "schedule_lag_seconds": engine.get("schedule_lag_seconds"),
        "queue_depth": engine.get("queue_depth"),
        "active_runs": len(state.get("active_runs", [])) if state else None,
    }


class _Report:
    """The store's figures indexed by job and schedule, and the entries built from them."""

    def __init__(
        self, summary: MetricsSummary, incidents: Sequence[Incident], now: datetime
    ) -> None:
        self.now = now
        self.names = summary.names
        self.window = {(s.job, s.schedule_id): s for s in summary.window}
        self.lifetime = {(s.job, s.schedule_id): s for s in summary.lifetime}
        self.latest = {(r.job, r.schedule_id): r for r in summary.latest}
        # Each job's schedules (and manual runs) together, summed once.
        self.job_window: dict[str, RunStats] = {}
        for stats in summary.window:
            known = self.job_window.get(stats.job) or RunStats(stats.job, NO_SCHEDULE)
            self.job_window[stats.job] = known.merged(stats)
        self.incidents: dict[str, list[Incident]] = {}
        for incident in incidents:
            self.incidents.setdefault(incident.job, []).append(incident)

    def totals(self) -> dict[str, Any]:
        """Every job's runs in the window, and the incidents open now."""
        merged = _merge(self.job_window.values(), "", NO_SCHEDULE)
        open_now = sum(
            1 for found in self.incidents.values() for i in found if i.resolved_at is None
        )
        return {
            "runs": _counts(merged),
            "success_rate": _success_rate(merged),
            "errors": dict(merged.errors),
            "open_incidents": open_now,
        }

    def schedules(self) -> list[dict[str, Any]]:
        """One entry per schedule that ever finished a run."""
        keys = sorted(k for k in self.lifetime if k[1] != NO_SCHEDULE)
        entries = []
        for job, schedule_id in keys:
            stats = self.window.get((job, schedule_id)) or RunStats(job, schedule_id)
            identity = {"schedule_id": schedule_id, "name": self.names.get(schedule_id)}
            latest = self.latest.get((job, schedule_id))
            entries.append({**identity, **self._entry(job, stats, latest)})
        return entries

    def jobs(self, kind: str) -> list[dict[str, Any]]:
        """One entry per target (or pipeline) that ever finished a run: all its schedules'
        runs and its manual ones together."""
        jobs = sorted({job for job, _ in self.lifetime if job_labels(job)[0] == kind})
        entries = []
        for job in jobs:
            stats = self.job_window.get(job) or RunStats(job, NO_SCHEDULE)
            job_id = job_labels(job)[1]
            identity = (
                {"target_id": job_id, "name": self.names.get(job_id)}
                if kind == "target"
                else {"pipeline": job_id}
            )
            entries.append({**identity, **self._entry(job, stats, self.latest.get((job, None)))})
        return entries

    def _entry(self, job: str, stats: RunStats, latest: LatestRun | None) -> dict[str, Any]:
        incidents = self.incidents.get(job, [])
        open_incident = next((i for i in incidents if i.resolved_at is None), None)
        first_seen = (
            self.latest[(job, None)].first_finished_at if (job, None) in self.latest else None
        )
        return {
            "job": job,
            "runs": _counts(stats),
            "success_rate": _success_rate(stats),
            "duration_seconds": duration_summary(stats),
            "errors": dict(stats.errors),
            "last_status": latest.status.value if latest else None,
            "last_run_at": latest.finished_at.isoformat() if latest else None,
            "last_run_id": latest.run_id if latest else None,
            "consecutive_failures": latest.consecutive_failures if latest else 0,
            **{
                name: availability(incidents, self.now - span, self.now, first_seen)
                for name, span in AVAILABILITY_SPANS.items()
            },
            "open_incident": incident_brief(open_incident) if open_incident else None,
            "incidents_7d": len(incidents),
        }


def incident_brief(incident: Incident) -> dict[str, Any]:
    """An open incident as a metrics entry shows it."""
    return {
        "id": incident.id,
        "started_at": incident.started_at.isoformat(),
        "error_class": incident.error_class,
        "cause": incident.cause,
    }


def _merge(stats: Iterable[RunStats], job: str, schedule_id: str) -> RunStats:
    total = RunStats(job, schedule_id)
    for item in stats:
        total = total.merged(item)
    return total


def _counts(stats: RunStats) -> dict[str, int]:
    return {
        "succeeded": stats.succeeded,
        "failed": stats.failed,
        "cancelled": stats.cancelled,
        "skipped": stats.skipped,
        "total": stats.total,
    }


def _success_rate(stats: RunStats) -> float | None:
    # Of the runs that came to a verdict: a cancelled or skipped run says nothing about
    # whether the job works.
    decided = stats.succeeded + stats.failed
    return round(stats.succeeded / decided, 6) if decided else None


def duration_summary(stats: RunStats) -> dict[str, Any]:
    """p50, p95, p99 (from the histogram buckets), mean and count of run durations."""
    cumulative = [*stats.duration_buckets, stats.timed]
    return {
        "p50": _rounded(quantile(DURATION_BOUNDS, cumulative, 0.5)),
        "p95": _rounded(quantile(DURATION_BOUNDS, cumulative, 0.95)),
        "p99": _rounded(quantile(DURATION_BOUNDS, cumulative, 0.99)),
        "mean": _rounded(stats.duration_sum / stats.timed) if stats.timed else None,
        "count": stats.timed,
    }


def availability(
    incidents: Iterable[Incident], since: datetime, now: datetime, first_seen: datetime | None
) -> float | None:
    """The share of [since, now] the job was not in an incident, counted from its first run
    when that came later; None for a job that never ran."""
    if first_seen is None:
        return None
    begin = max(since, first_seen)
    span = (now - begin).total_seconds()
    if span <= 0:
        return None
    down = 0.0
    for incident in incidents:
        end = min(incident.resolved_at or now, now)
        down += max(0.0, (end - max(incident.started_at, begin)).total_seconds())
    return round(max(0.0, 1.0 - down / span), 6)


def _rounded(value: float | None) -> float | None:
    return round(value, 6) if value is not None else None
