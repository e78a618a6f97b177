"""The ranges every input is checked against: values the engine can compute with.

Each bound is an annotated type that pydantic checks and that `/openapi.json` shows
(`minimum`, `maximum`, `maxLength`, `pattern`), so the API, the pipeline files and the
document share one rule. The ranges are chosen so that every sum the engine forms stays
inside what Python's `datetime` and SQLite's 64-bit integers hold: a moment is within years
1970 to 9998, so any UTC offset (±14 h) keeps it inside `datetime`'s years 1 to 9999, and a
span is at most ten years, so a moment plus a span still fits once `ScheduleSpec` has
checked that a window ends before `LAST_MOMENT`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

MAX_SPAN_SECONDS = 315_576_000
"""Ten years (3,652.5 days): the longest interval, window, grace or cool-down."""
MIN_SCHEDULE_INTERVAL_SECONDS = 0.1
"""The shortest schedule interval: a faster loop belongs in a service, not a schedule."""
MAX_COUNT = 1_000_000_000
"""The largest count or offset (runs, thresholds, page offsets): far below 2**63."""
MAX_NAME_CHARS = 200
MAX_ID_CHARS = 64
MAX_FILTER_CHARS = 200

FIRST_MOMENT = datetime(1970, 1, 1, tzinfo=UTC)
LAST_MOMENT = datetime(9998, 12, 31, 23, 59, 59, tzinfo=UTC)
_FIRST_YEAR = FIRST_MOMENT.year
_LAST_YEAR = LAST_MOMENT.year
MOMENT_RANGE = f"{_FIRST_YEAR}-01-01 to {_LAST_YEAR}-12-31"

# Years 1970-9998 as four digits, then the rest of an ISO 8601 date-time.
_MOMENT_PATTERN = r"^(19[7-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-"
_ISO_START = re.compile(r"^\d{4}-\d{2}-\d{2}")

# Printable text: no NUL, no control characters (C0 and DEL), not blank.
_TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*[^\x00-\x20\x7f][^\x00-\x1f\x7f]*$"


def bound_error(message: str, kind: str = "out_of_range") -> PydanticCustomError:
    """A validation error whose message is `message` as written."""
    return PydanticCustomError(kind, "{message}", {"message": message})


def _iso_text(value: Any) -> Any:
    # pydantic would read 1700000000 or "0.5" as seconds since 1970: a time given as a
    # number is far more often a mistake than a Unix timestamp, so only ISO text is taken.
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_START.match(value.strip()):
        return value
    raise bound_error(
        "must be an ISO 8601 datetime such as 2026-01-31T12:00:00Z", "datetime_format"
    )


def _in_range(value: datetime) -> datetime:
    # Checked on the year as written, before any offset is applied: a time of year 1 at
    # +14:00 would overflow when turned into UTC.
    if not _FIRST_YEAR <= value.year <= _LAST_YEAR:
        raise bound_error(f"must be within {MOMENT_RANGE} (got year {value.year})")
    return value


Moment = Annotated[
    datetime,
    BeforeValidator(_iso_text),
    AfterValidator(_in_range),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": _MOMENT_PATTERN}),
]
"""An ISO 8601 time within years 1970-9998."""


Seconds = Annotated[float, Field(ge=0, le=MAX_SPAN_SECONDS, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1, le=MAX_COUNT)]
Offset = Annotated[int, Field(ge=0, le=MAX_COUNT)]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _printable(value: str) -> str:
    if _CONTROL.search(value):
        raise bound_error("must not contain NUL or control characters", "string_pattern_mismatch")
    if not value.strip():
        raise bound_error("must not be blank", "string_pattern_mismatch")
    return value


def _text(max_chars: int) -> Any:
    return Annotated[
        str,
        Field(min_length=1, max_length=max_chars, json_schema_extra={"pattern": _TEXT_PATTERN}),
        AfterValidator(_printable),
    ]


Text = _text(MAX_NAME_CHARS)
"""A name: 1-200 printable characters, not blank."""
Identifier = _text(MAX_ID_CHARS)
"""An id given by a client: 1-64 printable characters."""
FilterText = Annotated[str, Field(min_length=1, max_length=MAX_FILTER_CHARS)]
"""A query filter compared for equality: 1-200 characters."""
