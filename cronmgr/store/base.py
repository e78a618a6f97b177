"""The store interface: every place that reads or writes runs talks to this Protocol."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from cronmgr.models import Run, RunStatus, StepResult


class Store(Protocol):
    """Persistent runs and step results; SQLite by default, PostgreSQL for several hosts."""

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
        limit: int = 50,
        offset: int = 0,
    ) -> list[Run]:
        """Runs, newest first, without their steps."""
        ...

    async def fail_orphaned_runs(self, reason: str) -> int:
        """Mark runs a dead daemon left pending or running as failed; return how many."""
        ...

    async def close(self) -> None:
        """Flush and release the connection."""
        ...
