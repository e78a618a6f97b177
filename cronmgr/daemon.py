"""The daemon: detach, hold the PID file, run the pipeline on its interval, stop cleanly.

Launched by the controller as `python -m cronmgr daemon --ready-fd N ...`. It reports
"READY <pid>" or "ERROR <why>" on that descriptor, so the controller can tell a started
daemon from one that died while starting.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import traceback
from datetime import datetime
from typing import Any

import daemon as pydaemon
import structlog

from cronmgr import logs
from cronmgr.config import Settings
from cronmgr.control import (
    ERROR_PREFIX,
    EXIT_FILENAME,
    READY_PREFIX,
    STATE_FILENAME,
    LaunchSpec,
    write_json_atomic,
)
from cronmgr.errors import CronmgrError
from cronmgr.jobs import PipelineJob
from cronmgr.models import Run, utcnow
from cronmgr.pidfile import AlreadyRunning, PidFile
from cronmgr.pipelines import load_pipelines
from cronmgr.store import Store, open_store
from cronmgr.triggers import IntervalTrigger

log = structlog.get_logger("cronmgr.daemon")

HEARTBEAT_SECONDS = 5.0


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
        logs.configure_logging(settings, to_file=True)
        asyncio.run(Daemon(settings, spec).run(ready))
    except BaseException as exc:
        reason = _describe_failure(exc)
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
    last = traceback.format_exception_only(exc)[-1].strip()
    return last or type(exc).__name__


def _record_exit(settings: Settings, reason: str) -> None:
    with contextlib.suppress(OSError):
        write_json_atomic(
            settings.state_path / EXIT_FILENAME,
            {"pid": os.getpid(), "reason": reason, "at": utcnow().isoformat()},
        )


class Daemon:
    """The daemon's event loop: fire the job on its slots, stop on SIGTERM, reload on SIGHUP."""

    def __init__(self, settings: Settings, spec: LaunchSpec) -> None:
        self.settings = settings
        self.spec = spec
        self._stopping = asyncio.Event()
        self._bookkeeping: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()  # wakes the heartbeat to publish new state at once
        self._active: dict[str, asyncio.Task[Run | None]] = {}
        self._next_slot: datetime | None = None
        self._job: PipelineJob | None = None

    async def run(self, ready: ReadyPipe) -> None:
        """Open the store, recover, load the pipeline, report ready, serve until stopped."""
        async with open_store(self.settings.store_url) as store:
            recovered = await store.fail_orphaned_runs(
                "the daemon stopped before this run finished"
            )
            self._job = self._load_job(store)
            self._install_signal_handlers()
            ready.ok()
            log.info(
                "daemon_ready",
                orphaned_runs_failed=recovered,
                interval_seconds=self.spec.interval_seconds,
                pipeline=self.spec.pipeline,
            )
            heartbeat = asyncio.create_task(self._heartbeat())
            try:
                await self._fire_loop()
                await self._drain()
            finally:
                heartbeat.cancel()
                await asyncio.gather(heartbeat, return_exceptions=True)
        log.info("daemon_stopped")

    def _load_job(self, store: Store) -> PipelineJob:
        pipelines = load_pipelines(self.settings.pipelines_path)
        for problem in pipelines.errors:
            log.error("pipeline_invalid", file=str(problem.file), error=problem.message)
        pipeline = pipelines.get(self.spec.pipeline)
        return PipelineJob(self.settings, store, pipeline, schedule_id=f"interval:{pipeline.name}")

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self._request_stop, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self._reload)

    def _request_stop(self, signame: str) -> None:
        if not self._stopping.is_set():
            log.info("daemon_stopping", signal=signame, active_runs=len(self._active))
            self._stopping.set()

    def _reload(self) -> None:
        logs.reopen_log_file()
        assert self._job is not None
        pipelines = load_pipelines(self.settings.pipelines_path)
        try:
            self._job = self._job.with_pipeline(pipelines.get(self.spec.pipeline))
        except CronmgrError as exc:
            log.error("reload_failed", error=exc.detail, kept="the previous definition")
            return
        log.info("daemon_reloaded", pipeline=self.spec.pipeline, invalid=len(pipelines.errors))

    async def _fire_loop(self) -> None:
        # The first slot is the moment of start, as the original daemon ran at once.
        trigger = IntervalTrigger(self.spec.interval_seconds, anchor=utcnow())
        slot = trigger.anchor
        while not self._stopping.is_set():
            self._next_slot = slot
            self._changed.set()
            if not await self._sleep_until(slot):
                break
            self._fire(slot)
            # Slots missed while the loop was held up are not replayed: run once, move on.
            slot = trigger.after(max(slot, utcnow()))
        self._next_slot = None

    async def _sleep_until(self, moment: datetime) -> bool:
        delay = (moment - utcnow()).total_seconds()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
        return not self._stopping.is_set()

    def _fire(self, slot: datetime) -> None:
        assert self._job is not None
        if self._active:
            # Overlap policy "skip": the previous run is still going; say so in the record.
            note = asyncio.create_task(self._job.record_skipped(slot, "previous run running"))
            self._bookkeeping.add(note)
            note.add_done_callback(self._bookkeeping.discard)
            return
        run = asyncio.create_task(self._job.run(slot))
        key = slot.isoformat()
        self._active[key] = run
        run.add_done_callback(lambda _t: self._forget(key))
        self._changed.set()

    def _forget(self, key: str) -> None:
        self._active.pop(key, None)
        self._changed.set()

    async def _drain(self) -> None:
        if not self._active:
            return
        tasks = list(self._active.values())
        _done, pending = await asyncio.wait(tasks, timeout=self.settings.stop_grace_seconds)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("runs_cancelled", count=len(pending), reason="stop grace period over")
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _heartbeat(self) -> None:
        path = self.settings.state_path / STATE_FILENAME
        while True:
            self._changed.clear()
            await asyncio.to_thread(write_json_atomic, path, self._state())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), HEARTBEAT_SECONDS)

    def _state(self) -> dict[str, Any]:
        job = self._job
        next_runs = []
        if self._next_slot is not None and job is not None:
            next_runs.append({"job": job.name, "at": self._next_slot.isoformat()})
        return {
            "pid": os.getpid(),
            "heartbeat_at": utcnow().isoformat(),
            "active_runs": job.active_run_ids() if job else [],
            "next_runs": next_runs,
        }
