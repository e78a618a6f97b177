"""Sparklines: a schedule's last runs as a row of bars, oldest on the left, each as tall
as the run took, drawn by the schedules page as inline SVG.
"""

from __future__ import annotations

from dataclasses import dataclass

from cronmgr.controller.dashboard.names import run_seconds
from cronmgr.core.models import Run

SPARK_RUNS = 20
"""Runs a schedule's sparkline shows."""

SPARK_WIDTH = 120.0
SPARK_HEIGHT = 24.0
SPARK_MIN_BAR = 3.0


@dataclass(frozen=True, slots=True)
class Bar:
    """One run in a sparkline: where its bar stands, how tall (its duration), its status."""

    x: float
    width: float
    height: float
    status: str
    title: str


def sparkline(runs: list[Run]) -> list[Bar]:
    """Bars for `runs` (given newest first), oldest on the left, height by duration."""
    ordered = list(reversed(runs[:SPARK_RUNS]))
    seconds = [run_seconds(run) or 0.0 for run in ordered]
    longest = max(seconds, default=0.0) or 1.0
    step = SPARK_WIDTH / SPARK_RUNS
    # Right-aligned: the newest run is always at the right edge, however few there are.
    first = SPARK_RUNS - len(ordered)
    return [
        Bar(
            x=(first + index) * step,
            width=step * 0.8,
            height=SPARK_MIN_BAR + (SPARK_HEIGHT - SPARK_MIN_BAR) * took / longest,
            status=run.status.value,
            title=f"{run.status.value}, {took:.3g} s, {run.scheduled_for:%Y-%m-%d %H:%M:%S} UTC",
        )
        for index, (run, took) in enumerate(zip(ordered, seconds, strict=True))
    ]
