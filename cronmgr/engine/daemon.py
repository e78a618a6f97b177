"""The daemon: detach, hold the PID file, run the pipeline on its interval, stop cleanly.

Launched by the controller as `python -m cronmgr daemon --ready-fd N ...`. It reports
"READY <pid>" or "ERROR <why>" on that descriptor, so the controller can tell a started
daemon from one that died while starting. This module sets the process up (python-daemon,
the PID file, the exit record); the daemon's event loop is `service.Daemon`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import traceback

import daemon as pydaemon
import structlog
import uvloop

from cronmgr.core.config import WEBHOOKS_ENV, Settings
from cronmgr.core.errors import CronmgrError
from cronmgr.core.launch import EXIT_FILENAME, LaunchSpec, write_json_atomic
from cronmgr.core.models import utcnow
from cronmgr.core.pidfile import AlreadyRunning, PidFile
from cronmgr.engine.service import Daemon
from cronmgr.engine.startup import ReadyPipe
from cronmgr.observability import logs

log = structlog.get_logger("cronmgr.daemon")

SWITCH_INTERVAL_SECONDS = 0.0002
"""How long a thread may hold the GIL while another waits (Python's default is 5 ms)."""


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
