"""What one firing does: claim the slot as a run, execute it, record every result.

The engine (`scheduler.py`) decides *when*; this module decides nothing about time. A run
is claimed by inserting it with its (schedule, scheduled_for) slot: the store's unique
index makes the claim atomic, so a restarted daemon, or a second one, never runs a slot
twice. Whatever happens next, the run ends recorded as succeeded, failed or cancelled;
never left running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import structlog

from cronmgr.config import Settings
from cronmgr.errors import CronmgrError
from cronmgr.http_runner import HttpRunner, RequestContext
from cronmgr.models import Run, RunStatus, Schedule, StepResult, Target, Trigger, new_id, utcnow
from cronmgr.pipelines import Pipeline, PipelineSet
from cronmgr.runner import StepContext, run_pipeline, run_status
from cronmgr.store import Store

log = structlog.get_logger("cronmgr.jobs")

Recorder = Callable[[int, StepResult], Awaitable[None]]


class JobRunner:
    """Runs schedules' jobs (HTTP targets and pipelines) and records them in the store."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        http: HttpRunner,
        pipelines: Callable[[], PipelineSet],
    ) -> None:
        self.settings = settings
        self.store = store
        self.http = http
        self._pipelines = pipelines
        self._active: set[str] = set()
        # Targets by id, read once: a target edit re-revisions its schedules, and the
        # daemon forgets the targets of changed schedules when it applies them.
        self._targets: dict[str, Target] = {}

    def forget_targets(self, target_ids: set[str]) -> None:
        """Drop cached targets so their next run reads the current definition."""
        for target_id in target_ids:
            self._targets.pop(target_id, None)

    def active_run_ids(self) -> list[str]:
        """Ids of runs executing now."""
        return sorted(self._active)

    async def run(self, schedule: Schedule, slot: datetime) -> RunStatus | None:
        """Claim `slot` of `schedule` and run it; None when the slot was taken already."""
        run = _new_run(schedule.job, slot, Trigger.SCHEDULE, schedule.id)
        if not await self.store.insert_run(run):
            log.warning("run_duplicate_skipped", schedule_id=schedule.id, slot=slot.isoformat())
            return None
        with structlog.contextvars.bound_contextvars(run_id=run.id, schedule_id=schedule.id):
            return await self._execute(run, lambda: self._work(schedule, run))

    async def run_pipeline_now(self, pipeline: Pipeline, trigger: Trigger) -> Run:
        """Run a pipeline outside any schedule (manual or API); returns the finished run."""
        run = _new_run(f"pipeline:{pipeline.name}", utcnow(), trigger, None)
        await self.store.insert_run(run)
        with structlog.contextvars.bound_contextvars(run_id=run.id):
            status = await self._execute(run, lambda: self._pipeline(pipeline, run))
        return await self.store.get_run(run.id) if status else run

    async def skip(self, schedule: Schedule, slot: datetime, reason: str) -> None:
        """Record a slot that will not run (overlap, misfire, open circuit)."""
        now = utcnow()
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

    async def _execute(
        self, run: Run, work: Callable[[], Awaitable[tuple[RunStatus, str | None]]]
    ) -> RunStatus:
        self._active.add(run.id)
        log.info("run_started", job=run.job, scheduled_for=run.scheduled_for.isoformat())
        status, error = RunStatus.FAILED, None
        try:
            status, error = await work()
        except asyncio.CancelledError as exc:
            status, error = RunStatus.CANCELLED, f"cancelled: {_cancel_reason(exc)}"
            raise
        except CronmgrError as exc:
            error = exc.detail
        except Exception as exc:  # a bug in one job must not take the daemon down
            error = f"{type(exc).__name__}: {exc}"
            log.exception("run_crashed")
        finally:
            self._active.discard(run.id)
            await self._finish(run, status, error)
        return status

    async def _finish(self, run: Run, status: RunStatus, error: str | None) -> None:
        # Shielded: a cancelled run must still be recorded as cancelled, never left running.
        finished = utcnow()
        await asyncio.shield(
            self.store.update_run(run.id, status, finished_at=finished, error=error)
        )
        assert run.started_at is not None
        duration_ms = int((finished - run.started_at).total_seconds() * 1000)
        log.info("run_finished", status=status.value, error=error, duration_ms=duration_ms)

    async def _work(self, schedule: Schedule, run: Run) -> tuple[RunStatus, str | None]:
        if schedule.target_id is not None:
            return await self._target(await self._target_of(schedule.target_id), run)
        assert schedule.pipeline is not None
        return await self._pipeline(self._pipelines().get(schedule.pipeline), run)

    async def _target_of(self, target_id: str) -> Target:
        target = self._targets.get(target_id)
        if target is None:
            target = self._targets[target_id] = await self.store.get_target(target_id)
        return target

    async def _target(self, target: Target, run: Run) -> tuple[RunStatus, str | None]:
        context = RequestContext(
            run_id=run.id, schedule_id=run.schedule_id, scheduled_for=run.scheduled_for
        )
        attempts = await self.http.run_target(
            target, context=context, on_attempt=self._attempt_recorder(run)
        )
        last = attempts[-1]
        if last.status is RunStatus.SUCCEEDED:
            return RunStatus.SUCCEEDED, None
        return last.status, f"{last.error_type}: {last.error}" if last.error_type else last.error

    async def _pipeline(self, pipeline: Pipeline, run: Run) -> tuple[RunStatus, str | None]:
        context = StepContext(
            run_id=run.id,
            pipeline=pipeline.name,
            scheduled_for=run.scheduled_for,
            extra_env={"CRONMGR_STATE_DIR": str(self.settings.state_path)},
        )
        results = await run_pipeline(
            pipeline,
            context=context,
            kill_grace=self.settings.step_kill_grace_seconds,
            on_step_finished=self._step_recorder(run),
        )
        return run_status(pipeline, results), first_error(results)

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


def _cancel_reason(exc: asyncio.CancelledError) -> str:
    return str(exc.args[0]) if exc.args and exc.args[0] else "the daemon is stopping"


def first_error(results: Sequence[StepResult]) -> str | None:
    """The run's error summary: the first failed step and why."""
    for result in results:
        if result.status is RunStatus.FAILED:
            return f"step {result.step!r} failed: {result.error}"
    return None
