"""A pipeline's run: its steps in file order or by their needs, retries, and its status.

`run_pipeline` runs every step as a task that waits for the steps it needs, skips a step
whose need failed, retries failed command attempts per the step's policy, sends HTTP and
target steps through the HTTP runner, and reports every attempt; `run_status` sums the
steps' outcomes up as the run's status.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import structlog
from structlog.typing import FilteringBoundLogger

from cronmgr.core.errors import CronmgrError
from cronmgr.core.models import ErrorType, RunStatus, StepResult, Target, utcnow
from cronmgr.core.pipelines.pipeline import Pipeline
from cronmgr.core.pipelines.steps import Step
from cronmgr.core.retry import backoff_delay
from cronmgr.observability.logs import bound_fields
from cronmgr.runners.http.request import RequestContext
from cronmgr.runners.http.runner import HttpRunner
from cronmgr.runners.pipeline import work_dirs
from cronmgr.runners.pipeline.command import run_step
from cronmgr.runners.pipeline.context import (
    PipelineCallback,
    SpawnCallback,
    StepContext,
    TargetResolver,
)
from cronmgr.runners.step_reports import elapsed_ms, report


async def run_pipeline(
    pipeline: Pipeline,
    *,
    context: StepContext,
    kill_grace: float = 5.0,
    keep_lines: int = 50,
    on_step_finished: PipelineCallback | None = None,
    http: HttpRunner | None = None,
    resolve_target: TargetResolver | None = None,
    on_step_spawned: SpawnCallback | None = None,
) -> list[StepResult]:
    """Run the pipeline's steps; the outcome of each (its last attempt), in file order.

    Without `needs` the steps run in file order and a failure skips the rest. With
    `needs` a step starts once every step it needs has succeeded (or failed with
    `continue_on_error`), so independent steps run in parallel, and a step whose need
    failed is `skipped`, as are the steps after it. `continue_on_error` never lets a
    failure stop anything.

    HTTP steps are sent through `http`, target steps look their target up by name with
    `resolve_target` (which raises `NotFound` or `LookupError` for an unknown name);
    without them such steps fail. `on_step_finished` (plain or async) gets every attempt;
    `on_step_spawned` the process group of every command attempt (see `run_step`);
    on cancellation running steps are stopped and reported `cancelled`, the ones not
    started `skipped`, before CancelledError propagates.
    """
    log = structlog.get_logger().bind(run_id=context.run_id, pipeline=pipeline.name)
    started = time.monotonic()
    with bound_fields(run_id=context.run_id, pipeline=pipeline.name):
        async with work_dirs.work_dir(context) as work_dir:
            options = _Options(
                kill_grace, keep_lines, on_step_finished, http, resolve_target, on_step_spawned
            )
            run = _PipelineRun(pipeline, replace(context, work_dir=work_dir), log, options)
            await run.run(started)
    return run.results()


def run_status(pipeline: Pipeline, results: Sequence[StepResult]) -> RunStatus:
    """A pipeline run's status from its steps' outcomes (one result per step).

    Failed when a step failed without `continue_on_error`; cancelled when a step was;
    succeeded otherwise (a failure allowed by `continue_on_error` does not count).
    """
    tolerant = {step.name for step in pipeline.steps if step.continue_on_error}
    if any(r.status is RunStatus.FAILED and r.step not in tolerant for r in results):
        return RunStatus.FAILED
    if any(r.status is RunStatus.CANCELLED for r in results):
        return RunStatus.CANCELLED
    return RunStatus.SUCCEEDED


# --- the pipeline ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Options:
    kill_grace: float
    keep_lines: int
    on_step_finished: PipelineCallback | None
    http: HttpRunner | None
    resolve_target: TargetResolver | None
    on_step_spawned: SpawnCallback | None = None


class _PipelineRun:
    """One run of a pipeline: a task per step, each waiting for the steps it needs."""

    def __init__(
        self, pipeline: Pipeline, context: StepContext, log: FilteringBoundLogger, options: _Options
    ) -> None:
        self.pipeline = pipeline
        self.context = context
        self.log = log
        self.options = options
        # The latest attempt of each step that reported one, by position.
        self.latest: dict[int, StepResult] = {}
        self._done = {step.name: asyncio.Event() for step in pipeline.steps}
        # For each step that blocks the steps needing it: the failed step to blame.
        self._blame: dict[str, str] = {}

    def results(self) -> list[StepResult]:
        """The outcome of each step so far, in file order."""
        return [self.latest[position] for position in sorted(self.latest)]

    async def run(self, started: float) -> None:
        """Run every step; log the outcome; on cancellation report what did not run."""
        self.log.info(
            "pipeline_started",
            steps=len(self.pipeline.steps),
            scheduled_for=self.context.scheduled_for.isoformat(),
            parallel=self.pipeline.uses_needs,
            work_dir=str(self.context.work_dir),
        )
        try:
            await self._run_all()
        except asyncio.CancelledError:
            await self._skip_unreported("the run was cancelled")
            _log_pipeline_finished(self.log, RunStatus.CANCELLED, self.results(), started)
            raise
        status = run_status(self.pipeline, self.results())
        _log_pipeline_finished(self.log, status, self.results(), started)

    async def _run_all(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for position, step in enumerate(self.pipeline.steps):
                    group.create_task(self._step(position), name=f"step {step.name}")
        except BaseExceptionGroup as failed:
            # A step that raised (a bug, a failing callback) has stopped the others;
            # the caller sees its exception as a sequential run would have raised it.
            raise failed.exceptions[0] from failed

    async def _step(self, position: int) -> None:
        step = self.pipeline.steps[position]
        try:
            reason = await self._blocked(position)
            if reason is None:
                await self._execute(position, step)
                self._blame_failure(position, step)
            else:
                self.log.info("step_skipped", step=step.name, reason=reason)
                await self._report(position, _skipped(step, reason))
        finally:
            self._done[step.name].set()

    async def _blocked(self, position: int) -> str | None:
        """Wait for the step's needs; why it cannot run, or None when it can."""
        needs = self.pipeline.needs_of(position)
        for need in needs:
            await self._done[need].wait()
        for need in needs:
            blamed = self._blame.get(need)
            if blamed is not None:
                self._blame[self.pipeline.steps[position].name] = blamed
                return self._skip_reason(need, blamed)
        return None

    def _skip_reason(self, need: str, blamed: str) -> str:
        if not self.pipeline.uses_needs:
            return f"step {blamed!r} failed"
        if need == blamed:
            return f"its need {need!r} failed"
        return f"its need {need!r} was skipped (step {blamed!r} failed)"

    def _blame_failure(self, position: int, step: Step) -> None:
        outcome = self.latest[position]
        if outcome.status is not RunStatus.SUCCEEDED and not step.continue_on_error:
            self._blame[step.name] = step.name

    async def _skip_unreported(self, reason: str) -> None:
        for position, step in enumerate(self.pipeline.steps):
            if position not in self.latest:
                await self._report(position, _skipped(step, reason))

    async def _report(self, position: int, result: StepResult) -> None:
        result = replace(result, step=self.pipeline.steps[position].name, position=position)
        self.latest[position] = result
        await report(self.options.on_step_finished, position, result)

    # --- one step, by kind

    async def _execute(self, position: int, step: Step) -> None:
        if step.http is not None:
            await self._send(position, step, step.http)
        elif step.target is not None:
            await self._call_target(position, step, step.target)
        else:
            await self._run_command(position, step)

    async def _run_command(self, position: int, step: Step) -> None:
        policy = step.retry
        for attempt in range(1, policy.max_attempts + 1):
            result = await self._command_attempt(position, step, attempt)
            if attempt == policy.max_attempts or not _worth_retrying(result):
                return
            delay = backoff_delay(policy, attempt)
            self.log.info(
                "step_retry_scheduled",
                step=step.name,
                attempt=attempt,
                delay_seconds=round(delay, 3),
            )
            await asyncio.sleep(delay)

    async def _command_attempt(self, position: int, step: Step, attempt: int) -> StepResult:
        finished: list[StepResult] = []
        try:
            with bound_fields(attempt=attempt):
                await run_step(
                    step,
                    context=self.context,
                    kill_grace=self.options.kill_grace,
                    keep_lines=self.options.keep_lines,
                    on_finished=finished.append,
                    on_spawned=self.options.on_step_spawned,
                )
        finally:
            # Also on cancellation: run_step has reported the interrupted attempt.
            if finished:
                await self._report(position, replace(finished[0], attempt=attempt))
        return self.latest[position]

    async def _send(self, position: int, step: Step, target: Target) -> None:
        http = self.options.http
        if http is None:
            message = "no HTTP runner was given to send the request (http steps need one)"
            await self._report(position, _failed(step, message))
            return

        async def on_attempt(result: StepResult) -> None:
            await self._report(position, result)

        context = RequestContext(
            run_id=self.context.run_id,
            schedule_id=self.context.schedule_id,
            scheduled_for=self.context.scheduled_for,
        )
        with bound_fields(step=step.name):
            await http.run_target(target, context=context, on_attempt=on_attempt)

    async def _call_target(self, position: int, step: Step, name: str) -> None:
        resolve = self.options.resolve_target
        if resolve is None:
            message = f"no way to look up target {name!r} (target steps need a resolver)"
            await self._report(position, _failed(step, message))
            return
        try:
            target = await resolve(name)
        except (CronmgrError, LookupError) as exc:
            await self._report(position, _failed(step, f"target {name!r}: {_reason(exc)}"))
            return
        await self._send(position, step, target)


def _worth_retrying(result: StepResult) -> bool:
    # UNKNOWN is a step that could not start: the same command would not start again.
    return result.status is RunStatus.FAILED and result.error_type is not ErrorType.UNKNOWN


def _skipped(step: Step, reason: str) -> StepResult:
    return StepResult(
        step=step.name,
        status=RunStatus.SKIPPED,
        started_at=utcnow(),
        duration_ms=0,
        error=f"not run: {reason}",
    )


def _failed(step: Step, message: str) -> StepResult:
    return StepResult(
        step=step.name,
        status=RunStatus.FAILED,
        started_at=utcnow(),
        duration_ms=0,
        error_type=ErrorType.UNKNOWN,
        error=message,
    )


def _reason(exc: Exception) -> str:
    if isinstance(exc, CronmgrError):
        return exc.detail
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


def _log_pipeline_finished(
    log: FilteringBoundLogger, status: RunStatus, results: list[StepResult], started: float
) -> None:
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status.value] = counts.get(result.status.value, 0) + 1
    log.info(
        "pipeline_finished",
        status=status.value,
        duration_ms=elapsed_ms(started),
        steps=counts,
    )
