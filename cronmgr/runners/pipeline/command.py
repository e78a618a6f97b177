"""One attempt of a command step: started in a session of its own, supervised, wound down.

`run_step` spawns the step's process as the leader of a new process group, reads its
output, waits for its exit or its timeout, then stops whatever is left of the group and
turns the way it ended into the step's result (exit code or signal, error class,
message); a step interrupted by cancellation is reported `cancelled`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from typing import Any

import structlog
from structlog.typing import FilteringBoundLogger

from cronmgr.core.models import ErrorType, RunStatus, StepResult, utcnow
from cronmgr.core.pipelines.steps import Step, StepKind
from cronmgr.observability.logs import bound_fields
from cronmgr.runners.pipeline.context import (
    SpawnCallback,
    StepCallback,
    StepContext,
    step_environment,
)
from cronmgr.runners.pipeline.groups import (
    REAP_SECONDS,
    create_time,
    signal_group,
    stop_process_group,
)
from cronmgr.runners.pipeline.output import Output
from cronmgr.runners.step_reports import elapsed_ms, report

# Once the step's group is gone the pipes reach EOF at once, unless a process that left
# the group (setsid) still holds them: it gets this long, then the pipes are closed.
_DRAIN_SECONDS = 2.0


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
        self.output = Output(log, keep_lines)
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
        self.leader_created = create_time(self.proc.pid)
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
                signal_group(proc.pid, signal.SIGKILL)

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
        await asyncio.wait_for(proc.wait(), REAP_SECONDS)
