"""The daemon's clean-up: old runs, their work directories, and the run stats.

With retention on (`retention_runs_per_schedule`, `retention_days`), runs beyond the
number kept per schedule or older than the days kept are purged every
`retention_interval_seconds`, and with them the work directories of pipeline runs older
than that (never of a run still going). The run stats are compacted whether retention is
on or not: complete hours into the lifetime totals, and away once older than any metrics
window.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import structlog

from cronmgr.core.config import Settings
from cronmgr.core.errors import CronmgrError
from cronmgr.core.models import utcnow
from cronmgr.engine.jobs import JobRunner
from cronmgr.observability.metrics import STATS_COMPACT_SECONDS, STATS_KEPT_HOURS
from cronmgr.runners.pipeline.work_dirs import purge_work_dirs
from cronmgr.store import Store

log = structlog.get_logger("cronmgr.daemon")


class Upkeep:
    """The daemon's retention and stats compaction, each a supervised step (a mixin of
    `service.Daemon`, which provides the settings and the job runner)."""

    settings: Settings
    _jobs: JobRunner | None

    async def _retention(self, store: Store) -> None:
        await self._purge_runs(store)
        await asyncio.sleep(self.settings.retention_interval_seconds)

    async def _purge_runs(self, store: Store) -> None:
        settings = self.settings
        older = None
        if settings.retention_days is not None:
            older = utcnow() - timedelta(days=settings.retention_days)
        try:
            purged = await store.purge_runs(
                keep_per_schedule=settings.retention_runs_per_schedule, older_than=older
            )
        except CronmgrError as exc:
            log.error("retention_failed", error=exc.detail)
        else:
            if purged:
                log.info("runs_purged", count=purged)
        if older is not None:
            await self._purge_work_dirs(older)

    async def _compact_run_stats(self, store: Store) -> None:
        # Complete hours into the lifetime totals (which keeps reading them cheap), and
        # away once older than any metrics window. Not tied to retention being on.
        now = utcnow()
        try:
            await store.compact_run_stats(now, now - timedelta(hours=STATS_KEPT_HOURS))
        except CronmgrError as exc:
            log.error("run_stats_compaction_failed", error=exc.detail)
        await asyncio.sleep(STATS_COMPACT_SECONDS)

    async def _purge_work_dirs(self, older: datetime) -> None:
        assert self._jobs is not None
        active = self._jobs.active_run_ids()
        try:
            removed = await asyncio.to_thread(
                purge_work_dirs, self._jobs.work_root, older, keep=active
            )
        except OSError as exc:
            log.error("work_dirs_purge_failed", error=str(exc))
            return
        if removed:
            log.info("work_dirs_purged", count=removed)
