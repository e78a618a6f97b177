"""Incidents: the downtime windows of a target or pipeline, opened and resolved by the daemon.

Every run that finishes passes `IncidentTracker.run_finished` (a hook in `jobs.py`). The
tracker counts failed runs in a row per job; at `incident_threshold` it opens an incident,
dated from the start of the first failed run of the streak, with the cause (error class and
message of the failure that reached the threshold); the next successful run resolves it.
Cancelled and skipped runs change nothing. Both transitions are stored (at most one open
incident per job, which the store enforces) and published as `incident_opened` /
`incident_resolved` events. Open incidents are loaded when the daemon starts, so a restart
in the middle of one carries on with it instead of opening a second; so are the streaks
that had not reached the threshold (the store counts failures in a row as runs end, the
orphans a restart fails included).

The hook only updates two dicts; store writes and publishing run in background tasks, one
at a time and in order, so a run's end never waits for them.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

from cronmgr.core.errors import CronmgrError, NotFound
from cronmgr.core.models import Run, RunStatus, StepResult, new_id, utcnow
from cronmgr.observability.metrics import job_labels
from cronmgr.store.records import Incident, IncidentStatus

if TYPE_CHECKING:
    from cronmgr.store import Store

log = structlog.get_logger("cronmgr.incidents")

Publish = Callable[[str, Mapping[str, Any]], None]
"""Where events go (`notify.Notifier.publish`): it must only queue, never block."""

OPENED = "incident_opened"
RESOLVED = "incident_resolved"
LOAD_PAGE = 500
"""Open incidents read per query when the daemon starts."""


def incident_body(incident: Incident, now: datetime) -> dict[str, Any]:
    """An incident as the API answers it and as its events carry it."""
    kind, job_id = job_labels(incident.job)
    return {
        "id": incident.id,
        "job": incident.job,
        "kind": kind,
        "target_id": job_id if kind == "target" else None,
        "pipeline": job_id if kind == "pipeline" else None,
        "status": incident.status.value,
        "started_at": incident.started_at.isoformat(),
        "opened_at": incident.opened_at.isoformat(),
        "resolved_at": incident.resolved_at.isoformat() if incident.resolved_at else None,
        "duration_seconds": round(incident.duration_seconds(now), 3),
        "failed_runs": incident.failed_runs,
        "error_class": incident.error_class,
        "cause": incident.cause,
        "first_failed_run_id": incident.first_failed_run_id,
        "last_failed_run_id": incident.last_failed_run_id,
        "resolved_by_run_id": incident.resolved_by_run_id,
    }


def failed_step_class(steps: Sequence[StepResult]) -> str | None:
    """The error class of a failed run: its first step whose last attempt failed (the step
    the run's error names), as the store's statistics count it."""
    last: dict[int, StepResult] = {}
    for step in steps:  # ordered by position, then attempt
        last[step.position] = step
    for position in sorted(last):
        step = last[position]
        if step.status is RunStatus.FAILED and step.error_type is not None:
            return step.error_type.value
    return None


@dataclass(slots=True)
class _Streak:
    """Failed runs in a row of one job."""

    first_run_id: str | None
    started_at: datetime | None
    """None for a streak from before a restart: dated when it opens an incident."""
    failures: int = 0


class IncidentTracker:
    """Opens an incident after `threshold` failed runs in a row of a job; resolves it on
    the job's next successful run."""

    def __init__(self, store: Store, publish: Publish, threshold: int) -> None:
        self._store = store
        self._publish = publish
        self._threshold = threshold
        self._streaks: dict[str, _Streak] = {}
        self._open: dict[str, Incident] = {}
        # Writes one at a time, in the order the runs ended: an incident's resolution must
        # never overtake its opening.
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    async def load(self) -> int:
        """Take over the incidents the store has open (from before a restart), then the
        streaks of failed runs that had not opened one yet; how many incidents were open.

        Call it after orphaned runs were failed: those count as the failures they are,
        and may be the ones that reach the threshold.
        """
        offset = 0
        while True:
            page = await self._store.list_incidents(
                status=IncidentStatus.OPEN, limit=LOAD_PAGE, offset=offset
            )
            for incident in page:
                self._adopt(incident)
            if len(page) < LOAD_PAGE:
                break
            offset += LOAD_PAGE
        await self._resume_streaks()
        return offset + len(page)

    async def _resume_streaks(self) -> None:
        # The store counts failed runs in a row per job as they end; a restart must not
        # start that count again from zero (three failures, a restart, two more: five).
        # One query for all jobs: where the streak began is looked up only if it opens an
        # incident (after an outage, thousands of jobs may be failing at start).
        for latest in await self._store.failing_jobs():
            if latest.job in self._streaks:
                continue  # its open incident carries the streak
            streak = _Streak(None, None, latest.consecutive_failures)
            self._streaks[latest.job] = streak
            self._open_if_due(latest.job, streak, latest.run_id, None)

    def jobs(self) -> set[str]:
        """The jobs with an open incident or failed runs in a row."""
        return set(self._streaks) | set(self._open)

    def forget(self, jobs: Iterable[str], why: str) -> None:
        """Jobs that no longer exist (a pipeline's file removed, a target deleted): their
        streaks end, and their open incidents are resolved, with no run that ended them."""
        now = utcnow()
        for job in jobs:
            streak = self._streaks.pop(job, None)
            incident = self._open.pop(job, None)
            log.info("incident_job_gone", job=job, reason=why, open_incident=incident is not None)
            if incident is not None:
                failures = streak.failures if streak is not None else incident.failed_runs
                self._spawn(functools.partial(self._ended, incident, failures, now))

    def run_finished(self, run: Run, status: RunStatus, error: str | None) -> None:
        """Count a run that just ended (the hook jobs.py calls for every run)."""
        if status is RunStatus.FAILED:
            self._failed(run, error)
        elif status is RunStatus.SUCCEEDED and run.job in self._streaks:
            self._recovered(run)

    async def drain(self) -> None:
        """Wait for the writes and events still in flight (when the daemon stops)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _adopt(self, incident: Incident) -> None:
        self._open[incident.job] = incident
        self._streaks[incident.job] = _Streak(
            incident.first_failed_run_id, incident.started_at, incident.failed_runs
        )

    def _failed(self, run: Run, error: str | None) -> None:
        streak = self._streaks.get(run.job)
        if streak is None:
            streak = self._streaks[run.job] = _Streak(run.id, run.started_at or utcnow())
        streak.failures += 1
        self._open_if_due(run.job, streak, run.id, error)

    def _open_if_due(self, job: str, streak: _Streak, last_run_id: str, cause: str | None) -> None:
        if streak.failures < self._threshold or job in self._open:
            return
        opened_at = utcnow()
        incident = Incident(
            id=new_id(),
            job=job,
            started_at=streak.started_at or opened_at,  # dated by `_opened` when unknown
            opened_at=opened_at,
            failed_runs=streak.failures,
            cause=cause,
            first_failed_run_id=streak.first_run_id,
            last_failed_run_id=last_run_id,
        )
        self._open[job] = incident
        undated = streak.started_at is None
        self._spawn(lambda: self._opened(incident, undated))

    def _recovered(self, run: Run) -> None:
        streak = self._streaks.pop(run.job)
        incident = self._open.pop(run.job, None)
        if incident is not None:
            resolved_at = utcnow()
            self._spawn(lambda: self._resolved(incident, run.id, streak.failures, resolved_at))

    def _spawn(self, work: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.ensure_future(self._serialized(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serialized(self, work: Callable[[], Awaitable[None]]) -> None:
        async with self._lock:
            try:
                await work()
            except CronmgrError as exc:
                log.error("incident_write_failed", error=exc.detail)

    async def _opened(self, incident: Incident, undated: bool) -> None:
        if undated:
            incident = await self._dated(incident)
        last = await self._last_failed_run(incident)
        error_class = failed_step_class(last.steps) if last is not None else None
        cause = incident.cause
        if cause is None and last is not None:
            cause = last.error  # a streak from before a restart: its last run says why
        incident = replace(incident, error_class=error_class or "unknown", cause=cause)
        if not await self._store.open_incident(incident):
            # Another daemon, sharing the store, opened one first: carry on with that one.
            await self._take_over(incident.job)
            return
        log.warning(OPENED, incident_id=incident.id, job=incident.job, cause=incident.cause)
        self._event(OPENED, incident)

    async def _dated(self, incident: Incident) -> Incident:
        """A streak from before a restart: its first failed run, from the store."""
        failed = await self._store.list_runs(
            job=incident.job, status=RunStatus.FAILED, limit=incident.failed_runs
        )
        if not failed:
            return incident  # purged meanwhile: dated by its opening
        first = failed[-1]
        started_at = first.started_at or first.scheduled_for
        return replace(incident, started_at=started_at, first_failed_run_id=first.id)

    async def _last_failed_run(self, incident: Incident) -> Run | None:
        # Read here, off the run's path: the hook has only the run's error message.
        try:
            return await self._store.get_run(incident.last_failed_run_id or "")
        except NotFound:
            return None  # purged meanwhile

    async def _take_over(self, job: str) -> None:
        found = await self._store.list_incidents(status=IncidentStatus.OPEN, job=job, limit=1)
        if found and job in self._open:
            self._open[job] = found[0]

    async def _resolved(
        self, incident: Incident, run_id: str | None, failures: int, resolved_at: datetime
    ) -> None:
        stored = await self._store.resolve_incident(incident.id, resolved_at, run_id, failures)
        if stored is None:
            return  # resolved already (by another daemon sharing the store)
        self._announce_resolved(stored)

    def _announce_resolved(self, incident: Incident) -> None:
        log.info(
            RESOLVED, incident_id=incident.id, job=incident.job, failed_runs=incident.failed_runs
        )
        self._event(RESOLVED, incident)

    async def _ended(self, incident: Incident, failures: int, resolved_at: datetime) -> None:
        """Resolve the incident of a job that is gone. A deleted target's incident was
        resolved by the store with the target: it is announced all the same, once."""
        stored = await self._store.resolve_incident(incident.id, resolved_at, None, failures)
        if stored is None:
            newest = await self._store.list_incidents(job=incident.job, limit=1)
            if not newest or newest[0].id != incident.id or newest[0].resolved_by_run_id:
                return  # resolved by a run, by another daemon sharing the store
            stored = newest[0]
        self._announce_resolved(stored)

    def _event(self, kind: str, incident: Incident) -> None:
        try:
            self._publish(kind, incident_body(incident, utcnow()))
        except Exception:  # a broken notifier must not stop the incident bookkeeping
            log.exception("incident_publish_failed", kind=kind, incident_id=incident.id)
