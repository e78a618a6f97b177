"""The engine's schedule table: an entry per schedule, the timer heap, what status reads.

The table holds every schedule the engine knows with its planned firing in a heap (items
of edited or deleted schedules are left behind, skipped when due, and swept once they
pile up), the claims held ahead (`claimer.py`) and the side tasks that record skips and
releases. It makes the changes of standing that need no timer: a run's result into the
schedule's counters, a schedule completed, set aside with status `error`, or removed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import structlog

from cronmgr.core.models import RunStatus, Schedule, ScheduleStatus
from cronmgr.core.supervision import report_death
from cronmgr.engine.bookkeeping import Bookkeeping
from cronmgr.engine.claimer import Claimer
from cronmgr.engine.entries import NO_SLOTS, Entry, HeapItem, Jobs, from_ts, smallest_first
from cronmgr.store.records import Progress

log = structlog.get_logger("cronmgr.scheduler")

STALE_SLACK = 1024
"""Heap items of edited or deleted schedules tolerated beyond one per schedule: past it,
a heap is rebuilt without them (they are skipped when due, but wait until then)."""


class ScheduleTable(Bookkeeping):
    """The engine's schedules, their planned firings and claims, and their standing."""

    def __init__(
        self,
        jobs: Jobs,
        save_progress: Callable[[list[Progress]], Awaitable[None]],
        *,
        clock: Callable[[], float],
        publish: Callable[[str, Mapping[str, Any]], None] | None,
    ) -> None:
        super().__init__(save_progress, publish)
        self._jobs = jobs
        self._clock = clock
        self._entries: dict[str, Entry] = {}
        self._heap: list[HeapItem] = []
        self._side_tasks: set[asyncio.Future[None]] = set()
        self._claimer = Claimer(jobs, self._entries, clock, self._spawn)
        # Schedules that had slots queued (overlap queue); `queued_slots` prunes the rest,
        # so the status counts them without walking every entry.
        self._queueing: set[str] = set()

    # --- status ----------------------------------------------------------------------

    def schedule_count(self) -> int:
        """How many schedules the engine holds."""
        return len(self._entries)

    def queued_slots(self) -> int:
        """Slots of `overlap_policy = queue` schedules waiting behind a running one."""
        waiting = 0
        for schedule_id in list(self._queueing):
            entry = self._entries.get(schedule_id)
            if entry is None or not entry.queued:
                self._queueing.discard(schedule_id)  # emptied or removed since
            else:
                waiting += len(entry.queued)
        return waiting

    def next_runs(self, count: int = 5) -> list[dict[str, str]]:
        """The soonest upcoming firings, for status."""
        found = []
        for fire_at, _, schedule_id, version in smallest_first(self._heap):
            entry = self._entries.get(schedule_id)
            if entry is None or entry.version != version:
                continue  # a stale heap item: the schedule was edited or removed since
            found.append(
                {
                    "schedule_id": schedule_id,
                    "job": entry.schedule.job,
                    "at": from_ts(fire_at).isoformat(),
                }
            )
            if len(found) == count:
                break
        return found

    def active_runs(self) -> int:
        """Runs executing now."""
        return sum(len(e.running) for e in self._entries.values())

    def running_tasks(self) -> list[asyncio.Task[RunStatus | None]]:
        """Every run task still executing."""
        return [t for e in self._entries.values() for t in e.running.values()]

    # --- entries ---------------------------------------------------------------------

    def _is_current(self, item: HeapItem) -> bool:
        entry = self._entries.get(item[2])
        return entry is not None and entry.version == item[3]

    def _drop_stale_items(self) -> None:
        # Each edit leaves its schedule's old items in both heaps, to be skipped when
        # their time comes; a daily schedule edited a thousand times would hold a thousand
        # until tomorrow. Once stale items are most of a heap, it is rebuilt without them.
        limit = 2 * len(self._entries) + STALE_SLACK
        if len(self._heap) > limit:
            self._heap = [item for item in self._heap if self._is_current(item)]
            heapq.heapify(self._heap)
        self._claimer.drop_stale_items(limit, self._is_current)

    def _remove(self, schedule_id: str) -> None:
        entry = self._entries.pop(schedule_id, None)
        self._claimer.release(schedule_id)
        if entry is not None:
            entry.queued.clear()
            entry.version += 1

    def _fault(self, schedule: Schedule, reason: str, exc: BaseException) -> None:
        """Set `schedule` aside with status `error` and why: it alone stops firing (its
        runs in flight finish), until a resume or an edit brings it back."""
        old = self._entries.get(schedule.id)
        failed = dataclasses.replace(schedule, status=ScheduleStatus.ERROR, status_reason=reason)
        entry = Entry(failed, NO_SLOTS, saved_next=schedule.next_run_at)
        if old is not None:
            entry.running, entry.version = old.running, old.version + 1
            old.queued.clear()
        self._entries[schedule.id] = entry
        self._claimer.release(schedule.id)
        self._progress(entry, status=ScheduleStatus.ERROR, reason=reason, next_run_at=None)
        log.error("schedule_error", schedule_id=schedule.id, reason=reason, exc_info=exc)

    def _complete(self, entry: Entry, why: str) -> None:
        entry.slot = None
        self._claimer.release(entry.schedule.id)
        if entry.schedule.status is ScheduleStatus.COMPLETED:
            return
        entry.schedule = dataclasses.replace(
            entry.schedule, status=ScheduleStatus.COMPLETED, status_reason=why
        )
        self._progress(entry, status=ScheduleStatus.COMPLETED, reason=why, next_run_at=None)
        log.info("schedule_completed", schedule_id=entry.schedule.id, reason=why)

    def _account(self, entry: Entry, slot: datetime, status: RunStatus) -> None:
        schedule = entry.schedule
        failures = schedule.consecutive_failures
        if status is RunStatus.SUCCEEDED:
            failures = 0
        elif status is RunStatus.FAILED:
            failures += 1
        # In place, on the engine's own copy (read from the store for this engine, and
        # only ever read elsewhere): a copy of all 31 fields per run was 3 % of its CPU.
        schedule.run_count += 1
        schedule.consecutive_failures = failures
        if schedule.last_run_at is None or slot > schedule.last_run_at:
            schedule.last_run_at = slot
        if failures == 0:
            schedule.circuit_open_until = None
        self._apply_failure_policy(entry, status)
        self._progress(entry, next_run_at=entry.slot)
        if schedule.max_runs is not None and entry.schedule.run_count >= schedule.max_runs:
            entry.version += 1
            self._complete(entry, f"max_runs ({schedule.max_runs}) reached")

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)
        task.add_done_callback(report_death)  # a skip or release that failed says so
