"""The runs in flight in the daemon, by job, and what is written while they go on.

Every run executing now is known by job, scheduled and manual alike, so the overlap
policies see them all, a job's runs can be cancelled together and the daemon is told when
a job falls idle. Pipeline runs hold slots of the concurrency limits (`limits.py`); one
waiting for a slot is recorded `pending` until it gets one. A claimed run's start is
written only once it has gone on for START_RECORD_SECONDS: most end sooner, and their end
then records the start with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import structlog

from cronmgr.core.models import Run, RunStatus, utcnow
from cronmgr.engine.limits import QueueCallback, RunLimits
from cronmgr.store import Store

START_RECORD_SECONDS = 0.05
"""A claimed run still going after this long has its start (`running`) written."""

log = structlog.get_logger("cronmgr.jobs")


class RunsInFlight:
    """The runs executing now, the limits they wait under, their deferred starts (a mixin
    of `JobRunner`, which provides the store)."""

    store: Store

    def __init__(self, max_concurrent_pipeline_runs: int) -> None:
        # The task of every run executing now, by job, so overlap policies see scheduled
        # and manual runs of a job alike.
        self._running: dict[str, dict[str, asyncio.Task[object]]] = {}
        self._limits = RunLimits(max_concurrent_pipeline_runs)
        self.on_job_idle: Callable[[str], None] | None = None
        """Called with a job's name when its last run in flight has ended."""
        # Claimed runs whose start is not written yet: loop time and start, oldest first.
        self._unstarted: dict[str, tuple[float, datetime]] = {}
        self._start_timer: asyncio.TimerHandle | None = None

    def active_run_ids(self) -> list[str]:
        """Ids of runs executing now (queued ones included)."""
        return sorted(run_id for runs in self._running.values() for run_id in runs)

    def queued_run_ids(self) -> list[str]:
        """Ids of pipeline runs waiting for a free slot under the concurrency limits."""
        return self._limits.waiting()

    def busy(self, job: str) -> bool:
        """Whether a run of `job` (scheduled or manual) is executing or queued."""
        return bool(self._running.get(job))

    def cancel(self, job: str, reason: str) -> int:
        """Cancel every run of `job` in flight; how many were."""
        tasks = list(self._running.get(job, {}).values())
        for task in tasks:
            task.cancel(reason)
        return len(tasks)

    def _defer_start(self, run: Run) -> None:
        """Write a claimed run's start only if it is still going after a moment: most end
        sooner, and their end then records the start with it, one write where were two."""
        assert run.started_at is not None
        loop = asyncio.get_running_loop()
        self._unstarted[run.id] = (loop.time(), run.started_at)  # `_finish` takes it back
        if self._start_timer is None:
            self._start_timer = loop.call_later(START_RECORD_SECONDS, self._record_starts)

    def _record_starts(self) -> None:
        """Write the starts of the runs going on for START_RECORD_SECONDS, then wait for
        the next oldest: one timer for all runs, not one each (a thousand a second)."""
        self._start_timer = None
        loop = asyncio.get_running_loop()
        due = loop.time() - START_RECORD_SECONDS
        unstarted = self._unstarted
        while unstarted:
            run_id, (since, started_at) = next(iter(unstarted.items()))
            if since > due:
                self._start_timer = loop.call_at(since + START_RECORD_SECONDS, self._record_starts)
                return
            del unstarted[run_id]
            self.store.start_run(run_id, started_at)

    def _forget(self, run: Run) -> None:
        runs = self._running.get(run.job, {})
        runs.pop(run.id, None)
        if not runs:
            self._running.pop(run.job, None)
            if self.on_job_idle is not None:
                self.on_job_idle(run.job)

    def _queued_recorder(self, run: Run) -> QueueCallback:
        async def record(queued: bool, why: str) -> None:
            if queued:
                log.info("run_queued", reason=why)
                await asyncio.shield(self.store.update_run(run.id, RunStatus.PENDING))
            else:
                log.info("run_dequeued")
                now = utcnow()
                await asyncio.shield(
                    self.store.update_run(run.id, RunStatus.RUNNING, started_at=now)
                )

        return record


async def drain_tasks(tasks: Sequence[asyncio.Task[Any]], grace: float) -> int:
    """Wait up to `grace` for `tasks`, cancel those still going; how many were cancelled."""
    if not tasks:
        return 0
    _done, late = await asyncio.wait(tasks, timeout=grace)
    for task in late:
        task.cancel("the daemon is stopping")
    await asyncio.gather(*tasks, return_exceptions=True)
    return len(late)
