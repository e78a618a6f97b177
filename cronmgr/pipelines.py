"""Pipeline definitions: `pipelines/*.toml` files, validated and turned into frozen records.

A pipeline file holds a name, a description and an ordered list of steps; today every step
runs a command. Files on disk are the only source of commands: nothing here accepts a step
from anywhere else, so the API can start a pipeline but never define what it executes.

Schema (one file, one pipeline)::

    name = "default"            # optional, default: the file name without ".toml"
    description = "Demo"        # optional
    [[steps]]
    name = "extract"            # required, unique within the pipeline
    command = ["{python}", "scripts/demo_step.py"]  # argv list ...
    shell = "echo hi | tr a-z A-Z"                  # ... or a /bin/sh string: exactly one
    cwd = "."                   # relative to the file's directory (the default)
    env = { GREETING = "hi" }   # added to the inherited environment, winning over it
    timeout_seconds = 600       # default 3600, > 0
    continue_on_error = false   # a failure does not stop the pipeline nor fail it

Names (pipelines and steps) are 1-64 characters of letters, digits, `_`, `.` and `-`,
starting with a letter or a digit, so they are safe in URLs, file names and log lines.
The token `{python}` in a command (a whole argv item, or anywhere in a shell string) stands
for the interpreter running cronmgr, so steps can use the same virtualenv.
"""

from __future__ import annotations

import re
import shlex
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from cronmgr.errors import NotFound

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
PYTHON_TOKEN = "{python}"
DEFAULT_TIMEOUT_SECONDS = 3600.0
SHELL = "/bin/sh"

_ENV_NAME = re.compile(ENV_NAME_PATTERN)


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandStep:
    """One command of a pipeline: an argv list, or a shell string run by `/bin/sh -c`."""

    name: str
    cwd: Path
    argv: tuple[str, ...] | None = None
    shell: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    continue_on_error: bool = False

    def __post_init__(self) -> None:
        if (self.argv is None) == (self.shell is None):
            raise ValueError(f"step {self.name!r}: give exactly one of argv or shell")

    @property
    def exec_args(self) -> tuple[str, ...]:
        """The argument vector to execute, the shell included for shell steps."""
        return self.argv if self.argv is not None else (SHELL, "-c", self.shell or "")

    @property
    def command_line(self) -> str:
        """The command as a person would type it, for logs and listings."""
        return shlex.join(self.argv) if self.argv is not None else self.shell or ""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "name": self.name,
            "type": "command",
            "argv": list(self.argv) if self.argv is not None else None,
            "shell": self.shell,
            "cwd": str(self.cwd),
            "env": dict(self.env),
            "timeout_seconds": self.timeout_seconds,
            "continue_on_error": self.continue_on_error,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Pipeline:
    """A named, ordered list of steps, read from one file."""

    name: str
    path: Path
    steps: tuple[CommandStep, ...]
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping, steps included."""
        return {
            "name": self.name,
            "description": self.description,
            "path": str(self.path),
            "steps": [step.as_dict() for step in self.steps],
        }


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
            problem = f"name: pipeline {pipeline.name!r} is already defined in {first.path}"
            found.errors.append(InvalidFile(path, pipeline.name, (problem,)))
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


# --- validation models: the file's shape, checked by pydantic --------------------------


class _StepModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(pattern=NAME_PATTERN)
    command: list[str] | None = Field(None, min_length=1)
    shell: str | None = Field(None, min_length=1)
    cwd: str = "."
    env: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = Field(DEFAULT_TIMEOUT_SECONDS, gt=0, allow_inf_nan=False)
    continue_on_error: bool = False

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

    @model_validator(mode="after")
    def _command_or_shell(self) -> _StepModel:
        if (self.command is None) == (self.shell is None):
            raise ValueError("give exactly one of command (an argv list) or shell (a string)")
        return self


class _PipelineModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    steps: list[_StepModel] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_step_names(self) -> _PipelineModel:
        seen: dict[str, int] = {}
        for number, step in enumerate(self.steps, start=1):
            if step.name in seen:
                raise ValueError(
                    f"step {number} ({step.name!r}): name: already used by step {seen[step.name]}"
                )
            seen[step.name] = number
        return self


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


def _blame_file_name(problem: str, path: Path) -> str:
    # Without a `name` key the file name is the pipeline's name: say so, or the message
    # would point at a line that is not in the file.
    prefix = "name: "
    if not problem.startswith(prefix):
        return problem
    return f"name (taken from the file name {path.stem!r}): {problem[len(prefix) :]}"


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
    steps = tuple(_to_step(step, base) for step in model.steps)
    return Pipeline(name=model.name, path=path, steps=steps, description=model.description)


def _to_step(model: _StepModel, base: Path) -> CommandStep:
    # Absolute, because the daemon runs with "/" as its working directory.
    return CommandStep(
        name=model.name,
        cwd=(base / model.cwd).resolve(),
        argv=_expand_argv(model.command) if model.command is not None else None,
        shell=_expand_shell(model.shell) if model.shell is not None else None,
        env=MappingProxyType(dict(model.env)),
        timeout_seconds=model.timeout_seconds,
        continue_on_error=model.continue_on_error,
    )


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
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",
}


def _describe(exc: ValidationError, data: Mapping[str, Any]) -> list[str]:
    return [_describe_one(err, data) for err in exc.errors()]


def _describe_one(err: ErrorDetails, data: Mapping[str, Any]) -> str:
    where = _where(err["loc"], data)
    what = _what(err)
    return f"{where}: {what}" if where else what


def _where(loc: tuple[int | str, ...], data: Mapping[str, Any]) -> str:
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


def _what(err: ErrorDetails) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "greater_than":
        return f"must be greater than {ctx['gt']:g}"
    if kind == "extra_forbidden":
        return "unknown field (allowed: " + ", ".join(_allowed_fields(err["loc"])) + ")"
    plain = _PLAIN_MESSAGES.get(kind)
    return plain if plain else err["msg"][:1].lower() + err["msg"][1:]


def _allowed_fields(loc: tuple[int | str, ...]) -> list[str]:
    model = _StepModel if loc and loc[0] == "steps" else _PipelineModel
    return list(model.model_fields)
