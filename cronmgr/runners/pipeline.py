"""Running pipelines: command steps in process groups, HTTP steps, every attempt reported.

Each command step runs in its own session (so its own process group, led by the step's
process). Whatever way a step ends - exit, timeout, cancellation - the whole group is
stopped the same way: SIGTERM, `kill_grace` seconds, SIGKILL. So a background process a
step leaves behind (`sleep 1000 &`) never outlives it, and never holds the output pipe open.

Conventions a caller relies on:

- `exit_code` is the process's exit status when it exited, None when a signal killed it;
  `signal` is then the signal's number (asyncio's negative return codes are not exposed).
- The environment of a step is the daemon's own, then `CRONMGR_RUN_ID`,
  `CRONMGR_PIPELINE`, `CRONMGR_STEP`, `CRONMGR_SCHEDULED_FOR`, `CRONMGR_WORK_DIR`, then
  the run's extra variables, then the step's `env`: later layers win.
- An output line is logged as one `step_output` event; lines longer than `MAX_LINE_CHARS`
  characters are cut and end with `LINE_CUT_MARKER`; undecodable bytes become U+FFFD.
- Every attempt of every step goes to `on_step_finished(position, result)`, `position`
  being the step's index in the file (also when steps run in parallel) and
  `result.attempt` counting from 1. A step's outcome is its last attempt's.
- A failed command attempt is retried, timeouts included (a step that hung once may well
  pass the next time, and `retries = 0` says otherwise); a command that cannot even start
  (missing program or working directory) is not, as the next attempt would fail the same.
- A run's work directory is `<work_root>/<run_id>/` and outlives the run: retention
  removes it with `purge_work_dirs`. Without a `work_root` the run gets a temporary
  directory that is removed when it ends, as nothing else would know to remove it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import signal
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import structlog
from structlog.typing import FilteringBoundLogger

from cronmgr.core.errors import CronmgrError
from cronmgr.core.models import ErrorType, RunStatus, StepResult, Target, utcnow
from cronmgr.core.pipelines.pipeline import Pipeline
from cronmgr.core.pipelines.steps import Step, StepKind
from cronmgr.core.retry import backoff_delay
from cronmgr.observability.logs import bound_fields
from cronmgr.runners.http.runner import HttpRunner, RequestContext
from cronmgr.runners.step_reports import elapsed_ms, report

MAX_LINE_CHARS = 8192
LINE_CUT_MARKER = " …[cut: line was {size} bytes]"
# Enough bytes for MAX_LINE_CHARS characters of any UTF-8 text; the rest of a line is
# counted, never kept, so one endless line costs no more memory than a short one.
_MAX_LINE_BYTES = MAX_LINE_CHARS * 4
_CHUNK_BYTES = 64 * 1024
# Once the step's group is gone the pipes reach EOF at once, unless a process that left
# the group (setsid) still holds them: it gets this long, then the pipes are closed.
_DRAIN_SECONDS = 2.0
# After SIGKILL a process is gone as soon as the kernel has torn it down.
_REAP_SECONDS = 2.0
_POLL_FIRST, _POLL_MAX = 0.01, 0.1

StepCallback = Callable[[StepResult], None]
PipelineCallback = Callable[[int, StepResult], Awaitable[None] | None]
SpawnCallback = Callable[[int, float | None], Awaitable[None] | None]
"""Told (pgid, the leader's create time or None) when a command step's process started."""
TargetResolver = Callable[[str], Awaitable[Target]]


@dataclass(frozen=True, slots=True)
class StepContext:
    """The run a step belongs to, exported to it as `CRONMGR_*` variables.

    `work_root` is where `run_pipeline` creates the run's work directory; `work_dir` is
    that directory, set by `run_pipeline` for the steps it runs.
    """

    run_id: str
    pipeline: str
    scheduled_for: datetime
    extra_env: Mapping[str, str] = field(default_factory=dict)
    schedule_id: str | None = None
    work_root: Path | None = None
    work_dir: Path | None = None


def step_environment(
    step: Step, context: StepContext, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment `step` runs with: `base` (default: ours), context, extras, step env."""
    env = dict(os.environ if base is None else base)
    env["CRONMGR_RUN_ID"] = context.run_id
    env["CRONMGR_PIPELINE"] = context.pipeline
    env["CRONMGR_STEP"] = step.name
    env["CRONMGR_SCHEDULED_FOR"] = context.scheduled_for.isoformat()
    if context.work_dir is not None:
        env["CRONMGR_WORK_DIR"] = str(context.work_dir)
    env.update(context.extra_env)
    env.update(step.env)
    return env


async def run_step(
    step: Step,
    *,
    context: StepContext,
    kill_grace: float = 5.0,
    keep_lines: int = 50,
    on_finished: StepCallback | None = None,
    on_spawned: SpawnCallback | None = None,
) -> StepResult:
    """Run one attempt of a command step; on cancellation stop it, report it, re-raise.

    `on_finished` gets the result in every case, including the `cancelled` result of an
    interrupted step just before CancelledError propagates. `on_spawned` (plain or
    async) is told the step's process group once its process started, and is awaited
    before the step's output is read; an exception from it is logged, never the step's.
    """
    if step.kind is not StepKind.COMMAND:
        raise ValueError(f"run_step runs command steps; {step.name!r} is a {step.kind} step")
    log = structlog.get_logger().bind(run_id=context.run_id, step=step.name)
    with bound_fields(run_id=context.run_id, step=step.name):
        execution = _Execution(step, context, log, kill_grace, keep_lines)
        execution.on_spawned = on_spawned
        try:
            result = await execution.run()
        except asyncio.CancelledError:
            _report(execution.cancelled(), log, on_finished)
            raise
        _report(result, log, on_finished)
        return result


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
        async with _work_dir(context) as work_dir:
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


# --- work directories ------------------------------------------------------------------------


def run_work_dir(work_root: Path, run_id: str) -> Path:
    """The work directory of run `run_id` under `work_root`."""
    if run_id in ("", ".", "..") or "/" in run_id or "\0" in run_id:
        raise ValueError(f"run id {run_id!r} cannot name a directory")
    return work_root / run_id


def purge_work_dirs(work_root: Path, older_than: datetime, keep: Collection[str] = ()) -> int:
    """Remove the run directories under `work_root` last changed before `older_than`.

    Directories named in `keep` (the ids of runs still going) stay. Blocking: call it in
    a thread. Returns how many were removed.
    """
    if not work_root.is_dir():
        return 0
    limit = older_than.timestamp()
    removed = 0
    for path in work_root.iterdir():
        if path.name in keep or not path.is_dir() or path.is_symlink():
            continue
        if path.stat().st_mtime < limit:
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


@contextlib.asynccontextmanager
async def _work_dir(context: StepContext) -> AsyncIterator[Path]:
    if context.work_root is not None:
        path = run_work_dir(context.work_root, context.run_id)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        yield path  # kept: the run's files are worth a look until retention takes them
        return
    path = Path(tempfile.mkdtemp(prefix="cronmgr-run-"))
    try:
        yield path
    finally:
        await asyncio.to_thread(shutil.rmtree, path, ignore_errors=True)


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


def _report(
    result: StepResult, log: FilteringBoundLogger, on_finished: StepCallback | None
) -> None:
    log.info(
        "step_finished",
        status=result.status.value,
        exit_code=result.exit_code,
        signal=result.signal,
        duration_ms=result.duration_ms,
        error_type=result.error_type.value if result.error_type else None,
        error=result.error,
    )
    if on_finished is not None:
        on_finished(result)


# --- one step ------------------------------------------------------------------------------


class _Execution:
    """The state of one step while it runs: its process, its output, its clock."""

    def __init__(
        self,
        step: Step,
        context: StepContext,
        log: FilteringBoundLogger,
        kill_grace: float,
        keep_lines: int,
    ) -> None:
        self.step = step
        self.context = context
        self.log = log
        self.kill_grace = kill_grace
        self.output = _Output(log, keep_lines)
        self.proc: asyncio.subprocess.Process | None = None
        self.on_spawned: SpawnCallback | None = None
        self.leader_created: float | None = None
        self.started_at = utcnow()
        self._started = time.monotonic()

    async def run(self) -> StepResult:
        """Spawn, supervise and wind down the step; its result unless cancelled."""
        try:
            try:
                proc = await self._spawn()
            except (OSError, ValueError) as exc:
                return self._result(
                    RunStatus.FAILED, ErrorType.UNKNOWN, _spawn_error(exc, self.step)
                )
            timed_out = await self._supervise(proc)
            return self._outcome(proc, timed_out)
        finally:
            self.output.close()

    def cancelled(self) -> StepResult:
        """The result of a step interrupted by cancellation (its group already stopped)."""
        return self._result(
            RunStatus.CANCELLED, ErrorType.CANCELLED, "cancelled while running; processes stopped"
        )

    async def _spawn(self) -> asyncio.subprocess.Process:
        stdout, stderr = self.output.child_ends()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.step.exec_args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                cwd=self.step.cwd,
                env=step_environment(self.step, self.context),
                start_new_session=True,
            )
        finally:
            self.output.close_child_ends()  # the child has its own copies now
        # At once, before the loop runs anything else: a leader that exits at once is
        # reaped by the loop, and its create time is then gone with it.
        self.leader_created = _create_time(self.proc.pid)
        self.log.info(
            "step_started", pid=self.proc.pid, cwd=str(self.step.cwd), **_command(self.step)
        )
        return self.proc

    async def _supervise(self, proc: asyncio.subprocess.Process) -> bool:
        """Wait for the exit or the timeout, then stop the group; whether it timed out."""
        wound_down = False
        try:
            try:
                await self._announce(proc)
                await self.output.start()
                timed_out = await _wait_exit(proc, self.step.timeout_seconds)
            except asyncio.CancelledError:
                await self._wind_down(proc)
                wound_down = True
                raise
            await self._wind_down(proc, timed_out=timed_out)
            wound_down = True
            return timed_out
        finally:
            if not wound_down:
                # Interrupted while winding down (a second cancellation): no grace left.
                _signal_group(proc.pid, signal.SIGKILL)

    async def _announce(self, proc: asyncio.subprocess.Process) -> None:
        try:
            await report(self.on_spawned, proc.pid, self.leader_created)
        except Exception as exc:  # the step runs all the same; only its record is missing
            self.log.error("step_group_not_recorded", pgid=proc.pid, error=repr(exc))

    async def _wind_down(
        self, proc: asyncio.subprocess.Process, *, timed_out: bool = False
    ) -> None:
        exited = proc.returncode is not None
        if timed_out:
            self.log.warning("step_timed_out", timeout_seconds=self.step.timeout_seconds)
        if await stop_process_group(proc.pid, self.kill_grace) and exited:
            self.log.warning("step_left_processes", pgid=proc.pid, action="stopped")
        await _wait_reaped(proc)
        if not await self.output.drain(_DRAIN_SECONDS):
            self.log.warning("step_output_abandoned", reason="a process outside the group holds it")

    def _outcome(self, proc: asyncio.subprocess.Process, timed_out: bool) -> StepResult:
        code = proc.returncode
        if timed_out:
            limit = f"{self.step.timeout_seconds:g}"
            return self._result(RunStatus.FAILED, ErrorType.TIMEOUT, f"timed out after {limit} s")
        if code == 0:
            return self._result(RunStatus.SUCCEEDED)
        if code is None:
            return self._result(RunStatus.FAILED, ErrorType.UNKNOWN, "did not terminate")
        if code < 0:
            return self._result(
                RunStatus.FAILED, ErrorType.EXIT_CODE, f"killed by {_signal_name(-code)}"
            )
        return self._result(RunStatus.FAILED, ErrorType.EXIT_CODE, f"exited with code {code}")

    def _result(
        self, status: RunStatus, error_type: ErrorType | None = None, error: str | None = None
    ) -> StepResult:
        code = self.proc.returncode if self.proc is not None else None
        return StepResult(
            step=self.step.name,
            status=status,
            started_at=self.started_at,
            duration_ms=elapsed_ms(self._started),
            exit_code=code if code is not None and code >= 0 else None,
            signal=-code if code is not None and code < 0 else None,
            error_type=error_type,
            error=error,
            output_tail=tuple(self.output.tail),
        )


def _command(step: Step) -> dict[str, Any]:
    return {"argv": list(step.argv)} if step.argv is not None else {"shell": step.shell}


def _spawn_error(exc: OSError | ValueError, step: Step) -> str:
    if not isinstance(exc, OSError):
        return f"cannot start: {exc}"
    reason = exc.strerror or str(exc)
    # subprocess names the working directory when chdir failed, the program otherwise.
    if exc.filename is not None and os.fspath(exc.filename) == os.fspath(step.cwd):
        return f"cannot use working directory {step.cwd}: {reason}"
    return f"cannot run {step.exec_args[0]!r}: {reason}"


def _signal_name(number: int) -> str:
    try:
        return f"signal {number} ({signal.Signals(number).name})"
    except ValueError:
        return f"signal {number}"


async def _wait_exit(proc: asyncio.subprocess.Process, seconds: float) -> bool:
    try:
        await asyncio.wait_for(proc.wait(), seconds)
    except TimeoutError:
        return True
    return False


async def _wait_reaped(proc: asyncio.subprocess.Process) -> None:
    # Bounded: a process stuck in the kernel (state D) must not hang the daemon.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), _REAP_SECONDS)


# --- process groups ------------------------------------------------------------------------


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


async def stop_process_group(pgid: int, grace: float) -> bool:
    """SIGTERM every process of group `pgid`, SIGKILL what is left after `grace` seconds.

    Returns whether there was any live process to stop.
    """
    if not group_alive(pgid):
        return False
    _signal_group(pgid, signal.SIGTERM)
    _signal_group(pgid, signal.SIGCONT)  # a stopped process sees SIGTERM only once continued
    if not await _wait_group_gone(pgid, grace):
        _signal_group(pgid, signal.SIGKILL)
        await _wait_group_gone(pgid, _REAP_SECONDS)
    return True


def group_alive(pgid: int) -> bool:
    """Whether process group `pgid` still has a live (not zombie) member of ours."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # kill() also reaches zombies: dead members nobody has reaped yet (orphans wait for
    # init, which in some containers never reaps). Only live members count.
    return any(_live_member(proc, pgid) for proc in psutil.process_iter())


def _live_member(proc: psutil.Process, pgid: int) -> bool:
    try:
        return os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE
    except (OSError, psutil.Error):
        return False


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _wait_group_gone(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    delay = _POLL_FIRST
    while group_alive(pgid):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, _POLL_MAX)
    return True


# --- output --------------------------------------------------------------------------------


class _Output:
    """A step's stdout and stderr: our own pipes, read line by line into the log and a tail.

    Own pipes rather than asyncio's PIPE so that they can be closed on our terms, whatever
    still holds their other end.
    """

    def __init__(self, log: FilteringBoundLogger, keep_lines: int) -> None:
        self.tail: deque[str] = deque(maxlen=keep_lines)
        self._log = log
        self._read_ends: dict[str, int] = {}
        self._write_ends: dict[str, int] = {}
        self._transports: list[asyncio.BaseTransport] = []
        self._tasks: list[asyncio.Task[None]] = []
        for stream in ("stdout", "stderr"):
            self._read_ends[stream], self._write_ends[stream] = os.pipe()

    def child_ends(self) -> tuple[int, int]:
        """The write ends to hand to the child as stdout and stderr."""
        return self._write_ends["stdout"], self._write_ends["stderr"]

    def close_child_ends(self) -> None:
        """Close our copies of the write ends, so EOF comes when the child's copies close."""
        for fd in self._write_ends.values():
            os.close(fd)
        self._write_ends.clear()

    async def start(self) -> None:
        """Start reading both pipes."""
        loop = asyncio.get_running_loop()
        for stream in ("stdout", "stderr"):
            reader = asyncio.StreamReader(limit=_CHUNK_BYTES)
            pipe = os.fdopen(self._read_ends.pop(stream), "rb", buffering=0)
            try:
                transport, _ = await loop.connect_read_pipe(
                    functools.partial(asyncio.StreamReaderProtocol, reader), pipe
                )
            except BaseException:
                pipe.close()
                raise
            self._transports.append(transport)
            self._tasks.append(asyncio.create_task(self._pump(reader, stream)))

    async def drain(self, seconds: float) -> bool:
        """Wait for both pipes to reach EOF; False if they did not within `seconds`."""
        if not self._tasks:
            return True
        _, pending = await asyncio.wait(self._tasks, timeout=seconds)
        if pending:
            # Stop reading: the pumps finish the bounded amount they already hold.
            for transport in self._transports:
                transport.close()
            await asyncio.wait(pending)
        for task in self._tasks:
            if not task.cancelled() and task.exception() is not None:
                self._log.error("step_output_failed", error=repr(task.exception()))
        return not pending

    def close(self) -> None:
        """Stop reading and release every descriptor; safe to call more than once."""
        for task in self._tasks:
            task.cancel()
        for transport in self._transports:
            transport.close()
        for fd in (*self._read_ends.values(), *self._write_ends.values()):
            os.close(fd)
        self._read_ends.clear()
        self._write_ends.clear()
        self._transports.clear()

    async def _pump(self, reader: asyncio.StreamReader, stream: str) -> None:
        # read(n) returns whatever is there, so no line length can overrun a limit.
        lines = LineSplitter()
        while chunk := await reader.read(_CHUNK_BYTES):
            for line in lines.feed(chunk):
                self._emit(stream, line)
        rest = lines.close()
        if rest is not None:
            self._emit(stream, rest)

    def _emit(self, stream: str, line: str) -> None:
        self.tail.append(f"{stream}: {line}")
        self._log.info("step_output", stream=stream, line=line)


class LineSplitter:
    """Cuts a byte stream into text lines, holding at most `max_bytes` of any one line."""

    def __init__(self, max_bytes: int = _MAX_LINE_BYTES) -> None:
        self._max = max_bytes
        self._head = bytearray()
        self._size = 0

    def feed(self, chunk: bytes) -> list[str]:
        """The lines `chunk` completes; the unfinished rest waits for the next chunk."""
        *complete, partial = chunk.split(b"\n")
        lines = []
        for piece in complete:
            if self._size:
                self._take(piece)
                lines.append(self._finish())
            else:
                lines.append(decode_line(piece[: self._max], len(piece)))
        self._take(partial)
        return lines

    def close(self) -> str | None:
        """The last line if the stream did not end with a newline."""
        return self._finish() if self._size else None

    def _take(self, piece: bytes) -> None:
        room = self._max - len(self._head)
        if room > 0:
            self._head += piece[:room]
        self._size += len(piece)

    def _finish(self) -> str:
        line = decode_line(bytes(self._head), self._size)
        self._head.clear()
        self._size = 0
        return line


def decode_line(raw: bytes, size: int) -> str:
    """Text of a line whose first bytes are `raw` out of `size`; cut, with a marker, if long."""
    cut = size > len(raw)
    if not cut:
        raw = raw.removesuffix(b"\r")
    text = raw.decode("utf-8", errors="replace")
    if cut or len(text) > MAX_LINE_CHARS:
        return text[:MAX_LINE_CHARS] + LINE_CUT_MARKER.format(size=size)
    return text
