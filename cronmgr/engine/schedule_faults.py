"""Why a schedule can't be planned, in words its owner can act on.

The API bounds what it accepts, but a store can hold a row written by an older version
or by hand: the engine checks each schedule's spans before planning it, and turns any
other fault met while computing its times into one sentence for `status_reason`.
"""

from __future__ import annotations

import math
from datetime import timedelta

from cronmgr.core.models import Schedule

MAX_SPAN_SECONDS = timedelta.max.total_seconds()
"""The longest span Python's datetime arithmetic can add (about 2.7 million years)."""
CANT_COMPUTE = "its next time can't be computed"
"""How a schedule's error reason starts when its times are at fault."""

_SPANS = (
    "interval_seconds",
    "misfire_grace_seconds",
    "jitter_seconds",
    "duration_seconds",
    "cooldown_seconds",
)


def check_spans(schedule: Schedule) -> None:
    """Raise ValueError naming the first span of `schedule` no datetime can be moved by."""
    # Checked for every schedule the engine takes in (100,000 at a start): the common
    # case in one expression, 0.2 µs; NaN fails each comparison and takes the long way.
    limit = MAX_SPAN_SECONDS
    interval, duration = schedule.interval_seconds, schedule.duration_seconds
    if (
        (interval is None or -limit <= interval <= limit)
        and (duration is None or -limit <= duration <= limit)
        and -limit <= schedule.misfire_grace_seconds <= limit
        and -limit <= schedule.jitter_seconds <= limit
        and -limit <= schedule.cooldown_seconds <= limit
    ):
        return
    for name in _SPANS:
        value = getattr(schedule, name, None)
        if value is None:
            continue
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{_label(name)} {value!r} is not a number of seconds")
        if abs(value) > MAX_SPAN_SECONDS:
            raise ValueError(f"{_label(name)} {value:g} s is out of range")


def fault_reason(what: str, exc: BaseException) -> str:
    """`what` went wrong, and why: a status_reason such as "its next time can't be
    computed: interval 1e+308 s is out of range"."""
    return f"{what}: {explain(exc)}"


def explain(exc: BaseException) -> str:
    """A fault in words: a ValueError's own message (triggers word theirs for people),
    a date past what can be represented as such, anything else with its type."""
    text = " ".join(str(exc).split())
    if isinstance(exc, OverflowError):
        return f"a time out of range ({text})" if text else "a time out of range"
    if isinstance(exc, ValueError) and text:
        return text
    kind = type(exc).__name__
    return f"{kind}: {text}" if text else kind


def _label(field: str) -> str:
    """`interval_seconds` → "interval", as the reason names the span."""
    return field.removesuffix("_seconds").replace("_", " ")
