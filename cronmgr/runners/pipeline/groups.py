"""A command step's process group: whether it still has live members, and stopping it.

Each command step leads a process group of its own; `stop_process_group` stops all of it
the same way whatever ended the step: SIGTERM (and SIGCONT, for a stopped process), the
grace period, then SIGKILL. Zombies nobody has reaped do not count as members.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import psutil

# After SIGKILL a process is gone as soon as the kernel has torn it down.
REAP_SECONDS = 2.0
_POLL_FIRST, _POLL_MAX = 0.01, 0.1


def create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


async def stop_process_group(pgid: int, grace: float) -> bool:
    """SIGTERM every process of group `pgid`, SIGKILL what is left after `grace` seconds.

    Returns whether there was any live process to stop.
    """
    if not group_alive(pgid):
        return False
    signal_group(pgid, signal.SIGTERM)
    signal_group(pgid, signal.SIGCONT)  # a stopped process sees SIGTERM only once continued
    if not await _wait_group_gone(pgid, grace):
        signal_group(pgid, signal.SIGKILL)
        await _wait_group_gone(pgid, REAP_SECONDS)
    return True


def group_alive(pgid: int) -> bool:
    """Whether process group `pgid` still has a live (not zombie) member of ours."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # kill() also reaches zombies: dead members nobody has reaped yet (orphans wait for
    # init, which in some containers never reaps). Only live members count.
    return any(_live_member(proc, pgid) for proc in psutil.process_iter())


def _live_member(proc: psutil.Process, pgid: int) -> bool:
    try:
        return os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE
    except (OSError, psutil.Error):
        return False


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _wait_group_gone(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    delay = _POLL_FIRST
    while group_alive(pgid):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, _POLL_MAX)
    return True
