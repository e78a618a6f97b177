"""What the store takes and returns beyond the core models: the engine's bookkeeping, the
changes and process groups it reads back, run statistics and incidents.

Plain values (frozen dataclasses, named tuples, an enum) shared by the `Store` protocol,
its SQLite implementation and the engine and observability code that use them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from cronmgr.core.models import RunStatus, Schedule, ScheduleStatus


@dataclass(frozen=True, slots=True)
class ScheduleChanges:
    """What changed in the schedule definitions since a revision (for the daemon)."""

    changed: list[Schedule]
    deleted: list[str]
    revision: int


class Progress(NamedTuple):
    """The engine's bookkeeping for one schedule after a firing or a decision.

    A named tuple rather than a frozen dataclass: the engine makes one per firing and one
    per schedule when it starts, and a tuple is built three times faster.
    """

    schedule_id: str
    run_count: int
    consecutive_failures: int
    last_run_at: datetime | None
    next_run_at: datetime | None
    circuit_open_until: datetime | None = None
    status: ScheduleStatus | None = None
    status_reason: str | None = None
    # The schedule's revision the engine worked from. When the API has written the
    # schedule since (a resume resets the failure count and the circuit), the engine's
    # older failure count and circuit must not overwrite it; None writes them regardless.
    revision: int | None = None


class StepGroup(NamedTuple):
    """The process group a command step of an unfinished run was started in.

    `pgid` is also the leader's pid; `leader_created` its create time (psutil), which tells
    the leader from a later process given the same pid (None when it could not be read).
    """

    run_id: str
    pgid: int
    leader_created: float | None


DURATION_BOUNDS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0
)  # fmt: skip
"""Upper bounds (seconds) of the run duration histogram the store keeps; +Inf is implied."""

NO_SCHEDULE = ""
"""The schedule_id of run statistics of runs without a schedule (manual runs)."""


@dataclass(frozen=True, slots=True)
class RunStats:
    """Finished runs of one job and schedule, counted over some span of time."""

    job: str
    schedule_id: str
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    skipped: int = 0
    timed: int = 0
    """Runs with a duration (all but skipped ones): the +Inf bucket."""
    duration_sum: float = 0.0
    duration_buckets: tuple[int, ...] = (0,) * len(DURATION_BOUNDS)
    """Cumulative: timed runs that took at most each of DURATION_BOUNDS."""
    errors: Mapping[str, int] = field(default_factory=dict)
    """Failed runs by error class."""

    @property
    def total(self) -> int:
        """Every finished run counted."""
        return self.succeeded + self.failed + self.cancelled + self.skipped

    def merged(self, other: RunStats) -> RunStats:
        """These counts plus `other`'s (of another schedule of the same job, say)."""
        errors = dict(self.errors)
        for name, count in other.errors.items():
            errors[name] = errors.get(name, 0) + count
        return RunStats(
            job=self.job,
            schedule_id=self.schedule_id,
            succeeded=self.succeeded + other.succeeded,
            failed=self.failed + other.failed,
            cancelled=self.cancelled + other.cancelled,
            skipped=self.skipped + other.skipped,
            timed=self.timed + other.timed,
            duration_sum=self.duration_sum + other.duration_sum,
            duration_buckets=tuple(
                a + b for a, b in zip(self.duration_buckets, other.duration_buckets, strict=True)
            ),
            errors=errors,
        )


@dataclass(frozen=True, slots=True)
class LatestRun:
    """The last run that executed of a job and schedule (skipped slots do not count)."""

    job: str
    schedule_id: str | None
    """None: the job as a whole, whichever schedule (or none) ran it."""
    run_id: str
    status: RunStatus
    finished_at: datetime
    first_finished_at: datetime
    consecutive_failures: int


@dataclass(frozen=True, slots=True)
class MetricsSummary:
    """What the store counted about finished runs, read from one snapshot."""

    window: list[RunStats]
    """Per job and schedule, the hour buckets since the requested hour."""
    lifetime: list[RunStats]
    """Per job and schedule, since the first run (purged runs included)."""
    latest: list[LatestRun]
    schedules: dict[ScheduleStatus, int]
    """How many schedules are in each status."""
    names: dict[str, str]
    """Names of the schedules and targets the statistics mention, by id."""


class IncidentStatus(StrEnum):
    """Whether an incident is still going on."""

    OPEN = "open"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Incident:
    """A downtime window of a job: from its first failed run in a row to its next success."""

    id: str
    job: str
    started_at: datetime
    """When the first failed run of the streak started."""
    opened_at: datetime
    """When the threshold was reached and the incident opened."""
    failed_runs: int
    error_class: str | None = None
    cause: str | None = None
    first_failed_run_id: str | None = None
    last_failed_run_id: str | None = None
    resolved_at: datetime | None = None
    resolved_by_run_id: str | None = None

    @property
    def status(self) -> IncidentStatus:
        """Open until a successful run resolves it."""
        return IncidentStatus.OPEN if self.resolved_at is None else IncidentStatus.RESOLVED

    def duration_seconds(self, now: datetime) -> float:
        """How long the job was (or has been, until `now`) down."""
        return ((self.resolved_at or now) - self.started_at).total_seconds()
