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

import difflib
import functools
import hashlib
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import (  # type: ignore[import-untyped]
    CroniterBadDateError,
    CroniterError,
    croniter,
)

from cronmgr.core.models import Schedule, ScheduleStatus, ScheduleType

_TICK = timedelta(microseconds=1)
_LAST_YEAR = datetime.max.year - 1
"""From this year on, a cron search may have to look past year 9999, which neither
datetime nor croniter can: there is no slot there."""
_NAIVE_EPOCH = datetime(1970, 1, 1)
_HOUR_FIELD = 1  # croniter's index of the hour field, whatever the field count
_MEMO_SIZE = 16  # recent answers kept per expression
_MAX_SPAN_SECONDS = timedelta.max.total_seconds()  # the most a datetime can be moved by

_FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
_FIELD_NAMES_WITH_SECONDS = ("second", *_FIELD_NAMES)
_ALLOWED = {
    "second": "0-59",
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31 or L",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 (0 and 7 are Sunday) or SUN-SAT",
}
_SHORTCUTS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# croniter's own field splitting: Unicode spaces are not separators.
_FIELD_SPLIT = re.compile(r"\S+", re.ASCII)
# Hashed (H) and random (R) values: R differs after every restart and H needs a seed.
_HASHED_OR_RANDOM = re.compile(r"^[hr](\(\d+-\d+\))?(/\d+)?$", re.IGNORECASE)
# croniter repeats the expression before its reason; the message names it already.
_CRONITER_PREFIX = re.compile(r"^\[.*?\] is not acceptable[.,]?\s*")


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
        object.__setattr__(self, "anchor", _aware(self.anchor, "anchor").astimezone(UTC))
        object.__setattr__(self, "_step", step)

    def after(self, moment: datetime) -> datetime | None:
        """The first slot strictly later than `moment`; None past year 9999."""
        elapsed = (_aware(moment) - self.anchor) // _TICK
        if elapsed < 0:
            return self.anchor
        return self._slot(elapsed // self._step + 1)

    def at_or_after(self, moment: datetime) -> datetime | None:
        """The first slot not earlier than `moment`; None past year 9999."""
        elapsed = (_aware(moment) - self.anchor) // _TICK
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
        object.__setattr__(self, "run_at", _aware(self.run_at, "run_at").astimezone(UTC))

    def after(self, moment: datetime) -> datetime | None:
        """`run_at` while it is later than `moment`, else None."""
        return self.run_at if self.run_at > _aware(moment) else None

    def at_or_after(self, moment: datetime) -> datetime | None:
        """`run_at` while it is not earlier than `moment`, else None."""
        return self.run_at if self.run_at >= _aware(moment) else None

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
        self._zone = _zone(timezone)
        self._fields = _parsed(self.expression)
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
        local = _aware(moment).astimezone(self._zone)
        if local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset():
            # An existing time with two readings: the clock is going back over it.
            return self._after_repeated(local.replace(tzinfo=None), second_pass=bool(local.fold))
        return self._first_from(local)

    def at_or_after(self, moment: datetime) -> datetime | None:
        """The first slot not earlier than `moment`."""
        # Slots are whole seconds and datetimes count microseconds: nothing lies between.
        return self.after(_aware(moment) - _TICK)

    def upcoming(self, moment: datetime, count: int) -> list[datetime]:
        """Up to `count` slots from `moment` on."""
        return _upcoming(self, moment, count)

    def _first_from(self, wall: datetime) -> datetime | None:
        """The earliest slot among wall times after `wall`, each read at its first instant."""
        candidate = self._next_wall(wall)
        while candidate is not None:
            found = _first_reading(self._zone, candidate)
            if found is not None:
                return found
            gap_end = _transition(self._zone, candidate)
            if not self._periodic:
                return gap_end
            candidate = self._next_wall(_wall_at(self._zone, gap_end) - _TICK)
        return None

    def _after_repeated(self, wall: datetime, second_pass: bool) -> datetime | None:
        """The next slot for a moment inside a repeated (fall-back) stretch of wall time."""
        start, end = _repeated_span(self._zone, wall)
        if not second_pass:
            first = self._first_from(wall)
            again = self._second_pass(start - _TICK, end) if self._periodic else None
            return min((s for s in (first, again) if s is not None), default=None)
        again = self._second_pass(wall, end) if self._periodic else None
        return again or self._first_from(end - _TICK)

    def _second_pass(self, wall: datetime, end: datetime) -> datetime | None:
        """The first wall time after `wall` and before `end`, read at its second instant."""
        candidate = self._next_wall(wall)
        if candidate is None or candidate >= end:
            return None
        return _instant(candidate, _offsets(self._zone, candidate)[1])

    def _next_wall(self, wall: datetime) -> datetime | None:
        return self._fields.next_wall(wall)


class _CronFields:
    """A parsed cron expression: croniter matching naive wall times, shared by triggers."""

    __slots__ = ("_cron", "_lock", "_memo", "_seconds", "periodic")

    def __init__(self, cron: croniter, seconds: bool) -> None:
        self._cron = cron
        self._lock = threading.Lock()  # croniter keeps its position in the instance
        self._memo: dict[datetime, datetime | None] = {}
        self._seconds = seconds
        self.periodic: bool = cron.expanded[_HOUR_FIELD] == ["*"]

    def next_wall(self, wall: datetime) -> datetime | None:
        """The first naive wall time after wall time `wall` (its tzinfo, if any, ignored)."""
        # The answer depends on `wall` only down to the expression's grain, so the many
        # schedules sharing an expression and a slot ask croniter once between them.
        if self._seconds:
            key = wall.replace(tzinfo=None, microsecond=0)
        else:
            key = wall.replace(tzinfo=None, second=0, microsecond=0)
        with self._lock:
            if key not in self._memo:
                if len(self._memo) >= _MEMO_SIZE:
                    self._memo.clear()
                self._memo[key] = self._search(key)
            return self._memo[key]

    def _search(self, wall: datetime) -> datetime | None:
        try:
            found: datetime = self._cron.get_next(datetime, start_time=wall)
        except CroniterBadDateError:
            return None
        return found


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


@functools.lru_cache(maxsize=4096)
def validate_cron(expression: str) -> None:
    """Raise ValueError, naming the field at fault, unless `expression` can be scheduled.

    Stricter than what CronTrigger accepts: an expression that never fires (`0 0 31 2 *`)
    is rejected here.
    """
    text = expression.strip()
    fields = _fields(text)
    try:
        croniter.expand(text, second_at_beginning=len(fields) == 6, strict=True)
    except CroniterError as exc:
        raise _explain(text, fields, exc) from exc


def validate_timezone(name: str) -> None:
    """Raise ValueError unless `name` is an IANA timezone known to this machine."""
    _zone(name)


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
    micros = (_aware(slot, "slot") - datetime(1970, 1, 1, tzinfo=UTC)) // _TICK
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
        zone = _zone(schedule.timezone)
        run_at = _first_reading(zone, run_at) or _transition(zone, run_at)
    return OnceTrigger(run_at)


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


def _aware(moment: datetime, what: str = "moment") -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware, got {moment.isoformat()}")
    return moment


# --- cron parsing and messages ---------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _parsed(expression: str) -> _CronFields:
    # Parsing costs about three after() calls, and schedules often share an expression.
    fields = _fields(expression)
    try:
        cron = croniter(
            expression,
            start_time=_NAIVE_EPOCH,
            ret_type=datetime,
            second_at_beginning=len(fields) == 6,
        )
    except CroniterError as exc:
        raise _explain(expression, fields, exc) from exc
    return _CronFields(cron, seconds=len(fields) == 6)


def _fields(expression: str) -> list[str]:
    """The fields of `expression` after the checks croniter does not make."""
    if not expression:
        raise ValueError(
            "cron expression is empty: give 5 fields (minute hour day-of-month month "
            "day-of-week) or 6 with seconds first"
        )
    if expression.startswith("@"):
        if expression.lower() not in _SHORTCUTS:
            raise ValueError(
                f"unknown cron shortcut {expression!r}: use one of {', '.join(_SHORTCUTS)}"
            )
        return _FIELD_SPLIT.findall(expression)
    fields = _FIELD_SPLIT.findall(expression)
    names = _field_names(expression, fields)
    for name, token in zip(names, fields, strict=True):
        if any(_HASHED_OR_RANDOM.match(part) for part in token.split(",")):
            raise ValueError(
                f"cron field {name} is {token!r}: hashed (H) and random (R) values are not "
                "supported, since a slot must be the same after a restart; write the value"
            )
    return fields


def _field_names(expression: str, fields: list[str]) -> tuple[str, ...]:
    if len(fields) == 5:
        return _FIELD_NAMES
    if len(fields) == 6:
        return _FIELD_NAMES_WITH_SECONDS
    raise ValueError(
        f"cron expression {expression!r} has {len(fields)} fields; it needs 5 (minute hour "
        "day-of-month month day-of-week) or 6 with seconds first (second minute hour "
        "day-of-month month day-of-week)"
    )


def _explain(expression: str, fields: list[str], error: Exception) -> ValueError:
    """A message naming the first field croniter refuses on its own, else croniter's."""
    if len(fields) in (5, 6):
        names = _field_names(expression, fields)
        for index, name in enumerate(names):
            if not _field_ok(fields, index):
                return ValueError(
                    f"cron field {name} is {fields[index]!r}, which is not valid: allowed "
                    f"are {_ALLOWED[name]}, '*', lists (1,5), ranges (1-5) and steps (*/5)"
                )
    detail = _CRONITER_PREFIX.sub("", str(error)) or "croniter refuses it"
    return ValueError(f"cron expression {expression!r} is not valid: {detail}")


def _field_ok(fields: list[str], index: int) -> bool:
    probe = ["*"] * len(fields)
    probe[index] = fields[index]
    try:
        croniter.expand(" ".join(probe), second_at_beginning=len(fields) == 6)
    except (ValueError, TypeError):
        return False
    return True


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        pass
    hint = difflib.get_close_matches(str(name).lower(), _lowercase_zones(), n=1)
    suggestion = f"; did you mean {_lowercase_zones()[hint[0]]!r}?" if hint else ""
    raise ValueError(
        f"unknown timezone {name!r}: use an IANA name such as 'Europe/Berlin', "
        f"'America/New_York' or 'UTC'{suggestion}"
    )


@functools.cache
def _lowercase_zones() -> dict[str, str]:
    return {name.lower(): name for name in available_timezones()}


# --- wall time and instants ------------------------------------------------------------


def _offsets(zone: ZoneInfo, wall: datetime) -> tuple[timedelta, timedelta]:
    """The UTC offsets of `wall` at its first (fold=0) and second (fold=1) reading.

    Equal for most wall times; the first is larger for a time the clock goes back over
    (fall back), smaller for a time it jumps over (spring forward).
    """
    other = wall.replace(fold=1 - wall.fold)
    first, second = (other, wall) if wall.fold else (wall, other)
    first_offset, second_offset = zone.utcoffset(first), zone.utcoffset(second)
    assert first_offset is not None and second_offset is not None  # ZoneInfo always has one
    return first_offset, second_offset


def _instant(wall: datetime, offset: timedelta) -> datetime:
    return (wall - offset).replace(tzinfo=UTC)


def _first_reading(zone: ZoneInfo, wall: datetime) -> datetime | None:
    """The instant of `wall`, the earlier one if it happens twice; None if it is skipped."""
    first, second = _offsets(zone, wall)
    return _instant(wall, first) if first >= second else None


def _wall_at(zone: ZoneInfo, instant: datetime) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _transition(zone: ZoneInfo, wall: datetime) -> datetime:
    """The instant the offset changes around a skipped or repeated `wall` time.

    The two readings of `wall` lie on either side of the change; tzdata changes fall on
    whole seconds, so a bisection over seconds finds it exactly.
    """
    early, late = sorted(_instant(wall, offset) for offset in _offsets(zone, wall))
    low, high = math.floor(early.timestamp()), math.ceil(late.timestamp())
    before = _offset_at(zone, low)
    while high - low > 1:
        middle = (low + high) // 2
        if _offset_at(zone, middle) == before:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)


def _offset_at(zone: ZoneInfo, timestamp: int) -> timedelta | None:
    return datetime.fromtimestamp(timestamp, zone).utcoffset()


def _repeated_span(zone: ZoneInfo, wall: datetime) -> tuple[datetime, datetime]:
    """The wall times [start, end) that a fall back repeats, for a `wall` among them."""
    change = _transition(zone, wall)
    first, second = _offsets(zone, wall)
    return (change + second).replace(tzinfo=None), (change + first).replace(tzinfo=None)
