"""The daemon: detach, hold the PID file, run the pipeline on its interval, stop cleanly.

Launched by the controller as `python -m cronmgr daemon --ready-fd N ...`. It reports
"READY <pid>" or "ERROR <why>" on that descriptor, so the controller can tell a started
daemon from one that died while starting.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import daemon as pydaemon
import structlog
import uvloop

from cronmgr.core.config import ENV_PREFIX, WEBHOOKS_ENV, Settings
from cronmgr.core.errors import CronmgrError, InvalidInput, NotFound
from cronmgr.core.launch import (
    ERROR_PREFIX,
    EXIT_FILENAME,
    READY_PREFIX,
    STATE_FILENAME,
    LaunchSpec,
    spec_fields,
    write_json_atomic,
)
from cronmgr.core.models import (
    PIPELINE_JOB_PREFIX,
    TARGET_JOB_PREFIX,
    FailurePolicy,
    MisfirePolicy,
    Schedule,
    ScheduleStatus,
    ScheduleType,
    utcnow,
)
from cronmgr.core.pidfile import AlreadyRunning, PidFile
from cronmgr.core.pipelines.loading import load_pipelines
from cronmgr.core.pipelines.pipeline import PipelineSet
from cronmgr.core.supervision import spawn, supervised
from cronmgr.core.triggers.schedules import build_trigger
from cronmgr.engine.jobs import JobRunner
from cronmgr.engine.manual import ManualRuns
from cronmgr.engine.orphans import OrphanGroup, end_orphans, end_remaining
from cronmgr.engine.schedule_faults import check_spans, explain
from cronmgr.engine.scheduler import Scheduler
from cronmgr.observability import logs
from cronmgr.observability.incidents import IncidentTracker
from cronmgr.observability.metrics import STATS_COMPACT_SECONDS, STATS_KEPT_HOURS, EngineMetrics
from cronmgr.observability.notify import Notifier
from cronmgr.runners.http.runner import HttpRunner
from cronmgr.runners.pipeline.work_dirs import purge_work_dirs
from cronmgr.store import Store, open_store
from cronmgr.store.pipeline_sync import sync_pipeline_schedules
from cronmgr.store.records import Progress

log = structlog.get_logger("cronmgr.daemon")

HEARTBEAT_SECONDS = 5.0
GC_YOUNG, GC_MIDDLE, GC_OLD = 700, 10, 1000
"""The collector's thresholds once loaded (Python's are 700, 10, 10)."""
SWITCH_INTERVAL_SECONDS = 0.0002
"""How long a thread may hold the GIL while another waits (Python's default is 5 ms)."""
CLAIMED_ORPHAN_REASON = (
    "the daemon stopped at about this slot's time: the slot was claimed ahead, and whether"
    " its request went out is not known"
)
"""Why a slot claimed ahead by a daemon that died is failed (and never run again)."""
ORPHAN_GRACE_SECONDS = 2.0
"""At most this long from SIGTERM to SIGKILL for steps a dead daemon left: it delays the start."""


class ReadyPipe:
    """The one-line verdict the daemon owes the controller that launched it."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def ok(self) -> None:
        """Say the daemon is ready."""
        self._send(READY_PREFIX + str(os.getpid()).encode())

    def fail(self, message: str) -> None:
        """Say why the daemon could not start (one line)."""
        self._send(ERROR_PREFIX + " ".join(message.split()).encode(errors="replace"))

    def _send(self, line: bytes) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._fd, line + b"\n")
            os.close(self._fd)
        self._fd = None


def main(settings: Settings, spec: LaunchSpec, ready_fd: int | None) -> int:
    """Detach and run until stopped; the exit code of the daemon process."""
    ready = ReadyPipe(ready_fd)
    # Read into `settings` already; the steps inherit this environment, and the webhook
    # secrets are none of their business.
    os.environ.pop(WEBHOOKS_ENV, None)
    context = pydaemon.DaemonContext(
        working_directory=str(settings.home),
        umask=0o022,
        detach_process=True,
        files_preserve=[ready_fd] if ready_fd is not None else [],
        # SIGTERM and SIGHUP are handled by the event loop; keep job control quiet.
        signal_map={signal.SIGTSTP: None, signal.SIGTTIN: None, signal.SIGTTOU: None},
    )
    with context:
        return _run_detached(settings, spec, ready)


def _run_detached(settings: Settings, spec: LaunchSpec, ready: ReadyPipe) -> int:
    pid_file = PidFile(settings.pid_file)
    try:
        pid_file.acquire()
    except (AlreadyRunning, OSError) as exc:
        ready.fail(str(exc))
        return 1
    try:
        logs.configure_logging(settings, to_file=True, final=True)
        # The writer thread holds the GIL in short bursts; a request due now should not
        # wait out the default 5 ms switch interval behind one.
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(Daemon(settings, spec).run(ready))
    except BaseException as exc:
        reason = _describe_failure(exc)
        # Let go of the PID file before answering: the controller reports the failure at
        # once, and a status right after must not still see this process as the daemon.
        pid_file.release()
        ready.fail(reason)
        _record_exit(settings, reason)
        with contextlib.suppress(Exception):
            log.critical("daemon_crashed", reason=reason, exc_info=exc)
        return 1
    finally:
        pid_file.release()
    _record_exit(settings, "stopped")
    return 0


def _describe_failure(exc: BaseException) -> str:
    if isinstance(exc, CronmgrError):
        return exc.detail
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    last = traceback.format_exception_only(exc)[-1].strip() or type(exc).__name__
    # Not one of ours: a bug. Where it happened tells a report from another.
    where = _where(exc)
    return f"an unexpected error{f' in {where}' if where else ''}: {last} (see the log)"


def _where(exc: BaseException) -> str | None:
    """The innermost cronmgr function the exception passed through, as module.function."""
    found = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        module = frame.f_globals.get("__name__", "")
        if module == "cronmgr" or module.startswith("cronmgr."):
            found = f"{module}.{frame.f_code.co_qualname}"
    return found


def _record_exit(settings: Settings, reason: str) -> None:
    with contextlib.suppress(OSError):
        write_json_atomic(
            settings.state_path / EXIT_FILENAME,
            {"pid": os.getpid(), "reason": reason, "at": utcnow().isoformat()},
        )


START_SCHEDULE_ID = "daemon-interval"
"""The schedule `POST /api/cron/start {"interval_seconds": N}` runs its pipeline on."""


@contextmanager
def bulk_load() -> Iterator[None]:
    """Hold the cyclic garbage collector while the schedules load, then freeze them.

    Loading makes several objects per schedule and nothing cyclic to collect: each full
    collection on the way would walk everything loaded so far (a quarter of the start
    time with 100,000 schedules). Frozen, the loaded objects are skipped by later
    collections too; reference counting still frees them when a schedule changes.
    """
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
        # A full collection stalls the loop for milliseconds, and at a thousand runs a
        # second the default thresholds start one every few seconds: young cycles are
        # still collected as often as before, the old generation a hundredth as often.
        gc.set_threshold(GC_YOUNG, GC_MIDDLE, GC_OLD)


def start_schedule(spec: LaunchSpec, now: datetime) -> Schedule:
    """The schedule of the pipeline the daemon was started with: from now, every N s."""
    return Schedule(
        id=START_SCHEDULE_ID,
        name=START_SCHEDULE_ID,
        schedule_type=ScheduleType.INTERVAL,
        pipeline=spec.pipeline,
        interval_seconds=float(spec.interval_seconds),
        start_at=now,
        misfire_policy=MisfirePolicy.SKIP,
        failure_policy=FailurePolicy.NONE,
        created_at=now,
        updated_at=now,
    )


async def ensure_start_schedule(store: Store, spec: LaunchSpec) -> None:
    """Create or reset the start schedule: first slot now, counters from zero."""
    now = utcnow()
    try:  # the one schedule asked for with the start: refuse it, rather than set it aside
        schedule = start_schedule(spec, now)
        check_spans(schedule)
        build_trigger(schedule)
    except (ValueError, OverflowError) as exc:
        raise InvalidInput(f"the start interval can't be used: {explain(exc)}") from exc
    try:
        await store.get_schedule(START_SCHEDULE_ID)
    except NotFound:
        await store.insert_schedule(schedule)
        return
    await store.update_schedule(schedule)
    await store.set_schedule_status(START_SCHEDULE_ID, ScheduleStatus.ACTIVE)
    await store.record_progress([Progress(START_SCHEDULE_ID, 0, 0, None, now)])


class Daemon:
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
