"""Metrics and incidents: the query and the answer of `GET /api/v1/metrics`, and the
incidents of `GET /api/v1/incidents`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cronmgr.core.bounds import FilterText, Moment
from cronmgr.core.specs.queries import PageQuery

# --- metrics and incidents ----------------------------------------------------------------


class MetricsQuery(BaseModel):
    """Query of `GET /api/v1/metrics`."""

    model_config = ConfigDict(extra="forbid")

    window_hours: int = Field(
        24,
        ge=1,
        le=168,
        description="Hour buckets the run figures cover, the current (partial) hour included.",
    )


class IncidentListQuery(PageQuery):
    """Filters of `GET /api/v1/incidents` (newest first)."""

    limit: int = Field(50, ge=1, le=500, description="Items per page (at most 500).")
    status: Literal["open", "resolved"] | None = Field(None, description="Only these.")
    job: FilterText | None = Field(
        None, description="Only of this job (`target:<id>`, `pipeline:<name>`)."
    )
    target_id: FilterText | None = Field(None, description="Only of this target.")
    pipeline: FilterText | None = Field(None, description="Only of this pipeline.")
    since: Moment | None = Field(
        None, description="Only those open at some moment at or after this time (no offset: UTC)."
    )

    @field_validator("since")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class IncidentBody(BaseModel):
    """A downtime window of a target or pipeline: from the start of its first failed run in
    a row to its next successful run."""

    id: str
    job: str = Field(description="`target:<id>` or `pipeline:<name>`.")
    kind: Literal["target", "pipeline"]
    target_id: str | None
    pipeline: str | None
    status: Literal["open", "resolved"]
    started_at: datetime = Field(description="When the first failed run of the streak started.")
    opened_at: datetime = Field(description="When the threshold was reached.")
    resolved_at: datetime | None = Field(description="When a run succeeded again.")
    duration_seconds: float = Field(description="Until resolved_at, or until now while open.")
    failed_runs: int = Field(description="Failed runs in a row (so far, while open).")
    error_class: str | None = Field(description="Of the failure that opened it (http_5xx, …).")
    cause: str | None = Field(description="That failure's error message.")
    first_failed_run_id: str | None
    last_failed_run_id: str | None = Field(description="The run that reached the threshold.")
    resolved_by_run_id: str | None


class RunCounts(BaseModel):
    """Finished runs by status."""

    succeeded: int
    failed: int
    cancelled: int
    skipped: int
    total: int


class DurationSummary(BaseModel):
    """Run durations: percentiles interpolated within the histogram's buckets."""

    p50: float | None
    p95: float | None
    p99: float | None
    mean: float | None
    count: int = Field(description="Runs with a duration (skipped slots have none).")


class OpenIncidentBrief(BaseModel):
    """The incident a job is in now (the whole of it: `GET /api/v1/incidents`)."""

    id: str
    started_at: datetime
    error_class: str | None
    cause: str | None


class JobMetrics(BaseModel):
    """Figures of one schedule, target or pipeline over the window."""

    job: str
    runs: RunCounts
    success_rate: float | None = Field(description="succeeded / (succeeded + failed).")
    duration_seconds: DurationSummary
    errors: dict[str, int] = Field(description="Failed runs by error class.")
    last_status: str | None = Field(description="Of the last run that executed (not skipped).")
    last_run_at: datetime | None = Field(description="When that run finished.")
    last_run_id: str | None
    consecutive_failures: int
    availability_24h: float | None = Field(description="Share of the last 24 h not in incidents.")
    availability_7d: float | None = Field(description="Share of the last 7 days not in incidents.")
    open_incident: OpenIncidentBrief | None
    incidents_7d: int = Field(description="Incidents open at some moment of the last 7 days.")


class ScheduleMetrics(JobMetrics):
    """A schedule's figures; availability and incidents are its job's."""

    schedule_id: str
    name: str | None = Field(description="None once the schedule is deleted.")


class TargetMetrics(JobMetrics):
    """A target's figures: all its schedules together."""

    target_id: str
    name: str | None = Field(description="None once the target is deleted.")


class PipelineMetrics(JobMetrics):
    """A pipeline's figures: its schedules and its manual runs together."""

    pipeline: str


class LagSummary(BaseModel):
    """Schedule lag (fired minus planned) over the engine's last 1024 firings."""

    last: float
    p50: float
    p99: float
    samples: int


class DaemonMetrics(BaseModel):
    """The daemon's own figures, from its state file."""

    running: bool
    heartbeat_at: datetime | None
    runs_per_second: float | None = Field(description="Slots fired per second, last minute.")
    schedule_lag_seconds: LagSummary | None
    queue_depth: int | None = Field(
        description="Runs waiting for a free slot, and slots queued behind a running run."
    )
    active_runs: int | None


class MetricsWindow(BaseModel):
    """What the run figures cover."""

    hours: int
    since: datetime


class MetricsTotals(BaseModel):
    """All jobs together over the window."""

    runs: RunCounts
    success_rate: float | None
    errors: dict[str, int]
    open_incidents: int


class MetricsReport(BaseModel):
    """The answer of `GET /api/v1/metrics`."""

    generated_at: datetime
    window: MetricsWindow
    daemon: DaemonMetrics
    totals: MetricsTotals
    schedules: list[ScheduleMetrics]
    targets: list[TargetMetrics]
    pipelines: list[PipelineMetrics]
