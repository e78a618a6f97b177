"""Wall time and instants: how the wall clock of an IANA timezone maps onto UTC instants.

A wall time has one instant, two (the clock goes back over it: fall back) or none (the
clock jumps over it: spring forward). These helpers find the readings of a wall time, the
instant the offset changes around it and the stretch of wall time a fall back repeats; the
cron trigger builds its daylight saving time rule on them.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo


def offsets(zone: ZoneInfo, wall: datetime) -> tuple[timedelta, timedelta]:
    """The UTC offsets of `wall` at its first (fold=0) and second (fold=1) reading.

    Equal for most wall times; the first is larger for a time the clock goes back over
    (fall back), smaller for a time it jumps over (spring forward).
    """
    other = wall.replace(fold=1 - wall.fold)
    first, second = (other, wall) if wall.fold else (wall, other)
    first_offset, second_offset = zone.utcoffset(first), zone.utcoffset(second)
    assert first_offset is not None and second_offset is not None  # ZoneInfo always has one
    return first_offset, second_offset


def instant(wall: datetime, offset: timedelta) -> datetime:
    return (wall - offset).replace(tzinfo=UTC)


def first_reading(zone: ZoneInfo, wall: datetime) -> datetime | None:
    """The instant of `wall`, the earlier one if it happens twice; None if it is skipped."""
    first, second = offsets(zone, wall)
    return instant(wall, first) if first >= second else None


def wall_at(zone: ZoneInfo, instant: datetime) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def transition(zone: ZoneInfo, wall: datetime) -> datetime:
    """The instant the offset changes around a skipped or repeated `wall` time.

    The two readings of `wall` lie on either side of the change; tzdata changes fall on
    whole seconds, so a bisection over seconds finds it exactly.
    """
    early, late = sorted(instant(wall, offset) for offset in offsets(zone, wall))
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


def repeated_span(zone: ZoneInfo, wall: datetime) -> tuple[datetime, datetime]:
    """The wall times [start, end) that a fall back repeats, for a `wall` among them."""
    change = transition(zone, wall)
    first, second = offsets(zone, wall)
    return (change + second).replace(tzinfo=None), (change + first).replace(tzinfo=None)
