"""Loading pipeline files: every `*.toml` of a directory read, validated and turned into a
`Pipeline`; a bad file is reported with all its problems, never fatal.
"""

from __future__ import annotations

import shlex
import sys
import tomllib
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from cronmgr.core.models import Target
from cronmgr.core.pipelines.pipeline import InvalidFile, Pipeline, PipelineSet
from cronmgr.core.pipelines.schema import PipelineModel, StepModel, describe
from cronmgr.core.pipelines.steps import Step, retry_policy

PYTHON_TOKEN = "{python}"


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


def _tuple(items: list[str] | None) -> tuple[str, ...] | None:
    return tuple(items) if items is not None else None


# --- one file: read, validate, convert ----------------------------------------------------


def _load_file(path: Path) -> Pipeline:
    data = _read_toml(path)
    named_by_file = "name" not in data
    data.setdefault("name", path.stem)
    name = data["name"] if isinstance(data["name"], str) else path.stem
    try:
        model = PipelineModel.model_validate(data)
    except ValidationError as exc:
        problems = describe(exc, data)
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


def _to_pipeline(model: PipelineModel, path: Path) -> Pipeline:
    base = path.parent
    return Pipeline(
        name=model.name,
        path=path,
        steps=tuple(_to_step(step, base) for step in model.steps),
        description=model.description,
        schedule=model.schedule,
        max_concurrent_runs=model.max_concurrent_runs,
    )


def _to_step(model: StepModel, base: Path) -> Step:
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


def _inline_target(model: StepModel) -> Target | None:
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
