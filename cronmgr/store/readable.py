"""Saved means readable: a stored schedule is read back through the rule it was saved by.

Every schedule the store hands out has passed the field rules of `ScheduleSpec`, the same
validation the API and the pipeline files apply when they save one (the rules on how a
request combines fields are not repeated: they concern how it was written, not whether
the engine can compute with it). A row that an older version wrote, or that
was edited by hand, and that breaks a rule (a value out of range, an unknown policy, a time
that can't be parsed) is not an error of the reader: it comes back as a schedule in status
`error`, its reason in `status_reason`, so a list still answers, the dashboard still shows
it, the engine never fires it, and it can be fixed with a PATCH or deleted. A target is
read back the same way (with `status_reason` set; its runs fail without sending), and a
run or step row that can't be mapped comes back failed, its error saying why; a node row,
with what of it can be read (a node has no field for the reason: the store logs it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from cronmgr.core.bounds import FIRST_MOMENT
from cronmgr.core.models import (
    FailurePolicy,
    MisfirePolicy,
    Node,
    NodeState,
    OverlapPolicy,
    Run,
    RunStatus,
    Schedule,
    ScheduleStatus,
    ScheduleType,
    StepResult,
    Target,
    Trigger,
    utcnow,
)
from cronmgr.core.specs.schedules import ScheduleSpec
from cronmgr.core.specs.targets import TargetSpec

UNREADABLE = "its stored definition can't be used"
_ENUM_COLUMNS: dict[str, type[StrEnum]] = {
    "schedule_type": ScheduleType,
    "misfire_policy": MisfirePolicy,
    "overlap_policy": OverlapPolicy,
    "failure_policy": FailurePolicy,
    "status": ScheduleStatus,
}
"""How the reason of an `error` schedule read from a bad row begins."""


def checked_schedule(schedule: Schedule) -> Schedule:
    """`schedule`, or a copy in status `error` when its definition breaks a rule."""
    if schedule.status is ScheduleStatus.ERROR:
        return schedule
    problems = ScheduleSpec.field_problems(schedule)
    if problems:
        return _in_error(schedule, "; ".join(f"{name}: {why}" for name, why in problems))
    return schedule


def unreadable_schedule(row: Mapping[str, Any], exc: Exception) -> Schedule:
    """The schedule of a row that can't even be mapped: its id and name, in status `error`."""
    schedule_type = _or_none(ScheduleType, row.get("schedule_type")) or ScheduleType.ONCE
    placeholder = Schedule(
        id=str(row.get("id")),
        name=str(row.get("name") or row.get("id")),
        schedule_type=schedule_type,
        target_id=_or_none(str, row.get("target_id")),
        pipeline=_or_none(str, row.get("pipeline")),
        created_at=utcnow(),
    )
    return _in_error(placeholder, _why_unmapped(row, exc))


def _why_unmapped(row: Mapping[str, Any], exc: Exception) -> str:
    # The mapping fails on the first bad column with a bare KeyError('x'): name the column.
    for column, kind in _ENUM_COLUMNS.items():
        values = [member.value for member in kind]
        if row.get(column) not in values:
            return f"{column}: {row.get(column)!r} is not one of {', '.join(values)}"
    return f"{type(exc).__name__}: {exc}"


def checked_target(target: Target) -> Target:
    """`target`, or a copy with `status_reason` set when its definition breaks a rule."""
    problems = TargetSpec.field_problems(target)
    if problems:
        why = "; ".join(f"{name}: {message}" for name, message in problems)
        return dataclasses.replace(target, status_reason=_reason(why))
    return target


def unreadable_target(row: Mapping[str, Any], exc: Exception) -> Target:
    """The target of a row that can't even be mapped: its id, name and url, with the reason."""
    return Target(
        id=str(row.get("id")),
        name=str(row.get("name") or row.get("id")),
        url=str(row.get("url") or ""),
        status_reason=_reason(f"{type(exc).__name__}: {exc}"),
    )


def unreadable_run(
    row: Mapping[str, Any], exc: Exception, steps: tuple[StepResult, ...] = ()
) -> Run:
    """The run of a row that can't be mapped: failed, its error saying why, so a list of runs
    still answers (runs have no `error` status: what can't be read did not succeed)."""
    return Run(
        id=str(row.get("id")),
        job=str(row.get("job") or ""),
        scheduled_for=_moment(row.get("scheduled_for")),
        trigger=_or_none(Trigger, row.get("trigger")) or Trigger.SCHEDULE,
        status=RunStatus.FAILED,
        schedule_id=_or_none(str, row.get("schedule_id")),
        error=f"its stored row can't be read ({type(exc).__name__}: {exc})",
        steps=steps,
        node_id=_or_none(str, row.get("node_id")),
    )


def unreadable_node(row: Mapping[str, Any]) -> Node:
    """The node of a row that can't be mapped: its id, and what else can be read, so that
    the others still count it (a node left out would have its schedules taken over while
    it runs them). A state that can't be read is `lost`: it is gone as far as anyone can tell.
    """
    return Node(
        id=str(row.get("id")),
        host=_or_none(str, row.get("host")) or "",
        pid=_or_none(int, row.get("pid")) or 0,
        version=_or_none(str, row.get("version")) or "",
        started_at=_moment(row.get("started_at")),
        heartbeat_at=_moment(row.get("heartbeat_at")),
        lease_expires_at=_moment(row.get("lease_expires_at")),
        state=_or_none(NodeState, row.get("state")) or NodeState.LOST,
        schedules_owned=_or_none(int, row.get("schedules_owned")) or 0,
        runs_in_flight=_or_none(int, row.get("runs_in_flight")) or 0,
    )


def unreadable_step(row: Mapping[str, Any], exc: Exception) -> StepResult:
    """The step result of a row that can't be mapped: failed, saying why."""
    return StepResult(
        step=str(row.get("step") or "?"),
        status=RunStatus.FAILED,
        started_at=_moment(row.get("started_at")),
        duration_ms=0,
        attempt=_or_none(int, row.get("attempt")) or 1,
        position=_or_none(int, row.get("position")) or 0,
        error=f"its stored row can't be read ({type(exc).__name__}: {exc})",
    )


def _moment(value: Any) -> datetime:
    parsed = _or_none(datetime.fromisoformat, value)
    return parsed if isinstance(parsed, datetime) else FIRST_MOMENT


def _reason(why: str) -> str:
    return f"{UNREADABLE} ({why}); fix it with PATCH or delete it"


def _in_error(schedule: Schedule, why: str) -> Schedule:
    return dataclasses.replace(
        schedule, status=ScheduleStatus.ERROR, status_reason=_reason(why), next_run_at=None
    )


def _or_none(convert: Callable[[Any], Any], value: Any) -> Any:
    if value is None:
        return None
    try:
        return convert(value)
    except (TypeError, ValueError):
        return None
