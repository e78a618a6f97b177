"""What one firing does: claim the slot as a run, execute it, record every result.

The engine (`scheduler.py`) decides *when*; this module decides nothing about time. A run
is claimed by inserting it with its (schedule, scheduled_for) slot: the store's unique
index makes the claim atomic, so a restarted daemon, or a second one, never runs a slot
twice. Whatever happens next, the run ends recorded as succeeded, failed or cancelled;
never left running. The claims are in `claims.py`, the targets read once and ahead in
`targets.py`, and the runs in flight, by job, in `in_flight.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
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
from cronmgr.engine.claims import Claim, Unclaimed, settled
from cronmgr.engine.in_flight import RunsInFlight
from cronmgr.engine.targets import TargetCache
from cronmgr.observability.logs import bound_fields
from cronmgr.runners.http.attempt import attempt_fields
from cronmgr.runners.http.request import RequestContext
from cronmgr.runners.http.runner import HttpRunner
from cronmgr.runners.pipeline.context import StepContext
from cronmgr.runners.pipeline.run import run_pipeline, run_status
from cronmgr.store import Store

WORK_DIRNAME = "work"
"""Directory under the state directory holding each pipeline run's work directory."""

log = structlog.get_logger("cronmgr.jobs")

Recorder = Callable[[int, StepResult], Awaitable[None]]
Outcome = tuple[RunStatus, str | None, list[tuple[int, StepResult]]]
"""How a run ended: its status, its error, and its attempts not recorded yet (position, result)."""


class JobRunner(TargetCache, RunsInFlight):
    """Runs schedules' jobs (HTTP targets and pipelines) and records them in the store."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        http: HttpRunner,
        pipelines: Callable[[], PipelineSet],
        on_run_finished: Callable[[Run, RunStatus, str | None], None] | None = None,
    ) -> None:
        TargetCache.__init__(self)
        RunsInFlight.__init__(self, settings.max_concurrent_pipeline_runs)
        self.settings = settings
        self.store = store
        self.http = http
        self._pipelines = pipelines
        # Told of every run's end once it is recorded (incidents.IncidentTracker): it must
        # only count, never wait.
        self._on_run_finished = on_run_finished
        self.unclaimed = Unclaimed()
        """Slots not run because their claim failed (a full disk), and how they are told."""
        self.node_id: str | None = None
        """The node recorded on every run this runner makes or claims."""

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
                node_id=self.node_id,
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
                run = _new_run(schedule.job, slot, schedule.id, self.node_id)
                taken = await self.store.insert_run(run)
            else:
                taken = claim.run.id in await settled(claim.batch)
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
        """Run a pending manual run of a pipeline or a target; None when another daemon
        claimed it."""
        if not await self.store.claim_run(run.id, self.node_id):
            return None
        run = replace(run, status=RunStatus.RUNNING, started_at=utcnow(), node_id=self.node_id)
        with bound_fields(run_id=run.id):
            return await self._execute(run, lambda: self._requested_work(run))

    async def _requested_work(self, run: Run) -> Outcome:
        if run.job.startswith(TARGET_JOB_PREFIX):
            # Read afresh, not from the cache: a target is sent by hand to try an edit out.
            target = await self.store.get_target(run.job.removeprefix(TARGET_JOB_PREFIX))
            return await self._target(target, run)
        return await self._pipeline(
            self._pipelines().get(run.job.removeprefix(PIPELINE_JOB_PREFIX)), run
        )

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
            if claim.run.id in await settled(claim.batch):
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
            node_id=self.node_id,
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

    def _step_recorder(self, run: Run) -> Recorder:
        async def record(position: int, result: StepResult) -> None:
            await asyncio.shield(self.store.insert_step_result(run.id, position, result))

        return record

    def _attempt_recorder(self, run: Run) -> Callable[[StepResult], Awaitable[None]]:
        async def record(result: StepResult) -> None:
            await asyncio.shield(self.store.insert_step_result(run.id, 0, result))

        return record


def _new_run(job: str, slot: datetime, schedule_id: str, node_id: str | None) -> Run:
    return Run(
        id=new_id(),
        job=job,
        schedule_id=schedule_id,
        scheduled_for=slot,
        trigger=Trigger.SCHEDULE,
        status=RunStatus.RUNNING,
        started_at=utcnow(),
        node_id=node_id,
    )


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
        node_id=run.node_id,
    )
