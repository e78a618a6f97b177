"""The response-time chart of a target's page: its recent runs as points, time across and
milliseconds up, failures marked, drawn as inline SVG on the server (as the sparklines are).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cronmgr.controller.dashboard.names import run_seconds
from cronmgr.core.models import Run, RunStatus

CHART_RUNS = 200
"""Runs the chart shows, the newest."""

WIDTH = 880.0
HEIGHT = 240.0
LEFT = 60.0  # room for the millisecond labels
RIGHT = 12.0
TOP = 10.0
BOTTOM = 24.0  # room for the time labels


@dataclass(frozen=True, slots=True)
class Point:
    """One run: where it stands, whether it failed, what its tooltip says."""

    x: float
    y: float
    failed: bool
    title: str


@dataclass(frozen=True, slots=True)
class Tick:
    """A labelled line across the chart at `y` (milliseconds) or under it at `x` (time)."""

    at: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    """The chart's geometry: the points, the line through them and the axes' labels."""

    points: list[Point]
    line: str
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    failed: int
    width: float = WIDTH
    height: float = HEIGHT
    left: float = LEFT
    right: float = WIDTH - RIGHT
    top: float = TOP
    bottom: float = HEIGHT - BOTTOM


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2 or 5 times a power of ten that is at least `value`."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1.0, 2.0, 5.0, 10.0) if step * power >= value)


def _ms_label(ms: float) -> str:
    return f"{ms / 1000:g} s" if ms >= 1000 else f"{ms:g} ms"


def response_chart(runs: list[Run]) -> Chart | None:
    """The chart of `runs` (given newest first) that ended; None when none did."""
    timed = [
        (run, 1000 * seconds)
        for run in reversed(runs[:CHART_RUNS])
        if run.status.finished and (seconds := run_seconds(run)) is not None
    ]
    if not timed:
        return None
    first, last = timed[0][0].scheduled_for, timed[-1][0].scheduled_for
    span = (last - first).total_seconds() or 1.0
    top_ms = _nice_ceiling(max(ms for _, ms in timed))
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x_of(run: Run) -> float:
        if len(timed) == 1:
            return LEFT + inner_w / 2
        return LEFT + inner_w * (run.scheduled_for - first).total_seconds() / span

    def y_of(ms: float) -> float:
        return TOP + inner_h * (1 - ms / top_ms)

    points = [
        Point(
            x_of(run),
            y_of(ms),
            run.status is not RunStatus.SUCCEEDED,
            f"{run.status.value}, {ms:.0f} ms, {run.scheduled_for:%Y-%m-%d %H:%M:%S} UTC",
        )
        for run, ms in timed
    ]
    ticks = [Tick(y_of(top_ms * share), _ms_label(top_ms * share)) for share in (0, 0.5, 1)]
    times = [Tick(LEFT, f"{first:%m-%d %H:%M:%S}")]
    if len(timed) > 1:
        times.append(Tick(WIDTH - RIGHT, f"{last:%m-%d %H:%M:%S}"))
    return Chart(
        points=points,
        line=" ".join(f"{p.x:.1f},{p.y:.1f}" for p in points),
        y_ticks=ticks,
        x_ticks=times,
        failed=sum(p.failed for p in points),
    )
