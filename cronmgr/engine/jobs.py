"""What one firing does: claim the slot as a run, execute it, record every result.

The engine (`scheduler.py`) decides *when*; this module decides nothing about time. A run
is claimed by inserting it with its (schedule, scheduled_for) slot: the store's unique
index makes the claim atomic, so a restarted daemon, or a second one, never runs a slot
twice. Whatever happens next, the run ends recorded as succeeded, failed or cancelled;
never left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import structlog

from cronmgr.core.config import Settings
from cronmgr.core.errors import CronmgrError, StoreError
from cronmgr.core.models import (
    PIPELINE_JOB_PREFIX,
    TARGET_JOB_PREFIX,
    Run,
    RunStatus,
    Schedule,
    StepResult,
    Target,
    Trigger,
    new_id,
    utcnow,
)
from cronmgr.core.pipelines.pipeline import Pipeline, PipelineSet
from cronmgr.engine.limits import QueueCallback, RunLimits
from cronmgr.observability.logs import bound_fields
from cronmgr.runners.http.attempt import attempt_fields
from cronmgr.runners.http.request import RequestContext
from cronmgr.runners.http.runner import HttpRunner
from cronmgr.runners.pipeline.context import StepContext
from cronmgr.runners.pipeline.run import run_pipeline, run_status
from cronmgr.store import Store

WORK_DIRNAME = "work"
"""Directory under the state directory holding each pipeline run's work directory."""

START_RECORD_SECONDS = 0.05
"""A claimed run still going after this long has its start (`running`) written."""
UNCLAIMED_REPORT_SECONDS = 60.0
"""While slots can't be claimed (a full disk), how often the missed ones are summed up."""

log = structlog.get_logger("cronmgr.jobs")

Recorder = Callable[[int, StepResult], Awaitable[None]]
Outcome = tuple[RunStatus, str | None, list[tuple[int, StepResult]]]
"""How a run ended: its status, its error, and its attempts not recorded yet (position, result)."""


class Unclaimed:
    """Slots missed because the store could not take their claim (a full disk): the first
    is logged in full (`run_not_claimed`), the rest summed up every `every` seconds
    (`runs_not_claimed`), and the outage's end says how many it cost (`runs_claimed_again`).
    A line per slot would be a thousand a second, and say nothing more."""

    def __init__(
        self, every: float = UNCLAIMED_REPORT_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._every = every
        self._clock = clock
        self.since: float | None = None
        """When the outage began (the clock's time); None while claims land."""
        self._missed = 0  # in all, this outage
        self._unreported = 0  # since the last line
        self._reported_at = 0.0
        self._error = ""

    def missed(self, schedule_id: str, slot: datetime, error: str) -> None:
        """A slot of `schedule_id` was not run: its claim failed with `error`."""
        now = self._clock()
        self._missed += 1
        self._error = error
        if self.since is None:
            self.since = self._reported_at = now
            log.error(
                "run_not_claimed", schedule_id=schedule_id, slot=slot.isoformat(), error=error
            )
            return
        self._unreported += 1
        if now - self._reported_at >= self._every:
            self._report(now)

    def claimed(self) -> None:
        """A claim landed: the outage, if there was one, is over."""
        if self.since is None:
            return
        now = self._clock()
        if self._unreported:
            self._report(now)
        log.info("runs_claimed_again", missed=self._missed, seconds=round(now - self.since, 1))
        self.since, self._missed = None, 0

    def _report(self, now: float) -> None:
        assert self.since is not None
        log.error(
            "runs_not_claimed",
            missed=self._unreported,
            missed_in_all=self._missed,
            seconds=round(now - self.since, 1),
            error=self._error,
        )
        self._unreported, self._reported_at = 0, now


@dataclass(slots=True)
class Claim:
    """A slot claimed ahead of its time: its pending run, and the store write claiming it
    (shared by every slot of that batch), which yields the ids of the slots won."""

    run: Run
    batch: asyncio.Future[set[str]]


class JobRunner:
    """Runs schedules' jobs (HTTP targets and pipelines) and records them in the store."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        http: HttpRunner,
        pipelines: Callable[[], PipelineSet],
        on_run_finished: Callable[[Run, RunStatus, str | None], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.http = http
        self._pipelines = pipelines
        # Told of every run's end once it is recorded (incidents.IncidentTracker): it must
        # only count, never wait.
        self._on_run_finished = on_run_finished
        # The task of every run executing now, by job, so overlap policies see scheduled
        # and manual runs of a job alike.
        self._running: dict[str, dict[str, asyncio.Task[object]]] = {}
        self._limits = RunLimits(settings.max_concurrent_pipeline_runs)
        self.on_job_idle: Callable[[str], None] | None = None
        """Called with a job's name when its last run in flight has ended."""
        # Targets by id, read once: a target edit re-revisions its schedules, and the
        # daemon forgets the targets of changed schedules when it applies them.
        self._targets: dict[str, Target] = {}
        # Targets being read ahead for slots claimed ahead, by id; `_epoch` counts edits,
        # so a read that an edit overtook is not cached.
        self._prefetching: dict[str, asyncio.Task[None]] = {}
        self._epoch = 0
        # Claimed runs whose start is not written yet: loop time and start, oldest first.
        self._unstarted: dict[str, tuple[float, datetime]] = {}
        self._start_timer: asyncio.TimerHandle | None = None
        self.unclaimed = Unclaimed()
        """Slots not run because their claim failed (a full disk), and how they are told."""

    def forget_targets(self, target_ids: set[str]) -> None:
        """Drop cached targets so their next run reads the current definition."""
        self._epoch += 1
        for target_id in target_ids:
            self._targets.pop(target_id, None)

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

    @property
    def work_root(self) -> Path:
        """Where each pipeline run gets its work directory."""
        return self.settings.state_path / WORK_DIRNAME

    def claim_ahead(self, slots: Sequence[tuple[Schedule, datetime]]) -> list[Claim]:
        """Claim slots due soon in one store write, so that when their time comes they
        start at once; the claims, in the order of `slots`, settle as the write does."""
        runs = [
            Run(
                id=new_id(),
                job=schedule.job,
                schedule_id=schedule.id,
                scheduled_for=slot,
                trigger=Trigger.SCHEDULE,
            )
            for schedule, slot in slots
        ]
        batch = asyncio.ensure_future(self.store.claim_runs(runs))
        due = [(s.target_id, slot) for s, slot in slots if s.target_id is not None]
        missing = {target_id for target_id, _ in due} - self._targets.keys()
        if missing:
            self._prefetch(missing, due)
        else:
            self._prewarm(due)
        return [Claim(run, batch) for run in runs]

    def _prefetch(self, target_ids: set[str], due: list[tuple[str, datetime]]) -> None:
        """Read the targets of slots claimed ahead in one query, so their requests do not
        wait for a read when they fire (2,000 first firings would be 2,000 reads)."""
        target_ids -= self._prefetching.keys()
        if not target_ids:
            return  # all on their way already; that read opens the connections it can
        task = asyncio.ensure_future(self._read_targets(sorted(target_ids), self._epoch, due))
        for target_id in target_ids:
            self._prefetching[target_id] = task

    async def _read_targets(
        self, target_ids: list[str], epoch: int, due: list[tuple[str, datetime]]
    ) -> None:
        try:
            found = await self.store.get_targets(target_ids)
            if epoch == self._epoch:
                self._targets.update(found)
        except Exception as exc:  # each run reads its own target then
            log.warning("targets_not_read_ahead", count=len(target_ids), error=str(exc))
        finally:
            for target_id in target_ids:
                self._prefetching.pop(target_id, None)
        self._prewarm(due)

    def _prewarm(self, due: list[tuple[str, datetime]]) -> None:
        """Connections opened ahead for the claimed slots that fire together."""
        known = [(self._targets[t], slot) for t, slot in due if t in self._targets]
        if known:
            self.http.prewarm(known)

    async def release(self, claims: Sequence[Claim]) -> None:
        """Give back claimed slots that will not fire (their schedule changed, the daemon
        is stopping); their pending runs are deleted once their claims have settled."""
        for batch in {id(claim.batch): claim.batch for claim in claims}.values():
            with contextlib.suppress(Exception):
                await asyncio.shield(batch)
        await self.store.release_claims([claim.run.id for claim in claims])

    async def run(
        self, schedule: Schedule, slot: datetime, claim: Claim | None = None
    ) -> RunStatus | None:
        """Run `slot` of `schedule`, claiming it first unless `claim` did; None when the
        slot was taken already."""
        try:
            if claim is None:
                run = _new_run(schedule.job, slot, Trigger.SCHEDULE, schedule.id)
                taken = await self.store.insert_run(run)
            else:
                taken = claim.run.id in await _settled(claim.batch)
                run = _started(claim.run)
        except StoreError as exc:
            # Not run, since it could not be recorded (a full disk): the slot is missed.
            self.unclaimed.missed(schedule.id, slot, str(exc))
            return None
        if self.unclaimed.since is not None:  # looked at here: no call per run otherwise
            self.unclaimed.claimed()
        if taken and claim is not None:
            self._defer_start(run)
        if not taken:
            log.warning("run_duplicate_skipped", schedule_id=schedule.id, slot=slot.isoformat())
            return None
        with bound_fields(run_id=run.id, schedule_id=schedule.id):
            return await self._execute(run, lambda: self._work(schedule, run))

    async def run_requested(self, run: Run) -> RunStatus | None:
        """Run a pending manual run of a pipeline; None when another daemon claimed it."""
        if not await self.store.claim_run(run.id):
            return None
        run = replace(run, status=RunStatus.RUNNING, started_at=utcnow())
        with bound_fields(run_id=run.id):
            pipeline = self._pipelines().get(run.job.removeprefix(PIPELINE_JOB_PREFIX))
            return await self._execute(run, lambda: self._pipeline(pipeline, run))

    async def skip(
        self, schedule: Schedule, slot: datetime, reason: str, claim: Claim | None = None
    ) -> None:
        """Record a slot that will not run (overlap, misfire, open circuit); a claimed one
        has its pending run ended as skipped."""
        try:
            await self._skip(schedule, slot, reason, claim)
        except StoreError as exc:  # a full disk: nothing to record it in
            log.error(
                "run_skip_not_recorded",
                schedule_id=schedule.id,
                slot=slot.isoformat(),
                reason=reason,
                error=str(exc),
            )

    async def _skip(
        self, schedule: Schedule, slot: datetime, reason: str, claim: Claim | None
    ) -> None:
        now = utcnow()
        if claim is not None:
            if claim.run.id in await _settled(claim.batch):
                await self.store.update_run(
                    claim.run.id, RunStatus.SKIPPED, finished_at=now, error=reason
                )
                log.info(
                    "run_skipped", schedule_id=schedule.id, slot=slot.isoformat(), reason=reason
                )
            return
        run = Run(
            id=new_id(),
            job=schedule.job,
            schedule_id=schedule.id,
            scheduled_for=slot,
            trigger=Trigger.SCHEDULE,
            status=RunStatus.SKIPPED,
            started_at=now,
            finished_at=now,
            error=reason,
        )
        if await self.store.insert_run(run):
            log.info("run_skipped", schedule_id=schedule.id, slot=slot.isoformat(), reason=reason)

    async def _execute(self, run: Run, work: Callable[[], Awaitable[Outcome]]) -> RunStatus:
        task = asyncio.current_task()
        assert task is not None
        self._running.setdefault(run.job, {})[run.id] = task
        # A pipeline run may last hours: say it began. A target's run lasts as long as its
        # request, and its run_finished line follows at once, so its start is debug detail.
        if run.job.startswith(PIPELINE_JOB_PREFIX):
            log.info("run_started", job=run.job, scheduled_for=run.scheduled_for.isoformat())
        elif log.is_enabled_for(logging.DEBUG):  # not even the slot's text otherwise
            log.debug("run_started", job=run.job, scheduled_for=run.scheduled_for.isoformat())
        status, error = RunStatus.FAILED, None
        steps: list[tuple[int, StepResult]] = []
        try:
            status, error, steps = await work()
        except asyncio.CancelledError as exc:
            status, error = RunStatus.CANCELLED, f"cancelled: {_cancel_reason(exc)}"
            raise
        except CronmgrError as exc:
            error = exc.detail
        except Exception as exc:  # a bug in one job must not take the daemon down
            error = f"{type(exc).__name__}: {exc}"
            log.exception("run_crashed")
        finally:
            self._forget(run)
            await self._finish(run, status, error, steps)
        return status

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

    async def _finish(
        self,
        run: Run,
        status: RunStatus,
        error: str | None,
        steps: list[tuple[int, StepResult]],
    ) -> None:
        finished = utcnow()
        # Still unwritten, the start goes with the end.
        started = run.started_at if self._unstarted.pop(run.id, None) is not None else None
        # The writes are queued by the call itself: a cancelled run is recorded as
        # cancelled (never left running) even if this task is cancelled while it waits.
        await self.store.finish_run(
            run.id, status, finished_at=finished, error=error, steps=steps, started_at=started
        )
        if self._on_run_finished is not None:
            self._on_run_finished(run, status, error)
        assert run.started_at is not None
        duration_ms = int((finished - run.started_at).total_seconds() * 1000)
        log.info(
            "run_finished",
            status=status.value,
            error=error,
            duration_ms=duration_ms,
            **self._last_attempt_fields(run, steps),
        )

    def _last_attempt_fields(
        self, run: Run, steps: list[tuple[int, StepResult]]
    ) -> dict[str, object]:
        """A target run's line says how its last attempt went (that attempt's own line is
        debug): one info line per run, where a thousand may end every second."""
        if not steps or not run.job.startswith(TARGET_JOB_PREFIX):
            return {}
        target = self._targets.get(run.job.removeprefix(TARGET_JOB_PREFIX))
        if target is None:
            return {}
        return {"target": target.name, **attempt_fields(steps[-1][1], target)}

    async def _work(self, schedule: Schedule, run: Run) -> Outcome:
        if schedule.target_id is not None:
            return await self._target(await self._target_of(schedule.target_id), run)
        assert schedule.pipeline is not None
        return await self._pipeline(self._pipelines().get(schedule.pipeline), run)

    async def _target_of(self, target_id: str) -> Target:
        target = self._targets.get(target_id)
        if target is None and (reading := self._prefetching.get(target_id)) is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(reading)
            target = self._targets.get(target_id)
        if target is None:
            target = self._targets[target_id] = await self.store.get_target(target_id)
        return target

    async def _target(self, target: Target, run: Run) -> Outcome:
        context = RequestContext(
            run_id=run.id, schedule_id=run.schedule_id, scheduled_for=run.scheduled_for
        )
        # The last attempt is written with the run's end: one write where there were two.
        attempts = await self.http.run_target(
            target, context=context, on_attempt=self._attempt_recorder(run), defer_last=True
        )
        last = attempts[-1]
        error = f"{last.error_type}: {last.error}" if last.error_type else last.error
        return last.status, None if last.status is RunStatus.SUCCEEDED else error, [(0, last)]

    async def _pipeline(self, pipeline: Pipeline, run: Run) -> Outcome:
        async with self._limits.slot(pipeline, run.id, self._queued_recorder(run)):
            context = StepContext(
                run_id=run.id,
                pipeline=pipeline.name,
                scheduled_for=run.scheduled_for,
                extra_env={"CRONMGR_STATE_DIR": str(self.settings.state_path)},
                schedule_id=run.schedule_id,
                work_root=self.work_root,
            )
            results = await run_pipeline(
                pipeline,
                context=context,
                kill_grace=self.settings.step_kill_grace_seconds,
                on_step_finished=self._step_recorder(run),
                http=self.http,
                resolve_target=self.store.get_target_by_name,
                on_step_spawned=functools.partial(self.store.record_step_group, run.id),
            )
        return run_status(pipeline, results), first_error(results), []

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

    def _step_recorder(self, run: Run) -> Recorder:
        async def record(position: int, result: StepResult) -> None:
            await asyncio.shield(self.store.insert_step_result(run.id, position, result))

        return record

    def _attempt_recorder(self, run: Run) -> Callable[[StepResult], Awaitable[None]]:
        async def record(result: StepResult) -> None:
            await asyncio.shield(self.store.insert_step_result(run.id, 0, result))

        return record


def _new_run(job: str, slot: datetime, trigger: Trigger, schedule_id: str | None) -> Run:
    return Run(
        id=new_id(),
        job=job,
        schedule_id=schedule_id,
        scheduled_for=slot,
        trigger=trigger,
        status=RunStatus.RUNNING,
        started_at=utcnow(),
    )


async def _settled(batch: asyncio.Future[set[str]]) -> set[str]:
    """A claim batch's outcome. Claimed ahead, it is in as a rule: then without the extra
    future a shield costs; otherwise shielded, so a cancelled run leaves the batch alone."""
    if batch.done():
        return batch.result()
    return await asyncio.shield(batch)


def _cancel_reason(exc: asyncio.CancelledError) -> str:
    return str(exc.args[0]) if exc.args and exc.args[0] else "the daemon is stopping"


def first_error(results: Sequence[StepResult]) -> str | None:
    """The run's error summary: the first failed step and why."""
    for result in results:
        if result.status is RunStatus.FAILED:
            return f"step {result.step!r} failed: {result.error}"
    return None


def _started(run: Run) -> Run:
    """A claimed (pending) run as it begins now; field by field, which is several times
    cheaper than dataclasses.replace, and every run of a target begins this way."""
    return Run(
        id=run.id,
        job=run.job,
        scheduled_for=run.scheduled_for,
        trigger=run.trigger,
        status=RunStatus.RUNNING,
        schedule_id=run.schedule_id,
        started_at=utcnow(),
        finished_at=run.finished_at,
        error=run.error,
        steps=run.steps,
    )
