"""Query strings of the API, and the body of a daemon start: what a list, a log read or a
log stream may ask for.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cronmgr.core.bounds import MAX_SPAN_SECONDS, FilterText, Moment, Offset
from cronmgr.core.errors import BadRequest, InvalidInput
from cronmgr.core.models import RunStatus, ScheduleStatus
from cronmgr.core.specs.fields import NAME_PATTERN
from cronmgr.core.specs.validation import validate

MIN_INTERVAL_SECONDS = 10


class StartRequest(BaseModel):
    """Body of `POST /api/cron/start` and `/api/cron/restart` (every field optional)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    interval_seconds: int | None = Field(
        None,
        ge=MIN_INTERVAL_SECONDS,
        le=MAX_SPAN_SECONDS,
        description="Run the pipeline every N seconds (10 to ten years; default 120).",
        examples=[60],
    )
    pipeline: str | None = Field(
        None, pattern=NAME_PATTERN, description="Pipeline to run (default: `default`)."
    )


def start_request(data: Any) -> StartRequest:
    """`data` as a StartRequest. An `interval_seconds` below the minimum is a 400 (BadRequest),
    as the Pipeline Cron Manager API documents it for its clients; any other bad field is a
    422, as everywhere else. The body of the answer is the same either way."""
    try:
        return validate(StartRequest, data, "request body")
    except InvalidInput as exc:
        if any(_below_minimum(error) for error in exc.errors):
            raise BadRequest(exc.detail, errors=exc.errors) from exc
        raise


def _below_minimum(error: dict[str, Any]) -> bool:
    return bool(error["field"] == "interval_seconds" and error["type"] == "greater_than_equal")


class LinesQuery(BaseModel):
    """Query of the log endpoints: how many lines from the end."""

    model_config = ConfigDict(extra="ignore")

    lines: int | None = Field(
        None, ge=1, le=10_000_000, description="Number of lines from the end."
    )


LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LOG_CURSOR_PATTERN = r"^(\d{1,20}):(\d{1,20})(?::([0-9a-f]{8}))?$"
"""`<inode>:<offset>:<check>`, or the older `<inode>:<offset>`."""


class FollowQuery(BaseModel):
    """Query of `GET /api/v1/logs`: where to continue, how much to start with, which lines.

    Unknown parameters are refused: a misspelt filter must not quietly pass every line.
    """

    model_config = ConfigDict(extra="forbid")

    cursor: str | None = Field(
        None,
        pattern=LOG_CURSOR_PATTERN,
        description=(
            "The `cursor` of the previous answer (`<inode>:<offset>:<check>`; the older "
            "`<inode>:<offset>` is read too); omit it to start at the end."
        ),
    )
    lines: int = Field(10, ge=0, le=10_000, description="Lines to start with (no cursor).")
    level: LogLevel | None = Field(
        None,
        description="Only lines of this level or a more severe one (`warning`: warning, error "
        "and critical).",
    )
    run_id: str | None = Field(None, min_length=1, max_length=200, description="Only this run.")
    schedule_id: str | None = Field(
        None, min_length=1, max_length=200, description="Only this schedule's lines."
    )
    event: str | None = Field(
        None,
        min_length=1,
        max_length=2000,
        description="Only these events: a name, or several separated by commas.",
    )
    since: Moment | None = Field(
        None, description="Only lines stamped at or after this time (no offset: UTC)."
    )

    @field_validator("level", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("since")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class PageQuery(BaseModel):
    """`limit` and `offset` of a list endpoint."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(100, ge=1, le=500, description="Items per page (at most 500).")
    offset: Offset = Field(0, description="Items to skip (at most 1,000,000,000).")


class ScheduleListQuery(PageQuery):
    """Filters of `GET /api/v1/schedules`."""

    status: ScheduleStatus | None = Field(None, description="Only schedules in this status.")
    target_id: FilterText | None = Field(None, description="Only schedules of this target.")


class RunListQuery(PageQuery):
    """Filters of `GET /api/v1/runs` (newest first)."""

    limit: int = Field(50, ge=1, le=500, description="Items per page (at most 500).")
    schedule_id: FilterText | None = Field(None, description="Only runs of this schedule.")
    status: RunStatus | None = Field(None, description="Only runs in this status.")
    since: Moment | None = Field(
        None, description="Only runs recorded at or after this time (no offset: UTC)."
    )
    target_id: FilterText | None = Field(None, description="Only runs of this target.")

    @field_validator("since")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class NextQuery(BaseModel):
    """Query of `GET /api/v1/schedules/{id}/next`."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(5, ge=1, le=100, description="How many fire times (1-100).")


class DeleteTargetQuery(BaseModel):
    """Query of `DELETE /api/v1/targets/{id}`."""

    model_config = ConfigDict(extra="forbid")

    cascade: bool | None = Field(
        None,
        description="Delete the target's schedules too (their runs stay); default: the "
        "`cascade_deletes` setting, false unless configured.",
    )


class LogStreamQuery(FollowQuery):
    """Query of `GET /api/v1/logs/stream`: as for `GET /api/v1/logs`, and the keep-alive."""

    keepalive_seconds: float = Field(
        15.0,
        ge=0.1,
        le=300,
        description="Longest silence before a keep-alive comment; keep it below your read timeout.",
    )


class LogHistoryQuery(FollowQuery):
    """Query of the dashboard's log page: the filters of `GET /api/v1/logs`, how many
    lines a page has, and `before`: the page of lines before that cursor (none: the
    newest lines)."""

    lines: int = Field(100, ge=1, le=1000, description="Lines of one page (1-1000).")
    before: str | None = Field(
        None,
        pattern=LOG_CURSOR_PATTERN,
        description="The lines before this place (the page's link to older lines).",
    )
