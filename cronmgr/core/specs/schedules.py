"""The schedule spec: what runs (a target or a pipeline), when, and within which window.

`ScheduleSpec` is what POST /api/v1/schedules validates and what a pipeline file's
`[schedule]` table is checked against; the timing field its `schedule_type` needs is in
`TIMING_FIELDS`.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cronmgr.core.bounds import (
    LAST_MOMENT,
    MAX_COUNT,
    MAX_SPAN_SECONDS,
    Identifier,
    Moment,
    Seconds,
    Text,
)
from cronmgr.core.models import (
    FailurePolicy,
    MisfirePolicy,
    OverlapPolicy,
    Schedule,
    ScheduleType,
    utcnow,
)
from cronmgr.core.specs.fields import NAME_PATTERN, CronExpression, IntervalSeconds, TimezoneName
from cronmgr.core.specs.validation import field_problems, merge_patch, raise_problems, with_unknown

TIMING_FIELDS = {
    ScheduleType.INTERVAL: "interval_seconds",
    ScheduleType.CRON: "cron_expression",
    ScheduleType.ONCE: "run_at",
}
# Defaults come from the domain records, so the API and the engine never disagree on them.
_SCHEDULE = Schedule(id="", name="", schedule_type=ScheduleType.ONCE)


class ScheduleSpec(BaseModel):
    """What runs (a target or a pipeline) and when.

    `schedule_type` picks the timing field that is required: `interval_seconds`
    (interval, slots anchored at start_at or the creation time), `cron_expression` (cron:
    5 fields, or 6 with seconds first) or `run_at` (once). Times are ISO 8601; a time
    without an offset is read in the schedule's `timezone`. The window (start_at, end_at,
    duration_seconds counted from start_at or creation, max_runs) ends the schedule: it
    becomes `completed`.
    """

    model_config = ConfigDict(extra="forbid")

    name: Text = Field(description="Unique; printable, 1-200 characters.", examples=["Every 5 min"])
    target_id: Identifier | None = Field(None, description="The target to call (or `pipeline`).")
    pipeline: str | None = Field(
        None, pattern=NAME_PATTERN, description="The pipeline to run (or `target_id`)."
    )
    schedule_type: ScheduleType = Field(description="interval, cron or once.")
    interval_seconds: IntervalSeconds | None = Field(
        None, description="Interval: seconds, from 0.1 to ten years."
    )
    cron_expression: CronExpression | None = Field(
        None, description="Cron: 5 fields, or 6 with seconds first."
    )
    run_at: Moment | None = Field(None, description="Once: when.")
    timezone: TimezoneName = Field(_SCHEDULE.timezone, description="IANA zone, e.g. Europe/Berlin.")
    jitter_seconds: float = Field(
        _SCHEDULE.jitter_seconds,
        ge=0,
        le=86400,
        allow_inf_nan=False,
        description="Random delay up to this.",
    )
    start_at: Moment | None = Field(None, description="No slot before; anchors intervals.")
    end_at: Moment | None = Field(None, description="No slot after (after start_at).")
    duration_seconds: float | None = Field(
        None,
        gt=0,
        le=MAX_SPAN_SECONDS,
        allow_inf_nan=False,
        description="Window length from start_at (or creation), up to ten years.",
    )
    max_runs: int | None = Field(
        None, ge=1, le=MAX_COUNT, description="Complete after this many runs."
    )
    misfire_policy: MisfirePolicy = Field(
        _SCHEDULE.misfire_policy, description="Slots missed while down: skip, run_once, catch_up."
    )
    misfire_grace_seconds: Seconds = Field(
        _SCHEDULE.misfire_grace_seconds, description="Lateness that is not a misfire."
    )
    catch_up_max: int = Field(
        _SCHEDULE.catch_up_max, ge=1, le=10_000, description="Most slots catch_up runs."
    )
    overlap_policy: OverlapPolicy = Field(
        _SCHEDULE.overlap_policy, description="A slot while a run is going: skip, queue, …"
    )
    failure_policy: FailurePolicy = Field(
        _SCHEDULE.failure_policy, description="After failure_threshold failures in a row."
    )
    failure_threshold: int = Field(
        _SCHEDULE.failure_threshold,
        ge=1,
        le=MAX_COUNT,
        description="Consecutive failed runs that count.",
    )
    cooldown_seconds: Seconds = Field(
        _SCHEDULE.cooldown_seconds, description="Circuit breaker: open this long."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ScheduleSpec:
        raise_problems(self, self._localize())
        raise_problems(
            self, [*self._what_problems(), *self._timing_problems(), *self._window_problems()]
        )
        return self

    def _localize(self) -> list[tuple[str, str]]:
        # A wall time that happens twice (fall back) means its first occurrence, as the
        # triggers read a time of day; one the clocks skip (spring forward) is refused
        # rather than silently moved.
        zone = ZoneInfo(self.timezone)
        problems = []
        for name in ("run_at", "start_at", "end_at"):
            moment: datetime | None = getattr(self, name)
            if moment is None or moment.tzinfo is not None:
                continue
            local = moment.replace(tzinfo=zone)
            if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != moment:
                problems.append(
                    (
                        name,
                        f"{moment.isoformat()} does not exist in "
                        f"{self.timezone} (the clocks skip it); give a UTC offset",
                    )
                )
            setattr(self, name, local)
        return problems

    def _what_problems(self) -> list[tuple[str, str]]:
        if self.target_id and self.pipeline:
            return [("target_id", "give target_id or pipeline, not both")]
        if not self.target_id and not self.pipeline:
            return [("target_id", "required: give target_id (a target) or pipeline (a name)")]
        return []

    def _timing_problems(self) -> list[tuple[str, str]]:
        wanted = TIMING_FIELDS[self.schedule_type]
        problems = []
        if getattr(self, wanted) is None:
            problems.append((wanted, f"required when schedule_type is {self.schedule_type}"))
        for kind, name in TIMING_FIELDS.items():
            if kind is not self.schedule_type and getattr(self, name) is not None:
                problems.append((name, f"only used when schedule_type is {kind}"))
        return problems

    def _window_problems(self) -> list[tuple[str, str]]:
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            return [("end_at", "must be after start_at")]
        if self.duration_seconds is not None:
            begin = self.start_at or utcnow()
            if (LAST_MOMENT - begin).total_seconds() < self.duration_seconds:
                return [("duration_seconds", f"the window would end after {LAST_MOMENT.date()}")]
        return []

    @classmethod
    def field_problems(cls, schedule: Schedule) -> list[tuple[str, str]]:
        """What breaks the field rules in a stored schedule's definition (each field alone)."""
        return field_problems(cls, cls.fields_of(schedule))

    def to_schedule(self, schedule_id: str) -> Schedule:
        """A new schedule with this definition."""
        return Schedule(id=schedule_id, **self.model_dump())

    def applied_to(self, schedule: Schedule) -> Schedule:
        """`schedule` with this definition, its status and progress kept."""
        return dataclasses.replace(schedule, **self.model_dump(), updated_at=utcnow())

    @classmethod
    def fields_of(cls, schedule: Schedule) -> dict[str, Any]:
        """A stored schedule's definition as this model's fields."""
        return {name: getattr(schedule, name) for name in cls.model_fields}

    @classmethod
    def patched(cls, schedule: Schedule, patch: dict[str, Any]) -> dict[str, Any]:
        """The stored definition with `patch` merged in, to be validated as a whole.

        A patch that switches kind replaces what belonged to the old kind: a new
        schedule_type drops the old timing field, target_id drops pipeline and vice versa.
        """
        base = cls.fields_of(schedule)
        kind = patch.get("schedule_type")
        if kind is not None and kind != schedule.schedule_type:
            for name in TIMING_FIELDS.values():
                base.pop(name)
        for given, dropped in (("target_id", "pipeline"), ("pipeline", "target_id")):
            if patch.get(given) is not None:
                base.pop(dropped)
        return with_unknown(cls, merge_patch(base, patch), patch)
