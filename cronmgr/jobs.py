"""What one firing does: claim the slot as a run, execute the steps, record every result."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import datetime

import structlog

from cronmgr.config import Settings
from cronmgr.models import Run, RunStatus, StepResult, Trigger, new_id, utcnow
from cronmgr.pipelines import Pipeline
from cronmgr.runner import StepContext, run_pipeline, run_status
from cronmgr.store import Store

log = structlog.get_logger("cronmgr.jobs")


@dataclasses.dataclass
class PipelineJob:
    """A pipeline bound to a schedule id and a store: runs it and records the runs."""

    settings: Settings
    store: Store
    pipeline: Pipeline
    schedule_id: str | None = None
    _active: set[str] = dataclasses.field(default_factory=set)

    @property
    def name(self) -> str:
        """The job's name as runs record it."""
        return self.pipeline.name

    def with_pipeline(self, pipeline: Pipeline) -> PipelineJob:
        """The same job with a reloaded definition (runs in flight keep the old one)."""
        return dataclasses.replace(self, pipeline=pipeline, _active=self._active)

    def active_run_ids(self) -> list[str]:
        """Ids of runs executing now."""
        return sorted(self._active)

    async def run(self, slot: datetime, trigger: Trigger = Trigger.SCHEDULE) -> Run | None:
        """Run the pipeline for `slot`; None when another firing already took the slot."""
        run = Run(
            id=new_id(),
            job=self.name,
            schedule_id=self.schedule_id,
            scheduled_for=slot,
            trigger=trigger,
            status=RunStatus.RUNNING,
            started_at=utcnow(),
        )
        if not await self.store.insert_run(run):
            log.warning("run_duplicate_skipped", job=self.name, scheduled_for=slot.isoformat())
            return None
        with structlog.contextvars.bound_contextvars(run_id=run.id, pipeline=self.name):
            return await self._execute(run)

    async def _execute(self, run: Run) -> Run:
        self._active.add(run.id)
        log.info("run_started", scheduled_for=run.scheduled_for.isoformat())
        status, error = RunStatus.FAILED, None
        try:
            results = await run_pipeline(
                self.pipeline,
                context=self._context(run),
                kill_grace=self.settings.step_kill_grace_seconds,
                on_step_finished=self._recorder(run),
            )
            status, error = run_status(self.pipeline, results), first_error(results)
        except asyncio.CancelledError:
            status, error = RunStatus.CANCELLED, "cancelled: the daemon is stopping"
            raise
        except Exception as exc:  # a bug in a step's plumbing must not kill the daemon
            error = f"{type(exc).__name__}: {exc}"
            log.exception("run_crashed")
        finally:
            self._active.discard(run.id)
            await self._finish(run, status, error)
        return dataclasses.replace(run, status=status, error=error)

    async def _finish(self, run: Run, status: RunStatus, error: str | None) -> None:
        # Shielded: a cancelled run must still be recorded as cancelled, never left running.
        finished = utcnow()
        await asyncio.shield(
            self.store.update_run(run.id, status, finished_at=finished, error=error)
        )
        assert run.started_at is not None
        duration_ms = int((finished - run.started_at).total_seconds() * 1000)
        log.info("run_finished", status=status.value, error=error, duration_ms=duration_ms)

    def _context(self, run: Run) -> StepContext:
        return StepContext(
            run_id=run.id,
            pipeline=self.name,
            scheduled_for=run.scheduled_for,
            extra_env={"CRONMGR_STATE_DIR": str(self.settings.state_path)},
        )

    def _recorder(self, run: Run) -> Callable[[int, StepResult], Awaitable[None]]:
        async def record(position: int, result: StepResult) -> None:
            await asyncio.shield(self.store.insert_step_result(run.id, position, result))

        return record

    async def record_skipped(self, slot: datetime, reason: str) -> None:
        """Record a slot that was not run (overlap), so the history shows the gap."""
        now = utcnow()
        run = Run(
            id=new_id(),
            job=self.name,
            schedule_id=self.schedule_id,
            scheduled_for=slot,
            trigger=Trigger.SCHEDULE,
            status=RunStatus.SKIPPED,
            started_at=now,
            finished_at=now,
            error=reason,
        )
        if await self.store.insert_run(run):
            log.info("run_skipped", job=self.name, scheduled_for=slot.isoformat(), reason=reason)


def first_error(results: list[StepResult]) -> str | None:
    """The run's error summary: the first failed step and why."""
    for result in results:
        if result.status is RunStatus.FAILED:
            return f"step {result.step!r} failed: {result.error}"
    return None
