"""A pipeline, its `[schedule]`, and the set of pipelines loaded from one directory.

`Pipeline` checks its steps' `needs` (known names, no cycle) itself, so a pipeline that
is built in code obeys the same rules as one read from a file; `PipelineSet` keeps the
files that failed to load, so that asking for one says why it is missing.
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from cronmgr.core.errors import NotFound
from cronmgr.core.models import (
    FailurePolicy,
    MisfirePolicy,
    OverlapPolicy,
    ScheduleStatus,
    ScheduleType,
)
from cronmgr.core.pipelines.steps import Step

Loc = tuple[int | str, ...]

# File name -> the name models.Schedule (and ScheduleSpec) use.
SCHEDULE_NAMES = {"type": "schedule_type", "cron": "cron_expression", "at": "run_at"}
FILE_NAMES = {api: file for file, api in SCHEDULE_NAMES.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineSchedule:
    """A file's `[schedule]` table, in the terms of `models.Schedule`.

    No defaults here: `_parse_schedule` fills every field from `ScheduleSpec`, whose
    defaults are the domain record's, so they are stated once.
    """

    schedule_type: ScheduleType
    interval_seconds: float | None
    cron_expression: str | None
    run_at: datetime | None
    timezone: str
    jitter_seconds: float
    start_at: datetime | None
    end_at: datetime | None
    duration_seconds: float | None
    max_runs: int | None
    misfire_policy: MisfirePolicy
    misfire_grace_seconds: float
    catch_up_max: int
    overlap_policy: OverlapPolicy
    failure_policy: FailurePolicy
    failure_threshold: int
    cooldown_seconds: float
    enabled: bool

    def schedule_fields(self) -> dict[str, Any]:
        """Keyword arguments for `models.Schedule` (all but id, name and pipeline).

        `enabled = false` gives a paused schedule, which the API can resume.
        """
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "enabled"}
        if self.enabled:
            return {**data, "status": ScheduleStatus.ACTIVE, "status_reason": None}
        reason = "enabled = false in the pipeline file"
        return {**data, "status": ScheduleStatus.PAUSED, "status_reason": reason}

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping under the file's field names."""
        data = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, StrEnum):
                value = value.value
            data[FILE_NAMES.get(item.name, item.name)] = value
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class Pipeline:
    """A named list of steps read from one file, and when to run it."""

    name: str
    path: Path
    steps: tuple[Step, ...]
    description: str = ""
    schedule: PipelineSchedule | None = None
    max_concurrent_runs: int | None = None

    def __post_init__(self) -> None:
        problems = needs_problems([(step.name, step.needs) for step in self.steps])
        if problems:
            raise ValueError(f"pipeline {self.name!r}: {_problem_text(problems[0], self.steps)}")

    @property
    def overlap_policy(self) -> OverlapPolicy:
        """How a run that starts while another runs behaves: the schedule's, else skip."""
        return self.schedule.overlap_policy if self.schedule else OverlapPolicy.SKIP

    @property
    def uses_needs(self) -> bool:
        """Whether any step declares `needs`: then the steps form a graph, not a sequence."""
        return any(step.needs is not None for step in self.steps)

    def needs_of(self, position: int) -> tuple[str, ...]:
        """The steps that must finish before the step at `position` starts."""
        if self.uses_needs:
            return self.steps[position].needs or ()
        return (self.steps[position - 1].name,) if position > 0 else ()

    def schedule_fields(self) -> dict[str, Any] | None:
        """Keyword arguments for `models.Schedule` (id and name left to the caller)."""
        if self.schedule is None:
            return None
        return {**self.schedule.schedule_fields(), "pipeline": self.name}

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping, steps and schedule included."""
        return {
            "name": self.name,
            "description": self.description,
            "path": str(self.path),
            "schedule": self.schedule.as_dict() if self.schedule is not None else None,
            "max_concurrent_runs": self.max_concurrent_runs,
            "steps": [step.as_dict() for step in self.steps],
        }


def needs_problems(steps: Sequence[tuple[str, Sequence[str] | None]]) -> list[tuple[Loc, str]]:
    """Unknown names in the `needs` of (name, needs) pairs, or else a cycle among them.

    Each problem is (location, message), the location as in the file: `steps.2.needs`.
    """
    names = [name for name, _ in steps]
    unknown: list[tuple[Loc, str]] = [
        (("steps", index, "needs"), f"unknown step {need!r} (steps: {', '.join(names)})")
        for index, (_, needs) in enumerate(steps)
        for need in needs or ()
        if need not in names
    ]
    if unknown:
        return unknown
    graph = {name: needs or () for name, needs in steps}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        # graphlib lists each node before the one that needs it; say it the other way.
        cycle = " → ".join(reversed(exc.args[1]))
        return [(("steps",), f"needs form a cycle: {cycle} (each step needs the next)")]
    return []


def _problem_text(problem_at: tuple[Loc, str], steps: Sequence[Step]) -> str:
    loc, message = problem_at
    if len(loc) > 1 and isinstance(loc[1], int):
        return f"step {steps[loc[1]].name!r}: {loc[-1]}: {message}"
    return f"{loc[0]}: {message}"


@dataclass(frozen=True, slots=True)
class InvalidFile:
    """A pipeline file that could not be loaded, and every reason why."""

    file: Path
    name: str
    problems: tuple[str, ...]

    @property
    def message(self) -> str:
        """One line naming the file and its problems."""
        return f"{self.file}: " + "; ".join(self.problems)

    def __str__(self) -> str:
        return self.message


@dataclass(slots=True)
class PipelineSet:
    """The pipelines of one directory, and the files that failed to load."""

    directory: Path
    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    errors: list[InvalidFile] = field(default_factory=list)

    def get(self, name: str) -> Pipeline:
        """The pipeline called `name`; `NotFound` says why it is not there."""
        pipeline = self.pipelines.get(name)
        if pipeline is None:
            failed = [e for e in self.errors if e.name == name]
            raise NotFound(
                self._why_missing(name, failed),
                errors=[{"file": str(e.file), "message": e.message} for e in failed],
            )
        return pipeline

    def __iter__(self) -> Iterator[Pipeline]:
        return iter(self.pipelines.values())

    def __len__(self) -> int:
        return len(self.pipelines)

    def __contains__(self, name: object) -> bool:
        return name in self.pipelines

    def _why_missing(self, name: str, failed: list[InvalidFile]) -> str:
        if failed:
            reasons = " | ".join(e.message for e in failed)
            return f"pipeline {name!r} could not be loaded: {reasons}"
        if not self.pipelines:
            return f"unknown pipeline {name!r}: no pipelines are loaded from {self.directory}"
        known = ", ".join(sorted(self.pipelines))
        return f"unknown pipeline {name!r}; known pipelines: {known}"
