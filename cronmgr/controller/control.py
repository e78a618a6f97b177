"""Starting, stopping and watching the daemon from the controller: `DaemonControl`.

It launches the daemon (`launcher`), ends it (`processes`), records the state last asked
for so that a restarted controller resumes it, reports status, and relaunches a daemon
that died (with `Supervisor`'s backoff). What a start launches is `launch_spec`'s rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psutil
import structlog

from cronmgr.controller.launcher import launch
from cronmgr.controller.processes import process_stats, terminate
from cronmgr.controller.supervisor import Supervisor
from cronmgr.core import pidfile
from cronmgr.core.config import Settings
from cronmgr.core.errors import Conflict, DaemonError, InvalidInput, NotFound
from cronmgr.core.launch import (
    DESIRED_FILENAME,
    EXIT_FILENAME,
    STATE_FILENAME,
    LaunchSpec,
    read_json,
    spec_fields,
    write_json_atomic,
)
from cronmgr.core.models import utcnow
from cronmgr.core.pipelines.loading import load_pipelines
from cronmgr.core.pipelines.pipeline import PipelineSet
from cronmgr.core.supervision import supervised
from cronmgr.observability.notify import Notifier

log = structlog.get_logger("cronmgr.control")


def launch_spec(
    settings: Settings,
    last: LaunchSpec | None,
    interval_seconds: int | None = None,
    pipeline: str | None = None,
) -> LaunchSpec:
    """What a start or restart launches: each field as asked, else as the last start had it,
    else the configured default.

    `last` is `Control.desired_spec()`: it outlives a daemon that died and supervision that
    gave up (only a stop forgets it), so a bare start after `fatal` brings back the daemon
    that was wanted, whether it comes from the API, the CLI or the dashboard. A pipeline
    nobody asked for is settled by `DaemonControl.resolve`: with none loaded, the daemon
    runs the schedules only.
    """
    if pipeline is None:
        pipeline = last.pipeline if last else settings.default_pipeline
    return LaunchSpec(
        interval_seconds or (last.interval_seconds if last else settings.default_interval_seconds),
        pipeline,
    )


@dataclass(frozen=True, slots=True)
class StopOutcome:
    """What `stop` found and did."""

    was_running: bool
    pid: int | None = None
    killed: bool = False
    stale_reason: str = ""


class DaemonControl:
    """The controller's handle on the daemon: start, stop, restart, status, supervision."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = asyncio.Lock()
        self._supervisor = Supervisor(settings)
        self._process: psutil.Process | None = None
        # The controller's own webhooks: a daemon that died cannot report its death, and
        # `POST /api/v1/notifications/test` must work whether a daemon runs or not.
        self.notifier = Notifier(settings.webhooks, queue_size=settings.notify_queue_size)

    @property
    def desired_file(self) -> Path:
        """Where the last requested state (running with which spec, or stopped) lives."""
        return self.settings.state_path / DESIRED_FILENAME

    def inspect(self) -> pidfile.Inspection:
        """The PID file's verdict; a stale file is reported and removed."""
        found = pidfile.inspect(self.settings.pid_file)
        if found.liveness is pidfile.Liveness.STALE and pidfile.remove_stale(
            self.settings.pid_file
        ):
            log.warning("stale_pid_file_removed", reason=found.reason)
        return found

    def desired_spec(self) -> LaunchSpec | None:
        """The spec of the last start, if the last request was to run."""
        data = read_json(self.desired_file)
        if not data or data.get("desired") != "running":
            return None
        pipeline = data.get("pipeline")
        return LaunchSpec(int(data["interval_seconds"]), str(pipeline) if pipeline else None)

    async def resolve(self, spec: LaunchSpec, *, asked: bool = True) -> LaunchSpec:
        """The spec to launch: `spec`, or `spec` without its pipeline when none was `asked`
        for and the pipelines directory holds none (not even a broken file): the daemon
        then runs the schedules only. 422 naming a pipeline that can't be run."""
        if spec.pipeline is None:
            return spec
        pipelines = await asyncio.to_thread(load_pipelines, self.settings.pipelines_path)
        if not asked and not pipelines.pipelines and not pipelines.errors:
            return replace(spec, pipeline=None)
        _check_pipeline(pipelines, spec.pipeline)
        return spec

    async def check(self, spec: LaunchSpec) -> None:
        """422 naming the pipeline when `spec` names one that can't be run."""
        if spec.pipeline is None:
            return
        pipelines = await asyncio.to_thread(load_pipelines, self.settings.pipelines_path)
        _check_pipeline(pipelines, spec.pipeline)

    async def start(self, spec: LaunchSpec) -> int:
        """Launch the daemon; 422 for an unknown pipeline, 409 when one runs already."""
        await self.check(spec)
        async with self._lock:
            found = self.inspect()
            if found.liveness in (pidfile.Liveness.RUNNING, pidfile.Liveness.STARTING):
                pid = found.record.pid if found.record else "?"
                raise Conflict(f"Daemon is already running (PID: {pid})")
            pid = await launch(self.settings, spec)
            self._remember(spec)
            self._supervisor.started(pid, spec)
            log.info("daemon_started", daemon_pid=pid, **spec_fields(spec))
            return pid

    async def stop(self) -> StopOutcome:
        """Stop the daemon if it runs; stopping a stopped daemon is fine."""
        async with self._lock:
            self._supervisor.stopped()
            self._remember(None)
            found = self.inspect()
            if found.liveness is not pidfile.Liveness.RUNNING or found.process is None:
                return StopOutcome(False, stale_reason=found.reason)
            grace = self.settings.stop_grace_seconds + self.settings.step_kill_grace_seconds
            killed = await terminate(found.process, grace + 2.0)
            pidfile.remove_stale(self.settings.pid_file)
            log.info("daemon_stopped", daemon_pid=found.process.pid, killed=killed)
            return StopOutcome(True, pid=found.process.pid, killed=killed)

    def is_running(self) -> bool:
        """Whether the daemon runs now (lock held, pid alive, create time matching)."""
        return self.inspect().liveness is pidfile.Liveness.RUNNING

    def reload(self) -> bool:
        """Ask a running daemon to re-read files and definitions (SIGHUP); False if none."""
        return self._signal(signal.SIGHUP)

    def definitions_changed(self) -> bool:
        """Tell a running daemon that schedules changed in the store (SIGUSR1).

        The daemon then fetches only what changed since the revision it last saw, so an
        edit through the API takes effect at once, never on a polling tick.
        """
        return self._signal(signal.SIGUSR1)

    def _signal(self, signum: int) -> bool:
        found = pidfile.inspect(self.settings.pid_file)
        if found.process is None or found.liveness is not pidfile.Liveness.RUNNING:
            return False
        with contextlib.suppress(psutil.NoSuchProcess):
            found.process.send_signal(signum)
            return True
        return False

    def status(self) -> dict[str, Any]:
        """Everything the status endpoint reports."""
        found = self.inspect()
        running = found.liveness is pidfile.Liveness.RUNNING and found.process is not None
        pid = found.record.pid if running and found.record else None
        body: dict[str, Any] = {
            "is_running": running,
            "pid": pid,
            "message": _status_message(found),
            "state": self._supervisor.state_name(running),
        }
        if running and found.process is not None:
            process, first_look = self._watched_process(found.process)
            body.update(process_stats(process, first_look=first_look))
        body.update(self._daemon_report(running))
        body.update(self._supervisor.report())
        return body

    def _watched_process(self, process: psutil.Process) -> tuple[psutil.Process, bool]:
        # Keep one psutil.Process per daemon: cpu_percent needs the previous sample.
        if self._process is not None and self._process == process:
            return self._process, False
        self._process = process
        return process, True

    def _daemon_report(self, running: bool) -> dict[str, Any]:
        spec = self.desired_spec()
        report = read_json(self.settings.state_path / STATE_FILENAME) or {}
        with_pipeline = spec is not None and spec.pipeline is not None
        return {
            "pipeline": spec.pipeline if spec else None,
            "interval_seconds": spec.interval_seconds if spec and with_pipeline else None,
            # Started without a pipeline (none was loaded): it fires the schedules only.
            "schedules_only": running and spec is not None and not with_pipeline,
            "heartbeat_at": report.get("heartbeat_at") if running else None,
            "node": report.get("node") if running else None,  # its id among the store's nodes
            # {last, p50, p99, samples} over the engine's latest firings; None before any.
            "schedule_lag_seconds": (
                (report.get("metrics") or {}).get("schedule_lag_seconds") if running else None
            ),
            "active_runs": report.get("active_runs", []) if running else [],
            "queued_runs": report.get("queued_runs", []) if running else [],
            "next_runs": report.get("next_runs", []) if running else [],
        }

    def _remember(self, spec: LaunchSpec | None) -> None:
        data: dict[str, Any] = {"desired": "running" if spec else "stopped"}
        if spec:
            data.update(spec_fields(spec))
        data["updated_at"] = utcnow().isoformat()
        try:
            write_json_atomic(self.desired_file, data)
        except OSError as exc:
            # A full disk must not keep a daemon from being stopped (or started): what is
            # lost is only what a restarted controller would resume.
            log.error("desired_state_not_saved", path=str(self.desired_file), error=str(exc))

    async def attach(self) -> None:
        """On controller start-up: take over a running daemon, or resume a wanted one."""
        found = self.inspect()
        spec = self.desired_spec()
        if found.liveness is pidfile.Liveness.RUNNING and found.record:
            log.info("daemon_attached", daemon_pid=found.record.pid)
            if spec:
                self._supervisor.started(found.record.pid, spec, attached=True)
            return
        if spec and self.settings.supervise:
            log.info("daemon_resuming", reason="it was running when the controller last saw it")
            try:
                await self.start(spec)
            except (DaemonError, Conflict, InvalidInput) as exc:
                log.warning("daemon_not_resumed", reason=exc.detail)

    async def supervise(self) -> None:
        """Watch the daemon for as long as the controller runs; restart it when it dies.
        A check that breaks is logged and the watch goes on."""
        await supervised("daemon_supervisor", self._watch_once)

    async def _watch_once(self) -> None:
        await asyncio.sleep(self.settings.supervise_poll_seconds)
        await self.check_once()

    async def check_once(self) -> None:
        """One supervision step: notice an unexpected death and relaunch with backoff."""
        if self._lock.locked() or not self._supervisor.watching:
            return
        found = self.inspect()
        if found.liveness in (pidfile.Liveness.RUNNING, pidfile.Liveness.STARTING):
            return
        pid, reason = self._supervisor.pid, self._exit_reason(found)
        spec = self._supervisor.died(reason)
        self._notify_died(pid, reason, will_restart=spec is not None)
        while spec is not None:
            await asyncio.sleep(self._supervisor.delay())
            if not self._supervisor.watching:
                return
            try:
                await self._relaunch(spec)
                return
            except DaemonError as exc:
                spec = self._supervisor.failed_restart(exc.detail)

    def _notify_died(self, pid: int | None, reason: str, *, will_restart: bool) -> None:
        supervisor = self._supervisor
        self.notifier.publish(
            "daemon_died",
            {
                "pid": pid,
                "reason": reason,
                "will_restart": will_restart,
                "restart_in_seconds": supervisor.delay() if will_restart else None,
                "restarts": supervisor.restarts,
                "quick_failures": supervisor.quick_failures,
                "fatal": supervisor.fatal,
                "pipeline": supervisor.spec.pipeline if supervisor.spec else None,
                "host": socket.gethostname(),
            },
        )

    async def _relaunch(self, spec: LaunchSpec) -> None:
        async with self._lock:
            if self.inspect().liveness is not pidfile.Liveness.ABSENT:
                return  # someone started it meanwhile
            pid = await launch(self.settings, spec)
            self._supervisor.started(pid, spec, restart=True)
            log.warning("daemon_restarted", daemon_pid=pid, restarts=self._supervisor.restarts)

    def _exit_reason(self, found: pidfile.Inspection) -> str:
        record = read_json(self.settings.state_path / EXIT_FILENAME)
        if record and record.get("pid") == self._supervisor.pid:
            return str(record.get("reason"))
        pid = self._supervisor.pid
        return found.reason or f"pid {pid} vanished: killed by a signal or crashed"


def _check_pipeline(pipelines: PipelineSet, name: str) -> None:
    try:
        pipelines.get(name)
    except NotFound as exc:
        message = exc.detail
        raise InvalidInput(
            f"invalid request body: pipeline: {message}",
            errors=[{"field": "pipeline", "message": message, "type": "not_found"}],
        ) from exc


def _status_message(found: pidfile.Inspection) -> str:
    if found.liveness is pidfile.Liveness.RUNNING and found.record:
        return f"Daemon is running (PID: {found.record.pid})"
    if found.liveness is pidfile.Liveness.STARTING:
        return "Daemon is starting"
    if found.liveness is pidfile.Liveness.STALE:
        return f"Daemon is not running (stale PID file removed: {found.reason})"
    return "Daemon is not running"
