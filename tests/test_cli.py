"""The `cronmgr` command as a user runs it: a subprocess, its output and its exit code."""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

import orjson
import psutil
import pytest
from support import Controller, free_port, wait_for

from cronmgr.core.config import Settings

CLIENT_COMMANDS = ["start", "stop", "restart", "reload", "status", "nodes", "logs", "clear-logs"]
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


LOCAL_COMMANDS = ["serve", "validate", "run"]


@pytest.mark.parametrize("command", [[], *([c] for c in [*CLIENT_COMMANDS, *LOCAL_COMMANDS])])
def test_every_command_has_help_that_exits_zero(command: list[str]) -> None:
    result = cronmgr(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: cronmgr")


def test_top_level_help_lists_the_commands_but_not_the_daemon() -> None:
    usage = cronmgr("--help").stdout
    for command in [*CLIENT_COMMANDS, *LOCAL_COMMANDS]:
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


def test_restart_replaces_the_daemon_and_keeps_the_last_pipeline(controller: Controller) -> None:
    """`restart --interval 30` stops the daemon and starts a new one on the same pipeline."""
    env = controller.env()
    started = cronmgr("start", "--interval", "60", "--pipeline", "quick", env=env)
    assert started.returncode == 0, started.stderr
    old_pid = orjson.loads(cronmgr("status", "--json", env=env).stdout)["pid"]

    restarted = cronmgr("restart", "--interval", "30", env=env)
    assert restarted.returncode == 0, restarted.stderr
    assert "Daemon restarted successfully with interval: 30 seconds (PID: " in restarted.stdout
    status = orjson.loads(cronmgr("status", "--json", env=env).stdout)
    assert status["is_running"] is True and status["pid"] != old_pid
    assert (status["pipeline"], status["interval_seconds"]) == ("quick", 30)
    assert f"(PID: {status['pid']})" in restarted.stdout
    assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == "zombie"
    assert cronmgr("stop", env=env).returncode == 0


def test_reload_signals_the_running_daemon(controller: Controller) -> None:
    """`reload` makes the running daemon re-read its files: it logs `daemon_reloaded`."""
    env = controller.env()
    assert cronmgr("start", "--pipeline", "quick", env=env).returncode == 0
    reloaded = cronmgr("reload", env=env)
    assert reloaded.returncode == 0, reloaded.stderr
    assert reloaded.stdout.strip() == "Reload signalled"
    wait_for(
        lambda: '"daemon_reloaded"' in controller.settings.log_file.read_text(),
        what="the daemon to log its reload",
    )
    assert cronmgr("stop", env=env).returncode == 0


def test_reload_without_a_daemon_exits_1_saying_so(controller: Controller) -> None:
    result = cronmgr("reload", env=controller.env())
    assert_clean_failure(result, 1)
    assert "Daemon is not running; nothing to reload" in result.stderr


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


def test_nodes_prints_the_daemons_of_the_store_as_a_table_or_json(
    controller: Controller,
) -> None:
    """No node before a start; then the daemon's node in the columns, and --json is the
    API's answer."""
    env = controller.env()
    empty = cronmgr("nodes", env=env)
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout.strip() == "no nodes: no daemon has used this store yet"
    assert orjson.loads(cronmgr("nodes", "--json", env=env).stdout) == []
    assert cronmgr("start", "--pipeline", "quick", env=env).returncode == 0

    result = cronmgr("nodes", env=env)
    assert result.returncode == 0, result.stderr
    header, row = (re.split(r" {2,}", line) for line in result.stdout.splitlines())
    assert header == ["NODE", "HOST", "STATE", "SCHEDULES", "IN-FLIGHT", "LEASE", "PIPELINES"]
    (node,) = orjson.loads(cronmgr("nodes", "--json", env=env).stdout)
    status = orjson.loads(cronmgr("status", "--json", env=env).stdout)
    assert node["state"] == "live" and node["pid"] == status["pid"]
    assert row[:3] == [node["id"], f"{socket.gethostname()} (this host)", "live"]
    assert row[3].isdigit() and row[4].isdigit()
    assert re.fullmatch(r"in \d+\.\ds", row[5]), row[5]
    assert row[6] == "default, quick, slow"
    assert cronmgr("stop", env=env).returncode == 0
    (left,) = orjson.loads(cronmgr("nodes", "--json", env=env).stdout)
    assert left["state"] == "left" and left["id"] == node["id"]
    assert re.search(r"  left  .*  expired \d+\.\ds ago  ", cronmgr("nodes", env=env).stdout)


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


def test_validate_shows_a_file_schedule_with_its_fire_times(tmp_path: Path) -> None:
    """A [schedule] is shown with the next five fire times, in its own timezone."""
    text = (
        '[schedule]\ntype = "cron"\ncron = "30 2 * * *"\ntimezone = "America/New_York"\n'
        '[[steps]]\nname = "a"\nshell = "true"\nretries = 2\n'
        '[[steps]]\nname = "b"\nneeds = ["a"]\nhttp = { url = "http://127.0.0.1:9/x" }\n'
    )
    result = cronmgr("--home", str(pipelines_home(tmp_path, nightly=text)), "validate")
    assert result.returncode == 0, result.stderr
    assert "  1. a: true  [shell, timeout 3600 s, 2 retries]" in result.stdout
    assert "  2. b: GET http://127.0.0.1:9/x  [http, needs a]" in result.stdout
    head = "  schedule: cron '30 2 * * *' in America/New_York, overlap skip; next 5 fire times:\n"
    assert head in result.stdout
    tail = result.stdout.split(head, 1)[1].splitlines()[:5]
    times = [datetime.fromisoformat(line.strip()) for line in tail]
    assert all((t.hour, t.minute) == (2, 30) for t in times)
    # One a day, at 02:30 local time (a day is not always 24 hours across DST).
    assert all((b.date() - a.date()).days == 1 for a, b in itertools.pairwise(times))


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


# --- run (local) ----------------------------------------------------------------------------

FAILING_PIPELINE = """
name = "failing"

[[steps]]
name = "prepare"
command = ["{python}", "-c", "print('preparing')"]

[[steps]]
name = "explode"
shell = "echo boom >&2; exit 3"

[[steps]]
name = "never"
shell = "echo never"
"""


def run_env(tmp_path: Path, **files: str) -> tuple[dict[str, str], Path]:
    """An environment whose CRONMGR_PIPELINES_DIR holds `files`, and its home."""
    pipelines = tmp_path / "defs"
    pipelines.mkdir()
    for name, text in files.items():
        (pipelines / f"{name}.toml").write_text(text)
    home = tmp_path / "home"
    env = clean_env(CRONMGR_HOME=str(home), CRONMGR_PIPELINES_DIR=str(pipelines))
    return env, home


def stderr_events(result: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    """The JSON log lines the command wrote to stderr."""
    return [orjson.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]


def step_lines(result: subprocess.CompletedProcess[str]) -> list[list[str]]:
    """The per-step lines of `cronmgr run`, split into their fields."""
    lines = [line.strip() for line in result.stdout.splitlines() if line.startswith("  ")]
    return [line.split("  ") for line in lines]


def test_run_executes_the_pipeline_here_and_exits_0(tmp_path: Path) -> None:
    """Each step's outcome on stdout as it ends; its output as JSON events on stderr."""
    env, home = run_env(tmp_path, nightly=GOOD_PIPELINE, failing=FAILING_PIPELINE)
    result = cronmgr("run", "nightly", env=env)
    assert result.returncode == 0, result.stderr
    first, *_, last = result.stdout.splitlines()
    assert first.startswith("pipeline nightly (run ") and last == "pipeline nightly succeeded"
    steps = step_lines(result)
    assert [s[:2] for s in steps] == [["1. fetch", "succeeded"], ["2. report", "succeeded"]]
    assert all(s[2].endswith(" s") and s[3] == "exit code 0" for s in steps)
    output = [e for e in stderr_events(result) if e["event"] == "step_output"]
    assert [(e["step"], e["line"]) for e in output] == [("fetch", "fetching"), ("report", "DONE")]
    assert {e["run_id"] for e in output} == {first.removesuffix(")").split("(run ")[1]}
    assert not (home / "var").exists(), "run must not touch the store or the state directory"


def test_run_of_a_failing_pipeline_exits_1_and_skips_the_rest(tmp_path: Path) -> None:
    env, _ = run_env(tmp_path, nightly=GOOD_PIPELINE, failing=FAILING_PIPELINE)
    result = cronmgr("run", "failing", env=env)
    assert result.returncode == 1, result.stderr
    steps = step_lines(result)
    assert [s[:2] for s in steps] == [
        ["1. prepare", "succeeded"],
        ["2. explode", "failed"],
        ["3. never", "skipped"],
    ]
    assert steps[1][3:] == ["exit code 3", "exited with code 3"]
    assert steps[2][-1] == "not run: step 'explode' failed"
    assert result.stdout.splitlines()[-1] == "pipeline failing failed"


def test_run_of_an_unknown_pipeline_exits_2_naming_the_known_ones(tmp_path: Path) -> None:
    env, _ = run_env(tmp_path, nightly=GOOD_PIPELINE, failing=FAILING_PIPELINE)
    result = cronmgr("run", "nope", env=env)
    assert_clean_failure(result, 2)
    assert "unknown pipeline 'nope'; known pipelines: failing, nightly" in result.stderr
    assert result.stdout == ""


def test_run_of_an_invalid_pipeline_exits_2_with_the_loaders_reason(tmp_path: Path) -> None:
    env, _ = run_env(tmp_path, nightly=GOOD_PIPELINE, broken=BAD_PIPELINE)
    result = cronmgr("run", "broken", env=env)
    assert_clean_failure(result, 2)
    assert "pipeline 'broken' could not be loaded" in result.stderr
    assert "broken.toml" in result.stderr and "give exactly one of command" in result.stderr
