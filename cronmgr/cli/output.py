"""What the command tells its user besides a command's own output: the exit codes, the
one-line `cronmgr: ...` message on stderr that goes with a failure, and the daemon's
status as aligned `label  value` lines for people (`cronmgr status` without --json)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


def _fail(detail: str, code: int) -> int:
    print(f"cronmgr: {detail}", file=sys.stderr)
    return code


# --- status for people -----------------------------------------------------------------------


def format_status(status: Mapping[str, Any]) -> str:
    """The status endpoint's answer as aligned `label  value` lines under its message."""
    rows = [
        ("state", status.get("state") or ("running" if status.get("is_running") else "stopped")),
        ("pid", _or_dash(status.get("pid"))),
        ("pipeline", _schedule(status)),
        ("uptime", _maybe(status.get("uptime_seconds"), _duration)),
        ("cpu", _maybe(status.get("cpu_percent"), lambda v: f"{v:.1f} %")),
        ("memory", _maybe(status.get("memory_rss_bytes"), _size)),
        ("restarts", _or_dash(status.get("restarts"))),
        ("last exit", _last_exit(status.get("last_exit"))),
        ("next runs", _next_runs(status.get("next_runs"))),
    ]
    width = max(len(label) for label, _ in rows)
    body = [f"  {label:<{width}}  {value}" for label, value in rows]
    return "\n".join([str(status.get("message", "")), *body])


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _maybe(value: Any, render: Callable[[Any], str]) -> str:
    return "-" if value is None else render(value)


def _schedule(status: Mapping[str, Any]) -> str:
    pipeline, interval = status.get("pipeline"), status.get("interval_seconds")
    if pipeline is None:
        return "-"
    return f"{pipeline}, every {interval} s" if interval else str(pipeline)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n] or ["0s"]
    return " ".join(shown)


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def _last_exit(last: Any) -> str:
    if not isinstance(last, Mapping):
        return _or_dash(last)
    pid = f" (PID {last['pid']})" if last.get("pid") else ""
    return f"{last.get('at', '?')}: {last.get('reason', 'unknown reason')}{pid}"


def _next_runs(runs: Any) -> str:
    if not runs:
        return "-"
    if not isinstance(runs, list):
        return str(runs)
    return "; ".join(_next_run(run) for run in runs)


def _next_run(run: Any) -> str:
    if not isinstance(run, Mapping):
        return str(run)
    what = run.get("job") or run.get("pipeline")
    return f"{run.get('at', '?')} ({what})" if what else str(run.get("at", "?"))
