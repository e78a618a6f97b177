"""The store interface: every place that reads or writes runs talks to this Protocol."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol

from cronmgr.models import Run, RunStatus, Schedule, ScheduleStatus, StepResult, Target


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

    async def get_target_by_name(self, name: str) -> Target:
        """The target called `name`; NotFound."""
        ...

    async def list_targets(self, *, limit: int = 100, offset: int = 0) -> list[Target]:
        """Targets by name."""
        ...

    async def delete_target(self, target_id: str, *, cascade: bool = False) -> list[str]:
        """Delete a target; Conflict when schedules use it unless `cascade`, which deletes
        them too. Returns the ids of the deleted schedules."""
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

    async def fail_orphaned_runs(self, reason: str) -> int:
        """Mark runs a dead daemon left running (or queued by a schedule) as failed; pending
        manual runs, which never started, stay for the next daemon. Returns how many."""
        ...

    async def purge_runs(
        self, *, keep_per_schedule: int | None = None, older_than: datetime | None = None
    ) -> int:
        """Delete finished runs beyond the newest N per schedule and/or older than a date."""
        ...

    async def close(self) -> None:
        """Flush and release the connection."""
        ...
