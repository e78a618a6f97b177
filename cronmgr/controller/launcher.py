"""Launching the daemon: its environment, and the wait for its word that it got ready.

The controller never forks itself: it launches `python -m cronmgr daemon`, which detaches
with python-daemon and reports back through a pipe whether it got ready or why it could
not. The daemon sees the controller's settings as `CRONMGR_*` variables, without the ones
it must not pass on to the commands it runs.
"""

from __future__ import annotations

import asyncio
import os

from cronmgr.controller.processes import terminate
from cronmgr.core import pidfile
from cronmgr.core.config import ENV_PREFIX, Settings, webhooks_env
from cronmgr.core.errors import DaemonError
from cronmgr.core.launch import ERROR_PREFIX, READY_PREFIX, LaunchSpec

# Settings the daemon does not need and must not pass on to the commands it runs.
# Webhooks (their secrets) reach the daemon apart, through `webhooks_env`, never its steps.
_PRIVATE_SETTINGS = frozenset({"api_token", "webhooks"})
# The controller's own conversation with systemd; the daemon and its steps stay out of it.
_CONTROLLER_ONLY_ENV = frozenset({"NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC"})


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as `CRONMGR_*` variables, so the daemon sees what the controller sees."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None or name in _PRIVATE_SETTINGS:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        env[ENV_PREFIX + name.upper()] = str(value)
    return env


async def launch(settings: Settings, spec: LaunchSpec) -> int:
    """Start the daemon and wait until it reports ready; return its pid.

    Raises `DaemonError` with the daemon's own words when it dies during start-up.
    """
    read_fd, write_fd = os.pipe()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(ENV_PREFIX) and k not in _CONTROLLER_ONLY_ENV
    }
    env.update(settings_env(settings))
    env.update(webhooks_env(settings))
    try:
        launcher = await asyncio.create_subprocess_exec(
            *spec.argv(write_fd),
            pass_fds=(write_fd,),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=settings.home,
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    try:
        report = await _read_report(read_fd, settings.start_timeout_seconds)
    except TimeoutError as exc:
        await _abandon(settings)
        raise DaemonError(
            f"the daemon did not report ready within {settings.start_timeout_seconds:g} s "
            "and was stopped; see the log"
        ) from exc
    finally:
        stderr = await _launcher_stderr(launcher)
    return _parse_report(report, stderr)


async def _read_report(read_fd: int, wait_seconds: float) -> bytes:
    # The pipe yields the daemon's verdict line, or EOF when every process holding it has
    # exited without one: either way the read ends, and the timeout covers a hang.
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
    )
    try:
        return await asyncio.wait_for(reader.readline(), wait_seconds)
    finally:
        transport.close()


async def _launcher_stderr(launcher: asyncio.subprocess.Process) -> bytes:
    # The launcher exits right after the first fork; what it printed is only of interest
    # when it failed before detaching (bad arguments, bad config, import errors).
    try:
        _, data = await asyncio.wait_for(launcher.communicate(), 2.0)
    except TimeoutError:
        return b""
    return data or b""


async def _abandon(settings: Settings) -> None:
    found = pidfile.inspect(settings.pid_file)
    if found.process is not None:
        await terminate(found.process, settings.step_kill_grace_seconds)
    pidfile.remove_stale(settings.pid_file)


def _parse_report(report: bytes, stderr: bytes) -> int:
    line = report.strip()
    if line.startswith(READY_PREFIX):
        return int(line[len(READY_PREFIX) :].split()[0])
    if line.startswith(ERROR_PREFIX):
        message = line[len(ERROR_PREFIX) :].decode(errors="replace")
    else:
        message = _last_lines(stderr) or "the daemon exited during start-up without a word"
    raise DaemonError(f"Failed to start daemon: {message}")


def _last_lines(stderr: bytes, count: int = 5) -> str:
    lines = [ln for ln in stderr.decode(errors="replace").splitlines() if ln.strip()]
    return " | ".join(lines[-count:])
