"""The pipeline file's shape, checked by pydantic: the validation models of a file and its
steps, and the `[schedule]` and `http = {...}` tables that the API's models validate.

Errors come back located at the file's own field names, and `describe` puts them in the
file's words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails

from cronmgr.core.bounds import MAX_NAME_CHARS
from cronmgr.core.pipelines import messages
from cronmgr.core.pipelines.pipeline import (
    FILE_NAMES,
    SCHEDULE_NAMES,
    Loc,
    PipelineSchedule,
    needs_problems,
)
from cronmgr.core.pipelines.steps import DEFAULT_RETRY_BACKOFF_SECONDS, DEFAULT_TIMEOUT_SECONDS
from cronmgr.core.specs.schedules import ScheduleSpec
from cronmgr.core.specs.targets import TargetSpec
from cronmgr.core.specs.validation import problem

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_STEP_SECONDS = 7 * 86400
"""The longest step timeout: a week."""
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
#: As for targets (`RetrySpec.max_attempts` ≤ 10): at most ten attempts in all.
MAX_RETRIES = 9

_ENV_NAME = re.compile(ENV_NAME_PATTERN)
M = TypeVar("M", bound=BaseModel)


# --- tables validated by the API's models -------------------------------------------------
#
# `[schedule]` and `http = {...}` are validated by ScheduleSpec and TargetSpec, so their
# rules live in one place. Their errors come back located at the file's own field names.
_SCHEDULE_FIELDS = tuple(FILE_NAMES.get(f.name, f.name) for f in fields(PipelineSchedule))
# Set per step (retries) or by the step itself (name), never inside the table.
_HTTP_FIELDS = tuple(name for name in TargetSpec.model_fields if name not in ("name", "retry"))
_API_WORDS = re.compile(r"\b(" + "|".join(FILE_NAMES) + r")\b")


def _parse_schedule(value: Any) -> PipelineSchedule:
    table = dict(_table(value, _SCHEDULE_FIELDS))
    enabled = table.pop("enabled", True)
    if not isinstance(enabled, bool):
        raise _errors([(("enabled",), "must be true or false")], value)
    data = {SCHEDULE_NAMES.get(key, key): item for key, item in table.items()}
    # The name and the pipeline are the caller's; placeholders satisfy the API model.
    spec = _validated(ScheduleSpec, {**data, "name": "file", "pipeline": "file"})
    names = [f.name for f in fields(PipelineSchedule) if f.name != "enabled"]
    return PipelineSchedule(**{name: getattr(spec, name) for name in names}, enabled=enabled)


def _parse_http(value: Any) -> TargetSpec:
    table = _table(value, _HTTP_FIELDS)
    return _validated(TargetSpec, {**table, "name": "step"})


def _table(value: Any, allowed: Sequence[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _errors([((), "must be a table")], value)
    unknown = [key for key in value if key not in allowed]
    if unknown:
        message = "unknown field (allowed: " + ", ".join(allowed) + ")"
        raise _errors([((key,), message) for key in unknown], value)
    return value


def _validated(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            (_file_loc(err["loc"]), _file_words(messages.what(err))) for err in exc.errors()
        ]
        raise _errors(problems, data) from exc


def _file_loc(loc: Loc) -> Loc:
    if loc and isinstance(loc[0], str):
        return (FILE_NAMES.get(loc[0], loc[0]), *loc[1:])
    return loc


def _file_words(message: str) -> str:
    return _API_WORDS.sub(lambda match: FILE_NAMES[match.group(1)], message)


def _errors(problems: Sequence[tuple[Loc, str]], value: Any) -> ValidationError:
    # Pydantic passes a ValidationError raised in a validator through, each location
    # prefixed with where the value sits (`steps.1.http.url`).
    details = [InitErrorDetails(type=problem(text), loc=loc, input=value) for loc, text in problems]
    return ValidationError.from_exception_data("pipeline file", details)


# --- validation models: the file's shape, checked by pydantic --------------------------

_ACTIONS = ("command", "shell", "http", "target")
_COMMAND_ONLY = ("cwd", "env", "timeout_seconds")
_RETRY_FIELDS = ("retries", "retry_backoff_seconds")


class StepModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(pattern=NAME_PATTERN)
    command: list[str] | None = Field(None, min_length=1)
    shell: str | None = Field(None, min_length=1)
    http: Annotated[TargetSpec | None, PlainValidator(_parse_http)] = None
    target: str | None = Field(None, min_length=1, max_length=MAX_NAME_CHARS)
    cwd: str = "."
    env: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = Field(
        DEFAULT_TIMEOUT_SECONDS, gt=0, le=MAX_STEP_SECONDS, allow_inf_nan=False
    )
    retries: int = Field(0, ge=0, le=MAX_RETRIES)
    retry_backoff_seconds: float = Field(
        DEFAULT_RETRY_BACKOFF_SECONDS, ge=0, le=3600, allow_inf_nan=False
    )
    continue_on_error: bool = False
    needs: list[Annotated[str, Field(pattern=NAME_PATTERN)]] | None = None

    @field_validator("command")
    @classmethod
    def _usable_argv(cls, argv: list[str] | None) -> list[str] | None:
        if argv is not None and not argv[0]:
            raise ValueError("the program (first item) must not be empty")
        if argv is not None and any("\0" in arg for arg in argv):
            raise ValueError("must not contain a NUL character")
        return argv

    @field_validator("shell", "cwd")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\0" in value:
            raise ValueError("must not contain a NUL character")
        return value

    @field_validator("env")
    @classmethod
    def _usable_env(cls, env: dict[str, str]) -> dict[str, str]:
        bad = [k for k in env if not _ENV_NAME.fullmatch(k)]
        if bad:
            raise ValueError(
                f"invalid variable name {bad[0]!r}: use letters, digits and '_', "
                "not starting with a digit"
            )
        if any("\0" in v for v in env.values()):
            raise ValueError("values must not contain a NUL character")
        return env

    @field_validator("needs")
    @classmethod
    def _listed_once(cls, needs: list[str] | None) -> list[str] | None:
        twice = [need for i, need in enumerate(needs or ()) if need in (needs or ())[:i]]
        if twice:
            raise ValueError(f"{twice[0]!r} is listed twice")
        return needs

    @model_validator(mode="after")
    def _one_action(self) -> StepModel:
        if sum(getattr(self, name) is not None for name in _ACTIONS) != 1:
            raise ValueError(
                "give exactly one of command (an argv list), shell (a string), "
                "http (a request table) or target (a target's name)"
            )
        problems = self._misplaced()
        if self.needs and self.name in self.needs:
            problems.append(("needs", "a step cannot need itself"))
        if problems:
            raise _errors([((name,), text) for name, text in problems], self)
        return self

    def _misplaced(self) -> list[tuple[str, str]]:
        given = self.model_fields_set
        problems = []
        if self.command is None and self.shell is None:
            problems += [
                (name, "only for command and shell steps (an http step has http.timeout_seconds)")
                for name in _COMMAND_ONLY
                if name in given
            ]
        if self.target is not None:
            problems += [
                (name, "a target step retries as its target's retry policy says")
                for name in _RETRY_FIELDS
                if name in given
            ]
        return problems


class PipelineModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    schedule: Annotated[PipelineSchedule | None, PlainValidator(_parse_schedule)] = None
    max_concurrent_runs: int | None = Field(None, ge=1, le=1000)
    steps: list[StepModel] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent_steps(self) -> PipelineModel:
        problems = self._name_problems()
        if not problems:
            problems = needs_problems([(step.name, step.needs) for step in self.steps])
        if problems:
            raise _errors(problems, None)
        return self

    def _name_problems(self) -> list[tuple[Loc, str]]:
        seen: dict[str, int] = {}
        problems: list[tuple[Loc, str]] = []
        for index, step in enumerate(self.steps):
            if step.name in seen:
                problems.append(
                    (("steps", index, "name"), f"already used by step {seen[step.name]}")
                )
            seen.setdefault(step.name, index + 1)
        return problems


def describe(exc: ValidationError, data: Mapping[str, Any]) -> list[str]:
    return [_describe_one(err, data) for err in exc.errors()]


def _describe_one(err: ErrorDetails, data: Mapping[str, Any]) -> str:
    where = messages.where(err["loc"], data)
    what = messages.what(err, _allowed_fields(err["loc"]))
    return f"{where}: {what}" if where else what


def _allowed_fields(loc: Loc) -> list[str]:
    model = StepModel if loc and loc[0] == "steps" else PipelineModel
    return list(model.model_fields)
