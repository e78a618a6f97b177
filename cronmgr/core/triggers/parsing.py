"""Cron expressions and timezone names: parsed once, and checked with messages that name
what is wrong.

A cron expression is parsed once per distinct expression into the form the cron trigger
matches naive wall times with (croniter, with a small memo shared by every trigger of that
expression). `validate_cron` is stricter than parsing: it also refuses an expression that
never fires. Hashed and random values are refused, since a slot must be the same after a
restart.
"""

from __future__ import annotations

import difflib
import functools
import re
import threading
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import (  # type: ignore[import-untyped]
    CroniterBadDateError,
    CroniterError,
    croniter,
)

_NAIVE_EPOCH = datetime(1970, 1, 1)
_HOUR_FIELD = 1  # croniter's index of the hour field, whatever the field count
_MEMO_SIZE = 16  # recent answers kept per expression

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
    zone(name)


# --- cron parsing and messages ---------------------------------------------------------


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


@functools.lru_cache(maxsize=4096)
def parsed(expression: str) -> _CronFields:
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


def zone(name: str) -> ZoneInfo:
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
