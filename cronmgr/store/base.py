"""The store interface: every place that reads or writes runs talks to this Protocol."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple, Protocol

from cronmgr.core.models import Run, RunStatus, Schedule, ScheduleStatus, StepResult, Target


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


class Store(Protocol):
    """Targets, schedules, runs and step results behind one small async interface.

    SQLite by default, PostgreSQL for several hosts. Definitions (targets, schedules) are
    written by the controller; runs and schedule progress by the daemon. Every schedule
    write bumps a store-wide revision, so the daemon can fetch just what changed.
    """

    async def insert_target(self, target: Target) -> None:
        """Add a target; Conflict when the name is taken."""
        ...

    async def update_target(self, target: Target) -> None:
        """Replace a target's definition; NotFound, or Conflict on a taken name."""
        ...

    async def get_target(self, target_id: str) -> Target:
        """One target; NotFound."""
        ...

    async def get_targets(self, target_ids: Sequence[str]) -> dict[str, Target]:
        """The targets of these ids that exist, by id (missing ones are left out)."""
        ...

    async def get_target_by_name(self, name: str) -> Target:
        """The target called `name`; NotFound."""
        ...

    async def list_targets(self, *, limit: int = 100, offset: int = 0) -> list[Target]:
        """Targets by name."""
        ...

    async def delete_target(self, target_id: str, *, cascade: bool = False) -> list[str]:
        """Delete a target; Conflict when schedules use it unless `cascade`, which deletes
        them too; its open incident, if any, is resolved. Returns the ids of the deleted
        schedules."""
        ...

    async def insert_schedule(self, schedule: Schedule) -> None:
        """Add a schedule; Conflict on a taken name, NotFound for a missing target."""
        ...

    async def update_schedule(self, schedule: Schedule) -> None:
        """Replace a schedule's definition (not its progress); NotFound or Conflict."""
        ...

    async def get_schedule(self, schedule_id: str) -> Schedule:
        """One schedule with its progress; NotFound."""
        ...

    async def list_schedules(
        self,
        *,
        status: ScheduleStatus | None = None,
        target_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Schedule]:
        """Schedules by name."""
        ...

    async def delete_schedule(self, schedule_id: str) -> None:
        """Delete a schedule (its runs stay); NotFound."""
        ...

    async def schedule_ids(self, prefix: str) -> list[str]:
        """Ids of the schedules whose id starts with `prefix`, in order."""
        ...

    async def set_schedule_status(
        self, schedule_id: str, status: ScheduleStatus, reason: str | None = None
    ) -> Schedule:
        """Pause, resume, complete or disable; resuming resets failures and the circuit."""
        ...

    async def record_progress(self, progress: list[Progress]) -> None:
        """Store the engine's bookkeeping for several schedules in one transaction."""
        ...

    async def changed_schedules(self, since_revision: int) -> ScheduleChanges:
        """Schedules written and ids deleted after `since_revision` (0: everything)."""
        ...

    async def insert_run(self, run: Run) -> bool:
        """Record a new run; False when its (schedule, scheduled_for) slot is taken."""
        ...

    async def claim_runs(self, runs: Sequence[Run]) -> set[str]:
        """Record many new runs at once (slots claimed ahead, pending and not started);
        the ids of those whose (schedule, scheduled_for) slot was free."""
        ...

    def start_run(self, run_id: str, started_at: datetime) -> None:
        """Queue the start of a claimed run (pending → running) without waiting for it; it
        is applied before anything written later about that run."""
        ...

    async def release_claims(self, run_ids: Sequence[str]) -> None:
        """Delete claimed runs that never started, freeing their slots."""
        ...

    async def update_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        error: str | None = None,
    ) -> None:
        """Move a run to `status`, setting the given timestamps and error."""
        ...

    async def insert_step_result(self, run_id: str, position: int, result: StepResult) -> None:
        """Record one attempt of one step of a run."""
        ...

    async def record_step_group(self, run_id: str, pgid: int, leader_created: float | None) -> None:
        """Record the process group a step of run `run_id` was started in; committed once
        this returns. Forgotten when the run ends."""
        ...

    async def list_step_groups(self) -> list[StepGroup]:
        """The recorded process groups of runs still pending or running, oldest first."""
        ...

    def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        finished_at: datetime,
        error: str | None = None,
        steps: Sequence[tuple[int, StepResult]] = (),
        started_at: datetime | None = None,
    ) -> Awaitable[object]:
        """Record a run's last attempts (position, result) and its end, written together;
        with `started_at`, its start too (a claimed run whose start was not written).

        The writes are queued before this returns, so they are made even if nobody waits
        for them (a cancelled run is still recorded); what it returns settles once they
        are committed, and raises what the end's write raised. A failed write of an
        attempt is logged; the end is written all the same."""
        ...

    async def get_run(self, run_id: str) -> Run:
        """A run with its step results; raises NotFound."""
        ...

    async def list_runs(
        self,
        *,
        job: str | None = None,
        schedule_id: str | None = None,
        status: RunStatus | None = None,
        since: datetime | None = None,
        target_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Run]:
        """Runs, newest first, without their steps."""
        ...

    async def claim_run(self, run_id: str) -> bool:
        """Move a pending run to running, started now; False when it was not pending."""
        ...

    async def list_requested_runs(self, *, limit: int = 1000) -> list[Run]:
        """Pending manual and API runs, newest first (not slots claimed ahead)."""
        ...

    async def fail_orphaned_runs(self, reason: str, *, claimed_reason: str | None = None) -> int:
        """Mark runs a dead daemon left running (or queued by a schedule) as failed; pending
        manual runs, which never started, stay for the next daemon. Slots it claimed ahead
        and never started get `claimed_reason` (default `reason`). Returns how many."""
        ...

    async def recount_runs(self) -> int:
        """Add to each max_runs schedule's run_count the succeeded and failed runs of its
        firing after its last_run_at (a daemon killed before its bookkeeping was written),
        moving last_run_at along, and never leave it below all such runs the store holds
        (overlapping runs end out of order); run after `fail_orphaned_runs`. Returns how
        many schedules were behind."""
        ...

    async def purge_runs(
        self, *, keep_per_schedule: int | None = None, older_than: datetime | None = None
    ) -> int:
        """Delete finished runs beyond the newest N per schedule and/or older than a date."""
        ...

    async def close(self) -> None:
        """Flush and release the connection."""
        ...

    # Metrics and incidents

    async def metrics_summary(self, since: datetime) -> MetricsSummary:
        """Run statistics: per hour bucket from the hour of `since` on, and lifetime totals.

        Maintained as runs finish, so reading them costs the same however many runs exist,
        and purging runs leaves them as they are.
        """
        ...

    async def failing_jobs(self) -> list[LatestRun]:
        """The jobs (as a whole, whichever schedule ran them) whose last runs failed, with
        how many in a row: what a restarted daemon goes on counting from."""
        ...

    async def compact_run_stats(self, fold_before: datetime, drop_before: datetime) -> int:
        """Fold the hour buckets before `fold_before` into the lifetime totals (once), drop
        the folded ones before `drop_before`; how many hour rows were dropped."""
        ...

    async def open_incident(self, incident: Incident) -> bool:
        """Record a new open incident; False when the job has an open one already."""
        ...

    async def resolve_incident(
        self, incident_id: str, resolved_at: datetime, run_id: str | None, failed_runs: int
    ) -> Incident | None:
        """Close an open incident; the incident as stored, None when it was not open."""
        ...

    async def list_incidents(
        self,
        *,
        status: IncidentStatus | None = None,
        job: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Incident]:
        """Incidents, newest first; `since` keeps those open at some moment at or after it."""
        ...
