"""Domain records shared by the daemon, the store and the API: frozen dataclasses and enums."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
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


PIPELINE_JOB_PREFIX = "pipeline:"
TARGET_JOB_PREFIX = "target:"


def pipeline_job(name: str) -> str:
    """The job name the runs of pipeline `name` record."""
    return PIPELINE_JOB_PREFIX + name


def new_id() -> str:
    """A time-ordered UUID (version 7 layout), so ids sort by creation time."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (rand >> 68) << 64  # 12 random bits
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    # The canonical 8-4-4-4-12 form, written out: uuid.UUID(int=...) validates what is
    # valid by construction, and an id is made for every run.
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


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
    position: int = 0
    exit_code: int | None = None
    signal: int | None = None
    status_code: int | None = None
    response_size: int | None = None
    error_type: ErrorType | None = None
    error: str | None = None
    output_tail: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        # Field by field, not dataclasses.asdict: this runs for every attempt recorded,
        # and asdict deep-copies every value first.
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


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
    node_id: str | None = None
    """The node (daemon) that ran or skipped it; None before it was claimed by one."""

    @property
    def target_id(self) -> str | None:
        """The target a run of an HTTP schedule called (its `job` names it), as the API
        Scheduler's runs carried it; None for a pipeline's run."""
        if self.job.startswith(TARGET_JOB_PREFIX):
            return self.job.removeprefix(TARGET_JOB_PREFIX)
        return None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping, `target_id` and steps included."""
        data: dict[str, Any] = {}
        for f in fields(self):
            if f.name != "steps":
                data[f.name] = _plain(getattr(self, f.name))
            if f.name == "schedule_id":
                data["target_id"] = self.target_id
        data["steps"] = [s.as_dict() for s in self.steps]
        return data


class NodeState(StrEnum):
    """Where a node (one daemon of those sharing a store) stands."""

    LIVE = "live"
    LEFT = "left"
    """It stopped cleanly: the others take over its schedules at once."""
    LOST = "lost"
    """Its lease ran out without a renewal: another node declared it gone."""


@dataclass(frozen=True, slots=True)
class Node:
    """One daemon of those sharing a store, as its row in the store shows it: who it is,
    until when its lease holds, and what it runs."""

    id: str
    host: str
    pid: int
    version: str
    started_at: datetime
    heartbeat_at: datetime
    lease_expires_at: datetime
    state: NodeState = NodeState.LIVE
    pipelines: Mapping[str, str] = field(default_factory=dict)
    """The pipelines it has loaded: name -> content hash."""
    schedules_owned: int = 0
    runs_in_flight: int = 0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        data = {f.name: _plain(getattr(self, f.name)) for f in fields(self)}
        data["pipelines"] = dict(self.pipelines)  # any Mapping: _plain knows only dicts
        return data


class ScheduleType(StrEnum):
    """How a schedule's slots are computed."""

    INTERVAL = "interval"
    CRON = "cron"
    ONCE = "once"


class ScheduleStatus(StrEnum):
    """Whether a schedule fires."""

    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    DISABLED = "disabled"
    ERROR = "error"
    """It can't fire: its stored definition can't be read, or its times can't be computed
    (status_reason says why). A resume, or an edit that fixes it, makes it active again."""


class MisfirePolicy(StrEnum):
    """What to do with slots missed while the daemon was down or late."""

    SKIP = "skip"
    RUN_ONCE = "run_once"
    CATCH_UP = "catch_up"


class OverlapPolicy(StrEnum):
    """What to do when a slot comes while the previous run still runs."""

    SKIP = "skip"
    QUEUE = "queue"
    ALLOW = "allow"
    REPLACE = "replace"


class FailurePolicy(StrEnum):
    """What repeated failures do to a schedule."""

    NONE = "none"
    DISABLE = "disable"
    CIRCUIT_BREAKER = "circuit_breaker"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a failed HTTP attempt is retried."""

    max_attempts: int = 3
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 30.0
    retry_after_max_seconds: float = 120.0
    jitter: bool = True

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Assertion:
    """One check of a response beyond its status code.

    kind: `body_contains` (value: text), `body_regex` (value: pattern), `json_field`
    (path: dotted path such as `data.items.0.id`, value: expected JSON value) or
    `max_latency_ms` (value: milliseconds).
    """

    kind: str
    value: Any = None
    path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (no `path` when unused)."""
        data = {"type": self.kind, "value": self.value}
        if self.path is not None:
            data["path"] = self.path
        return data


@dataclass(frozen=True, slots=True)
class Target:
    """An HTTP request definition; header values may hold `${env:NAME}` references."""

    id: str
    name: str
    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body_template: str | None = None
    timeout_seconds: float = 30.0
    expected_status: tuple[int, ...] = ()
    assertions: tuple[Assertion, ...] = ()
    follow_redirects: bool = True
    verify_tls: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    status_reason: str | None = None
    """Why its stored definition can't be used (never stored: found when it is read)."""

    def status_ok(self, status: int) -> bool:
        """Whether a response status counts as success (2xx unless listed explicitly)."""
        if self.expected_status:
            return status in self.expected_status
        return 200 <= status < 300


# Not frozen, unlike the other records: a frozen init sets each of the 31 fields through
# object.__setattr__, which doubles the cost of loading 100,000 schedules at start. Treat
# it as immutable all the same and derive changed copies with dataclasses.replace; only
# the engine updates the bookkeeping counters of its own copies in place, once per run.
@dataclass(slots=True)
class Schedule:
    """What runs (a target or a pipeline) and when; plus the engine's bookkeeping."""

    id: str
    name: str
    schedule_type: ScheduleType
    target_id: str | None = None
    pipeline: str | None = None
    interval_seconds: float | None = None
    cron_expression: str | None = None
    run_at: datetime | None = None
    timezone: str = "UTC"
    jitter_seconds: float = 0.0
    start_at: datetime | None = None
    end_at: datetime | None = None
    duration_seconds: float | None = None
    max_runs: int | None = None
    misfire_policy: MisfirePolicy = MisfirePolicy.RUN_ONCE
    misfire_grace_seconds: float = 60.0
    catch_up_max: int = 10
    overlap_policy: OverlapPolicy = OverlapPolicy.SKIP
    failure_policy: FailurePolicy = FailurePolicy.DISABLE
    failure_threshold: int = 5
    cooldown_seconds: float = 300.0
    status: ScheduleStatus = ScheduleStatus.ACTIVE
    status_reason: str | None = None
    run_count: int = 0
    consecutive_failures: int = 0
    circuit_open_until: datetime | None = None
    last_run_at: datetime | None = None
    next_run_at: datetime | None = None
    revision: int = 0
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)

    @property
    def job(self) -> str:
        """The job name runs record: `target:<id>` or `pipeline:<name>`."""
        if self.target_id:
            return TARGET_JOB_PREFIX + self.target_id
        return pipeline_job(self.pipeline or "")

    @property
    def window_end(self) -> datetime | None:
        """The earlier of end_at and start (or creation) plus duration_seconds."""
        ends = [self.end_at] if self.end_at else []
        if self.duration_seconds is not None:
            begin = self.start_at or self.created_at
            # A window past year 9999 never ends (the API refuses one when it is saved).
            with contextlib.suppress(OverflowError):
                ends.append(begin + timedelta(seconds=self.duration_seconds))
        return min(ends) if ends else None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        data = {k: _plain(v) for k, v in asdict(self).items()}
        data["window_end"] = _plain(self.window_end)
        return data
