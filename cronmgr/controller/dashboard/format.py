"""How the dashboard writes times, durations and sizes: the Jinja filters of its templates.

Each filter takes what the store or the status holds (a datetime, an ISO 8601 string, a
number, or None for "not known") and returns plain text; the templates escape it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cronmgr.core.models import utcnow

NOTHING = "—"
"""What a filter writes for a value that is not known."""

_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def as_datetime(value: Any) -> datetime | None:
    """`value` as an aware datetime: a datetime or an ISO 8601 string; None otherwise."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def when(value: Any) -> str:
    """A moment in UTC to the second: `2025-06-01 14:03:07 UTC`."""
    moment = as_datetime(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else NOTHING


def duration(value: Any) -> str:
    """Seconds as the two largest units: `850 ms`, `4.2 s`, `3 min 20 s`, `2 d 5 h`."""
    if not isinstance(value, int | float):
        return NOTHING
    seconds = float(value)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f}".removesuffix(".0") + " s"
    left = int(seconds)
    first = next(index for index, (_, size) in enumerate(_UNITS) if left >= size)
    parts = []
    for unit, size in _UNITS[first : first + 2]:
        if left // size:  # "1 min", not "1 min 0 s"
            parts.append(f"{left // size} {unit}")
        left %= size
    return " ".join(parts)


def relative(value: Any, now: datetime | None = None) -> str:
    """A moment as seen from now: `in 12.0 s`, `3 min 5 s ago`."""
    moment = as_datetime(value)
    if moment is None:
        return NOTHING
    delta = (moment - (now or utcnow())).total_seconds()
    if abs(delta) < 1:
        return "now"
    text = duration(abs(delta))
    return f"in {text}" if delta > 0 else f"{text} ago"


def lease(seconds: Any) -> str:
    """A lease by the seconds it still holds: `in 8.1 s`, or `expired 3 s ago` once run out."""
    if not isinstance(seconds, int | float):
        return NOTHING
    if seconds > 0:
        return f"in {duration(seconds)}"
    return f"expired {duration(-seconds)} ago" if seconds < 0 else "expires now"


def size(value: Any) -> str:
    """Bytes in binary units: `512 B`, `34.1 MiB`."""
    if not isinstance(value, int | float):
        return NOTHING
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return NOTHING  # not reached: the loop returns at GiB


def iso(value: Any) -> str:
    """A moment as ISO 8601 for a `<time datetime>` attribute; empty when not known."""
    moment = as_datetime(value)
    return moment.isoformat() if moment else ""


FILTERS: dict[str, Callable[..., str]] = {
    "when": when,
    "duration": duration,
    "relative": relative,
    "lease": lease,
    "size": size,
    "iso": iso,
}
"""The filters the dashboard's templates use, by name."""
