"""Names of what runs: the readable names of jobs (`pipeline x`, `target Name`) and
schedules that the pages show and link to, looked up once a page, and runs as the table
rows of the overview, the runs and the pipeline pages show them.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from cronmgr.controller.dashboard.common import P
from cronmgr.core.errors import NotFound
from cronmgr.core.models import Run, utcnow
from cronmgr.store import Store


@dataclass(frozen=True, slots=True)
class Label:
    """How a page names something, and where it links to (None: nowhere)."""

    text: str
    href: str | None = None


class Names:
    """Readable names of jobs (`pipeline:x`, `target:<id>`) and schedules, looked up once."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._targets: dict[str, str | None] = {}
        self._schedules: dict[str, str | None] = {}

    async def job(self, job: str) -> Label:
        """A run's job as `pipeline x` or `target Name`, linked to its page."""
        kind, _, ref = job.partition(":")
        if kind == "pipeline":
            return Label(f"pipeline {ref}", f"{P}/pipelines/{quote(ref, safe='')}")
        if kind == "target":
            name = await self._target(ref)
            return Label(f"target {name or ref}", f"{P}/targets/{quote(ref, safe='')}")
        return Label(job)

    async def schedule(self, schedule_id: str | None) -> Label | None:
        """A schedule's name, linked to the schedules page; None for a manual run."""
        if schedule_id is None:
            return None
        if schedule_id not in self._schedules:
            try:
                self._schedules[schedule_id] = (await self._store.get_schedule(schedule_id)).name
            except NotFound:
                self._schedules[schedule_id] = None
        name = self._schedules[schedule_id]
        return Label(name or schedule_id, f"{P}/schedules#schedule-{schedule_id}")

    async def _target(self, target_id: str) -> str | None:
        if target_id not in self._targets:
            try:
                self._targets[target_id] = (await self._store.get_target(target_id)).name
            except NotFound:
                self._targets[target_id] = None
        return self._targets[target_id]


@dataclass(frozen=True, slots=True)
class RunRow:
    """A run as a table row shows it."""

    run: Run
    job: Label
    schedule: Label | None
    seconds: float | None


def run_seconds(run: Run) -> float | None:
    """How long a run took (or has been taking); None before it started."""
    if run.started_at is None:
        return None
    return max(0.0, ((run.finished_at or utcnow()) - run.started_at).total_seconds())


async def run_rows(names: Names, runs: list[Run]) -> list[RunRow]:
    """Runs with their job's and schedule's names."""
    return [
        RunRow(
            run, await names.job(run.job), await names.schedule(run.schedule_id), run_seconds(run)
        )
        for run in runs
    ]
