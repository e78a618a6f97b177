"""Long-lived tasks that outlive their own faults.

A daemon's refresher, heartbeat or notifier worker runs for the life of the process; an
exception that escapes one of them would end it without a word, and the process would go
on looking healthy. Each such task is written as one *step* (wait for work, do it) that
`supervised()` runs over and over: a step that raises is logged (`task_failed`, with the
task's name and what it concerns) and the loop goes on after a short pause, so a fault
that stays can neither spin the CPU nor flood the log. `spawn()` starts such a task with
a done-callback, so that even a task that dies anyway (a bug in this very loop) says so.

Imports nothing of cronmgr: anything may use it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn

import structlog

log = structlog.get_logger("cronmgr.supervision")

PAUSE_FIRST_SECONDS = 0.5
"""The pause after a step failed; it doubles while the steps keep failing..."""
PAUSE_MAX_SECONDS = 5.0
"""...up to this, so a task whose fault goes away is back within seconds."""
LOG_EVERY_SECONDS = 60.0
"""At most one `task_failed` line per task this often; the ones held back are counted."""


class Faults:
    """The failures of one task: logged at most once per LOG_EVERY_SECONDS, with the
    pause to take before trying again."""

    def __init__(
        self,
        name: str,
        /,
        *,
        log_every: float = LOG_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        **context: Any,
    ) -> None:
        self.name = name
        self.context = context
        self.pause = PAUSE_FIRST_SECONDS
        self.failing = False
        self._log_every = log_every
        self._clock = clock
        self._logged_at: float | None = None
        self._held = 0  # failures not logged since the last line

    def failed(self, exc: BaseException, **context: Any) -> float:
        """Note a failure (logged unless one was lately); the pause to take now."""
        now, pause = self._clock(), self.pause
        self.failing = True
        if self._logged_at is None or now - self._logged_at >= self._log_every:
            log.error(
                "task_failed",
                task=self.name,
                error=describe(exc),
                failures_not_logged=self._held,
                retry_in_seconds=pause,
                exc_info=exc,
                **self.context,
                **context,
            )
            self._logged_at, self._held = now, 0
        else:
            self._held += 1
        self.pause = min(pause * 2, PAUSE_MAX_SECONDS)
        return pause

    def succeeded(self) -> None:
        """Note a step that went through: after failures, say the task is well again."""
        if self.failing:
            log.info("task_recovered", task=self.name, **self.context)
        self.failing, self.pause = False, PAUSE_FIRST_SECONDS


async def supervised(
    name: str, step: Callable[[], Awaitable[object]], /, **context: Any
) -> NoReturn:
    """Run `step()` over and over until cancelled; a step that raises is logged (see
    `Faults`) and, after a pause, the next one runs."""
    faults = Faults(name, **context)
    while True:
        try:
            await step()
        except Exception as exc:
            await asyncio.sleep(faults.failed(exc))
        else:
            faults.succeeded()


def spawn(name: str, coroutine: Coroutine[Any, Any, object]) -> asyncio.Task[Any]:
    """`coroutine` as a task named `name` whose death, should it come, is logged."""
    task = asyncio.create_task(coroutine, name=name)
    task.add_done_callback(report_death)
    return task


def report_death(task: asyncio.Future[Any]) -> None:
    """A done-callback: log a task that ended with an exception (`task_died`)."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        name = task.get_name() if isinstance(task, asyncio.Task) else repr(task)
        log.critical("task_died", task=name, error=describe(exc), exc_info=exc)


def describe(exc: BaseException) -> str:
    """An exception in one line: its type, its message and what its notes add."""
    text = " ".join(str(exc).split())
    kind = type(exc).__name__
    notes = "; ".join(getattr(exc, "__notes__", ()))
    said = f"{kind}: {text}" if text else kind
    return f"{said} ({notes})" if notes else said
