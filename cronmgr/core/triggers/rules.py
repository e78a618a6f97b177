"""When things fire: triggers turn a moment into the next slot.

A trigger is pure: no clock reads, no I/O. Callers pass timezone-aware moments; every
slot comes back as a timezone-aware UTC datetime. A slot is the identity of a firing
(`scheduled_for`); jitter moves only the moment it fires, never the slot.

Cron and daylight saving time
-----------------------------
Cron fields are matched against the wall clock of the schedule's IANA timezone. croniter
does the field matching, on naive wall times; this module turns wall times into instants
itself, because croniter's own handling of aware datetimes fires a daily `30 2 * * *` job
twice on Europe/Berlin's fall-back day. The rule:

- A schedule is *periodic* when its hour field is `*` (it fires every hour: `0 * * * *`,
  `*/15 * * * *`, `*/10 * * * * *`) and *time-of-day* otherwise (`30 2 * * *`,
  `0 9-17 * * mon-fri`).
- Spring forward (local times that do not exist, such as 02:00-02:59 on 2026-03-29 in
  Europe/Berlin): a time-of-day schedule whose slots fall in the gap fires once, at the
  first instant after the gap (03:00 local); several slots in the gap make that one run,
  and so does a regular slot at that very instant. A periodic schedule skips the missing
  slots and carries on by the clock (`0 * * * *` fires at 01:00 and then at 03:00, one
  real hour apart).
- Fall back (local times that happen twice, such as 02:00-02:59 on 2026-10-25 in
  Europe/Berlin): a time-of-day schedule fires at the first occurrence only. A periodic
  schedule fires at both, since they are distinct instants (`0 * * * *` fires 25 times
  that day, `*/15 * * * *` keeps its 15-minute pace through the repeated hour).

So a daily `30 2 * * *` runs exactly once on every day, transition days included. This is
close to cron(8), which runs jobs "at a specific time" skipped by a jump right after it
and never twice on the way back, while more frequent jobs follow the clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from cronmgr.core.triggers.parsing import parsed, zone
from cronmgr.core.triggers.wall_clock import (
    first_reading,
    instant,
    offsets,
    repeated_span,
    transition,
    wall_at,
)

TICK = timedelta(microseconds=1)
_LAST_YEAR = datetime.max.year - 1
"""From this year on, a cron search may have to look past year 9999, which neither
datetime nor croniter can: there is no slot there."""
_MAX_SPAN_SECONDS = timedelta.max.total_seconds()  # the most a datetime can be moved by


@runtime_checkable
class Trigger(Protocol):
    """What the scheduler asks of any timing rule."""

    def after(self, moment: datetime) -> datetime | None:
        """The first slot strictly later than `moment`, or None when there is none."""
        ...

    def at_or_after(self, moment: datetime) -> datetime | None:
        """The first slot not earlier than `moment`, or None when there is none."""
        ...

    def upcoming(self, moment: datetime, count: int) -> list[datetime]:
        """Up to `count` slots from `moment` on (a slot at `moment` included)."""
        ...


@dataclass(frozen=True, slots=True)
class IntervalTrigger:
    """Every `seconds`, on slots anchor + k·seconds (k ≥ 0), so the schedule never drifts.

    `seconds` is rounded to whole microseconds and the arithmetic is exact integer
    microseconds, so a slot is never computed a hair early or late.
    """

    seconds: float
    anchor: datetime
    _step: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not math.isfinite(self.seconds) or self.seconds <= 0:
            raise ValueError(f"interval must be positive, got {self.seconds!r} seconds")
        if self.seconds > _MAX_SPAN_SECONDS:  # no slot past the anchor could be reached
            raise ValueError(f"interval {self.seconds:g} s is out of range")
        step = round(self.seconds * 1_000_000)
        if step < 1:
            raise ValueError(f"interval must be at least one microsecond, got {self.seconds!r}")
        object.__setattr__(self, "anchor", aware(self.anchor, "anchor").astimezone(UTC))
        object.__setattr__(self, "_step", step)

    def after(self, moment: datetime) -> datetime | None:
        """The first slot strictly later than `moment`; None past year 9999."""
        elapsed = (aware(moment) - self.anchor) // TICK
        if elapsed < 0:
            return self.anchor
        return self._slot(elapsed // self._step + 1)

    def at_or_after(self, moment: datetime) -> datetime | None:
        """The first slot not earlier than `moment`; None past year 9999."""
        elapsed = (aware(moment) - self.anchor) // TICK
        if elapsed <= 0:
            return self.anchor
        return self._slot(-(-elapsed // self._step))

    def upcoming(self, moment: datetime, count: int) -> list[datetime]:
        """Up to `count` slots from `moment` on."""
        return _upcoming(self, moment, count)

    def _slot(self, index: int) -> datetime | None:
        try:
            return self.anchor + timedelta(microseconds=index * self._step)
        except OverflowError:  # past datetime's year 9999: there is no such slot
            return None


@dataclass(frozen=True, slots=True)
class OnceTrigger:
    """A single slot at `run_at`."""

    run_at: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_at", aware(self.run_at, "run_at").astimezone(UTC))

    def after(self, moment: datetime) -> datetime | None:
        """`run_at` while it is later than `moment`, else None."""
        return self.run_at if self.run_at > aware(moment) else None

    def at_or_after(self, moment: datetime) -> datetime | None:
        """`run_at` while it is not earlier than `moment`, else None."""
        return self.run_at if self.run_at >= aware(moment) else None

    def upcoming(self, moment: datetime, count: int) -> list[datetime]:
        """`[run_at]` while it is to come (and count ≥ 1), else []."""
        return _upcoming(self, moment, count)


class CronTrigger:
    """Slots of a cron expression in an IANA timezone, with the DST rule of this module.

    Five fields (minute hour day-of-month month day-of-week) or six with seconds first,
    as in Quartz; the shortcuts @hourly, @daily, @weekly, @monthly and @yearly too.
    The expression is parsed here, once per distinct expression: triggers with the same
    expression share the parsed form, so building 100,000 of them stays cheap.
    """

    __slots__ = ("_fields", "_periodic", "_zone", "expression", "timezone")

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        self.expression = expression.strip()
        self.timezone = timezone
        self._zone = zone(timezone)
        self._fields = parsed(self.expression)
        self._periodic = self._fields.periodic

    def __repr__(self) -> str:
        return f"CronTrigger({self.expression!r}, timezone={self.timezone!r})"

    def after(self, moment: datetime) -> datetime | None:
        """The first slot strictly later than `moment`; None if the expression never fires."""
        try:
            return self._after(moment)
        except (OverflowError, ValueError):
            if moment.year < _LAST_YEAR:
                raise
            return None  # the next slot would lie past year 9999

    def _after(self, moment: datetime) -> datetime | None:
        local = aware(moment).astimezone(self._zone)
        if local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset():
            # An existing time with two readings: the clock is going back over it.
            return self._after_repeated(local.replace(tzinfo=None), second_pass=bool(local.fold))
        return self._first_from(local)

    def at_or_after(self, moment: datetime) -> datetime | None:
        """The first slot not earlier than `moment`."""
        # Slots are whole seconds and datetimes count microseconds: nothing lies between.
        return self.after(aware(moment) - TICK)

    def upcoming(self, moment: datetime, count: int) -> list[datetime]:
        """Up to `count` slots from `moment` on."""
        return _upcoming(self, moment, count)

    def _first_from(self, wall: datetime) -> datetime | None:
        """The earliest slot among wall times after `wall`, each read at its first instant."""
        candidate = self._next_wall(wall)
        while candidate is not None:
            found = first_reading(self._zone, candidate)
            if found is not None:
                return found
            gap_end = transition(self._zone, candidate)
            if not self._periodic:
                return gap_end
            candidate = self._next_wall(wall_at(self._zone, gap_end) - TICK)
        return None

    def _after_repeated(self, wall: datetime, second_pass: bool) -> datetime | None:
        """The next slot for a moment inside a repeated (fall-back) stretch of wall time."""
        start, end = repeated_span(self._zone, wall)
        if not second_pass:
            first = self._first_from(wall)
            again = self._second_pass(start - TICK, end) if self._periodic else None
            return min((s for s in (first, again) if s is not None), default=None)
        again = self._second_pass(wall, end) if self._periodic else None
        return again or self._first_from(end - TICK)

    def _second_pass(self, wall: datetime, end: datetime) -> datetime | None:
        """The first wall time after `wall` and before `end`, read at its second instant."""
        candidate = self._next_wall(wall)
        if candidate is None or candidate >= end:
            return None
        return instant(candidate, offsets(self._zone, candidate)[1])

    def _next_wall(self, wall: datetime) -> datetime | None:
        return self._fields.next_wall(wall)


def _upcoming(trigger: Trigger, moment: datetime, count: int) -> list[datetime]:
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    found: list[datetime] = []
    slot = trigger.at_or_after(moment) if count else None
    while slot is not None:
        found.append(slot)
        if len(found) == count:
            break
        slot = trigger.after(slot)
    return found


def aware(moment: datetime, what: str = "moment") -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware, got {moment.isoformat()}")
    return moment
