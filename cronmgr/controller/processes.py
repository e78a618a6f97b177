"""Inspecting and ending the daemon's processes through psutil: its whole family (descendants
and whatever shares their process groups), a stop that escalates from SIGTERM to SIGKILL,
and the uptime, cpu, memory and children that status reports.

Everything the controller knows about a running daemon comes from the PID file and psutil,
so a new controller can take over a daemon an old one started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

import psutil
import structlog

from cronmgr.core.models import utcnow

log = structlog.get_logger("cronmgr.control")


def process_tree(process: psutil.Process) -> list[psutil.Process]:
    """The daemon, every descendant, and whatever else shares their process groups."""
    try:
        family = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    groups = set()
    for member in family:
        with contextlib.suppress(psutil.Error, OSError):
            groups.add(os.getpgid(member.pid))
    groups.discard(os.getpgid(0))
    known = {p.pid for p in family}
    for candidate in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if candidate.pid not in known and os.getpgid(candidate.pid) in groups:
                family.append(candidate)
    return family


async def terminate(process: psutil.Process, grace: float) -> bool:
    """SIGTERM the daemon, wait `grace`, then SIGKILL it and all its kin; True if killed."""
    with contextlib.suppress(psutil.NoSuchProcess):
        process.send_signal(signal.SIGTERM)
    _gone, alive = await asyncio.to_thread(psutil.wait_procs, [process], grace)
    if not alive:
        return False
    family = process_tree(process)
    log.warning("daemon_kill", daemon_pid=process.pid, processes=len(family), grace_seconds=grace)
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    await asyncio.to_thread(psutil.wait_procs, family, 5.0)
    return True


def process_stats(process: psutil.Process, *, first_look: bool) -> dict[str, Any]:
    """Uptime, cpu, memory and children of a live daemon, for status.

    cpu_percent is measured since the previous look at the same process object; on the
    first look it is the average over the daemon's whole life.
    """
    try:
        with process.oneshot():
            created = process.create_time()
            cpu = process.cpu_percent(interval=None)
            times = process.cpu_times()
            rss = process.memory_info().rss
            children = process.children(recursive=True)
    except psutil.NoSuchProcess:
        return {}
    if first_look:
        lived = max(1e-3, utcnow().timestamp() - created)
        cpu = round(100.0 * (times.user + times.system) / lived, 2)
    return {
        "started_at": _iso(created),
        "uptime_seconds": round(max(0.0, utcnow().timestamp() - created), 3),
        "cpu_percent": cpu,
        "memory_rss_bytes": rss,
        "children": [_describe_child(c) for c in children],
    }


def _describe_child(child: psutil.Process) -> dict[str, Any]:
    try:
        return {"pid": child.pid, "name": child.name(), "status": child.status()}
    except psutil.NoSuchProcess:
        return {"pid": child.pid, "name": None, "status": "exited"}


def _iso(timestamp: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, UTC).isoformat()
