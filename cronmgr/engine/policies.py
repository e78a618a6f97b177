"""The engine's per-schedule decisions about one slot, apart from the timer.

Whether a slot still lies inside its schedule's window (end_at / duration_seconds,
max_runs), whether the circuit breaker holds it back, why a slot the daemon got to late is
not run (the misfire grace, a daemon that was down), and how many slots an outage cost:
the slots missed are counted up to COUNT_CAP and only the latest few looked at, so the
cost follows what is run, not the length of the outage. The reasons a slot is skipped
under the overlap policy are here too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta

from cronmgr.core.triggers.rules import Trigger
from cronmgr.engine.entries import Entry, from_ts, ts

QUEUE_LIMIT = 10
"""Most slots an `overlap_policy = queue` schedule keeps waiting behind a running one."""
OVERLAP_REASON = "previous run still running"
"""Why an `overlap_policy = skip` slot is skipped when it came on time."""
MISSED_DOWN_REASON = "missed: the daemon was not running"
"""Why a slot that fell before this daemon started and came behind a run is skipped."""


def window_over(entry: Entry, slot: datetime) -> str | None:
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


def overlap_reason(entry: Entry, taken: tuple[float, str] | None) -> str:
    """Why an on-time slot behind a run is skipped: told apart when the runs in flight
    are late runs of slots from before the schedule was taken over (`taken`: when, why)."""
    if taken is not None and entry.running and all(ts(s) < taken[0] for s in entry.running):
        return f"{OVERLAP_REASON} (a late run of a slot from before the takeover: {taken[1]})"
    return OVERLAP_REASON


def circuit_open(entry: Entry, clock: Callable[[], float]) -> bool:
    until = entry.schedule.circuit_open_until
    return until is not None and from_ts(clock()) < until


def missed_reason(
    entry: Entry,
    slot: datetime,
    started: float,
    clock: Callable[[], float],
    down_reason: str = MISSED_DOWN_REASON,
) -> str | None:
    """Why a slot the daemon got to late is not run, if it was late: not that a run was
    going (it would have been run at its time), but what made it late (`down_reason` for
    a slot that fell before `started`, when this daemon got the schedule)."""
    if ts(slot) < started:
        return down_reason
    late = clock() - entry.fire_at
    grace = entry.schedule.misfire_grace_seconds
    if late <= grace:
        return None
    return f"missed: {late:.1f} s late, beyond the misfire grace of {grace:g} s"


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
