"""Manual runs: pipeline runs asked for through the API, and targets sent once from the
dashboard ("send now"), carried out by the daemon.

The controller never runs jobs: `POST /api/v1/pipelines/{name}/run` records a `pending`
run (trigger `api`) and signals the daemon, which picks every pending manual run up here,
in the order they were asked for, and applies the pipeline's overlap policy against every
run of the same pipeline, scheduled or manual:

- `skip` (also for a pipeline without a schedule): recorded `skipped` while one runs;
- `queue`: waits, still `pending`, until the pipeline is idle, then runs;
- `allow`: runs at once beside the others;
- `replace`: cancels the running ones (recorded `cancelled`) and runs.

A pending run survives a daemon restart: it never started, so the next daemon picks it
up. Claiming it (pending → running) is one atomic store write, so it runs at most once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import structlog

from cronmgr.core.errors import CronmgrError
from cronmgr.core.models import (
    PIPELINE_JOB_PREFIX,
    TARGET_JOB_PREFIX,
    OverlapPolicy,
    Run,
    RunStatus,
    utcnow,
)
from cronmgr.core.pipelines.pipeline import PipelineSet
from cronmgr.engine.in_flight import drain_tasks
from cronmgr.engine.jobs import JobRunner
from cronmgr.store import Store

log = structlog.get_logger("cronmgr.manual")

PICK_UP_LIMIT = 1000
"""Most pending runs one pick-up reads; the rest wait for the next signal."""


class ManualRuns:
    """Pending manual runs taken from the store, queued or running in this daemon."""

    def __init__(
        self,
        jobs: JobRunner,
        store: Store,
        pipelines: Callable[[], PipelineSet],
        *,
        takes: Callable[[Run], bool] = lambda run: True,
    ) -> None:
        self._jobs = jobs
        self._store = store
        self._pipelines = pipelines
        # Whether this node takes a run: with several nodes, one that has its pipeline.
        self._takes = takes
        self._taken: set[str] = set()
        self._queued: dict[str, deque[Run]] = {}
        self._tasks: set[asyncio.Task[RunStatus | None]] = set()
        self._stopped = False

    async def pick_up(self) -> int:
        """Take the pending manual runs not taken yet, oldest first; how many were new."""
        if self._stopped:
            return 0
        pending = await self._store.list_requested_runs(limit=PICK_UP_LIMIT)
        new = [r for r in reversed(pending) if r.id not in self._taken and self._takes(r)]
        for run in new:
            self._taken.add(run.id)
            await self._take(run)
        return len(new)

    def queued(self) -> list[str]:
        """Ids of manual runs waiting for their pipeline to be idle."""
        return [run.id for runs in self._queued.values() for run in runs]

    def job_idle(self, job: str) -> None:
        """Called when the last run of `job` ended: start its first queued run."""
        waiting = self._queued.get(job)
        if waiting and not self._stopped:
            self._start(waiting.popleft())
            if not waiting:
                del self._queued[job]

    async def drain(self, grace: float) -> int:
        """Stop taking runs; wait `grace` for running ones, cancel the rest; how many."""
        self._stopped = True
        self._queued.clear()  # still pending in the store: the next daemon runs them
        return await drain_tasks(list(self._tasks), grace)

    async def _take(self, run: Run) -> None:
        if run.job.startswith(TARGET_JOB_PREFIX):
            self._start(run)  # a target sent by hand: no overlap policy holds it back
            return
        try:
            pipeline = self._pipelines().get(run.job.removeprefix(PIPELINE_JOB_PREFIX))
        except CronmgrError as exc:
            await self._refuse(run, RunStatus.FAILED, exc.detail)
            return
        policy = pipeline.overlap_policy
        busy = self._jobs.busy(run.job) or bool(self._queued.get(run.job))
        if not busy or policy is OverlapPolicy.ALLOW:
            self._start(run)
        elif policy is OverlapPolicy.SKIP:
            await self._refuse(run, RunStatus.SKIPPED, "previous run still running")
        elif policy is OverlapPolicy.QUEUE:
            self._queued.setdefault(run.job, deque()).append(run)
            log.info("run_queued", run_id=run.id, job=run.job, reason="overlap_policy queue")
        else:  # REPLACE
            self._jobs.cancel(run.job, "replaced by a newer run")
            self._start(run)

    def _start(self, run: Run) -> None:
        task = asyncio.create_task(self._jobs.run_requested(run), name=f"manual run {run.id}")
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._ended(run, done))

    def _ended(self, run: Run, task: asyncio.Task[RunStatus | None]) -> None:
        self._tasks.discard(task)
        self._taken.discard(run.id)

    async def _refuse(self, run: Run, status: RunStatus, why: str) -> None:
        self._taken.discard(run.id)
        if await self._store.claim_run(run.id, self._jobs.node_id):
            await self._store.update_run(run.id, status, finished_at=utcnow(), error=why)
            log.info("manual_run_not_started", run_id=run.id, status=status.value, reason=why)
