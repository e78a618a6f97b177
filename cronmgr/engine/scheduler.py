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
`Store.record_progress`, gathered and flushed in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from cronmgr.core.models import (
    FailurePolicy,
    MisfirePolicy,
    OverlapPolicy,
    RunStatus,
    Schedule,
    ScheduleStatus,
    utcnow,
)
from cronmgr.core.supervision import Faults, report_death
from cronmgr.core.triggers.rules import Trigger
from cronmgr.core.triggers.schedules import build_trigger, jitter_offset
from cronmgr.engine.schedule_faults import CANT_COMPUTE, check_spans, fault_reason
from cronmgr.engine.wake import Alarm, wake_moment
from cronmgr.observability.metrics import EngineMetrics
from cronmgr.store.records import Progress, ScheduleChanges

log = structlog.get_logger("cronmgr.scheduler")

QUEUE_LIMIT = 10
"""Most slots an `overlap_policy = queue` schedule keeps waiting behind a running one."""
OVERLAP_REASON = "previous run still running"
"""Why an `overlap_policy = skip` slot is skipped when it came on time."""
MISSED_DOWN_REASON = "missed: the daemon was not running"
"""Why a slot that fell before this daemon started and came behind a run is skipped."""
STALE_SLACK = 1024
"""Heap items of edited or deleted schedules tolerated beyond one per schedule: past it,
a heap is rebuilt without them (they are skipped when due, but wait until then)."""

PROGRESS_FLUSH_SECONDS = 0.2
PROGRESS_RETRY_MAX_SECONDS = 5.0
"""Longest pause between tries of bookkeeping the store could not take (a full disk)."""
MAX_TIMER_SECONDS = 60.0
"""Longest single sleep: the engine re-reads the wall clock at least this often."""
CLAIM_AHEAD_SECONDS = 0.25
"""A target's slot is claimed in the store at least this long before it fires, so that
its request goes out on time instead of waiting for a write."""
CLAIM_EVERY_SECONDS = 0.01
"""One claim batch takes the target slots firing within this much time. At 1,000 slots a
second, 10 ms rather than 20 ms took the lag p99 from 1.2-1.9 ms to 0.82-0.97 ms (a batch's
bookkeeping holds up the slots due meanwhile, and a smaller one for less long) for 8 %
more CPU per run (twice the transactions); 5 ms gained nothing more for 17 %."""


class Jobs(Protocol):
    """What the engine needs from whoever runs and records jobs (see `jobs.py`).

    A claim is the jobs' own token for a slot claimed ahead; the engine only keeps it and
    hands it back with that slot.
    """

    async def run(self, schedule: Schedule, slot: datetime, claim: Any = None) -> RunStatus | None:
        """Claim the slot (unless `claim` did), run it, record it; its final status, or
        None if it was claimed already."""
        ...

    async def skip(
        self, schedule: Schedule, slot: datetime, reason: str, claim: Any = None
    ) -> None:
        """Record a slot that will not run, with the reason."""
        ...

    def claim_ahead(self, slots: Sequence[tuple[Schedule, datetime]]) -> Sequence[Any]:
        """Claim these slots in the store now, in one write; a claim per slot, in order."""
        ...

    async def release(self, claims: Sequence[Any]) -> None:
        """Free claimed slots that will not fire."""
        ...

    def busy(self, job: str) -> bool:
        """Whether a run of `job` started elsewhere (a manual run) is in flight."""
        ...

    def cancel(self, job: str, reason: str) -> int:
        """Cancel every run of `job` in flight, wherever it started; how many were."""
        ...


@dataclass(slots=True)
class Entry:
    """One schedule in the engine: its definition, trigger, next slot and live runs."""

    schedule: Schedule
    trigger: Trigger
    slot: datetime | None = None
    # The next_run_at the store holds (or is about to): a new slot is written only when it
    # differs. Kept here rather than in `schedule`, which would cost a copy per firing.
    saved_next: datetime | None = None
    version: int = 0
    fire_at: float = 0.0  # when `slot` fires, jitter included
    running: dict[datetime, asyncio.Task[RunStatus | None]] = field(default_factory=dict)
    # A list, not a deque: it holds at most QUEUE_LIMIT slots, and an empty deque costs
    # 760 bytes, 76 MB over 100,000 schedules.
    queued: list[datetime] = field(default_factory=list)


class _NoSlots:
    """The trigger of a schedule set aside (status `error`): it never fires."""

    def after(self, moment: datetime) -> datetime | None:
        """None: no slot."""
        return None

    def at_or_after(self, moment: datetime) -> datetime | None:
        """None: no slot."""
        return None

    def upcoming(self, moment: datetime, count: int) -> list[datetime]:
        """No slots."""
        return []


NO_SLOTS: Trigger = _NoSlots()
NOT_ACCOUNTED = "its run's result could not be accounted for"
"""The error reason of a schedule whose bookkeeping failed after a run."""

LAST_MOMENT = datetime.max.replace(tzinfo=UTC).timestamp() - 1.0
"""The latest fire moment a datetime can still show."""

HeapItem = tuple[float, int, str, int]
"""(fire at, sequence, schedule id, entry version): one planned firing in the timer heap."""


def _smallest_first(heap: list[HeapItem]) -> Iterator[HeapItem]:
    """A heap's items in ascending order, looking only at as many as are taken.

    `heapq.nsmallest` reads the whole heap (100,000 items for each status heartbeat);
    walking down from the root costs O(k log k) for the first k.
    """
    frontier: list[tuple[HeapItem, int]] = [(heap[0], 0)] if heap else []
    while frontier:
        item, index = heapq.heappop(frontier)
        yield item
        for child in (2 * index + 1, 2 * index + 2):
            if child < len(heap):
                heapq.heappush(frontier, (heap[child], child))


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _from_ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


class Scheduler:
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
        self._jobs = jobs
        self.metrics = metrics if metrics is not None else EngineMetrics()
        """Schedule lag and firing rate, fed as slots fire."""
        # Notifications (notify.Notifier.publish): it only queues, so calling it costs the
        # timer nothing and a failing webhook can never reach the engine.
        self._publish = publish
        self._save_progress = save_progress
        self._clock = clock
        self._started = clock()  # slots before this fell while no daemon was running
        self._entries: dict[str, Entry] = {}
        self._heap: list[HeapItem] = []
        self._seq = itertools.count()
        # The main timer: made on the first arming, when a loop runs.
        self._alarm: Alarm | None = None
        self._timer_at = float("inf")  # when the alarm is set for; inf: not set
        # Target slots wait in a second heap (the same items) until claimed ahead.
        self._claim_heap: list[HeapItem] = []
        self._claim_timer: asyncio.TimerHandle | None = None
        self._claim_at = float("inf")
        self._claims: dict[str, dict[datetime, Any]] = {}
        self._claim_faults = Faults("claimer")
        # Schedules that had slots queued (overlap queue); `queued_slots` prunes the rest,
        # so the status counts them without walking every entry.
        self._queueing: set[str] = set()
        self._pending_progress: dict[str, Progress] = {}
        self._progress_wake = asyncio.Event()
        self._side_tasks: set[asyncio.Future[None]] = set()
        self._stopped = False
        self.revision = 0

    # --- definitions -----------------------------------------------------------------

    def apply(self, changes: ScheduleChanges) -> None:
        """Take new, edited and deleted schedules into the engine at once."""
        for schedule_id in changes.deleted:
            self._remove(schedule_id)
        now = _from_ts(self._clock())
        for schedule in changes.changed:
            self._upsert(schedule, now)
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

    def _upsert(self, schedule: Schedule, now: datetime) -> None:
        old = self._entries.get(schedule.id)
        self._release(schedule.id)  # claimed under the old definition
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
            self._take_active(schedule, old, now)
        except Exception as exc:  # this schedule's fault alone: the others go on firing
            self._fault(schedule, fault_reason(CANT_COMPUTE, exc), exc)

    def _take_active(self, schedule: Schedule, old: Entry | None, now: datetime) -> None:
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
            self._plan_first(entry, now)

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
        self._release(schedule.id)
        self._progress(entry, status=ScheduleStatus.ERROR, reason=reason, next_run_at=None)
        log.error("schedule_error", schedule_id=schedule.id, reason=reason, exc_info=exc)

    def _drop_stale_items(self) -> None:
        # Each edit leaves its schedule's old items in both heaps, to be skipped when
        # their time comes; a daily schedule edited a thousand times would hold a thousand
        # until tomorrow. Once stale items are most of a heap, it is rebuilt without them.
        limit = 2 * len(self._entries) + STALE_SLACK
        if len(self._heap) > limit:
            self._heap = [item for item in self._heap if self._is_current(item)]
            heapq.heapify(self._heap)
        if len(self._claim_heap) > limit:
            self._claim_heap = [item for item in self._claim_heap if self._is_current(item)]
            heapq.heapify(self._claim_heap)

    def _remove(self, schedule_id: str) -> None:
        entry = self._entries.pop(schedule_id, None)
        self._release(schedule_id)
        if entry is not None:
            entry.queued.clear()
            entry.version += 1

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
        for fire_at, _, schedule_id, version in _smallest_first(self._heap):
            entry = self._entries.get(schedule_id)
            if entry is None or entry.version != version:
                continue  # a stale heap item: the schedule was edited or removed since
            found.append(
                {
                    "schedule_id": schedule_id,
                    "job": entry.schedule.job,
                    "at": _from_ts(fire_at).isoformat(),
                }
            )
            if len(found) == count:
                break
        return found

    def active_runs(self) -> int:
        """Runs executing now."""
        return sum(len(e.running) for e in self._entries.values())

    # --- planning --------------------------------------------------------------------

    def _plan_first(self, entry: Entry, now: datetime) -> None:
        schedule = entry.schedule
        last = schedule.last_run_at
        slot = (
            entry.trigger.after(last)
            if last
            else entry.trigger.at_or_after(schedule.start_at or schedule.created_at)
        )
        if slot is not None and slot < now - timedelta(seconds=schedule.misfire_grace_seconds):
            slot = self._misfired(entry, slot, now)
        self._plan(entry, slot)

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
        over = self._window_over(entry, slot) if slot is not None else None
        if over:
            self._complete(entry, over)
            return
        entry.slot = slot
        if slot is None:
            if not entry.running:
                self._complete(entry, "no more slots")
            return
        fire_at = _ts(slot)
        if schedule.jitter_seconds:
            fire_at += jitter_offset(schedule.id, slot, schedule.jitter_seconds)
            if fire_at > LAST_MOMENT:  # status could not even show when it fires
                raise ValueError(f"jitter puts slot {slot.isoformat()} past the year 9999")
        item = (fire_at, next(self._seq), schedule.id, entry.version)
        heapq.heappush(self._heap, item)
        entry.fire_at = fire_at
        if schedule.target_id is not None:
            heapq.heappush(self._claim_heap, item)
            self._want_claim(fire_at)
        if slot != entry.saved_next:
            self._progress(entry, next_run_at=slot)

    @staticmethod
    def _window_over(entry: Entry, slot: datetime) -> str | None:
        """Why `slot` is outside the schedule's window, or None when it is inside."""
        schedule = entry.schedule
        unbounded = schedule.end_at is None and schedule.duration_seconds is None
        if unbounded and schedule.max_runs is None:
            return None  # the common case, checked once per firing: no window at all
        end = schedule.window_end
        if end is not None and slot > end:
            return f"its window ended at {end.isoformat()}"
        # Runs in flight count: with overlap allowed they have not finished yet.
        started = schedule.run_count + len(entry.running)
        if schedule.max_runs is not None and started >= schedule.max_runs:
            return f"max_runs ({schedule.max_runs}) reached"
        return None

    def _complete(self, entry: Entry, why: str) -> None:
        entry.slot = None
        self._release(entry.schedule.id)
        if entry.schedule.status is ScheduleStatus.COMPLETED:
            return
        entry.schedule = dataclasses.replace(
            entry.schedule, status=ScheduleStatus.COMPLETED, status_reason=why
        )
        self._progress(entry, status=ScheduleStatus.COMPLETED, reason=why, next_run_at=None)
        log.info("schedule_completed", schedule_id=entry.schedule.id, reason=why)

    # --- the timer -------------------------------------------------------------------

    def _arm(self) -> None:
        while self._heap and not self._is_current(self._heap[0]):
            heapq.heappop(self._heap)
        if self._stopped or not self._heap:
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

    # --- claiming ahead ---------------------------------------------------------------

    def _want_claim(self, fire_at: float) -> None:
        at = fire_at - CLAIM_AHEAD_SECONDS
        if at >= self._claim_at or self._stopped:
            return
        if self._claim_timer is not None:
            self._claim_timer.cancel()
        loop = asyncio.get_running_loop()
        delay = min(max(0.0, at - self._clock()), MAX_TIMER_SECONDS)
        # `at` itself, capped sleep or not: a wake before it finds nothing and sleeps again.
        self._claim_at = at
        self._claim_timer = loop.call_at(wake_moment(delay), self._on_claim_timer)

    def _on_claim_timer(self) -> None:
        self._claim_timer, self._claim_at = None, float("inf")
        if self._stopped:
            return
        horizon = self._clock() + CLAIM_AHEAD_SECONDS + CLAIM_EVERY_SECONDS
        heap, due = self._claim_heap, []
        while heap and heap[0][0] <= horizon:
            item = heapq.heappop(heap)
            slot = self._claimable(item)
            if slot is not None:
                due.append((self._entries[item[2]].schedule, slot))
        if due:
            self._claim(due)
        if heap:
            self._want_claim(heap[0][0])

    def _claim(self, due: list[tuple[Schedule, datetime]]) -> None:
        try:
            claims = self._jobs.claim_ahead(due)
        except Exception as exc:  # unclaimed, each run claims its own slot when it fires
            self._claim_faults.failed(exc, slots=len(due))
            return
        self._claim_faults.succeeded()
        for (schedule, slot), claim in zip(due, claims, strict=True):
            self._claims.setdefault(schedule.id, {})[slot] = claim

    def _claimable(self, item: HeapItem) -> datetime | None:
        """The slot to claim for a claim-heap item: the one its entry still plans, not one
        edited away or fired already, nor claimed before."""
        fire_at, _, schedule_id, version = item
        entry = self._entries.get(schedule_id)
        if entry is None or entry.version != version or entry.fire_at != fire_at:
            return None
        if entry.slot is None or entry.slot in self._claims.get(schedule_id, ()):
            return None
        return entry.slot

    def _take_claim(self, schedule_id: str, slot: datetime) -> Any:
        claims = self._claims.get(schedule_id)
        if not claims:
            return None
        claim = claims.pop(slot, None)
        if not claims:
            del self._claims[schedule_id]
        return claim

    def _release(self, schedule_id: str) -> None:
        claims = self._claims.pop(schedule_id, None)
        if claims:
            self._spawn(self._jobs.release(list(claims.values())))

    def _is_current(self, item: HeapItem) -> bool:
        entry = self._entries.get(item[2])
        return entry is not None and entry.version == item[3]

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
        if self._circuit_open(entry):
            self._skip(entry, slot, "circuit open after failures")
        else:
            self._fire_by_overlap(entry, slot)
        self._plan(entry, entry.trigger.after(slot))

    def _circuit_open(self, entry: Entry) -> bool:
        until = entry.schedule.circuit_open_until
        return until is not None and _from_ts(self._clock()) < until

    # --- firing ----------------------------------------------------------------------

    def _fire_by_overlap(self, entry: Entry, slot: datetime) -> None:
        # A manual run of the same job overlaps as much as a scheduled one does.
        policy = entry.schedule.overlap_policy
        busy = bool(entry.running) or self._jobs.busy(entry.schedule.job)
        if not busy or policy is OverlapPolicy.ALLOW:
            self._fire(entry, slot)
        elif policy is OverlapPolicy.SKIP:
            self._skip(entry, slot, self._missed_reason(entry, slot) or OVERLAP_REASON)
        elif policy is OverlapPolicy.QUEUE:
            self._enqueue(entry, slot)
        else:  # REPLACE
            for task in entry.running.values():
                task.cancel("replaced by a newer run")
            self._jobs.cancel(entry.schedule.job, "replaced by a newer run")
            self._fire(entry, slot)

    def _missed_reason(self, entry: Entry, slot: datetime) -> str | None:
        """Why a slot the daemon got to late is not run, if it was late: not that a run was
        going (it would have been run at its time), but what made it late."""
        if _ts(slot) < self._started:
            return MISSED_DOWN_REASON
        late = self._clock() - entry.fire_at
        grace = entry.schedule.misfire_grace_seconds
        if late <= grace:
            return None
        return f"missed: {late:.1f} s late, beyond the misfire grace of {grace:g} s"

    def _enqueue(self, entry: Entry, slot: datetime) -> None:
        if len(entry.queued) >= QUEUE_LIMIT:
            self._skip(entry, slot, f"queue full ({QUEUE_LIMIT} runs waiting)")
            return
        entry.queued.append(slot)
        self._queueing.add(entry.schedule.id)
        log.info("run_queued", schedule_id=entry.schedule.id, scheduled_for=slot.isoformat())

    def _skip(self, entry: Entry, slot: datetime, reason: str) -> None:
        claim = self._take_claim(entry.schedule.id, slot)
        self._spawn(self._jobs.skip(entry.schedule, slot, reason, claim))

    def _fire(self, entry: Entry, slot: datetime) -> None:
        schedule = entry.schedule
        claim = self._take_claim(schedule.id, slot)
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

    # --- bookkeeping -----------------------------------------------------------------

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

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)
        task.add_done_callback(report_death)  # a skip or release that failed says so

    # --- shutdown --------------------------------------------------------------------

    def stop_firing(self) -> None:
        """No new firings from now on; runs in flight continue."""
        self._stopped = True
        if self._alarm is not None:
            self._alarm.close()
            self._alarm = None
        self._timer_at = float("inf")
        if self._claim_timer is not None:
            self._claim_timer.cancel()
        self._claim_timer = None

    def running_tasks(self) -> list[asyncio.Task[RunStatus | None]]:
        """Every run task still executing."""
        return [t for e in self._entries.values() for t in e.running.values()]

    async def drain(self, grace: float) -> int:
        """Wait up to `grace` for running runs, cancel the rest; how many were cancelled."""
        for entry in self._entries.values():
            entry.queued.clear()
        # Slots claimed ahead that will not fire now: the next daemon plans them anew.
        for schedule_id in list(self._claims):
            self._release(schedule_id)
        cancelled = await drain_tasks(self.running_tasks(), grace)
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._side_tasks, return_exceptions=True)
        return cancelled


async def drain_tasks(tasks: Sequence[asyncio.Task[Any]], grace: float) -> int:
    """Wait up to `grace` for `tasks`, cancel those still going; how many were cancelled."""
    if not tasks:
        return 0
    _done, late = await asyncio.wait(tasks, timeout=grace)
    for task in late:
        task.cancel("the daemon is stopping")
    await asyncio.gather(*tasks, return_exceptions=True)
    return len(late)


COUNT_CAP = 10_000
"""Missed slots are counted up to this many; beyond it the record says "or more"."""


def count_slots(trigger: Trigger, first: datetime, now: datetime) -> int:
    """How many slots lie in [first, now], counted up to COUNT_CAP."""
    count = 0
    slot: datetime | None = first
    while slot is not None and slot <= now and count < COUNT_CAP:
        count += 1
        slot = trigger.after(slot)
    return count


def recent_slots(trigger: Trigger, since: datetime, now: datetime, limit: int) -> list[datetime]:
    """The latest `limit` slots in [since, now], oldest first.

    Looks back from `now` over a span that grows fourfold until it holds enough slots, so
    the cost follows `limit`, not the length of the outage.
    """
    span = 1.0
    while True:
        start = max(since, now - timedelta(seconds=span))
        found = _slots_between(trigger, start, now, cap=8 * limit + 8)
        if len(found) >= limit or start == since:
            return found[-limit:]
        span *= 4


def _slots_between(trigger: Trigger, start: datetime, end: datetime, cap: int) -> list[datetime]:
    found: deque[datetime] = deque(maxlen=cap)
    slot = trigger.at_or_after(start)
    while slot is not None and slot <= end:
        found.append(slot)
        slot = trigger.after(slot)
    return list(found)
