"""Pipeline files: what loads, and how each kind of mistake is reported."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cronmgr.core.errors import NotFound
from cronmgr.core.pipelines.loading import load_pipelines
from cronmgr.core.pipelines.pipeline import PipelineSet
from cronmgr.core.pipelines.steps import CommandStep

REPO = Path(__file__).resolve().parent.parent

VALID = """
name = "etl"
description = "Nightly load"

[[steps]]
name = "extract"
command = ["{python}", "scripts/extract.py", "--since", "{python}x"]
cwd = "work"
env = { GREETING = "hi" }
timeout_seconds = 600
continue_on_error = true

[[steps]]
name = "load"
shell = "{python} -c 'print(1)' | tr 1 2"
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def only_error(found: PipelineSet) -> str:
    assert len(found.errors) == 1, found.errors
    return found.errors[0].message


def test_valid_file_becomes_frozen_records(tmp_path: Path) -> None:
    path = write(tmp_path, "etl.toml", VALID)
    found = load_pipelines(tmp_path)
    assert found.errors == []
    pipeline = found.get("etl")
    assert (pipeline.name, pipeline.description, pipeline.path) == ("etl", "Nightly load", path)
    extract, load = pipeline.steps
    assert extract.argv == (sys.executable, "scripts/extract.py", "--since", "{python}x")
    assert extract.shell is None
    assert extract.cwd == (tmp_path / "work").resolve()
    assert dict(extract.env) == {"GREETING": "hi"}
    assert (extract.timeout_seconds, extract.continue_on_error) == (600, True)
    assert load.argv is None
    assert load.shell is not None and load.shell.startswith(sys.executable)
    assert load.cwd == tmp_path.resolve()
    assert (load.timeout_seconds, load.continue_on_error, dict(load.env)) == (3600, False, {})
    assert load.exec_args == ("/bin/sh", "-c", load.shell)


def test_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    write(tmp_path, "nightly-sync.toml", '[[steps]]\nname = "a"\nshell = "true"\n')
    found = load_pipelines(tmp_path)
    assert list(found.pipelines) == ["nightly-sync"]


def test_missing_directory_is_an_empty_set(tmp_path: Path) -> None:
    found = load_pipelines(tmp_path / "nowhere")
    assert (found.pipelines, found.errors) == ({}, [])


def test_the_shipped_default_pipeline_loads() -> None:
    found = load_pipelines(REPO / "pipelines")
    assert found.errors == []
    steps = found.get("default").steps
    assert 2 <= len(steps) <= 3
    assert all(step.argv is not None and step.argv[0] == sys.executable for step in steps)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('name = "x"\n[[steps]\n', "bad.toml: not valid TOML", id="bad-toml"),
        pytest.param(
            '[[steps]]\nname = "a"\nshell = "true"\ncolour = "red"\n',
            "bad.toml: step 1 ('a'): colour: unknown field (allowed: name, command, shell,",
            id="unknown-step-field",
        ),
        pytest.param(
            'when = "daily"\n[[steps]]\nname = "a"\nshell = "true"\n',
            "bad.toml: when: unknown field (allowed: name, description, schedule, "
            "max_concurrent_runs, steps)",
            id="unknown-top-field",
        ),
        pytest.param(
            '[[steps]]\nname = "a"\nshell = "true"\ncommand = ["true"]\n',
            "bad.toml: step 1 ('a'): give exactly one of command (an argv list), shell (a string), "
            "http (a request table) or target (a target's name)",
            id="both-command-and-shell",
        ),
        pytest.param(
            '[[steps]]\nname = "a"\n',
            "bad.toml: step 1 ('a'): give exactly one of command (an argv list), shell (a string), "
            "http (a request table) or target (a target's name)",
            id="neither-command-nor-shell",
        ),
        pytest.param(
            'name = "my pipeline"\n[[steps]]\nname = "a"\nshell = "true"\n',
            "bad.toml: name: must be 1-64 letters, digits, '_', '.' or '-', starting with",
            id="bad-pipeline-name",
        ),
        pytest.param(
            '[[steps]]\nname = "../etc"\nshell = "true"\n',
            "bad.toml: step 1 ('../etc'): name: must be 1-64 letters",
            id="bad-step-name",
        ),
        pytest.param(
            '[[steps]]\nname = "a"\nshell = "true"\n[[steps]]\nname = "a"\nshell = "true"\n',
            "bad.toml: step 2 ('a'): name: already used by step 1",
            id="duplicate-step-names",
        ),
        pytest.param(
            '[[steps]]\nname = "a"\nshell = "true"\n'
            '[[steps]]\nname = "load"\nshell = "true"\ntimeout_seconds = 0\n',
            "bad.toml: step 2 ('load'): timeout_seconds: must be greater than 0",
            id="zero-timeout",
        ),
        pytest.param(
            '[[steps]]\nname = "a"\nshell = "true"\ntimeout_seconds = -5\n',
            "bad.toml: step 1 ('a'): timeout_seconds: must be greater than 0",
            id="negative-timeout",
        ),
        pytest.param(
            '[[steps]]\nname = "a"\nshell = "true"\ntimeout_seconds = "60"\n',
            "bad.toml: step 1 ('a'): timeout_seconds: must be a number",
            id="timeout-as-string",
        ),
        pytest.param(
            '[[steps]]\nname = "a"\ncommand = []\n',
            "bad.toml: step 1 ('a'): command: must not be empty",
            id="empty-command",
        ),
        pytest.param(
            '[[steps]]\nname = "a"\ncommand = ["echo", 1]\n',
            "bad.toml: step 1 ('a'): command[1]: must be a string",
            id="command-item-not-a-string",
        ),
        pytest.param(
            '[[steps]]\nname = "a"\nshell = "true"\nenv = { "1BAD" = "x" }\n',
            "bad.toml: step 1 ('a'): env: invalid variable name '1BAD'",
            id="bad-env-name",
        ),
        pytest.param(
            '[[steps]]\nname = "a"\nshell = "true"\nenv = { PORT = 8080 }\n',
            "bad.toml: step 1 ('a'): env.PORT: must be a string",
            id="env-value-not-a-string",
        ),
        pytest.param('description = "x"\n', "bad.toml: steps: is required", id="no-steps"),
        pytest.param("steps = []\n", "bad.toml: steps: must not be empty", id="empty-steps"),
        pytest.param(
            'steps = ["echo"]\n', "bad.toml: step 1: must be a table", id="step-not-a-table"
        ),
    ],
)
def test_invalid_file_is_reported_by_file_step_and_field(
    tmp_path: Path, text: str, expected: str
) -> None:
    write(tmp_path, "bad.toml", text)
    found = load_pipelines(tmp_path)
    assert found.pipelines == {}
    assert expected in only_error(found)
    assert only_error(found).startswith(str(tmp_path / "bad.toml"))


def test_every_problem_of_a_file_is_listed(tmp_path: Path) -> None:
    write(
        tmp_path,
        "bad.toml",
        '[[steps]]\nname = "a"\nshell = "true"\ntimeout_seconds = 0\n'
        '[[steps]]\nname = "b"\ncommand = ["x"]\nretry = 3\n',
    )
    problems = load_pipelines(tmp_path).errors[0].problems
    assert problems == (
        "step 1 ('a'): timeout_seconds: must be greater than 0",
        "step 2 ('b'): retry: unknown field (allowed: name, command, shell, http, target, cwd, "
        "env, timeout_seconds, retries, retry_backoff_seconds, continue_on_error, needs)",
    )


def test_a_file_name_that_is_not_a_valid_name_is_blamed(tmp_path: Path) -> None:
    write(tmp_path, "my pipeline.toml", '[[steps]]\nname = "a"\nshell = "true"\n')
    message = only_error(load_pipelines(tmp_path))
    assert "name (taken from the file name 'my pipeline'): must be 1-64 letters" in message


def test_non_utf8_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "latin.toml").write_bytes(b'description = "caf\xe9"\n')
    assert only_error(load_pipelines(tmp_path)).endswith("latin.toml: not UTF-8 text")


def test_one_bad_file_does_not_stop_the_others_and_only_toml_files_count(
    tmp_path: Path,
) -> None:
    write(tmp_path, "a.toml", '[[steps]]\nname = "one"\nshell = "true"\n')
    write(tmp_path, "b.toml", "this is not toml")
    write(tmp_path, "c.toml", '[[steps]]\nname = "three"\nshell = "true"\n')
    write(tmp_path, "notes.txt", "not a pipeline file")
    write(tmp_path, ".#a.toml", "an editor's lock file")
    (tmp_path / "old.toml").mkdir()
    found = load_pipelines(tmp_path)
    assert sorted(found.pipelines) == ["a", "c"]
    assert [e.file.name for e in found.errors] == ["b.toml"]


def test_duplicate_pipeline_name_is_an_error_for_the_later_file(tmp_path: Path) -> None:
    first = write(tmp_path, "a.toml", 'name = "etl"\n[[steps]]\nname = "x"\nshell = "true"\n')
    write(tmp_path, "b.toml", 'name = "etl"\n[[steps]]\nname = "y"\nshell = "true"\n')
    found = load_pipelines(tmp_path)
    assert found.get("etl").path == first
    error = found.errors[0]
    assert error.file.name == "b.toml"
    assert error.message.endswith(f"b.toml: name: pipeline 'etl' is already defined in {first}")


def test_not_found_lists_the_known_names(tmp_path: Path) -> None:
    write(tmp_path, "beta.toml", '[[steps]]\nname = "x"\nshell = "true"\n')
    write(tmp_path, "alpha.toml", '[[steps]]\nname = "x"\nshell = "true"\n')
    with pytest.raises(NotFound) as caught:
        load_pipelines(tmp_path).get("gamma")
    assert caught.value.detail == "unknown pipeline 'gamma'; known pipelines: alpha, beta"


def test_not_found_names_the_directory_when_nothing_loaded(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no pipelines are loaded from"):
        load_pipelines(tmp_path).get("default")


def test_not_found_for_a_broken_file_carries_its_error(tmp_path: Path) -> None:
    write(tmp_path, "etl.toml", '[[steps]]\nname = "x"\nshell = "true"\ntimeout_seconds = 0\n')
    with pytest.raises(NotFound) as caught:
        load_pipelines(tmp_path).get("etl")
    detail = caught.value.detail
    assert detail.startswith("pipeline 'etl' could not be loaded: ")
    assert "etl.toml: step 1 ('x'): timeout_seconds: must be greater than 0" in detail
    assert caught.value.errors[0]["file"] == str(tmp_path / "etl.toml")


def test_a_step_needs_exactly_one_of_argv_and_shell(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        CommandStep(name="x", cwd=tmp_path)
    with pytest.raises(ValueError, match="exactly one"):
        CommandStep(name="x", cwd=tmp_path, argv=("true",), shell="true")
