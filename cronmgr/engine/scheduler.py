"""The engine: one timer that sleeps until the earliest due slot, then fires what is due.

Schedules live in a heap keyed by their next fire moment; an alarm (`wake.py`: a timerfd
the event loop watches) wakes the engine exactly then, once, never a polling tick. Firing
only spawns a task: claiming the slot in the store, running the job and recording the
result happen in that task, so the timer never waits on disk or on the network.

Per schedule the engine applies, in order: status (only active schedules fire), the
window (start_at, end_at / duration_seconds, max_runs → `completed`), the circuit breaker,
the misfire policy for slots that are already late, and the overlap policy for slots that
come while a run is still going. Its bookkeeping (run_count, consecutive_failures,
last_run_at, next_run_at, circuit_open_until, completed/disabled) is written back through
`Store.record_progress`, gathered and flushed in batches. The table of schedules is in
`table.py`, the bookkeeping in `bookkeeping.py`, the claims ahead in `claimer.py` and the
window, circuit and misfire decisions in `policies.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog

from cronmgr.core.models import MisfirePolicy, OverlapPolicy, RunStatus, Schedule, ScheduleStatus
from cronmgr.core.triggers.schedules import build_trigger, jitter_offset
from cronmgr.engine.entries import LAST_MOMENT, MAX_TIMER_SECONDS, Entry, Jobs, from_ts, ts
from cronmgr.engine.gaps import sort_gap
from cronmgr.engine.in_flight import drain_tasks
from cronmgr.engine.policies import (
    COUNT_CAP,
    QUEUE_LIMIT,
    circuit_open,
    count_slots,
    missed_reason,
    overlap_reason,
    recent_slots,
    window_over,
)
from cronmgr.engine.schedule_faults import CANT_COMPUTE, check_spans, fault_reason
from cronmgr.engine.table import ScheduleTable
from cronmgr.engine.wake import Alarm
from cronmgr.observability.metrics import EngineMetrics
from cronmgr.store.records import Progress, ScheduleChanges

log = structlog.get_logger("cronmgr.scheduler")

NOT_ACCOUNTED = "its run's result could not be accounted for"
"""The error reason of a schedule whose bookkeeping failed after a run."""


class Scheduler(ScheduleTable):
    """The heap timer and the per-schedule policies."""

    def __init__(
        self,
        jobs: Jobs,
        save_progress: Callable[[list[Progress]], Awaitable[None]],
        *,
        clock: Callable[[], float] = time.time,
        publish: Callable[[str, Mapping[str, Any]], None] | None = None,
        metrics: EngineMetrics | None = None,
    ) -> None:
        super().__init__(jobs, save_progress, clock=clock, publish=publish)
        self.metrics = metrics if metrics is not None else EngineMetrics()
        """Schedule lag and firing rate, fed as slots fire."""
        self._started = clock()  # slots before this fell while no daemon was running
        self._seq = itertools.count()
        # The main timer: made on the first arming, when a loop runs.
        self._alarm: Alarm | None = None
        self._timer_at = float("inf")  # when the alarm is set for; inf: not set
        self._stopped = False
        self._held = False  # fenced off the store: fires nothing until resumed
        # Schedules handed to another node whose claimed slot still fires here first.
        self._leaving: set[str] = set()
        # Schedules this node took over from another, and when, with why slots before then
        # were missed: they are to this node what the time before its start is to a daemon.
        self._taken: dict[str, tuple[float, str]] = {}
        self.revision = 0

    # --- definitions -----------------------------------------------------------------

    def apply(self, changes: ScheduleChanges, *, taken_over: str | None = None) -> None:
        """Take new, edited and deleted schedules into the engine at once; `taken_over`:
        they come from another node (or back after a fence), and why the slots that fell
        before now were missed, when they were."""
        for schedule_id in changes.deleted:
            self._leaving.discard(schedule_id)
            self._taken.pop(schedule_id, None)
            self._remove(schedule_id)
        now = from_ts(self._clock())
        for schedule in changes.changed:
            self._leaving.discard(schedule.id)
            if taken_over is not None:
                self._taken[schedule.id] = (self._clock(), taken_over)
            self._upsert(schedule, now, taken_over)
        self.revision = max(self.revision, changes.revision)
        self._drop_stale_items()
        self._arm()
        log.info(
            "schedules_applied",
            changed=len(changes.changed),
            deleted=len(changes.deleted),
            revision=self.revision,
            total=len(self._entries),
        )

    def _upsert(self, schedule: Schedule, now: datetime, taken_over: str | None) -> None:
        old = self._entries.get(schedule.id)
        self._claimer.release(schedule.id)  # claimed under the old definition
        if schedule.status is not ScheduleStatus.ACTIVE:
            if schedule.status is ScheduleStatus.ERROR and (
                old is None or old.schedule.revision != schedule.revision
            ):
                # Set aside by the store (a row that breaks the rules): told once a revision.
                log.error("schedule_error", schedule_id=schedule.id, reason=schedule.status_reason)
            if old is not None:
                old.schedule, old.version = schedule, old.version + 1
                old.queued.clear()
            return
        try:
            self._take_active(schedule, old, now, taken_over)
        except Exception as exc:  # this schedule's fault alone: the others go on firing
            self._fault(schedule, fault_reason(CANT_COMPUTE, exc), exc)

    def _take_active(
        self, schedule: Schedule, old: Entry | None, now: datetime, taken_over: str | None
    ) -> None:
        check_spans(schedule)
        trigger = build_trigger(schedule)
        entry = Entry(schedule, trigger, saved_next=schedule.next_run_at)
        resumed = old is not None and old.schedule.status is not ScheduleStatus.ACTIVE
        if old is not None:
            entry.running, entry.version = old.running, old.version + 1
        self._entries[schedule.id] = entry
        if resumed:
            # A pause is not an outage: the paused slots are not misfires to make up for.
            self._plan(entry, trigger.at_or_after(now))
        else:
            self._plan_first(entry, now, taken_over)

    def schedule_ids(self) -> list[str]:
        """The ids of the schedules the engine holds."""
        return list(self._entries)

    def hand_over(self, schedule_ids: list[str]) -> None:
        """Give up schedules another node now owns. A slot already claimed here still
        fires here (the other node's try at it finds the slot taken); the rest go now."""
        for schedule_id in schedule_ids:
            entry = self._entries.get(schedule_id)
            self._taken.pop(schedule_id, None)
            if entry is not None and self._claimer.holds(schedule_id, entry.slot):
                self._leaving.add(schedule_id)
            else:
                self._remove(schedule_id)
        if schedule_ids:
            log.info("schedules_handed_over", count=len(schedule_ids), total=len(self._entries))

    # --- planning --------------------------------------------------------------------

    def _plan_first(self, entry: Entry, now: datetime, taken_over: str | None = None) -> None:
        schedule = entry.schedule
        last = schedule.last_run_at
        slot = (
            entry.trigger.after(last)
            if last
            else entry.trigger.at_or_after(schedule.start_at or schedule.created_at)
        )
        if slot is not None and last and taken_over is not None and slot <= now:
            slot = self._take_gap(entry, slot, now, taken_over)
        elif slot is not None and slot < now - timedelta(seconds=schedule.misfire_grace_seconds):
            slot = self._misfired(entry, slot, now)
        self._plan(entry, slot)

    def _take_gap(self, entry: Entry, first: datetime, now: datetime, why: str) -> datetime | None:
        """A taken-over schedule's slots before now, by its misfire policy (`gaps.py`)."""
        gap = sort_gap(entry.schedule, entry.trigger, first, now)
        if gap.older:
            self._spawn(self._jobs.skip(entry.schedule, first, gap.older_reason(why)))
        for slot in gap.skip:
            self._skip(entry, slot, why)
        for slot in gap.run:
            self._fire(entry, slot)
        return entry.trigger.after(now)

    def _misfired(self, entry: Entry, first_missed: datetime, now: datetime) -> datetime | None:
        """Handle slots missed while the daemon was down; return the next slot to plan."""
        schedule = entry.schedule
        policy = schedule.misfire_policy
        limit = schedule.catch_up_max if policy is MisfirePolicy.CATCH_UP else 1
        missed = recent_slots(entry.trigger, first_missed, now, limit)
        upcoming = entry.trigger.after(now)
        total = count_slots(entry.trigger, first_missed, now)
        runs = [] if policy is MisfirePolicy.SKIP else missed
        if total > len(runs):
            self._note_missed(entry, first_missed, total - len(runs), ran=len(runs))
        for slot in runs:
            self._fire(entry, slot)
        return upcoming

    def _note_missed(self, entry: Entry, slot: datetime, count: int, ran: int) -> None:
        more = "or more " if count >= COUNT_CAP else ""
        reason = f"missed {count} {more}slot(s) while the daemon was not running"
        log.warning("slots_missed", schedule_id=entry.schedule.id, missed=count, run_now=ran)
        self._spawn(self._jobs.skip(entry.schedule, slot, reason))

    def _plan(self, entry: Entry, slot: datetime | None) -> None:
        schedule = entry.schedule
        over = window_over(entry, slot) if slot is not None else None
        if over:
            self._complete(entry, over)
            return
        entry.slot = slot
        if slot is None:
            if not entry.running:
                self._complete(entry, "no more slots")
            return
        fire_at = ts(slot)
        if schedule.jitter_seconds:
            fire_at += jitter_offset(schedule.id, slot, schedule.jitter_seconds)
            if fire_at > LAST_MOMENT:  # status could not even show when it fires
                raise ValueError(f"jitter puts slot {slot.isoformat()} past the year 9999")
        item = (fire_at, next(self._seq), schedule.id, entry.version)
        heapq.heappush(self._heap, item)
        entry.fire_at = fire_at
        if schedule.target_id is not None:
            self._claimer.plan(item)
        if slot != entry.saved_next:
            self._progress(entry, next_run_at=slot)

    # --- the timer -------------------------------------------------------------------

    def _arm(self) -> None:
        while self._heap and not self._is_current(self._heap[0]):
            heapq.heappop(self._heap)
        if self._stopped or self._held or not self._heap:
            return
        fire_at = self._heap[0][0]
        if fire_at >= self._timer_at:
            return
        if self._alarm is None:
            self._alarm = Alarm(self._on_timer)
        now = self._clock()
        delay = min(max(0.0, fire_at - now), MAX_TIMER_SECONDS)
        # A capped sleep counts as unset: any slot arriving meanwhile re-arms.
        self._timer_at = fire_at if delay < MAX_TIMER_SECONDS else float("inf")
        self._alarm.set_at(now + delay)  # a moment of the wall clock, as slots are

    def _on_timer(self) -> None:
        self._timer_at = float("inf")
        try:
            self._fire_due(self._clock())
        finally:  # whatever broke, the next slot is still waited for
            self._arm()

    def _fire_due(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            item = heapq.heappop(self._heap)
            if self._is_current(item):
                self.metrics.fired(self._clock() - item[0])
                entry = self._entries[item[2]]
                try:
                    self._due(entry)
                except Exception as exc:  # one schedule's fault must not stop the timer
                    self._fault(entry.schedule, fault_reason(CANT_COMPUTE, exc), exc)

    def _due(self, entry: Entry) -> None:
        slot = entry.slot
        if slot is None or entry.schedule.status is not ScheduleStatus.ACTIVE:
            return
        if circuit_open(entry, self._clock):
            self._skip(entry, slot, "circuit open after failures")
        else:
            self._fire_by_overlap(entry, slot)
        if entry.schedule.id in self._leaving:  # its last slot here: another node goes on
            self._leaving.discard(entry.schedule.id)
            self._remove(entry.schedule.id)
            return
        self._plan(entry, entry.trigger.after(slot))

    # --- firing ----------------------------------------------------------------------

    def _fire_by_overlap(self, entry: Entry, slot: datetime) -> None:
        # A manual run of the same job overlaps as much as a scheduled one does.
        policy = entry.schedule.overlap_policy
        busy = bool(entry.running) or self._jobs.busy(entry.schedule.job)
        if not busy or policy is OverlapPolicy.ALLOW:
            self._fire(entry, slot)
        elif policy is OverlapPolicy.SKIP:
            reason = self._missed_reason(entry, slot)
            taken = self._taken.get(entry.schedule.id)
            self._skip(entry, slot, reason or overlap_reason(entry, taken))
        elif policy is OverlapPolicy.QUEUE:
            self._enqueue(entry, slot)
        else:  # REPLACE
            for task in entry.running.values():
                task.cancel("replaced by a newer run")
            self._jobs.cancel(entry.schedule.job, "replaced by a newer run")
            self._fire(entry, slot)

    def _missed_reason(self, entry: Entry, slot: datetime) -> str | None:
        taken = self._taken.get(entry.schedule.id)
        if taken is None:
            return missed_reason(entry, slot, self._started, self._clock)
        return missed_reason(entry, slot, taken[0], self._clock, taken[1])

    def _enqueue(self, entry: Entry, slot: datetime) -> None:
        if len(entry.queued) >= QUEUE_LIMIT:
            self._skip(entry, slot, f"queue full ({QUEUE_LIMIT} runs waiting)")
            return
        entry.queued.append(slot)
        self._queueing.add(entry.schedule.id)
        log.info("run_queued", schedule_id=entry.schedule.id, scheduled_for=slot.isoformat())

    def _skip(self, entry: Entry, slot: datetime, reason: str) -> None:
        claim = self._claimer.take_claim(entry.schedule.id, slot)
        self._spawn(self._jobs.skip(entry.schedule, slot, reason, claim))

    def _fire(self, entry: Entry, slot: datetime) -> None:
        schedule = entry.schedule
        claim = self._claimer.take_claim(schedule.id, slot)
        task = asyncio.create_task(self._jobs.run(schedule, slot, claim))
        entry.running[slot] = task
        task.add_done_callback(lambda t: self._finished(schedule.id, slot, t))

    def _finished(
        self, schedule_id: str, slot: datetime, task: asyncio.Task[RunStatus | None]
    ) -> None:
        entry = self._entries.get(schedule_id)
        if entry is None:
            return
        try:
            self._settle_run(entry, slot, task)
        except Exception as exc:  # a done-callback's exception would only reach asyncio
            self._fault(entry.schedule, fault_reason(NOT_ACCOUNTED, exc), exc)

    def _settle_run(
        self, entry: Entry, slot: datetime, task: asyncio.Task[RunStatus | None]
    ) -> None:
        entry.running.pop(slot, None)
        status = None if task.cancelled() or task.exception() else task.result()
        if status is not None:
            self._account(entry, slot, status)
        if entry.queued and not entry.running and entry.schedule.status is ScheduleStatus.ACTIVE:
            self._fire(entry, entry.queued.pop(0))
        elif self._exhausted(entry):
            self._complete(entry, "no more slots")

    @staticmethod
    def _exhausted(entry: Entry) -> bool:
        idle = entry.slot is None and not entry.running and not entry.queued
        return idle and entry.schedule.status is ScheduleStatus.ACTIVE

    def hold(self) -> None:
        """Fire and claim nothing until `resume` (the node is fenced off its store)."""
        self._held = True
        self._disarm()
        self._claimer.stop()

    def resume(self) -> None:
        """Fire again after `hold`; re-apply the schedules first, so that what fell due
        meanwhile is planned by each schedule's misfire policy."""
        if self._stopped:  # the daemon is stopping: nothing fires any more
            return
        self._held = False
        self._claimer.resume()
        self._arm()

    def _disarm(self) -> None:
        if self._alarm is not None:
            self._alarm.close()
            self._alarm = None
        self._timer_at = float("inf")

    # --- shutdown --------------------------------------------------------------------

    def stop_firing(self) -> None:
        """No new firings from now on; runs in flight continue."""
        self._stopped = True
        self._disarm()
        self._claimer.stop()

    async def drain(self, grace: float) -> int:
        """Wait up to `grace` for running runs, cancel the rest; how many were cancelled."""
        for entry in self._entries.values():
            entry.queued.clear()
        # Slots claimed ahead that will not fire now: the next daemon plans them anew.
        self._claimer.release_all()
        cancelled = await drain_tasks(self.running_tasks(), grace)
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._side_tasks, return_exceptions=True)
        return cancelled
