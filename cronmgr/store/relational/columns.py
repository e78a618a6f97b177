"""How model values are kept in SQLite columns, and read back from them.

Timestamps are stored in one fixed-width UTC form, so that text order is time order in
SQL; enums as their values, lists and mappings as JSON. These small conversions serve the
row mapping (`rows`, `stats`) and every part of the store that builds query parameters.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar

import orjson

from cronmgr.core.models import ScheduleStatus

E = TypeVar("E", bound=Enum)

Row = Mapping[str, Any] | sqlite3.Row


def _members(kind: type[E]) -> Callable[[str], E]:
    """value -> member by dict lookup: calling the enum class costs ten times as much,
    five times per schedule row, 100,000 rows when the daemon starts."""
    return {member.value: member for member in kind}.__getitem__


_schedule_status = _members(ScheduleStatus)


def _ts(value: datetime | None) -> str | None:
    # One fixed-width UTC form, so that text order is time order in SQL.
    if value is None:
        return None
    if value.tzinfo is not UTC:  # most are UTC already (utcnow): no conversion then
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _required_dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _column(value: Any) -> Any:
    """A model attribute as SQLite stores it."""
    if isinstance(value, datetime):
        return _ts(value)
    if isinstance(value, Enum):
        return value.value
    return value
