"""Rows <-> models for runs, attempts, targets, schedules and progress.

Reading maps a row to its model; a row that can't be mapped (or breaks the rules it was
saved by) comes back failed or in status `error`, saying why, never as an exception that
would fail a whole list (see `readable`). Writing turns a model into the parameters of its
named query. Schedules are read field by field following the `Schedule` model, with the
conversions chosen once when the module loads: the daemon reads 100,000 of them at start.
"""

from __future__ import annotations

import dataclasses
import operator
import typing
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from enum import Enum
from typing import Any

import orjson

from cronmgr.core.models import (
    Assertion,
    ErrorType,
    RetryPolicy,
    Run,
    RunStatus,
    Schedule,
    StepResult,
    Target,
    Trigger,
    utcnow,
)
from cronmgr.store.readable import (
    checked_schedule,
    checked_target,
    unreadable_run,
    unreadable_schedule,
    unreadable_step,
    unreadable_target,
)
from cronmgr.store.records import Progress
from cronmgr.store.relational.columns import Row, _column, _dt, _json, _members, _required_dt, _ts


def run_from_row(row: Row, steps: Iterable[StepResult] = ()) -> Run:
    """A Run from a `runs` row; one that can't be mapped comes back failed, saying why."""
    steps = tuple(steps)
    try:
        return _mapped_run(row, steps)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        return unreadable_run(dict(row), exc, steps)


def _mapped_run(row: Row, steps: Iterable[StepResult]) -> Run:
    return Run(
        id=row["id"],
        job=row["job"],
        schedule_id=row["schedule_id"],
        scheduled_for=_required_dt(row["scheduled_for"]),
        trigger=Trigger(row["trigger"]),
        status=RunStatus(row["status"]),
        started_at=_dt(row["started_at"]),
        finished_at=_dt(row["finished_at"]),
        error=row["error"],
        steps=tuple(steps),
        node_id=row["node_id"],
    )


def step_from_row(row: Row) -> StepResult:
    """A StepResult from a `step_results` row; one that can't be mapped is failed, saying why."""
    try:
        return _mapped_step(row)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        return unreadable_step(dict(row), exc)


def _mapped_step(row: Row) -> StepResult:
    return StepResult(
        step=row["step"],
        status=RunStatus(row["status"]),
        started_at=_required_dt(row["started_at"]),
        duration_ms=row["duration_ms"],
        attempt=row["attempt"],
        position=row["position"],
        exit_code=row["exit_code"],
        signal=row["signal"],
        status_code=row["status_code"],
        response_size=row["response_size"],
        error_type=ErrorType(row["error_type"]) if row["error_type"] else None,
        error=row["error"],
        output_tail=tuple(orjson.loads(row["output_tail"])),
    )


def _assertion(data: Mapping[str, Any]) -> Assertion:
    return Assertion(kind=data["type"], value=data.get("value"), path=data.get("path"))


def target_from_row(row: Row) -> Target:
    """A Target from a `targets` row; one that breaks the rules comes with its reason."""
    try:
        target = _mapped_target(row)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        return unreadable_target(dict(row), exc)
    return checked_target(target)


def _mapped_target(row: Row) -> Target:
    return Target(
        id=row["id"],
        name=row["name"],
        url=row["url"],
        method=row["method"],
        headers=orjson.loads(row["headers"]),
        body_template=row["body_template"],
        timeout_seconds=row["timeout_seconds"],
        expected_status=tuple(orjson.loads(row["expected_status"])),
        assertions=tuple(_assertion(a) for a in orjson.loads(row["assertions"])),
        follow_redirects=bool(row["follow_redirects"]),
        verify_tls=bool(row["verify_tls"]),
        retry=RetryPolicy(**orjson.loads(row["retry"])),
        created_at=_required_dt(row["created_at"]),
        updated_at=_required_dt(row["updated_at"]),
    )


def _target_params(target: Target) -> dict[str, Any]:
    params = {f.name: _column(getattr(target, f.name)) for f in dataclasses.fields(target)}
    del params["status_reason"]  # found when read, never stored
    params.update(
        headers=_json(target.headers),
        expected_status=_json(target.expected_status),
        assertions=_json([a.as_dict() for a in target.assertions]),
        retry=_json(target.retry.as_dict()),
    )
    return params


def schedule_from_row(row: Row) -> Schedule:
    """A Schedule, progress and revision included, from a `schedules` row.

    Read through the rule it was saved by: a row that breaks it comes back in status
    `error` with the reason, never as an exception that would fail a whole list.
    """
    try:
        schedule = _mapped_schedule(row)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        return unreadable_schedule(dict(row), exc)
    return checked_schedule(schedule)


def _conversion(name: str, kind: Any) -> Callable[[Any], Any] | None:
    """How a `schedules` column becomes the Schedule field of that type; None: as stored."""
    if kind in _AS_STORED:
        return None
    if isinstance(kind, type) and issubclass(kind, Enum):
        return _members(kind)
    if (convert := _PARSED.get(kind)) is not None:
        return convert
    # Said when the module loads: a field no column form was chosen for is a bug here.
    raise TypeError(f"Schedule.{name}: no column form for {kind!r}")


_AS_STORED: set[Any] = {str, int, float, str | None, int | None, float | None}
_PARSED: dict[Any, Callable[[Any], Any]] = {datetime: _required_dt, datetime | None: _dt}
_SCHEDULE_TYPES = typing.get_type_hints(Schedule)
SCHEDULE_COLUMNS = tuple(f.name for f in dataclasses.fields(Schedule))
"""The `schedules` columns, one per Schedule field, in the fields' order."""
# All columns in one C call, then only the fields that need it converted, by position:
# 100,000 rows at daemon start, and this is a sixth faster than 31 reads by name in Python.
_schedule_columns = operator.itemgetter(*SCHEDULE_COLUMNS)
_SCHEDULE_CONVERSIONS = tuple(
    (index, convert)
    for index, name in enumerate(SCHEDULE_COLUMNS)
    if (convert := _conversion(name, _SCHEDULE_TYPES[name])) is not None
)


def _mapped_schedule(row: Row) -> Schedule:
    values = list(_schedule_columns(row))
    for index, convert in _SCHEDULE_CONVERSIONS:
        values[index] = convert(values[index])
    return Schedule(*values)


def _schedule_params(schedule: Schedule) -> dict[str, Any]:
    return {f.name: _column(getattr(schedule, f.name)) for f in dataclasses.fields(schedule)}


def _run_params(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "job": run.job,
        "schedule_id": run.schedule_id,
        "scheduled_for": _ts(run.scheduled_for),
        "trigger": run.trigger.value,
        "status": run.status.value,
        "started_at": _ts(run.started_at),
        "finished_at": _ts(run.finished_at),
        "error": run.error,
        "created_at": _ts(utcnow()),
        "node_id": run.node_id,
    }


def _update_params(
    run_id: str,
    status: RunStatus,
    started_at: datetime | None,
    finished_at: datetime | None,
    error: str | None,
) -> dict[str, Any]:
    return {
        "id": run_id,
        "status": status.value,
        "started_at": _ts(started_at),
        "finished_at": _ts(finished_at),
        "error": error,
    }


def _step_params(run_id: str, position: int, result: StepResult) -> dict[str, Any]:
    # Column by column rather than through as_dict(): every attempt of every run is
    # written, and the generic walk over fields and values cost several times as much.
    return {
        "run_id": run_id,
        "position": position,
        "step": result.step,
        "attempt": result.attempt,
        "status": result.status.value,
        "started_at": _ts(result.started_at),
        "duration_ms": result.duration_ms,
        "exit_code": result.exit_code,
        "signal": result.signal,
        "status_code": result.status_code,
        "response_size": result.response_size,
        "error_type": result.error_type.value if result.error_type is not None else None,
        "error": result.error,
        "output_tail": orjson.dumps(result.output_tail).decode(),
    }


def _progress_params(progress: Progress) -> dict[str, Any]:
    return {name: _column(value) for name, value in zip(Progress._fields, progress, strict=True)}
