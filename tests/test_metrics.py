"""Run metrics: counted by the store as runs finish (a real SQLite file), summarised for
`GET /api/v1/metrics`, exposed for Prometheus, and end to end through a real controller and
daemon firing local targets on 127.0.0.1."""

from __future__ import annotations

import math
import socket
import sqlite3
import statistics
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from observability import (
    Health,
    add_target_schedule,
    api,
    controller_session,
    record_run,
    record_skip,
    start_daemon,
    target,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from support import Controller, until

from cronmgr.core.launch import STATE_FILENAME, read_json
from cronmgr.core.models import ErrorType, Node, NodeState, RunStatus, ScheduleStatus
from cronmgr.core.specs.metrics import (
    JobMetrics,
    MetricsReport,
    PipelineMetrics,
    ScheduleMetrics,
    TargetMetrics,
)
from cronmgr.observability.metrics import (
    LAG_BOUNDS,
    RECENT_LAGS,
    EngineMetrics,
    duration_summary,
    metrics_report,
    quantile,
)
from cronmgr.observability.prometheus import CONTENT_TYPE, CronmgrCollector, exposition
from cronmgr.store import Store
from cronmgr.store.queries import load_queries
from cronmgr.store.records import DURATION_BOUNDS, MetricsSummary, RunStats
from cronmgr.store.sqlite import SQLiteStore
from cronmgr.store.sqlite.connection import split_statements

__all__ = ["target"]  # the local target fixture, used by name

T0 = datetime(2026, 3, 29, 10, 15, tzinfo=UTC)
JOB = "target:t-1"
FAILED_500 = [(0, RunStatus.FAILED, ErrorType.HTTP_5XX)]


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """A store on a real SQLite file."""
    opened = await SQLiteStore.open(tmp_path / "cronmgr.db")
    yield opened
    await opened.close()


def by_key(stats: list[RunStats]) -> dict[tuple[str, str], RunStats]:
    """Statistics by (job, schedule_id)."""
    return {(s.job, s.schedule_id): s for s in stats}


def cumulative(durations: list[float]) -> tuple[int, ...]:
    """The histogram the store should hold for `durations`."""
    return tuple(sum(d <= bound for d in durations) for bound in DURATION_BOUNDS)


# --- the store's counting -------------------------------------------------------------------


async def test_finished_runs_are_counted_by_status_duration_and_error_class(
    store: Store,
) -> None:
    """Every way a run ends is counted in its hour: statuses, a cumulative duration
    histogram of the runs that ran (not skipped slots), and the error class of each failure,
    which is the first step whose last attempt failed (an attempt retried successfully
    does not count)."""
    ok = [0.003, 0.02, 0.02, 0.2, 0.7, 1.5]
    for index, seconds in enumerate(ok):
        await record_run(
            store,
            JOB,
            schedule_id="s1",
            status=RunStatus.SUCCEEDED,
            started=T0 + timedelta(seconds=index),
            seconds=seconds,
        )
    await record_run(
        store,
        JOB,
        schedule_id="s1",
        status=RunStatus.FAILED,
        started=T0,
        seconds=4.0,
        attempts=FAILED_500,
    )
    retried = [(0, RunStatus.FAILED, ErrorType.TIMEOUT), (0, RunStatus.FAILED, ErrorType.HTTP_5XX)]
    await record_run(
        store,
        JOB,
        schedule_id="s1",
        status=RunStatus.FAILED,
        started=T0,
        seconds=40.0,
        attempts=retried,
    )
    await record_run(
        store, JOB, schedule_id="s1", status=RunStatus.CANCELLED, started=T0, seconds=400.0
    )
    await record_skip(store, JOB, "s1", T0 + timedelta(seconds=30))
    pipeline_steps = [
        (0, RunStatus.FAILED, ErrorType.TIMEOUT),
        (0, RunStatus.SUCCEEDED, None),
        (1, RunStatus.FAILED, ErrorType.EXIT_CODE),
    ]
    await record_run(
        store,
        "pipeline:etl",
        schedule_id=None,
        status=RunStatus.FAILED,
        started=T0,
        seconds=0.5,
        attempts=pipeline_steps,
    )

    summary = await store.metrics_summary(T0 - timedelta(hours=1))
    stats = by_key(summary.window)
    target_stats = stats[(JOB, "s1")]
    assert (target_stats.succeeded, target_stats.failed) == (6, 2)
    assert (target_stats.cancelled, target_stats.skipped, target_stats.total) == (1, 1, 10)
    durations = [*ok, 4.0, 40.0, 400.0]
    assert target_stats.timed == len(durations)
    assert target_stats.duration_buckets == cumulative(durations)
    assert math.isclose(target_stats.duration_sum, sum(durations), abs_tol=0.01)
    assert target_stats.errors == {"http_5xx": 2}
    manual = stats[("pipeline:etl", "")]
    assert (manual.failed, dict(manual.errors)) == (1, {"exit_code": 1})
    assert by_key(summary.lifetime) == stats  # nothing folded yet: the same runs
    later = await store.metrics_summary(T0 + timedelta(hours=1))
    assert later.window == [] and len(later.lifetime) == 2


async def test_durations_are_counted_to_the_microsecond(store: Store) -> None:
    """A 5.064 ms run (start and end in different milliseconds, as any run's are) counts
    over 5 ms, and a 2 s run started late in a second keeps its whole seconds."""
    start = T0 + timedelta(microseconds=900)
    await record_run(
        store, JOB, schedule_id="s1", status=RunStatus.SUCCEEDED, started=start, seconds=0.005064
    )
    await record_run(
        store,
        JOB,
        schedule_id="s2",
        status=RunStatus.SUCCEEDED,
        started=T0 + timedelta(microseconds=999_999),
        seconds=2.000002,
    )
    stats = by_key((await store.metrics_summary(T0 - timedelta(hours=1))).window)
    short, long = stats[(JOB, "s1")], stats[(JOB, "s2")]
    assert short.duration_buckets == cumulative([0.005064])
    assert short.duration_sum == pytest.approx(0.005064, abs=1e-9)
    assert long.duration_sum == pytest.approx(2.000002, abs=1e-9)


async def test_purged_runs_still_count(store: Store) -> None:
    """Retention deletes runs, never what was counted of them: the counters only grow."""
    for index in range(5):
        await record_run(
            store,
            JOB,
            schedule_id="s1",
            status=RunStatus.SUCCEEDED,
            started=T0 + timedelta(minutes=index),
            seconds=0.1,
        )
    before = await store.metrics_summary(T0 - timedelta(hours=1))
    assert await store.purge_runs(keep_per_schedule=1) == 4
    assert len(await store.list_runs(schedule_id="s1")) == 1
    after = await store.metrics_summary(T0 - timedelta(hours=1))
    assert after.window == before.window and after.lifetime == before.lifetime
    assert after.lifetime[0].succeeded == 5


async def test_compaction_folds_each_hour_once_and_drops_old_hours(
    sqlite_store: SQLiteStore, tmp_path: Path
) -> None:
    """Complete hours go into the lifetime totals exactly once however often compaction
    runs; hour buckets older than the drop horizon go, the lifetime totals keep them, and
    the current hour is never folded early."""
    hours = [T0 - timedelta(days=10), T0 - timedelta(hours=2), T0]
    for hour in hours:
        await record_run(
            sqlite_store, JOB, schedule_id="s1", status=RunStatus.SUCCEEDED, started=hour
        )
    await record_run(
        sqlite_store,
        JOB,
        schedule_id="s1",
        status=RunStatus.FAILED,
        started=T0,
        attempts=FAILED_500,
    )
    for _ in range(3):
        await sqlite_store.compact_run_stats(T0, T0 - timedelta(days=8))
    summary = await sqlite_store.metrics_summary(T0 - timedelta(days=11))
    (lifetime,) = summary.lifetime
    assert (lifetime.succeeded, lifetime.failed, lifetime.errors) == (3, 1, {"http_5xx": 1})
    (window,) = summary.window
    assert window.succeeded == 2, "the 10-day-old hour bucket was dropped"
    with sqlite3.connect(tmp_path / "cronmgr.db") as db:
        kept = [row[0] for row in db.execute("SELECT hour FROM run_stats ORDER BY hour")]
    db.close()
    assert kept == ["", "2026-03-29T08", "2026-03-29T10"]
    # A run of the current hour after the fold: counted once, in the unfolded hour.
    await record_run(sqlite_store, JOB, schedule_id="s1", status=RunStatus.SUCCEEDED, started=T0)
    await sqlite_store.compact_run_stats(T0, T0 - timedelta(days=8))
    (lifetime,) = (await sqlite_store.metrics_summary(T0)).lifetime
    assert lifetime.succeeded == 4


async def test_last_run_and_failures_in_a_row_per_schedule_and_per_job(
    store: Store,
) -> None:
    """A success ends a streak of failures, a cancelled run neither adds to it nor ends it,
    and a skipped slot is not a last run at all; the job's streak spans its schedules."""
    sequence = [
        ("s1", RunStatus.SUCCEEDED),
        ("s1", RunStatus.FAILED),
        ("s2", RunStatus.FAILED),
        ("s1", RunStatus.CANCELLED),
        ("s1", RunStatus.FAILED),
    ]
    last = None
    for index, (schedule_id, status) in enumerate(sequence):
        last = await record_run(
            store,
            JOB,
            schedule_id=schedule_id,
            status=status,
            started=T0 + timedelta(seconds=index),
        )
    await record_skip(store, JOB, "s1", T0 + timedelta(minutes=5))
    latest = {r.schedule_id: r for r in (await store.metrics_summary(T0)).latest}
    assert last is not None
    assert latest["s1"].status is RunStatus.FAILED and latest["s1"].run_id == last.id
    assert latest["s1"].consecutive_failures == 2
    assert latest["s2"].consecutive_failures == 1
    assert latest[None].consecutive_failures == 3 and latest[None].status is RunStatus.FAILED
    assert latest[None].first_finished_at == T0
    await record_run(store, JOB, schedule_id="s2", status=RunStatus.SUCCEEDED, started=T0)
    latest = {r.schedule_id: r for r in (await store.metrics_summary(T0)).latest}
    assert (latest["s1"].consecutive_failures, latest[None].consecutive_failures) == (2, 0)


async def test_upgrading_a_version_2_store_counts_the_runs_it_holds(tmp_path: Path) -> None:
    """Runs recorded before the statistics existed are counted by the upgrade itself, with
    their error classes and their streaks, and the triggers count what comes next."""
    path = tmp_path / "old.db"
    queries = load_queries("sqlite")
    with sqlite3.connect(path) as db:
        for version in (1, 2):
            for statement in split_statements(queries[f"migration_{version}"]):
                db.execute(statement)
        db.execute("PRAGMA user_version=2")
        for index, status in enumerate(["succeeded", "failed", "failed", "skipped"]):
            started = (T0 + timedelta(seconds=index)).isoformat(timespec="microseconds")
            finished = (T0 + timedelta(seconds=index, milliseconds=30)).isoformat(
                timespec="microseconds"
            )
            run_id = f"r{index}"
            db.execute(
                "INSERT INTO runs (id, job, schedule_id, scheduled_for, trigger, status,"
                " started_at, finished_at, created_at)"
                " VALUES (?, ?, 's1', ?, 'schedule', ?, ?, ?, ?)",
                (run_id, JOB, started, status, started, finished, started),
            )
            if status == "failed":
                db.execute(
                    "INSERT INTO step_results (run_id, position, step, attempt, status,"
                    " started_at, duration_ms, error_type)"
                    " VALUES (?, 0, 'request', 1, 'failed', ?, 30, 'connection')",
                    (run_id, started),
                )
    db.close()
    store = await SQLiteStore.open(path)
    try:
        summary = await store.metrics_summary(T0)
        (stats,) = summary.lifetime
        assert (stats.succeeded, stats.failed, stats.skipped, stats.timed) == (1, 2, 1, 3)
        assert stats.errors == {"connection": 2}
        assert stats.duration_buckets[DURATION_BOUNDS.index(0.025)] == 0
        assert stats.duration_buckets[DURATION_BOUNDS.index(0.05)] == 3
        latest = {r.schedule_id: r for r in summary.latest}
        assert latest["s1"].run_id == "r2" and latest["s1"].consecutive_failures == 2
        assert latest[None].consecutive_failures == 2
        await record_run(store, JOB, schedule_id="s1", status=RunStatus.SUCCEEDED, started=T0)
        (stats,) = (await store.metrics_summary(T0)).lifetime
        assert stats.succeeded == 2
    finally:
        await store.close()


# --- summarising ----------------------------------------------------------------------------


def test_quantiles_interpolate_within_the_bucket_like_histogram_quantile() -> None:
    """Linear within the bucket that holds the rank; the top finite bound for +Inf; None
    for an empty histogram."""
    bounds = (1.0, 2.0, 4.0)
    assert quantile(bounds, [0, 0, 0, 0], 0.5) is None
    assert quantile(bounds, [0, 10, 10, 10], 0.5) == pytest.approx(1.5)
    assert quantile(bounds, [5, 5, 10, 10], 0.75) == pytest.approx(3.0)
    assert quantile(bounds, [10, 10, 10, 10], 0.99) == pytest.approx(0.99)
    assert quantile(bounds, [0, 0, 0, 4], 0.5) == 4.0


def test_duration_percentiles_are_within_the_true_values_bucket() -> None:
    """p50/p95/p99 of a known sample land in the bucket that holds the exact percentile."""
    durations = [0.004 * k for k in range(1, 201)]  # 4 ms … 800 ms
    stats = RunStats(
        JOB,
        "s1",
        succeeded=200,
        timed=200,
        duration_sum=sum(durations),
        duration_buckets=cumulative(durations),
    )
    summary = duration_summary(stats)
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        exact = statistics.quantiles(durations, n=100, method="inclusive")[round(q * 100) - 1]
        assert_same_bucket(summary[name], exact)
    assert summary["mean"] == pytest.approx(statistics.mean(durations))
    assert summary["count"] == 200


def assert_same_bucket(estimate: float | None, exact: float) -> None:
    """`estimate` lies in the duration bucket that holds `exact`."""
    assert estimate is not None
    upper = next(b for b in DURATION_BOUNDS if exact <= b)
    lower = max([0.0, *(b for b in DURATION_BOUNDS if b < upper)])
    assert lower <= estimate <= upper, (estimate, exact, lower, upper)


def test_engine_metrics_measure_lag_and_rate_with_a_clock_of_their_own() -> None:
    """Lag percentiles over the latest firings, the cumulative lag histogram, and slots
    fired per second over the last minute."""
    now = [1000.0]
    engine = EngineMetrics(clock=lambda: now[0])
    assert engine.snapshot(queue_depth=0)["schedule_lag_seconds"] is None
    for index in range(100):
        engine.fired(0.001 * (index + 1))  # 1 ms … 100 ms
    now[0] += 10.0
    snap = engine.snapshot(queue_depth=3)
    lag = snap["schedule_lag_seconds"]
    assert lag["samples"] == 100 and lag["last"] == pytest.approx(0.1)
    assert lag["p50"] == pytest.approx(0.05) and lag["p99"] == pytest.approx(0.099)
    assert snap["runs_per_second"] == pytest.approx(10.0)
    assert snap["queue_depth"] == 3 and snap["fired_total"] == 100
    histogram = snap["lag_histogram"]
    assert histogram["bounds"] == list(LAG_BOUNDS) and histogram["buckets"][-1] == 100
    assert histogram["buckets"][LAG_BOUNDS.index(0.01)] == 10
    for _ in range(RECENT_LAGS):
        engine.fired(2.0)
    now[0] += 100.0
    later = engine.snapshot(queue_depth=0)
    assert later["schedule_lag_seconds"]["p50"] == 2.0, "only the latest firings count"
    # The base sample is at least a minute old: the rate spans the last window.
    assert later["runs_per_second"] == pytest.approx(RECENT_LAGS / 100.0, rel=0.01)


async def test_report_entries_have_the_documented_fields(store: Store) -> None:
    """Schedules, targets and pipelines each get an entry with exactly the fields the
    OpenAPI models list; a job that never ran has no availability yet."""
    await record_run(store, JOB, schedule_id="s1", status=RunStatus.SUCCEEDED, started=T0)
    await record_run(
        store,
        "pipeline:etl",
        schedule_id=None,
        status=RunStatus.FAILED,
        started=T0,
        attempts=FAILED_500,
    )
    now = T0 + timedelta(minutes=30)
    summary = await store.metrics_summary(T0 - timedelta(hours=1))
    report = metrics_report(summary, [], None, now=now, hours=2)
    assert set(report) == set(MetricsReport.model_fields)
    MetricsReport.model_validate(report)
    (schedule,) = report["schedules"]
    (target_entry,) = report["targets"]
    (pipeline,) = report["pipelines"]
    assert set(schedule) == set(ScheduleMetrics.model_fields)
    assert set(target_entry) == set(TargetMetrics.model_fields)
    assert set(pipeline) == set(PipelineMetrics.model_fields)
    assert set(JobMetrics.model_fields) < set(schedule)
    assert target_entry["availability_24h"] == 1.0 and target_entry["success_rate"] == 1.0
    assert pipeline["success_rate"] == 0.0 and pipeline["errors"] == {"http_5xx": 1}
    assert report["totals"]["runs"]["total"] == 2 and report["daemon"]["running"] is False


# --- Prometheus -----------------------------------------------------------------------------


def families(text: str) -> dict[str, Any]:
    """The exposition parsed by prometheus_client's own parser, by family name."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(family: Any, name: str, **labels: str) -> list[Sample]:
    """The family's samples called `name` whose labels include `labels`."""
    return [
        s
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


async def test_prometheus_exposition_parses_with_bounded_labels(store: Store) -> None:
    """The text parses with prometheus_client's parser; counters, histograms and gauges
    have the cronmgr_ names, types and labels, and no run id or message is a label."""
    for seconds in (0.003, 0.3, 3.0):
        await record_run(
            store, JOB, schedule_id="s1", status=RunStatus.SUCCEEDED, started=T0, seconds=seconds
        )
    failed = await record_run(
        store, JOB, schedule_id="s1", status=RunStatus.FAILED, started=T0, attempts=FAILED_500
    )
    summary = await store.metrics_summary(T0)
    state = {
        "node": "n-1",
        "heartbeat_at": T0.isoformat(),
        "active_runs": ["r1"],
        "metrics": {
            "queue_depth": 2,
            "lag_histogram": {"bounds": list(LAG_BOUNDS), "buckets": [1] * 16, "sum": 0.001},
        },
    }
    nodes = [make_node("n-1", lease_seconds=10)]
    text = exposition(CronmgrCollector(summary, [], state, nodes, T0)).decode()
    found = families(text)
    types = {name: family.type for name, family in found.items()}
    assert types == {
        "cronmgr_runs": "counter",
        "cronmgr_run_failures": "counter",
        "cronmgr_run_duration_seconds": "histogram",
        "cronmgr_job_consecutive_failures": "gauge",
        "cronmgr_job_last_run_timestamp_seconds": "gauge",
        "cronmgr_incidents_open": "gauge",
        "cronmgr_schedules": "gauge",
        "cronmgr_daemon_up": "gauge",
        "cronmgr_daemon_heartbeat_timestamp_seconds": "gauge",
        "cronmgr_daemon_active_runs": "gauge",
        "cronmgr_daemon_queue_depth": "gauge",
        "cronmgr_schedule_lag_seconds": "histogram",
        **dict.fromkeys(NODE_GAUGES, "gauge"),
    }
    labels = {"kind": "target", "job_id": "t-1", "schedule_id": "s1"}
    runs = found["cronmgr_runs"]
    assert samples(runs, "cronmgr_runs_total", status="succeeded", **labels)[0].value == 3
    assert samples(runs, "cronmgr_runs_total", status="failed", **labels)[0].value == 1
    failures = found["cronmgr_run_failures"]
    assert samples(failures, "cronmgr_run_failures_total", error_class="http_5xx")[0].value == 1
    duration = found["cronmgr_run_duration_seconds"]
    assert samples(duration, "cronmgr_run_duration_seconds_count", **labels)[0].value == 4
    assert samples(duration, "cronmgr_run_duration_seconds_bucket", le="0.005")[0].value == 2
    assert samples(duration, "cronmgr_run_duration_seconds_bucket", le="+Inf")[0].value == 4
    assert found["cronmgr_daemon_up"].samples[0].value == 1
    assert found["cronmgr_daemon_queue_depth"].samples[0].value == 2
    assert found["cronmgr_daemon_heartbeat_timestamp_seconds"].samples[0].value == T0.timestamp()
    schedules = found["cronmgr_schedules"]
    assert {s.labels["status"] for s in schedules.samples} == {s.value for s in ScheduleStatus}
    all_labels = {k for family in found.values() for s in family.samples for k in s.labels}
    assert all_labels == {
        *("kind", "job_id", "schedule_id", "status", "error_class", "le", "node", "host")
    }
    assert failed.id not in text and "it broke" not in text
    down = families(exposition(CronmgrCollector(summary, [], None)).decode())
    assert down["cronmgr_daemon_up"].samples[0].value == 0
    assert down["cronmgr_daemon_up"].samples[0].labels == {"node": ""}
    assert "cronmgr_daemon_heartbeat_timestamp_seconds" not in down
    assert all(down[name].samples == [] for name in NODE_GAUGES)


NODE_GAUGES = (
    "cronmgr_node_up",
    "cronmgr_node_schedules_owned",
    "cronmgr_node_runs_in_flight",
    "cronmgr_node_lease_expires_seconds",
    "cronmgr_node_heartbeat_timestamp_seconds",
)


def make_node(node_id: str, lease_seconds: float, **changes: Any) -> Node:
    """A node whose last renewal was a second before T0, its lease `lease_seconds` from T0."""
    renewed = T0 - timedelta(seconds=1)
    lease = T0 + timedelta(seconds=lease_seconds)
    return Node(node_id, f"host-{node_id}", 99, "1.0", renewed, renewed, lease, **changes)


def test_every_node_of_the_store_has_its_gauges_and_the_daemon_its_node() -> None:
    """Per node: up (live with a lease that holds), schedules, runs in flight, the lease's
    seconds left (negative once run out) and the last renewal; the daemon's own families
    carry the node id of its state file."""
    summary = MetricsSummary([], [], [], {}, {})
    nodes = [
        make_node("a", 8.5, schedules_owned=12, runs_in_flight=3),
        make_node("b", -2.0),  # live in its row, but its lease ran out: not up
        make_node("c", -30.0, state=NodeState.LEFT),
    ]
    state = {"node": "a", "heartbeat_at": T0.isoformat(), "active_runs": ["r1", "r2"]}
    found = families(exposition(CronmgrCollector(summary, [], state, nodes, T0)).decode())

    def by_node(name: str) -> dict[str, float]:
        return {s.labels["node"]: s.value for s in found[name].samples}

    assert by_node("cronmgr_node_up") == {"a": 1, "b": 0, "c": 0}
    hosts = {s.labels["host"] for s in found["cronmgr_node_up"].samples}
    assert hosts == {"host-a", "host-b", "host-c"}
    assert by_node("cronmgr_node_schedules_owned") == {"a": 12, "b": 0, "c": 0}
    assert by_node("cronmgr_node_runs_in_flight") == {"a": 3, "b": 0, "c": 0}
    assert by_node("cronmgr_node_lease_expires_seconds") == {"a": 8.5, "b": -2.0, "c": -30.0}
    renewed = (T0 - timedelta(seconds=1)).timestamp()
    assert by_node("cronmgr_node_heartbeat_timestamp_seconds") == dict.fromkeys("abc", renewed)
    for name in ("cronmgr_daemon_up", "cronmgr_daemon_active_runs", "cronmgr_daemon_queue_depth"):
        assert by_node(name).keys() == {"a"}, name
    assert by_node("cronmgr_daemon_active_runs") == {"a": 2}
    lag = found["cronmgr_schedule_lag_seconds"].samples
    assert {s.labels["node"] for s in lag} == {"a"}


# --- end to end -----------------------------------------------------------------------------


async def finished_runs(http: Any, schedule_id: str, count: int) -> list[dict[str, Any]]:
    """The schedule's runs, once `count` of them have finished."""
    runs: list[dict[str, Any]] = await api(
        http, "GET", "/api/v1/runs", params={"schedule_id": schedule_id, "limit": 100}
    )
    done = [r for r in runs if r["status"] not in ("pending", "running")]
    return done if len(done) >= count else []


def seconds_of(run: dict[str, Any]) -> float:
    """A run's duration from its API fields."""
    started = datetime.fromisoformat(run["started_at"])
    return (datetime.fromisoformat(run["finished_at"]) - started).total_seconds()


async def test_a_200_and_a_500_target_end_to_end(
    controller: Controller, target: tuple[TestServer, Health]
) -> None:
    """A real daemon fires a healthy and a failing local target: the JSON metrics show the
    counts, success rates, error class, failures in a row, duration percentiles within bucket
    accuracy and the daemon's lag; the Prometheus text agrees; status shows the lag."""
    server, _health = target
    async with controller_session(controller) as http:
        await start_daemon(http)
        ok_target, ok = await add_target_schedule(http, server, "/ok", max_runs=4)
        bad_target, bad = await add_target_schedule(http, server, "/fail", max_runs=4)
        ok_runs = await until(lambda: finished_runs(http, ok["id"], 4), what="4 runs of /ok")
        await until(lambda: finished_runs(http, bad["id"], 4), what="4 runs of /fail")

        async def lag_published() -> Any:
            # The daemon's state file is rewritten at least every heartbeat (5 s).
            status = await api(http, "GET", "/api/cron/status")
            lag = status["schedule_lag_seconds"]
            return status if lag and lag["samples"] >= 8 else None

        status = await until(lag_published, what="the heartbeat to publish the lag")
        report = await api(http, "GET", "/api/v1/metrics", params={"window_hours": 1})
        text, content_type = await prometheus_text(http)

    schedules = {entry["schedule_id"]: entry for entry in report["schedules"]}
    healthy, failing = schedules[ok["id"]], schedules[bad["id"]]
    assert healthy["runs"] == {
        "succeeded": 4,
        "failed": 0,
        "cancelled": 0,
        "skipped": 0,
        "total": 4,
    }
    assert healthy["success_rate"] == 1.0 and healthy["errors"] == {}
    assert healthy["last_status"] == "succeeded" and healthy["consecutive_failures"] == 0
    assert failing["runs"]["failed"] == 4 and failing["success_rate"] == 0.0
    assert failing["errors"] == {"http_5xx": 4} and failing["consecutive_failures"] == 4
    assert failing["name"] == bad["name"]
    durations = sorted(seconds_of(run) for run in ok_runs)
    assert_same_bucket(healthy["duration_seconds"]["p50"], statistics.median(durations))
    assert_same_bucket(healthy["duration_seconds"]["p99"], durations[-1])
    targets = {entry["target_id"]: entry for entry in report["targets"]}
    assert targets[bad_target["id"]]["open_incident"]["error_class"] == "http_5xx"
    assert targets[ok_target["id"]]["availability_24h"] == 1.0
    assert targets[bad_target["id"]]["availability_24h"] < 1.0
    daemon = report["daemon"]
    assert daemon["running"] is True and daemon["schedule_lag_seconds"]["samples"] >= 8
    assert status["schedule_lag_seconds"]["p99"] >= 0 and status["heartbeat_at"]

    assert content_type == CONTENT_TYPE.split(";")[0]
    found = families(text)
    labels = {"kind": "target", "job_id": bad_target["id"], "schedule_id": bad["id"]}
    runs = found["cronmgr_runs"]
    assert samples(runs, "cronmgr_runs_total", status="failed", **labels)[0].value == 4
    failures = found["cronmgr_run_failures"]
    assert samples(failures, "cronmgr_run_failures_total", **labels)[0].labels["error_class"] == (
        "http_5xx"
    )
    incidents = found["cronmgr_incidents_open"]
    assert samples(incidents, "cronmgr_incidents_open", job_id=bad_target["id"])[0].value == 1
    assert samples(incidents, "cronmgr_incidents_open", job_id=ok_target["id"])[0].value == 0
    (up,) = found["cronmgr_daemon_up"].samples
    node = (read_json(controller.settings.state_path / STATE_FILENAME) or {})["node"]
    assert up.value == 1 and up.labels == {"node": node}
    (node_up,) = found["cronmgr_node_up"].samples
    assert node_up.value == 1 and node_up.labels == {"node": node, "host": socket.gethostname()}
    (lease,) = found["cronmgr_node_lease_expires_seconds"].samples
    assert lease.labels == {"node": node}
    assert 0 < lease.value <= controller.settings.lease_seconds
    lag = found["cronmgr_schedule_lag_seconds"]
    assert samples(lag, "cronmgr_schedule_lag_seconds_count")[0].value >= 8
    schedules_by_status = {s.labels["status"]: s.value for s in found["cronmgr_schedules"].samples}
    assert schedules_by_status["completed"] == 2


async def prometheus_text(http: Any) -> tuple[str, str]:
    """The Prometheus endpoint's body and media type."""
    async with http.get("/api/v1/metrics/prometheus") as resp:
        assert resp.status == 200, await resp.text()
        return await resp.text(), resp.content_type


async def test_metrics_count_the_runs_retention_purged(
    controller_factory: Callable[..., Controller], target: tuple[TestServer, Health]
) -> None:
    """With two runs kept per schedule, six runs are still six in the metrics and in the
    Prometheus counter once the daemon's retention has purged four."""
    controller = controller_factory(retention_runs_per_schedule=2, retention_interval_seconds=0.2)
    server, health = target
    async with controller_session(controller) as http:
        await start_daemon(http)
        _target, schedule = await add_target_schedule(
            http, server, "/ok", max_runs=6, interval_seconds=0.2
        )

        async def purged() -> bool:
            runs = await api(http, "GET", "/api/v1/runs", params={"schedule_id": schedule["id"]})
            return health.hits["/ok"] == 6 and len(runs) <= 2

        await until(purged, what="the retention to purge")
        report = await api(http, "GET", "/api/v1/metrics")
        text, _ = await prometheus_text(http)
    (entry,) = [e for e in report["schedules"] if e["schedule_id"] == schedule["id"]]
    assert entry["runs"]["succeeded"] == 6
    runs = families(text)["cronmgr_runs"]
    counted = samples(runs, "cronmgr_runs_total", schedule_id=schedule["id"], status="succeeded")
    assert counted[0].value == 6


async def test_metrics_query_is_validated_and_documented(controller: Controller) -> None:
    """`window_hours` is bounded (1-168) and the new endpoints are in the OpenAPI document."""
    async with controller_session(controller) as http:
        await api(http, "GET", "/api/v1/metrics", 422, params={"window_hours": 500})
        report = await api(http, "GET", "/api/v1/metrics", params={"window_hours": 3})
        document = await api(http, "GET", "/openapi.json")
    assert report["window"]["hours"] == 3 and report["daemon"]["running"] is False
    paths = document["paths"]
    assert {"/api/v1/metrics", "/api/v1/metrics/prometheus", "/api/v1/incidents"} <= set(paths)
    reply = paths["/api/v1/metrics"]["get"]["responses"]["200"]["content"]["application/json"]
    assert set(reply["schema"]["properties"]) == set(MetricsReport.model_fields)
    assert "text/plain" in paths["/api/v1/metrics/prometheus"]["get"]["responses"]["200"]["content"]
