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
from cronmgr.engine.cluster import ClusterShare, pipeline_digests
from cronmgr.engine.jobs import JobRunner
from cronmgr.engine.manual import ManualRuns
from cronmgr.engine.membership import Membership, default_node_id
from cronmgr.engine.orphans import OrphanGroup, end_orphans, end_remaining
from cronmgr.engine.ownership import Ownership
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
        self._membership: Membership | None = None
        self._share: ClusterShare | None = None
        self._rebalance_wanted = False  # the live set changed: move the share
        self._resync_wanted = False  # back from a fence: re-read the whole share
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
            pipelines = self._load_pipelines()
            if self.spec.pipeline is not None:
                pipelines.get(self.spec.pipeline)  # fail the start if it is missing
            membership = await self._join(store, pipelines)
            node_id = membership.node_id
            # Changes written by any controller (the one here also signals SIGUSR1).
            await store.watch_changes(self._refresh_wanted.set)
            # Before their runs are failed, which forgets their groups.
            self._inherited = await end_orphans(store, self._orphan_grace(), node_id)
            recovered = await store.fail_orphaned_runs(
                "the daemon stopped before this run finished",
                claimed_reason=CLAIMED_ORPHAN_REASON,
                node_id=node_id,
            )
            recounted = await store.recount_runs()
            await ensure_start_schedule(store, self.spec)
            await self._sync_pipelines(store)
            incidents = IncidentTracker(
                store, self.notifier.publish, self.settings.incident_threshold
            )
            await incidents.load()  # an incident open before a restart goes on, not anew
            self._incidents = incidents
            await self._forget_removed_jobs(store)
            self._jobs = JobRunner(
                self.settings, store, http, self._current_pipelines, incidents.run_finished
            )
            self._jobs.node_id = node_id
            self._engine = Scheduler(
                self._jobs,
                store.record_progress,
                publish=self.notifier.publish,
                metrics=self._metrics,
            )
            share = self._share = ClusterShare(self._engine, store, membership)
            self._manual = ManualRuns(
                self._jobs, store, self._current_pipelines, takes=share.takes_run
            )
            self._jobs.on_job_idle = self._manual.job_idle
            with bulk_load():
                self._engine.apply(share.share(await store.changed_schedules(0)))
            self._install_signal_handlers()
            ready.ok()
            log.info(
                "daemon_ready",
                node=node_id,
                orphaned_runs_failed=recovered + len({g.run_id for g in self._inherited}),
                run_counts_raised=recounted,
                **spec_fields(self.spec),
            )
            self._refresh_wanted.set()  # manual runs asked for while no daemon ran
            async with self.notifier:
                await self._serve(store)
                await incidents.drain()
            await membership.leave()
            # Whatever of the inherited groups outlived their ending at start (a member
            # that was stuck, or slipped out between the scan and the signals).
            await end_remaining(self._inherited, self._orphan_grace())
        log.info("daemon_stopped")

    async def _join(self, store: Store, pipelines: PipelineSet) -> Membership:
        """Join the store's nodes (Conflict: the node id is another live daemon's)."""
        settings = self.settings
        membership = Membership(
            store,
            settings.node_id or default_node_id(settings.state_path),
            settings.lease_seconds,
            counts=self._counts,
            on_view=self._view_changed,
            on_fence=self._fenced,
            fencing=not settings.store_url.startswith("sqlite:"),
        )
        membership.set_pipelines(pipeline_digests(pipelines))
        await membership.join()
        logs.set_node(membership.node_id)
        self._membership = membership
        return membership

    async def _sync_pipelines(self, store: Store) -> None:
        """Write the schedules the pipeline files declare; a pipeline this node has
        otherwise than most nodes is left to them, and so are the ones only they have."""
        pipelines, view = self._current_pipelines(), self._current_membership().ownership
        mine = pipeline_digests(pipelines)
        differing = view.differing(mine)
        for name in differing:
            log.warning("pipeline_differs", pipeline=name, reason="other nodes have it otherwise")
        agreed = PipelineSet(
            pipelines.directory,
            {n: p for n, p in pipelines.pipelines.items() if n not in differing},
            pipelines.errors,
        )
        # Only the others have these, or they have them otherwise: theirs to delete.
        theirs = set(view.agreement(mine)) - set(agreed.pipelines)
        await sync_pipeline_schedules(store, agreed, keep=theirs)

    def _counts(self) -> tuple[int, int]:
        engine, jobs = self._engine, self._jobs
        owned = engine.schedule_count() if engine else 0
        return owned, len(jobs.active_run_ids()) if jobs else 0

    def _view_changed(self, view: Ownership) -> None:
        self._rebalance_wanted = True
        self._refresh_wanted.set()

    def _fenced(self, fenced: bool) -> None:
        if fenced:
            if self._engine is not None:
                self._engine.hold()
        else:  # renewed again: re-read the share, then fire
            self._resync_wanted = True
            self._refresh_wanted.set()

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
            ("membership", self._current_membership().beat),
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

    def _current_membership(self) -> Membership:
        assert self._membership is not None
        return self._membership

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
        if self._membership is not None:
            self._membership.set_pipelines(pipeline_digests(pipelines))
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
            await self._sync_pipelines(store)
        changes = await store.changed_schedules(self._engine.revision)
        self._jobs.forget_targets({s.target_id for s in changes.changed if s.target_id})
        assert self._share is not None
        self._engine.apply(self._share.share(changes))
        if self._resync_wanted or self._rebalance_wanted:
            await self._move_share(self._share)

    async def _move_share(self, share: ClusterShare) -> None:
        assert self._engine is not None and self._membership is not None
        full = self._resync_wanted
        self._resync_wanted = self._rebalance_wanted = False  # a change meanwhile: again
        try:
            await share.rebalance(full=full)
        except Exception:
            self._resync_wanted |= full
            self._rebalance_wanted = True
            raise
        if full and not self._membership.fenced:  # fenced again meanwhile: not yet
            self._engine.resume()

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
            "node": self._membership.node_id if self._membership else None,
            "heartbeat_at": utcnow().isoformat(),
            "active_runs": jobs.active_run_ids() if jobs else [],
            "queued_runs": queued,
            "next_runs": engine.next_runs() if engine else [],
            "schedules": engine.schedule_count() if engine else 0,
            "metrics": self._metrics.snapshot(queue_depth=depth),
        }
