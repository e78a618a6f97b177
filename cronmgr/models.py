"""Domain records shared by the daemon, the store and the API: frozen dataclasses and enums."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    """Where a run (or one step of it) stands."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def finished(self) -> bool:
        """Whether nothing more will happen to a run in this status."""
        return self not in (RunStatus.PENDING, RunStatus.RUNNING)


class Trigger(StrEnum):
    """What caused a run."""

    SCHEDULE = "schedule"
    MANUAL = "manual"
    API = "api"


class ErrorType(StrEnum):
    """Why an attempt failed, in classes a user can alert on."""

    TIMEOUT = "timeout"
    DNS = "dns"
    CONNECTION = "connection"
    SSL = "ssl"
    HTTP_4XX = "http_4xx"
    HTTP_5XX = "http_5xx"
    ASSERTION = "assertion"
    EXIT_CODE = "exit_code"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A time-ordered UUID (version 7 layout), so ids sort by creation time."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (rand >> 68) << 64  # 12 random bits
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class StepResult:
    """The outcome of one step of a run (one attempt of it, for now)."""

    step: str
    status: RunStatus
    started_at: datetime
    duration_ms: int
    attempt: int = 1
    exit_code: int | None = None
    signal: int | None = None
    status_code: int | None = None
    response_size: int | None = None
    error_type: ErrorType | None = None
    error: str | None = None
    output_tail: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {k: _plain(v) for k, v in asdict(self).items()}


@dataclass(frozen=True, slots=True)
class Run:
    """One firing of a schedule or one manual run of a pipeline."""

    id: str
    job: str
    scheduled_for: datetime
    trigger: Trigger
    status: RunStatus = RunStatus.PENDING
    schedule_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    steps: tuple[StepResult, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping, steps included."""
        data = {k: _plain(v) for k, v in asdict(self).items() if k != "steps"}
        data["steps"] = [s.as_dict() for s in self.steps]
        return data
