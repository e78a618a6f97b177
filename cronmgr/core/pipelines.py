"""Pipeline definitions: `pipelines/*.toml` files, validated and turned into frozen records.

A file holds a name, a description, an optional `[schedule]` and its steps: commands,
shell strings, inline HTTP requests or references to targets defined through the API.
Files on disk are the only source of commands: nothing here accepts a step from anywhere
else, so the API can start a pipeline but never define what it executes.

The schema, with examples, is documented in `pipelines/README.md`. Field rules are the
API's own where the API has the field (`TargetSpec` for an inline request, `ScheduleSpec`
for the schedule), so a file and a request body can never disagree on what is valid.
"""

from __future__ import annotations

import graphlib
import re
import shlex
import sys
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
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
from cronmgr.core.errors import NotFound
from cronmgr.core.models import (
    FailurePolicy,
    MisfirePolicy,
    OverlapPolicy,
    RetryPolicy,
    ScheduleStatus,
    ScheduleType,
    Target,
)
from cronmgr.core.payloads import ScheduleSpec, TargetSpec, problem
from cronmgr.core.secret_refs import redact

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_STEP_SECONDS = 7 * 86400
"""The longest step timeout: a week."""
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
PYTHON_TOKEN = "{python}"
DEFAULT_TIMEOUT_SECONDS = 3600.0
DEFAULT_RETRY_BACKOFF_SECONDS = 1.0
#: The longest wait between two attempts of a step (unless the base itself is longer).
RETRY_BACKOFF_MAX_SECONDS = 300.0
#: As for targets (`RetrySpec.max_attempts` ≤ 10): at most ten attempts in all.
MAX_RETRIES = 9
SHELL = "/bin/sh"

_ENV_NAME = re.compile(ENV_NAME_PATTERN)
M = TypeVar("M", bound=BaseModel)
Loc = tuple[int | str, ...]


class StepKind(StrEnum):
    """What a step does: run a command (argv or shell), send a request, or call a target."""

    COMMAND = "command"
    HTTP = "http"
    TARGET = "target"


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One step of a pipeline: exactly one of argv, shell, http (a request) or target.

    `needs` is None when the step did not declare any (then the file's order decides);
    `cwd` and `env` only matter to command steps.
    """

    name: str
    cwd: Path
    argv: tuple[str, ...] | None = None
    shell: str | None = None
    http: Target | None = None
    target: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    retries: int = 0
    retry_backoff_seconds: float = DEFAULT_RETRY_BACKOFF_SECONDS
    continue_on_error: bool = False
    needs: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        actions = (self.argv, self.shell, self.http, self.target)
        if sum(action is not None for action in actions) != 1:
            raise ValueError(f"step {self.name!r}: give exactly one of argv, shell, http or target")

    @property
    def kind(self) -> StepKind:
        """command (argv or shell), http (an inline request) or target (a named one)."""
        if self.http is not None:
            return StepKind.HTTP
        if self.target is not None:
            return StepKind.TARGET
        return StepKind.COMMAND

    @property
    def retry(self) -> RetryPolicy:
        """How failed attempts are retried: `retries` more, exponential backoff, capped."""
        return retry_policy(self.retries, self.retry_backoff_seconds)

    @property
    def exec_args(self) -> tuple[str, ...]:
        """The argument vector to execute, the shell included for shell steps."""
        if self.argv is not None:
            return self.argv
        if self.shell is not None:
            return (SHELL, "-c", self.shell)
        raise ValueError(f"step {self.name!r} is a {self.kind} step, not a command")

    @property
    def command_line(self) -> str:
        """What the step does as a person would write it, for logs and listings."""
        if self.argv is not None:
            return shlex.join(self.argv)
        if self.http is not None:
            return f"{self.http.method} {redact(self.http.url)}"
        if self.target is not None:
            return f"target {self.target!r}"
        return self.shell or ""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping; an inline request's secrets are redacted."""
        return {
            "name": self.name,
            "type": self.kind.value,
            "argv": list(self.argv) if self.argv is not None else None,
            "shell": self.shell,
            "http": _request_dict(self.http) if self.http is not None else None,
            "target": self.target,
            "cwd": str(self.cwd),
            "env": dict(self.env),
            "timeout_seconds": self.timeout_seconds,
            "retries": self.retries,
            "retry_backoff_seconds": self.retry_backoff_seconds,
            "continue_on_error": self.continue_on_error,
            "needs": list(self.needs) if self.needs is not None else None,
        }


#: The name the runner and the CLI knew steps by when every step was a command.
CommandStep = Step


def retry_policy(retries: int, backoff_seconds: float) -> RetryPolicy:
    """The policy of a step with `retries` and `retry_backoff_seconds`."""
    return RetryPolicy(
        max_attempts=retries + 1,
        backoff_base_seconds=backoff_seconds,
        backoff_max_seconds=max(backoff_seconds, RETRY_BACKOFF_MAX_SECONDS),
    )


def _request_dict(target: Target) -> dict[str, Any]:
    shown = TargetSpec.fields_of(target)
    for name in ("name", "retry"):
        shown.pop(name)
    return {**shown, "url": redact(target.url), "headers": redact(target.headers)}


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
            data[_FILE_NAMES.get(item.name, item.name)] = value
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


def load_pipelines(directory: Path) -> PipelineSet:
    """Load every `*.toml` file of `directory`; a bad file is reported, never fatal."""
    found = PipelineSet(directory=directory)
    for path in _pipeline_files(directory):
        try:
            pipeline = _load_file(path)
        except _FileProblems as exc:
            found.errors.append(InvalidFile(path, exc.name, exc.problems))
            continue
        first = found.pipelines.get(pipeline.name)
        if first is not None:
            problem_text = f"name: pipeline {pipeline.name!r} is already defined in {first.path}"
            found.errors.append(InvalidFile(path, pipeline.name, (problem_text,)))
            continue
        found.pipelines[pipeline.name] = pipeline
    return found


def _pipeline_files(directory: Path) -> list[Path]:
    # Hidden files are editors' lock and backup files, not pipelines.
    if not directory.is_dir():
        return []
    paths = directory.glob("*.toml")
    return sorted(p for p in paths if not p.name.startswith(".") and p.is_file())


class _FileProblems(Exception):
    def __init__(self, name: str, *problems: str) -> None:
        super().__init__(name, problems)
        self.name = name
        self.problems = problems


# --- tables validated by the API's models -------------------------------------------------
#
# `[schedule]` and `http = {...}` are validated by ScheduleSpec and TargetSpec, so their
# rules live in one place. Their errors come back located at the file's own field names.

# File name -> the name models.Schedule (and ScheduleSpec) use.
_SCHEDULE_NAMES = {"type": "schedule_type", "cron": "cron_expression", "at": "run_at"}
_FILE_NAMES = {api: file for file, api in _SCHEDULE_NAMES.items()}
_SCHEDULE_FIELDS = tuple(_FILE_NAMES.get(f.name, f.name) for f in fields(PipelineSchedule))
# Set per step (retries) or by the step itself (name), never inside the table.
_HTTP_FIELDS = tuple(name for name in TargetSpec.model_fields if name not in ("name", "retry"))
_API_WORDS = re.compile(r"\b(" + "|".join(_FILE_NAMES) + r")\b")


def _parse_schedule(value: Any) -> PipelineSchedule:
    table = dict(_table(value, _SCHEDULE_FIELDS))
    enabled = table.pop("enabled", True)
    if not isinstance(enabled, bool):
        raise _errors([(("enabled",), "must be true or false")], value)
    data = {_SCHEDULE_NAMES.get(key, key): item for key, item in table.items()}
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
        problems = [(_file_loc(err["loc"]), _file_words(_what(err))) for err in exc.errors()]
        raise _errors(problems, data) from exc


def _file_loc(loc: Loc) -> Loc:
    if loc and isinstance(loc[0], str):
        return (_FILE_NAMES.get(loc[0], loc[0]), *loc[1:])
    return loc


def _file_words(message: str) -> str:
    return _API_WORDS.sub(lambda match: _FILE_NAMES[match.group(1)], message)


def _errors(problems: Sequence[tuple[Loc, str]], value: Any) -> ValidationError:
    # Pydantic passes a ValidationError raised in a validator through, each location
    # prefixed with where the value sits (`steps.1.http.url`).
    details = [InitErrorDetails(type=problem(text), loc=loc, input=value) for loc, text in problems]
    return ValidationError.from_exception_data("pipeline file", details)


# --- validation models: the file's shape, checked by pydantic --------------------------

_ACTIONS = ("command", "shell", "http", "target")
_COMMAND_ONLY = ("cwd", "env", "timeout_seconds")
_RETRY_FIELDS = ("retries", "retry_backoff_seconds")


class _StepModel(BaseModel):
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
    def _one_action(self) -> _StepModel:
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


class _PipelineModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    schedule: Annotated[PipelineSchedule | None, PlainValidator(_parse_schedule)] = None
    max_concurrent_runs: int | None = Field(None, ge=1, le=1000)
    steps: list[_StepModel] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent_steps(self) -> _PipelineModel:
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


def _tuple(items: list[str] | None) -> tuple[str, ...] | None:
    return tuple(items) if items is not None else None


# --- one file: read, validate, convert ----------------------------------------------------


def _load_file(path: Path) -> Pipeline:
    data = _read_toml(path)
    named_by_file = "name" not in data
    data.setdefault("name", path.stem)
    name = data["name"] if isinstance(data["name"], str) else path.stem
    try:
        model = _PipelineModel.model_validate(data)
    except ValidationError as exc:
        problems = _describe(exc, data)
        if named_by_file:
            problems = [_blame_file_name(p, path) for p in problems]
        raise _FileProblems(name, *problems) from exc
    return _to_pipeline(model, path)


def _blame_file_name(problem_text: str, path: Path) -> str:
    # Without a `name` key the file name is the pipeline's name: say so, or the message
    # would point at a line that is not in the file.
    prefix = "name: "
    if not problem_text.startswith(prefix):
        return problem_text
    return f"name (taken from the file name {path.stem!r}): {problem_text[len(prefix) :]}"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise _FileProblems(path.stem, f"cannot read the file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise _FileProblems(path.stem, "not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise _FileProblems(path.stem, f"not valid TOML: {exc}") from exc


def _to_pipeline(model: _PipelineModel, path: Path) -> Pipeline:
    base = path.parent
    return Pipeline(
        name=model.name,
        path=path,
        steps=tuple(_to_step(step, base) for step in model.steps),
        description=model.description,
        schedule=model.schedule,
        max_concurrent_runs=model.max_concurrent_runs,
    )


def _to_step(model: _StepModel, base: Path) -> Step:
    request = _inline_target(model)
    return Step(
        name=model.name,
        # Absolute, because the daemon runs with "/" as its working directory.
        cwd=(base / model.cwd).resolve(),
        argv=_expand_argv(model.command) if model.command is not None else None,
        shell=_expand_shell(model.shell) if model.shell is not None else None,
        http=request,
        target=model.target,
        env=MappingProxyType(dict(model.env)),
        timeout_seconds=request.timeout_seconds if request else model.timeout_seconds,
        retries=model.retries,
        retry_backoff_seconds=model.retry_backoff_seconds,
        continue_on_error=model.continue_on_error,
        needs=_tuple(model.needs),
    )


def _inline_target(model: _StepModel) -> Target | None:
    # An inline request is a target of its own: named after the step, never stored.
    if model.http is None:
        return None
    policy = retry_policy(model.retries, model.retry_backoff_seconds)
    return replace(model.http.to_target(""), name=model.name, retry=policy)


def _expand_argv(argv: list[str]) -> tuple[str, ...]:
    return tuple(sys.executable if arg == PYTHON_TOKEN else arg for arg in argv)


def _expand_shell(script: str) -> str:
    return script.replace(PYTHON_TOKEN, shlex.quote(sys.executable))


# --- validation errors in words -------------------------------------------------------------

_NAME_RULE = "must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
_PLAIN_MESSAGES = {
    "missing": "is required",
    "string_pattern_mismatch": _NAME_RULE,
    "string_type": "must be a string",
    "list_type": "must be a list",
    "bool_type": "must be true or false",
    "int_type": "must be a whole number",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",
}
_BOUNDS = {
    "greater_than": ("gt", "greater than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}


def _describe(exc: ValidationError, data: Mapping[str, Any]) -> list[str]:
    return [_describe_one(err, data) for err in exc.errors()]


def _describe_one(err: ErrorDetails, data: Mapping[str, Any]) -> str:
    where = _where(err["loc"], data)
    what = _what(err, _allowed_fields(err["loc"]))
    return f"{where}: {what}" if where else what


def _where(loc: Loc, data: Mapping[str, Any]) -> str:
    parts: list[str] = []
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        parts.append(_step_label(loc[1], data))
        loc = loc[2:]
    if loc:
        parts.append(str(loc[0]) + "".join(_item(p) for p in loc[1:]))
    return ": ".join(parts)


def _item(part: int | str) -> str:
    return f"[{part}]" if isinstance(part, int) else f".{part}"


def _step_label(index: int, data: Mapping[str, Any]) -> str:
    steps = data.get("steps")
    step = steps[index] if isinstance(steps, list) and index < len(steps) else None
    name = step.get("name") if isinstance(step, dict) else None
    label = f"step {index + 1}"
    return f"{label} ({name!r})" if isinstance(name, str) and name else label


def _what(err: ErrorDetails, allowed: Sequence[str] = ()) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        return f"must be {words} {ctx[key]:g}"
    if kind == "extra_forbidden":
        return "unknown field" + (" (allowed: " + ", ".join(allowed) + ")" if allowed else "")
    plain = _PLAIN_MESSAGES.get(kind)
    return plain if plain else err["msg"][:1].lower() + err["msg"][1:]


def _allowed_fields(loc: Loc) -> list[str]:
    model = _StepModel if loc and loc[0] == "steps" else _PipelineModel
    return list(model.model_fields)
