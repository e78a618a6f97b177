"""The restart bookkeeping of the daemon's supervision: capped exponential backoff, the
quick failures that count towards the fatal state, and the last exit, for status.

`DaemonControl` watches the daemon and relaunches it; `Supervisor` decides whether and when.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from cronmgr.core.config import Settings
from cronmgr.core.launch import LaunchSpec
from cronmgr.core.models import utcnow

log = structlog.get_logger("cronmgr.control")


class Supervisor:
    """Restart bookkeeping: backoff, quick failures, the fatal state, the last exit."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid: int | None = None
        self.spec: LaunchSpec | None = None
        self.watching = False
        self.fatal = False
        self.backing_off = False
        self.restarts = 0
        self.quick_failures = 0
        self.last_exit: dict[str, Any] | None = None
        self._since = 0.0

    def started(
        self, pid: int, spec: LaunchSpec, *, restart: bool = False, attached: bool = False
    ) -> None:
        """A daemon is up (launched, restarted or found running)."""
        self.pid, self.spec = pid, spec
        self.watching, self.fatal, self.backing_off = True, False, False
        self._since = _loop_time()
        if restart:
            self.restarts += 1
        elif not attached:
            self.restarts = self.quick_failures = 0

    def stopped(self) -> None:
        """The user asked for a stop: nothing to watch any more."""
        self.watching = self.backing_off = self.fatal = False
        self.quick_failures = 0

    def died(self, reason: str) -> LaunchSpec | None:
        """Record an unexpected death; return the spec to relaunch, or None to give up."""
        lived = _loop_time() - self._since
        self.last_exit = {"pid": self.pid, "reason": reason, "at": utcnow().isoformat()}
        log.error("daemon_died", daemon_pid=self.pid, reason=reason, lived_seconds=round(lived, 3))
        if not self.settings.supervise:
            self.watching = False
            return None
        quick = lived < self.settings.restart_min_uptime_seconds
        self.quick_failures = self.quick_failures + 1 if quick else 1
        return self._next_or_fatal()

    def failed_restart(self, reason: str) -> LaunchSpec | None:
        """A relaunch failed during start-up: one more quick failure; spec to retry or None."""
        self.last_exit = {"pid": None, "reason": reason, "at": utcnow().isoformat()}
        log.error("daemon_restart_failed", reason=reason)
        self.quick_failures += 1
        return self._next_or_fatal()

    def _next_or_fatal(self) -> LaunchSpec | None:
        if self.quick_failures > self.settings.restart_max_quick_failures:
            self.watching, self.backing_off, self.fatal = False, False, True
            log.critical("daemon_fatal", quick_failures=self.quick_failures)
            return None
        self.backing_off = True
        return self.spec

    def delay(self) -> float:
        """Capped exponential backoff before the next relaunch."""
        exponent = max(0, self.quick_failures - 1)
        base = self.settings.restart_backoff_seconds * (2**exponent)
        return float(min(base, self.settings.restart_backoff_max_seconds))

    def state_name(self, running: bool) -> str:
        """running, backoff, fatal or stopped."""
        if running:
            return "running"
        if self.fatal:
            return "fatal"
        if self.backing_off:
            return "backoff"
        return "stopped"

    def report(self) -> dict[str, Any]:
        """The supervision fields of status."""
        return {
            "supervised": self.settings.supervise,
            "restarts": self.restarts,
            "quick_failures": self.quick_failures,
            "last_exit": self.last_exit,
        }


def _loop_time() -> float:
    return asyncio.get_running_loop().time()
