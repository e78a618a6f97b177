"""A schedule's timing: its trigger, its upcoming fire times and the jitter of its slots.

This is where a stored `Schedule` meets the pure triggers: `build_trigger` picks the
trigger its type asks for, `upcoming` applies the schedule's status, window and max_runs to
the trigger's slots, and `jitter_offset` spreads the firings of many schedules on one slot.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from datetime import UTC, datetime

from cronmgr.core.models import Schedule, ScheduleStatus, ScheduleType
from cronmgr.core.triggers import parsing
from cronmgr.core.triggers.rules import (
    TICK,
    CronTrigger,
    IntervalTrigger,
    OnceTrigger,
    Trigger,
    aware,
)
from cronmgr.core.triggers.wall_clock import first_reading, transition


def build_trigger(schedule: Schedule) -> Trigger:
    """The trigger of a schedule; ValueError if the schedule lacks what its type needs."""
    builders: dict[ScheduleType, Callable[[Schedule], Trigger]] = {
        ScheduleType.INTERVAL: _interval_of,
        ScheduleType.CRON: _cron_of,
        ScheduleType.ONCE: _once_of,
    }
    return builders[schedule.schedule_type](schedule)


def upcoming(schedule: Schedule, count: int, now: datetime) -> list[datetime]:
    """The next `count` fire times after `now`, within the window and max_runs.

    Nominal slots: jitter is not added. Nothing for a schedule that is not active.
    """
    if schedule.status is not ScheduleStatus.ACTIVE:
        return []
    if schedule.max_runs is not None:
        count = max(0, min(count, schedule.max_runs - schedule.run_count))
    begin = max(now, schedule.start_at or schedule.created_at)
    end = schedule.window_end
    # The engine's rule: a slot at the very end of the window still fires.
    return [s for s in build_trigger(schedule).upcoming(begin, count) if end is None or s <= end]


def jitter_offset(schedule_id: str, slot: datetime, jitter_seconds: float) -> float:
    """A delay in [0, jitter_seconds) that is the same for a slot after every restart.

    It comes from a hash of the schedule id and the slot's instant, so many schedules on
    one slot spread out while each keeps a stable fire time. The slot itself (the run's
    `scheduled_for`) does not move.
    """
    if not math.isfinite(jitter_seconds) or jitter_seconds < 0:
        raise ValueError(f"jitter must be zero or a positive number, got {jitter_seconds!r}")
    if jitter_seconds == 0:
        return 0.0
    micros = (aware(slot, "slot") - datetime(1970, 1, 1, tzinfo=UTC)) // TICK
    digest = hashlib.blake2b(f"{schedule_id}\0{micros}".encode(), digest_size=8).digest()
    fraction = (int.from_bytes(digest, "big") >> 11) / (1 << 53)  # 53 bits: exact in a float
    return min(fraction * jitter_seconds, math.nextafter(jitter_seconds, 0.0))


# --- building --------------------------------------------------------------------------


def _interval_of(schedule: Schedule) -> Trigger:
    if schedule.interval_seconds is None:
        raise ValueError("an interval schedule needs interval_seconds")
    return IntervalTrigger(schedule.interval_seconds, schedule.start_at or schedule.created_at)


def _cron_of(schedule: Schedule) -> Trigger:
    if not schedule.cron_expression:
        raise ValueError("a cron schedule needs cron_expression")
    return CronTrigger(schedule.cron_expression, schedule.timezone)


def _once_of(schedule: Schedule) -> Trigger:
    if schedule.run_at is None:
        raise ValueError("a once schedule needs run_at")
    run_at = schedule.run_at
    if run_at.tzinfo is None:
        # A wall time in the schedule's zone, read as the cron rule reads a time of day.
        zone = parsing.zone(schedule.timezone)
        run_at = first_reading(zone, run_at) or transition(zone, run_at)
    return OnceTrigger(run_at)
