"""The store interface: every place that reads or writes runs talks to this Protocol."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Protocol

from cronmgr.core.models import (
    Node,
    Run,
    RunStatus,
    Schedule,
    ScheduleStatus,
    StepResult,
    Target,
)
from cronmgr.store.records import (
    Incident,
    IncidentStatus,
    LatestRun,
    MetricsSummary,
    Progress,
    ScheduleChanges,
    StepGroup,
)


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

    async def count_job_runs(self, job: str, since: datetime) -> dict[RunStatus, int]:
        """How many runs of `job` were created at or after `since`, by status (a status
        with none is left out)."""
        ...

    async def claim_run(self, run_id: str, node_id: str | None = None) -> bool:
        """Move a pending run to running, started now, by node `node_id` (when given);
        False when it was not pending."""
        ...

    async def list_requested_runs(self, *, limit: int = 1000) -> list[Run]:
        """Pending manual and API runs, newest first (not slots claimed ahead)."""
        ...

    async def fail_orphaned_runs(
        self,
        reason: str,
        *,
        claimed_reason: str | None = None,
        node_id: str | None = None,
        now: datetime | None = None,
    ) -> int:
        """Mark runs a dead daemon left running (or queued by a schedule) as failed; pending
        manual runs, which never started, stay for the next daemon. Slots it claimed ahead
        and never started get `claimed_reason` (default `reason`). Returns how many. With
        `node_id`, only the runs of that node, of no node, or of a node not live with a
        lease unexpired at `now` (default: now)."""
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

    async def watch_changes(self, changed: Callable[[], None]) -> None:
        """Call `changed()` whenever definitions change in the store, written by any
        process on any host, until the store is closed. The SQLite store has nothing to
        watch: the controller on its machine signals its daemon."""
        ...

    async def close(self) -> None:
        """Flush and release the connection."""
        ...

    # Nodes: the daemons sharing the store

    async def join_node(self, node: Node) -> None:
        """Insert the node's row, or replace the row of its id (live again, with the new
        host, pid, version, times and pipelines); Conflict when a live daemon on another
        host holds the id with a lease unexpired at `node.heartbeat_at`."""
        ...

    async def renew_lease(self, node: Node) -> list[Node] | None:
        """In one transaction: renew the lease of `node` (heartbeat, lease, pipelines,
        counts) while it is live, and return every node live at `node.heartbeat_at` by id,
        this one included; None when it is no longer live (declared lost, or it left)."""
        ...

    async def expire_nodes(self, now: datetime) -> list[str]:
        """Mark every live node whose lease ran out by `now` as lost; their ids. Of several
        callers at once, each id is returned to one of them."""
        ...

    async def fail_node_runs(
        self, node_id: str, now: datetime, reason: str, claimed_reason: str
    ) -> int:
        """End the runs of a gone node: running ones fail with `reason`, slots it claimed
        ahead due by `now` with `claimed_reason`; its claims of later slots are deleted.
        Pending manual runs stay. Returns how many runs failed."""
        ...

    async def leave_node(self, node_id: str, now: datetime) -> None:
        """Record a clean stop: state left, its lease ended at `now`."""
        ...

    async def list_nodes(self) -> list[Node]:
        """Every node the store knows of, by id."""
        ...

    async def prune_nodes(self, before: datetime) -> int:
        """Delete the rows of nodes not live and last heard of before `before`; how many."""
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
