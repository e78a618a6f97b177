"""Runs and their attempts: claimed, started, ended, read, and failed or purged later.

The daemon's run writes go through the batcher, which shares transactions between tasks
(see store/batch.py); a run's start and its end are queued without waiting. Reads go
through the shared connection. Orphans of a dead daemon are failed and counted here, and
finished runs beyond what is kept are purged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import structlog

from cronmgr.core.errors import NotFound
from cronmgr.core.models import Run, RunStatus, StepResult, utcnow
from cronmgr.store.records import StepGroup
from cronmgr.store.relational.columns import _column, _ts
from cronmgr.store.relational.connection import RelationalConnection
from cronmgr.store.relational.rows import (
    _run_params,
    _step_params,
    _update_params,
    run_from_row,
    step_from_row,
)

log = structlog.get_logger("cronmgr.store")


def _log_failed_start(future: asyncio.Future[int]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error("run_start_not_recorded", error=str(exc))


def _log_failed_attempt(future: asyncio.Future[int]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error("run_attempt_not_recorded", error=str(exc))


class RunsMixin(RelationalConnection):
    """Runs and their attempts, as the daemon records them and the API reads them."""

    async def insert_run(self, run: Run) -> bool:
        """Record a new run; False when its (schedule, scheduled_for) slot is taken."""
        # A new run is a claim: with no room to record it, it fails now, not later.
        return await self._batcher.write("insert_run", _run_params(run), retry=False) == 1

    async def claim_runs(self, runs: Sequence[Run]) -> set[str]:
        """Record many new runs in one transaction; the ids of those whose slot was free."""
        if not runs:
            return set()
        writes = [("insert_run", _run_params(r)) for r in runs]
        counts = await self._batcher.write_each(writes, retry=False)
        return {run.id for run, count in zip(runs, counts, strict=True) if count == 1}

    def start_run(self, run_id: str, started_at: datetime) -> None:
        """Queue the start of a claimed (pending) run without waiting for it: it goes with
        the next batch, and before that run's end."""
        params = {"id": run_id, "started_at": _ts(started_at)}
        (future,) = self._batcher.queue([("start_run", params)], linger=True)
        future.add_done_callback(_log_failed_start)

    async def release_claims(self, run_ids: Sequence[str]) -> None:
        """Delete claimed runs that never started, freeing their slots."""
        if run_ids:
            await self._batcher.write_each([("release_claim", {"id": i}) for i in run_ids])

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
        params = _update_params(run_id, status, started_at, finished_at, error)
        await self._batcher.write("update_run", params)

    async def insert_step_result(self, run_id: str, position: int, result: StepResult) -> None:
        """Record one attempt of one step of a run."""
        await self._batcher.write("insert_step_result", _step_params(run_id, position, result))

    async def record_step_group(self, run_id: str, pgid: int, leader_created: float | None) -> None:
        """Record the process group a step of run `run_id` was started in; committed once
        this returns. Forgotten when the run ends (a trigger of migration 5)."""
        # With the run writes, so it shares their transactions, but not lingering: the step
        # is already running, and until this commits a kill -9 leaves it to be found by
        # its environment alone (see cronmgr/orphans.py).
        params = {
            "run_id": run_id,
            "pgid": pgid,
            "leader_created": leader_created,
            "recorded_at": _ts(utcnow()),
        }
        await self._batcher.write("record_step_group", params)

    async def list_step_groups(self) -> list[StepGroup]:
        """The recorded process groups of runs still pending or running, oldest first."""
        rows = await self._read("list_step_groups", {})
        return [StepGroup(r["run_id"], r["pgid"], r["leader_created"]) for r in rows]

    def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        finished_at: datetime,
        error: str | None = None,
        steps: Sequence[tuple[int, StepResult]] = (),
        started_at: datetime | None = None,
    ) -> asyncio.Future[int]:
        """Record a run's last attempts (position, result) and its end, written together;
        with `started_at`, its start too (a claimed run whose start was not written).
        Queued at once; the future settles when the writes are committed, with the end's
        result (a failed attempt write is logged)."""
        writes = [("insert_step_result", _step_params(run_id, p, r)) for p, r in steps]
        writes.append(
            ("update_run", _update_params(run_id, status, started_at, finished_at, error))
        )
        # Nothing waits on a run's end to begin: it may wait a little for other writes.
        *attempts, end = self._batcher.queue(writes, linger=True)
        for attempt in attempts:
            attempt.add_done_callback(_log_failed_attempt)
        # The end alone: writes are applied in order, so once it settled so did the rest
        # (a gather would cost a future and a callback per write, a thousand times a second).
        return end

    async def get_run(self, run_id: str) -> Run:
        """A run with its step results; raises NotFound."""
        async with self._guard("get_run"):
            rows = await self._rows("get_run", {"id": run_id})
            steps = await self._rows("get_step_results", {"run_id": run_id})
        if not rows:
            raise NotFound(f"run {run_id!r} does not exist")
        return run_from_row(rows[0], (step_from_row(s) for s in steps))

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
        """Runs, newest first, without their steps; `target_id` means job `target:<id>`."""
        jobs = {j for j in (job, f"target:{target_id}" if target_id else None) if j}
        if len(jobs) > 1:
            return []  # two different jobs asked for at once: nothing matches both
        params = {
            "job": jobs.pop() if jobs else None,
            "schedule_id": schedule_id,
            "status": _column(status),
            "since": _ts(since),
            "limit": limit,
            "offset": offset,
        }
        return [run_from_row(row) for row in await self._read(_runs_query(params), params)]

    async def count_job_runs(self, job: str, since: datetime) -> dict[RunStatus, int]:
        """How many runs of `job` were created at or after `since`, by status (a status
        with none is left out)."""
        rows = await self._read("count_job_runs_since", {"job": job, "since": _ts(since)})
        return {RunStatus(row["status"]): int(row["runs"]) for row in rows}

    async def claim_run(self, run_id: str, node_id: str | None = None) -> bool:
        """Move a pending run to running, started now, by node `node_id` (when given);
        False when it was not pending."""
        params = {"id": run_id, "now": _ts(utcnow()), "node_id": node_id}
        return await self._write("claim_run", params) == 1

    async def list_requested_runs(self, *, limit: int = 1000) -> list[Run]:
        """Pending manual and API runs, newest first (not slots claimed ahead)."""
        return [
            run_from_row(row) for row in await self._read("list_requested_runs", {"limit": limit})
        ]

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
        and never started get `claimed_reason` (default `reason`). Returns how many.

        With `node_id`, only the runs of that node, of no node, or of a node that is not
        live with a lease unexpired at `now` (default: now): the runs of the other live
        nodes are theirs to finish."""
        params = {
            "now": _ts(now or utcnow()),
            "reason": reason,
            "claimed_reason": claimed_reason or reason,
        }
        if node_id is None:
            return await self._write("fail_orphaned_runs", params)
        return await self._write("fail_orphaned_runs_of_node", {**params, "node_id": node_id})

    async def recount_runs(self) -> int:
        """Add to each max_runs schedule's run_count the succeeded and failed runs of its
        firing after its last_run_at (a daemon killed before its bookkeeping was written),
        moving last_run_at along, and never leave it below all such runs the store holds
        (overlapping runs end out of order); run after `fail_orphaned_runs`. Returns how
        many schedules were behind."""
        return await self._write("recount_runs", {})

    async def purge_runs(
        self, *, keep_per_schedule: int | None = None, older_than: datetime | None = None
    ) -> int:
        """Delete finished runs (never pending or running ones) beyond the newest N finished
        runs of their schedule (per job for runs without one) and/or finished before
        `older_than`, with their step results; return how many runs went."""
        if keep_per_schedule is None and older_than is None:
            return 0
        params = {"keep": keep_per_schedule, "older_than": _ts(older_than)}
        async with self._transaction("purge_runs"):
            return await self._run("purge_runs", params)


def _runs_query(params: Mapping[str, Any]) -> str:
    # Fixing the most selective filter in the query text lets SQLite use its index.
    if params["job"] is not None:
        return "list_runs_of_job"
    if params["schedule_id"] is not None:
        return "list_runs_of_schedule"
    return "list_runs"
