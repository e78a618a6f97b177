"""The `cronmgr` command as a user runs it: a subprocess, its output and its exit code."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

import orjson
import pytest
from support import Controller, free_port

from cronmgr.config import Settings

CLIENT_COMMANDS = ["start", "stop", "restart", "reload", "status", "logs", "clear-logs"]
GOOD_PIPELINE = """
name = "nightly"
description = "Two steps"

[[steps]]
name = "fetch"
command = ["echo", "fetching"]
timeout_seconds = 30

[[steps]]
name = "report"
shell = "echo done | tr a-z A-Z"
continue_on_error = true
"""
BAD_PIPELINE = """
name = "broken"

[[steps]]
name = "nothing-to-run"
"""


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any CRONMGR_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRONMGR_")}
    env.update(extra)
    return env


def cronmgr(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m cronmgr ARGS` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "cronmgr", *args],
        env=env if env is not None else clean_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def assert_clean_failure(result: subprocess.CompletedProcess[str], code: int) -> None:
    """Failed with `code`, one `cronmgr:` message on stderr, no traceback."""
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("cronmgr: ")
    assert "Traceback" not in result.stderr


def write_log(settings: Settings, *lines: str) -> None:
    """Append lines to the daemon's log file, as the daemon would."""
    settings.log_file.parent.mkdir(parents=True, exist_ok=True)
    with settings.log_file.open("a") as fh:
        fh.writelines(line + "\n" for line in lines)


def pipelines_home(tmp_path: Path, **files: str) -> Path:
    """A home whose pipelines/ holds `files` (name → TOML text)."""
    home = tmp_path / "home"
    (home / "pipelines").mkdir(parents=True)
    for name, text in files.items():
        (home / "pipelines" / f"{name}.toml").write_text(text)
    return home


# --- help and usage -------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], *([c] for c in [*CLIENT_COMMANDS, "serve", "validate"])])
def test_every_command_has_help_that_exits_zero(command: list[str]) -> None:
    result = cronmgr(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: cronmgr")


def test_top_level_help_lists_the_commands_but_not_the_daemon() -> None:
    usage = cronmgr("--help").stdout
    for command in [*CLIENT_COMMANDS, "serve", "validate"]:
        assert command in usage
    assert not any(line.split()[:1] == ["daemon"] for line in usage.splitlines())


def test_interval_below_minimum_is_a_usage_error_before_any_request() -> None:
    result = cronmgr("start", "--interval", "5")
    assert result.returncode == 2
    assert "at least 10 seconds" in result.stderr


def test_unreadable_config_file_is_a_config_error(tmp_path: Path) -> None:
    result = cronmgr("--config", str(tmp_path / "missing.toml"), "status")
    assert_clean_failure(result, 2)
    assert "missing.toml" in result.stderr


def test_controller_not_running_exits_3_and_says_how_to_start_it(tmp_path: Path) -> None:
    env = clean_env(CRONMGR_HOME=str(tmp_path), CRONMGR_PORT=str(free_port()))
    result = cronmgr("status", env=env)
    assert_clean_failure(result, 3)
    assert "cronmgr serve" in result.stderr


# --- against a controller -------------------------------------------------------------------


def test_status_is_readable_when_stopped(controller: Controller) -> None:
    result = cronmgr("status", env=controller.env())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Daemon is not running"
    labels = [line[2:].split("  ")[0] for line in lines[1:]]
    assert labels == [
        *("state", "pid", "pipeline", "uptime", "cpu", "memory", "restarts"),
        *("last exit", "next runs"),
    ]
    assert "stopped" in lines[1]


def test_status_json_is_the_api_answer(controller: Controller) -> None:
    result = cronmgr("status", "--json", env=controller.env())
    assert result.returncode == 0, result.stderr
    status = orjson.loads(result.stdout)
    assert status["is_running"] is False
    assert status["message"] == "Daemon is not running"


def test_start_status_stop(controller: Controller) -> None:
    env = controller.env()
    started = cronmgr("start", "--interval", "60", env=env)
    assert started.returncode == 0, started.stderr
    assert "interval: 60 seconds (PID: " in started.stdout

    status = orjson.loads(cronmgr("status", "--json", env=env).stdout)
    assert status["is_running"] is True
    readable = cronmgr("status", env=env).stdout
    assert f"Daemon is running (PID: {status['pid']})" in readable
    assert "default, every 60 s" in readable

    again = cronmgr("start", env=env)
    assert_clean_failure(again, 1)
    assert "already running" in again.stderr

    stopped = cronmgr("stop", env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == "Daemon stopped successfully"
    assert orjson.loads(cronmgr("status", "--json", env=env).stdout)["is_running"] is False


def test_wrong_token_is_an_api_error(controller: Controller) -> None:
    result = cronmgr("status", "--token", "wrong-token-" + "x" * 20, env=controller.env())
    assert_clean_failure(result, 1)
    assert "invalid bearer token" in result.stderr


def test_url_option_overrides_the_settings(controller: Controller, tmp_path: Path) -> None:
    """Settings point at a closed port; --url (after the command) reaches the controller."""
    env = clean_env(CRONMGR_HOME=str(tmp_path), CRONMGR_PORT=str(free_port()))
    result = cronmgr("status", "--url", controller.url, "--token", controller.token, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Daemon is not running")


def test_logs_prints_the_last_n_lines(controller: Controller) -> None:
    write_log(controller.settings, *(f"line {i}" for i in range(1, 6)))
    result = cronmgr("logs", "-n", "2", env=controller.env())
    assert result.returncode == 0, result.stderr
    assert result.stdout == "line 4\nline 5\n"
    assert cronmgr("logs", env=controller.env()).stdout.count("\n") == 5


def test_clear_logs_empties_the_log(controller: Controller) -> None:
    write_log(controller.settings, "something")
    result = cronmgr("clear-logs", env=controller.env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Logs cleared successfully"
    assert controller.settings.log_file.read_text() == ""


def read_line(stream: IO[str]) -> str:
    """One line from a child's stdout (the test's timeout guards the wait)."""
    return stream.readline().rstrip("\n")


@pytest.mark.timeout(30)
def test_logs_follow_prints_new_lines_until_ctrl_c(controller: Controller) -> None:
    write_log(controller.settings, "old-1", "old-2")
    follower = subprocess.Popen(
        [sys.executable, "-m", "cronmgr", "logs", "-f", "-n", "1"],
        env=controller.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert read_line(follower.stdout) == "old-2"
        write_log(controller.settings, "new-1")
        assert read_line(follower.stdout) == "new-1"
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=15)
        assert follower.returncode == 0, err
        assert "Traceback" not in err
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()


# --- validate (local) -----------------------------------------------------------------------


def test_validate_lists_pipelines_and_steps(tmp_path: Path) -> None:
    home = pipelines_home(tmp_path, nightly=GOOD_PIPELINE)
    result = cronmgr("--home", str(home), "validate")
    assert result.returncode == 0, result.stderr
    assert "nightly  (" in result.stdout
    assert "  1. fetch: echo fetching  [timeout 30 s]" in result.stdout
    assert "  2. report: echo done | tr a-z A-Z  [shell, timeout 3600 s, continue on error]" in (
        result.stdout
    )
    assert "1 pipeline(s) valid, 0 file(s) invalid" in result.stdout


def test_validate_reports_each_bad_file_and_exits_1(tmp_path: Path) -> None:
    home = pipelines_home(tmp_path, nightly=GOOD_PIPELINE, broken=BAD_PIPELINE, junk="[[")
    result = cronmgr("--home", str(home), "validate")
    assert result.returncode == 1
    assert "nightly" in result.stdout
    errors = result.stderr.splitlines()
    assert len(errors) == 2
    assert "broken.toml" in errors[0] and "give exactly one of command" in errors[0]
    assert "junk.toml" in errors[1] and "not valid TOML" in errors[1]
    assert "Traceback" not in result.stderr


def test_validate_without_pipeline_files_exits_1(tmp_path: Path) -> None:
    result = cronmgr("--home", str(pipelines_home(tmp_path)), "validate")
    assert result.returncode == 1
    assert "no pipeline files" in result.stderr


def test_validate_interval_shows_the_next_five_runs(tmp_path: Path) -> None:
    home = pipelines_home(tmp_path, nightly=GOOD_PIPELINE)
    before = datetime.now().astimezone().replace(microsecond=0)
    result = cronmgr("--home", str(home), "validate", "--interval", "90")
    assert result.returncode == 0, result.stderr
    tail = result.stdout.split("next 5 runs every 90 s, starting now:\n", 1)[1]
    times = [datetime.fromisoformat(line.strip()) for line in tail.splitlines()[:5]]
    assert before <= times[0] <= before + timedelta(seconds=30)
    assert [b - a for a, b in itertools.pairwise(times)] == [timedelta(seconds=90)] * 4


def test_validate_needs_no_controller_and_ignores_url(tmp_path: Path) -> None:
    home = pipelines_home(tmp_path, nightly=GOOD_PIPELINE)
    url = f"http://127.0.0.1:{free_port()}"
    result = cronmgr("--home", str(home), "--url", url, "validate")
    assert result.returncode == 0, result.stderr


def test_validate_cron_shows_fire_times_in_the_timezone(tmp_path: Path) -> None:
    """`validate --cron` prints the next five fire times, local to --timezone."""
    home = pipelines_home(tmp_path, nightly=GOOD_PIPELINE)
    args = ("--home", str(home), "validate", "--cron", "30 2 * * *", "--timezone", "Asia/Kolkata")
    result = cronmgr(*args)
    assert result.returncode == 0, result.stderr
    tail = result.stdout.split("in Asia/Kolkata:\n", 1)[1]
    times = [datetime.fromisoformat(line.strip()) for line in tail.splitlines()[:5]]
    assert all(t.strftime("%H:%M %z") == "02:30 +0530" for t in times)
    assert [b - a for a, b in itertools.pairwise(times)] == [timedelta(days=1)] * 4


def test_validate_rejects_a_bad_cron_expression_naming_the_field(tmp_path: Path) -> None:
    """A cron field out of range: exit 1 and a message naming the field."""
    home = pipelines_home(tmp_path, nightly=GOOD_PIPELINE)
    result = cronmgr("--home", str(home), "validate", "--cron", "0 24 * * *")
    assert result.returncode == 1
    assert "cron field hour is '24'" in result.stderr
