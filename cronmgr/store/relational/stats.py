"""Run statistics and incidents: read from what the triggers keep, and their rows.

The run statistics are written by triggers (sql/sqlite.sql's migration 3, sql/postgres.sql's) in the
transaction that finishes each run, per hour bucket and for the lifetime; the store only
reads them, folds old hours into the lifetime totals and drops them. Incidents, a job's
downtime windows, are opened and resolved by the daemon.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from cronmgr.core.models import RunStatus
from cronmgr.store.records import (
    DURATION_BOUNDS,
    Incident,
    IncidentStatus,
    LatestRun,
    MetricsSummary,
    RunStats,
)
from cronmgr.store.relational.columns import Row, _column, _dt, _required_dt, _schedule_status, _ts
from cronmgr.store.relational.connection import RelationalConnection


class MetricsMixin(RelationalConnection):
    """Run statistics and incidents."""

    async def metrics_summary(self, since: datetime) -> MetricsSummary:
        """Run statistics: per hour bucket from the hour of `since` on, and lifetime totals,
        read from one snapshot."""
        window_params = {"since": _hour(since)}
        async with self._snapshot("metrics_summary"):
            window = await self._rows("run_stats_since", window_params)
            window_errors = await self._rows("run_error_stats_since", window_params)
            lifetime = await self._rows("run_stats_lifetime", {})
            lifetime_errors = await self._rows("run_error_stats_lifetime", {})
            latest = await self._rows("latest_runs", {})
            schedules = await self._rows("count_schedules_by_status", {})
            names = await self._rows("stats_names", {})
        return MetricsSummary(
            window=_run_stats(window, window_errors),
            lifetime=_run_stats(lifetime, lifetime_errors),
            latest=[latest_from_row(row) for row in latest],
            schedules={_schedule_status(row["status"]): row["schedules"] for row in schedules},
            names={row["id"]: row["name"] for row in names},
        )

    async def compact_run_stats(self, fold_before: datetime, drop_before: datetime) -> int:
        """Fold the hour buckets before the hour of `fold_before` into the lifetime totals
        (each hour once), and drop folded hour buckets before the hour of `drop_before`.
        Returns how many hour rows of run counts were dropped."""
        fold = {"before": _hour(fold_before)}
        drop = {"before": _hour(drop_before)}
        async with self._transaction("compact_run_stats"):
            await self._run("fold_run_stats", fold)
            await self._run("fold_run_error_stats", fold)
            await self._run("advance_run_stats_fold", fold)
            count = await self._run("drop_run_stats", drop)
            await self._run("drop_run_error_stats", drop)
        return count

    async def open_incident(self, incident: Incident) -> bool:
        """Record a new open incident; False when the job has an open one already."""
        return await self._write("insert_incident", _incident_params(incident)) == 1

    async def resolve_incident(
        self, incident_id: str, resolved_at: datetime, run_id: str | None, failed_runs: int
    ) -> Incident | None:
        """Close an open incident; the incident as stored, None when it was not open."""
        params = {
            "id": incident_id,
            "resolved_at": _ts(resolved_at),
            "resolved_by_run_id": run_id,
            "failed_runs": failed_runs,
        }
        async with self._transaction("resolve_incident"):
            rows = await self._rows("resolve_incident", params)
        return incident_from_row(rows[0]) if rows else None

    async def list_incidents(
        self,
        *,
        status: IncidentStatus | None = None,
        job: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Incident]:
        """Incidents, newest first; `since` keeps those open at some moment at or after it."""
        params = {
            "status": _column(status),
            "job": job,
            "since": _ts(since),
            "limit": limit,
            "offset": offset,
        }
        return [incident_from_row(row) for row in await self._read("list_incidents", params)]

    async def failing_jobs(self) -> list[LatestRun]:
        """Jobs whose last runs failed, with how many in a row (orphans failed at start
        included: the trigger counted them)."""
        rows = await self._read("failing_jobs", {"whole": WHOLE_JOB})
        return [latest_from_row(row) for row in rows]


# --- metrics and incidents ----------------------------------------------------------------
_BUCKET_COLUMNS = tuple(f"b{index:02d}" for index in range(1, len(DURATION_BOUNDS) + 1))
"""The run_stats columns of the duration histogram, one per bound."""

WHOLE_JOB = "*"
"""The schedule_id of run_latest rows about a job as a whole."""


def _hour(moment: datetime) -> str:
    """The hour bucket `moment` falls in, as run_stats keys it ('YYYY-MM-DDTHH', UTC)."""
    text = _ts(moment)
    assert text is not None
    return text[:13]


def _run_stats(rows: Iterable[Row], error_rows: Iterable[Row]) -> list[RunStats]:
    errors: dict[tuple[str, str], dict[str, int]] = {}
    for row in error_rows:
        errors.setdefault((row["job"], row["schedule_id"]), {})[row["error_class"]] = row["failed"]
    return [
        run_stats_from_row(row, errors.get((row["job"], row["schedule_id"]), {})) for row in rows
    ]


def run_stats_from_row(row: Row, errors: Mapping[str, int]) -> RunStats:
    """RunStats from a `run_stats` row (or a sum of rows) and its error counts."""
    return RunStats(
        job=row["job"],
        schedule_id=row["schedule_id"],
        succeeded=row["succeeded"],
        failed=row["failed"],
        cancelled=row["cancelled"],
        skipped=row["skipped"],
        timed=row["timed"],
        duration_sum=row["duration_sum"],
        duration_buckets=tuple(row[column] for column in _BUCKET_COLUMNS),
        errors=errors,
    )


def latest_from_row(row: Row) -> LatestRun:
    """A LatestRun from a `run_latest` row."""
    schedule_id = row["schedule_id"]
    return LatestRun(
        job=row["job"],
        schedule_id=None if schedule_id == WHOLE_JOB else schedule_id,
        run_id=row["run_id"],
        status=RunStatus(row["status"]),
        finished_at=_required_dt(row["finished_at"]),
        first_finished_at=_required_dt(row["first_finished_at"]),
        consecutive_failures=row["consecutive_failures"],
    )


def _incident_params(incident: Incident) -> dict[str, Any]:
    return {f.name: _column(getattr(incident, f.name)) for f in dataclasses.fields(incident)}


def incident_from_row(row: Row) -> Incident:
    """An Incident from an `incidents` row."""
    return Incident(
        id=row["id"],
        job=row["job"],
        started_at=_required_dt(row["started_at"]),
        opened_at=_required_dt(row["opened_at"]),
        failed_runs=row["failed_runs"],
        error_class=row["error_class"],
        cause=row["cause"],
        first_failed_run_id=row["first_failed_run_id"],
        last_failed_run_id=row["last_failed_run_id"],
        resolved_at=_dt(row["resolved_at"]),
        resolved_by_run_id=row["resolved_by_run_id"],
    )
