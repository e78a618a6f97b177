"""What the command tells its user besides a command's own output: the exit codes, the
one-line `cronmgr: ...` message on stderr that goes with a failure, the daemon's status
as aligned `label  value` lines for people (`cronmgr status` without --json), and the
nodes of the store as a table with a header row (`cronmgr nodes` without --json)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
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
    if status.get("schedules_only"):
        return "none (the schedules only)"
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


# --- tables for people -----------------------------------------------------------------------


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned to their widest cell under an upper-case header; the last column is
    left ragged, so that a long one does not pad every line."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]

    def line(cells: Sequence[str]) -> str:
        padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=False)]
        return "  ".join([*padded, cells[-1]]).rstrip()

    return "\n".join(line(cells) for cells in [header, *rows])


NODE_HEADER = ("NODE", "HOST", "STATE", "SCHEDULES", "IN-FLIGHT", "LEASE", "PIPELINES")


def format_nodes(nodes: Sequence[Mapping[str, Any]]) -> str:
    """`GET /api/v1/nodes` as a table: one node a line, a differing pipeline marked."""
    if not nodes:
        return "no nodes: no daemon has used this store yet"
    return format_table(NODE_HEADER, [_node_row(node) for node in nodes])


def _node_row(node: Mapping[str, Any]) -> list[str]:
    differing = set(node.get("pipelines_differing") or ())
    pipelines = [
        f"{name} (differs)" if name in differing else name
        for name in sorted(node.get("pipelines") or {})
    ]
    return [
        str(node.get("id", "?")),
        str(node.get("host", "?")) + (" (this host)" if node.get("this_host") else ""),
        str(node.get("state", "?")),
        _or_dash(node.get("schedules_owned")),
        _or_dash(node.get("runs_in_flight")),
        _maybe(node.get("lease_expires_in_seconds"), _lease),
        ", ".join(pipelines) or "-",
    ]


def _lease(seconds: float) -> str:
    held = abs(seconds)
    shown = f"{held:.1f}s" if held < 60 else _duration(held)
    return f"in {shown}" if seconds > 0 else f"expired {shown} ago"
