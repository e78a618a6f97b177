"""The daemon's event loop: the engine assembled, its supervised tasks, a clean stop.

`Daemon.run` opens the store and the HTTP runner, recovers what a dead daemon left (its
step groups, its runs, its claims), loads the pipelines and the schedules, puts the job
runner, the scheduler and the manual runs together, reports ready, and serves until a
signal stops it. Its long-lived tasks are each supervised (restarted after a pause when
they fail): the heartbeat writing the state file, the bookkeeping writer, the refresher
that takes in changed definitions, and the clean-up of old runs (`upkeep.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import structlog

from cronmgr.core.config import ENV_PREFIX, Settings
from cronmgr.core.errors import CronmgrError
from cronmgr.core.launch import STATE_FILENAME, LaunchSpec, spec_fields, write_json_atomic
from cronmgr.core.models import PIPELINE_JOB_PREFIX, TARGET_JOB_PREFIX, utcnow
from cronmgr.core.pipelines.loading import load_pipelines
from cronmgr.core.pipelines.pipeline import PipelineSet
from cronmgr.core.supervision import spawn, supervised
from cronmgr.engine.jobs import JobRunner
from cronmgr.engine.manual import ManualRuns
from cronmgr.engine.orphans import OrphanGroup, end_orphans, end_remaining
from cronmgr.engine.scheduler import Scheduler
from cronmgr.engine.startup import ReadyPipe, bulk_load, ensure_start_schedule
from cronmgr.engine.upkeep import Upkeep
from cronmgr.observability import logs
from cronmgr.observability.incidents import IncidentTracker
from cronmgr.observability.metrics import EngineMetrics
from cronmgr.observability.notify import Notifier
from cronmgr.runners.http.runner import HttpRunner
from cronmgr.store import Store, open_store
from cronmgr.store.pipeline_sync import sync_pipeline_schedules

log = structlog.get_logger("cronmgr.daemon")

HEARTBEAT_SECONDS = 5.0
CLAIMED_ORPHAN_REASON = (
    "the daemon stopped at about this slot's time: the slot was claimed ahead, and whether"
    " its request went out is not known"
)
"""Why a slot claimed ahead by a daemon that died is failed (and never run again)."""
ORPHAN_GRACE_SECONDS = 2.0
"""At most this long from SIGTERM to SIGKILL for steps a dead daemon left: it delays the start."""


class Daemon(Upkeep):
    """The daemon's event loop: the engine, signals, heartbeat, retention, clean stop."""

    def __init__(self, settings: Settings, spec: LaunchSpec) -> None:
        self.settings = settings
        self.spec = spec
        self._stopping = asyncio.Event()
        self._refresh_wanted = asyncio.Event()
        self._changed = asyncio.Event()  # wakes the heartbeat to publish new state at once
        self._pipelines: PipelineSet | None = None
        self._jobs: JobRunner | None = None
        self._incidents: IncidentTracker | None = None
        self._engine: Scheduler | None = None
        self._manual: ManualRuns | None = None
        self._sync_wanted = asyncio.Event()  # pipeline files re-read: sync their schedules
        self._metrics = EngineMetrics()  # schedule lag and firing rate, for the state file
        self._inherited: list[OrphanGroup] = []  # step groups a dead daemon left, ended
        self._state_unwritten = False  # the state file's last write failed (a full disk)
        # Webhooks for incidents and auto-disabled schedules; delivered off the engine's path.
        self.notifier = Notifier(settings.webhooks, queue_size=settings.notify_queue_size)

    async def run(self, ready: ReadyPipe) -> None:
        """Open the store, recover, load definitions, report ready, serve until stopped."""
        # Targets may reference `${env:NAME}`, but never cronmgr's own settings (the
        # database URL may hold a password).
        environ = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        async with (
            open_store(self.settings.store_url) as store,
            HttpRunner(environ=environ) as http,
        ):
            # Alone on the store, or the orphans failed below could be another daemon's runs.
            await store.lock_daemon()
            # Changes written by any controller (the one here also signals SIGUSR1).
            await store.watch_changes(self._refresh_wanted.set)
            # Before their runs are failed, which forgets their groups.
            self._inherited = await end_orphans(store, self._orphan_grace())
            recovered = await store.fail_orphaned_runs(
                "the daemon stopped before this run finished",
                claimed_reason=CLAIMED_ORPHAN_REASON,
            )
            recounted = await store.recount_runs()
            pipelines = self._load_pipelines()
            pipelines.get(self.spec.pipeline)  # fail the start if it is missing
            await ensure_start_schedule(store, self.spec)
            await sync_pipeline_schedules(store, pipelines)
            incidents = IncidentTracker(
                store, self.notifier.publish, self.settings.incident_threshold
            )
            await incidents.load()  # an incident open before a restart goes on, not anew
            self._incidents = incidents
            await self._forget_removed_jobs(store)
            self._jobs = JobRunner(
                self.settings, store, http, self._current_pipelines, incidents.run_finished
            )
            self._engine = Scheduler(
                self._jobs,
                store.record_progress,
                publish=self.notifier.publish,
                metrics=self._metrics,
            )
            self._manual = ManualRuns(self._jobs, store, self._current_pipelines)
            self._jobs.on_job_idle = self._manual.job_idle
            with bulk_load():
                self._engine.apply(await store.changed_schedules(0))
            self._install_signal_handlers()
            ready.ok()
            log.info(
                "daemon_ready",
                orphaned_runs_failed=recovered + len({g.run_id for g in self._inherited}),
                run_counts_raised=recounted,
                **spec_fields(self.spec),
            )
            self._refresh_wanted.set()  # manual runs asked for while no daemon ran
            async with self.notifier:
                await self._serve(store)
                await incidents.drain()
            # Whatever of the inherited groups outlived their ending at start (a member
            # that was stuck, or slipped out between the scan and the signals).
            await end_remaining(self._inherited, self._orphan_grace())
        log.info("daemon_stopped")

    async def _serve(self, store: Store) -> None:
        assert self._engine is not None
        helpers = [spawn(name, supervised(name, step)) for name, step in self._steps(store)]
        try:
            await self._stopping.wait()
            self._engine.stop_firing()
            assert self._manual is not None
            grace = self.settings.stop_grace_seconds
            drained = await asyncio.gather(self._engine.drain(grace), self._manual.drain(grace))
            cancelled = sum(drained)
            if cancelled:
                log.warning("runs_cancelled", count=cancelled, reason="stop grace period over")
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self._engine.flush_progress()

    def _orphan_grace(self) -> float:
        return min(self.settings.step_kill_grace_seconds, ORPHAN_GRACE_SECONDS)

    def _steps(self, store: Store) -> list[tuple[str, Callable[[], Awaitable[object]]]]:
        """The daemon's long-lived tasks, each as the step `supervised` repeats."""
        assert self._engine is not None
        steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("heartbeat", self._heartbeat),
            ("progress_writer", self._engine.progress_writer),
            ("refresher", partial(self._refresher, store)),
            ("stats_compaction", partial(self._compact_run_stats, store)),
        ]
        settings = self.settings
        if settings.retention_runs_per_schedule is not None or settings.retention_days is not None:
            steps.append(("retention", partial(self._retention, store)))
        return steps

    def _load_pipelines(self) -> PipelineSet:
        pipelines = load_pipelines(self.settings.pipelines_path)
        for problem in pipelines.errors:
            log.error("pipeline_invalid", file=str(problem.file), error=problem.message)
        self._pipelines = pipelines
        return pipelines

    def _current_pipelines(self) -> PipelineSet:
        assert self._pipelines is not None
        return self._pipelines

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self._request_stop, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        loop.add_signal_handler(signal.SIGUSR1, self._refresh_wanted.set)

    def _request_stop(self, signame: str) -> None:
        if not self._stopping.is_set():
            active = self._engine.active_runs() if self._engine else 0
            log.info("daemon_stopping", signal=signame, active_runs=active)
            self._stopping.set()

    def _reload(self) -> None:
        logs.reopen_log_file()
        pipelines = self._load_pipelines()
        self._sync_wanted.set()
        self._refresh_wanted.set()
        log.info(
            "daemon_reloaded", pipelines=len(pipelines.pipelines), invalid=len(pipelines.errors)
        )

    async def _refresher(self, store: Store) -> None:
        # Signals only set a flag; one task fetches what changed, so a burst of API edits
        # costs one query, never one per signal.
        await self._refresh_wanted.wait()
        self._refresh_wanted.clear()
        try:
            await self._refresh(store)
        except CronmgrError as exc:
            log.error("schedules_refresh_failed", error=exc.detail)
        except Exception:
            self._refresh_wanted.set()  # tried again once the supervisor's pause is over
            raise
        finally:
            self._changed.set()

    async def _refresh(self, store: Store) -> None:
        assert self._manual is not None
        try:
            await self._take_changes(store)
        except Exception:
            await self._manual.pick_up()  # a schedule fault doesn't hold manual runs up
            raise
        await self._manual.pick_up()
        await self._forget_removed_jobs(store)

    async def _take_changes(self, store: Store) -> None:
        assert self._engine is not None and self._jobs is not None
        if self._sync_wanted.is_set():
            self._sync_wanted.clear()
            await sync_pipeline_schedules(store, self._current_pipelines())
        changes = await store.changed_schedules(self._engine.revision)
        self._jobs.forget_targets({s.target_id for s in changes.changed if s.target_id})
        self._engine.apply(changes)

    async def _forget_removed_jobs(self, store: Store) -> None:
        """End the streaks and incidents of pipelines whose file is gone and of deleted
        targets (checked on start, reload and every change signal; only the few jobs the
        incident tracker knows are looked at)."""
        tracker = self._incidents
        if tracker is None:
            return
        pipelines = self._current_pipelines()
        known = set(pipelines.pipelines) | {problem.name for problem in pipelines.errors}
        jobs = tracker.jobs()
        removed = [
            job
            for job in jobs
            if job.startswith(PIPELINE_JOB_PREFIX)
            and job.removeprefix(PIPELINE_JOB_PREFIX) not in known
        ]
        targets = {
            j.removeprefix(TARGET_JOB_PREFIX): j for j in jobs if j.startswith(TARGET_JOB_PREFIX)
        }
        existing = await store.get_targets(list(targets)) if targets else {}
        deleted = [job for target_id, job in targets.items() if target_id not in existing]
        tracker.forget(removed, "its pipeline file was removed")
        tracker.forget(deleted, "its target was deleted")

    async def _heartbeat(self) -> None:
        path = self.settings.state_path / STATE_FILENAME
        self._changed.clear()
        try:
            await asyncio.to_thread(write_json_atomic, path, self._state())
        except OSError as exc:  # a full disk: say so once, and keep beating
            if not self._state_unwritten:
                log.error("state_file_write_failed", path=str(path), error=str(exc))
            self._state_unwritten = True
        else:
            if self._state_unwritten:
                log.info("state_file_write_resumed", path=str(path))
            self._state_unwritten = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), HEARTBEAT_SECONDS)

    def _queued_run_ids(self) -> list[str]:
        jobs, manual = self._jobs, self._manual
        limited = jobs.queued_run_ids() if jobs else []
        return limited + (manual.queued() if manual else [])

    def _state(self) -> dict[str, Any]:
        engine, jobs = self._engine, self._jobs
        queued = self._queued_run_ids()
        # Waiting: runs for a free slot, and the slots queued behind a running run.
        depth = len(queued) + (engine.queued_slots() if engine else 0)
        return {
            "pid": os.getpid(),
            "heartbeat_at": utcnow().isoformat(),
            "active_runs": jobs.active_run_ids() if jobs else [],
            "queued_runs": queued,
            "next_runs": engine.next_runs() if engine else [],
            "schedules": engine.schedule_count() if engine else 0,
            "metrics": self._metrics.snapshot(queue_depth=depth),
        }
