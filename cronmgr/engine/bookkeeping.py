"""The engine's bookkeeping: what it writes back about each schedule, in batches.

Each change to a schedule's counters and standing (run_count, consecutive_failures,
last_run_at, next_run_at, circuit_open_until, completed/disabled/error) becomes a pending
`Progress`, the latest per schedule, and `progress_writer` flushes them together through
`Store.record_progress`; a write the store could not take (a full disk) is kept for the
next, tried again after a pause. The failure policy lives here too: a failed run past the
schedule's threshold disables it (and says so through the notifier) or opens its circuit.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog

from cronmgr.core.models import FailurePolicy, RunStatus, ScheduleStatus, utcnow
from cronmgr.engine.entries import Entry
from cronmgr.store.records import Progress

log = structlog.get_logger("cronmgr.scheduler")

PROGRESS_FLUSH_SECONDS = 0.2
PROGRESS_RETRY_MAX_SECONDS = 5.0
"""Longest pause between tries of bookkeeping the store could not take (a full disk)."""


class Bookkeeping:
    """Pending progress per schedule, its batched writes, and the failure policy."""

    def __init__(
        self,
        save_progress: Callable[[list[Progress]], Awaitable[None]],
        publish: Callable[[str, Mapping[str, Any]], None] | None,
    ) -> None:
        # Notifications (notify.Notifier.publish): it only queues, so calling it costs the
        # timer nothing and a failing webhook can never reach the engine.
        self._publish = publish
        self._save_progress = save_progress
        self._pending_progress: dict[str, Progress] = {}
        self._progress_wake = asyncio.Event()

    def _progress(
        self,
        entry: Entry,
        *,
        next_run_at: datetime | None,
        status: ScheduleStatus | None = None,
        reason: str | None = None,
    ) -> None:
        schedule = entry.schedule
        pending = self._pending_progress.get(schedule.id)
        if status is None and pending is not None and pending.status is not None:
            # An unflushed status change (completed, disabled) must not be lost to a later
            # counter update of the same schedule.
            status, reason = pending.status, pending.status_reason
        entry.saved_next = next_run_at
        self._pending_progress[schedule.id] = Progress(
            schedule_id=schedule.id,
            run_count=schedule.run_count,
            consecutive_failures=schedule.consecutive_failures,
            last_run_at=schedule.last_run_at,
            next_run_at=next_run_at,
            circuit_open_until=schedule.circuit_open_until,
            status=status,
            status_reason=reason,
            revision=schedule.revision,
        )
        self._progress_wake.set()

    async def flush_progress(self) -> None:
        """Write the gathered bookkeeping in one store call. When the write fails, it is
        kept for the next flush (behind anything newer for the same schedule)."""
        if not self._pending_progress:
            return
        batch, self._pending_progress = self._pending_progress, {}
        try:
            await self._save_progress(list(batch.values()))
        except BaseException:
            for schedule_id, progress in batch.items():
                self._pending_progress.setdefault(schedule_id, progress)
            raise

    async def progress_writer(self) -> None:
        """Flush bookkeeping in batches for as long as the engine runs; a failed flush is
        tried again, after a pause that doubles up to PROGRESS_RETRY_MAX_SECONDS."""
        pause = PROGRESS_FLUSH_SECONDS
        while True:
            await self._progress_wake.wait()
            self._progress_wake.clear()
            await asyncio.sleep(pause)
            try:
                await self.flush_progress()
            except Exception as exc:
                if pause == PROGRESS_FLUSH_SECONDS:  # once per outage, not every try
                    log.error("progress_write_failed", error=str(exc))
                pause = min(pause * 2, PROGRESS_RETRY_MAX_SECONDS)
                self._progress_wake.set()
                continue
            if pause != PROGRESS_FLUSH_SECONDS:
                log.info("progress_write_resumed")
                pause = PROGRESS_FLUSH_SECONDS

    def _apply_failure_policy(self, entry: Entry, status: RunStatus) -> None:
        schedule = entry.schedule
        if (
            status is not RunStatus.FAILED
            or schedule.consecutive_failures < schedule.failure_threshold
        ):
            return
        if schedule.failure_policy is FailurePolicy.DISABLE:
            why = f"disabled after {schedule.consecutive_failures} consecutive failed runs"
            entry.schedule = dataclasses.replace(
                schedule, status=ScheduleStatus.DISABLED, status_reason=why
            )
            entry.version += 1
            entry.queued.clear()
            self._progress(entry, status=ScheduleStatus.DISABLED, reason=why, next_run_at=None)
            log.warning("schedule_disabled", schedule_id=schedule.id, reason=why)
            if self._publish is not None:
                self._publish(
                    "schedule_disabled",
                    {
                        "schedule_id": schedule.id,
                        "name": schedule.name,
                        "job": schedule.job,
                        "reason": why,
                        "consecutive_failures": schedule.consecutive_failures,
                    },
                )
        elif schedule.failure_policy is FailurePolicy.CIRCUIT_BREAKER:
            until = utcnow() + timedelta(seconds=schedule.cooldown_seconds)
            entry.schedule = dataclasses.replace(schedule, circuit_open_until=until)
            log.warning("circuit_opened", schedule_id=schedule.id, until=until.isoformat())
