"""Command steps as real processes: output, exit status, timeouts, process groups, pipelines."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
import structlog
from structlog.testing import capture_logs
from structlog.typing import EventDict

from cronmgr.core.models import ErrorType, RunStatus, StepResult
from cronmgr.core.pipelines.loading import load_pipelines
from cronmgr.core.pipelines.pipeline import Pipeline
from cronmgr.core.pipelines.steps import CommandStep
from cronmgr.runners.pipeline.command import run_step
from cronmgr.runners.pipeline.context import StepContext
from cronmgr.runners.pipeline.output import MAX_LINE_CHARS, LineSplitter
from cronmgr.runners.pipeline.run import run_pipeline, run_status

REPO = Path(__file__).resolve().parent.parent
SCHEDULED_FOR = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
GRACE = 0.3  # kill_grace for tests: short, yet long enough for a shell to die of SIGTERM


@pytest.fixture(autouse=True)
def logs() -> Iterator[list[EventDict]]:
    with capture_logs() as captured:
        yield captured


@pytest.fixture
def context() -> StepContext:
    return StepContext(run_id="run-1", pipeline="demo", scheduled_for=SCHEDULED_FOR)


def shell_step(cwd: Path, script: str, name: str = "step", **kwargs: Any) -> CommandStep:
    return CommandStep(name=name, cwd=cwd, shell=script, **kwargs)


def python_step(cwd: Path, code: str, name: str = "step", **kwargs: Any) -> CommandStep:
    return CommandStep(name=name, cwd=cwd, argv=(sys.executable, "-c", code), **kwargs)


def events(logs: list[EventDict], name: str) -> list[EventDict]:
    return [e for e in logs if e["event"] == name]


def output_lines(logs: list[EventDict]) -> list[str]:
    return [e["line"] for e in events(logs, "step_output")]


def live_group_members(pgid: int) -> list[int]:
    """Pids of live (not zombie) processes in process group `pgid`, found with psutil."""
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except (OSError, psutil.Error):
            continue
    return found


def is_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def started_pid(logs: list[EventDict]) -> int:
    (started,) = events(logs, "step_started")
    pid: int = started["pid"]
    return pid


async def assert_group_gone(pgid: int, *pids: int) -> None:
    await eventually(lambda: not live_group_members(pgid) and all(is_gone(p) for p in pids))


# --- one step: output and exit status ------------------------------------------------------


async def test_success_streams_every_line_into_the_log_and_the_tail(
    tmp_path: Path, context: StepContext, logs: list[EventDict]
) -> None:
    step = shell_step(tmp_path, "echo one; echo two >&2; echo three; printf 'four'")
    result = await run_step(step, context=context, kill_grace=GRACE)

    assert (result.status, result.exit_code, result.signal) == (RunStatus.SUCCEEDED, 0, None)
    assert result.error_type is None and result.error is None
    assert sorted(result.output_tail) == [
        "stderr: two",
        "stdout: four",
        "stdout: one",
        "stdout: three",
    ]
    output = events(logs, "step_output")
    assert {(e["run_id"], e["step"], e["stream"], e["line"]) for e in output} == {
        ("run-1", "step", "stdout", "one"),
        ("run-1", "step", "stderr", "two"),
        ("run-1", "step", "stdout", "three"),
        ("run-1", "step", "stdout", "four"),
    }
    assert [e["line"] for e in output if e["stream"] == "stdout"] == ["one", "three", "four"]
    (started,) = events(logs, "step_started")
    assert started["shell"] == step.shell and started["pid"] > 0
    (finished,) = events(logs, "step_finished")
    assert finished["status"] == "succeeded" and finished["exit_code"] == 0
    assert finished["duration_ms"] == result.duration_ms and finished["run_id"] == "run-1"


async def test_nonzero_exit_fails_with_the_code(tmp_path: Path, context: StepContext) -> None:
    result = await run_step(shell_step(tmp_path, "echo oops >&2; exit 3"), context=context)
    assert (result.status, result.error_type) == (RunStatus.FAILED, ErrorType.EXIT_CODE)
    assert (result.exit_code, result.signal, result.error) == (3, None, "exited with code 3")
    assert result.output_tail == ("stderr: oops",)


async def test_death_by_signal_records_the_signal_not_an_exit_code(
    tmp_path: Path, context: StepContext
) -> None:
    result = await run_step(shell_step(tmp_path, "kill -KILL $$"), context=context)
    assert (result.status, result.error_type) == (RunStatus.FAILED, ErrorType.EXIT_CODE)
    assert (result.exit_code, result.signal) == (None, signal.SIGKILL)
    assert result.error == "killed by signal 9 (SIGKILL)"


async def test_step_sees_context_extra_and_own_env_with_the_step_winning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INHERITED", "from-daemon")
    monkeypatch.setenv("LAYERED", "daemon")
    context = StepContext(
        run_id="run-9",
        pipeline="etl",
        scheduled_for=SCHEDULED_FOR,
        extra_env={"CRONMGR_STATE_DIR": "/state", "LAYERED": "extra"},
    )
    names = ["RUN_ID", "PIPELINE", "STEP", "SCHEDULED_FOR", "STATE_DIR"]
    script = " ".join(f'"$CRONMGR_{n}"' for n in names) + ' "$INHERITED" "$LAYERED"'
    step = shell_step(tmp_path, f"printf '%s\\n' {script}", name="load", env={"LAYERED": "step"})
    result = await run_step(step, context=context)
    assert [line.removeprefix("stdout: ") for line in result.output_tail] == [
        "run-9",
        "etl",
        "load",
        "2024-05-06T07:08:09+00:00",
        "/state",
        "from-daemon",
        "step",
    ]


async def test_step_runs_in_its_cwd_with_stdin_closed(tmp_path: Path, context: StepContext) -> None:
    work = tmp_path / "work"
    work.mkdir()
    result = await run_step(shell_step(work, "pwd; cat; echo done"), context=context)
    assert result.output_tail == (f"stdout: {work}", "stdout: done")


async def test_undecodable_bytes_are_replaced(
    tmp_path: Path, context: StepContext, logs: list[EventDict]
) -> None:
    code = "import sys; sys.stdout.buffer.write(b'caf\\xe9 ok\\r\\n\\xff\\xfe\\n')"
    result = await run_step(python_step(tmp_path, code), context=context)
    assert result.status is RunStatus.SUCCEEDED
    assert output_lines(logs) == ["caf\ufffd ok", "\ufffd\ufffd"]


async def test_endless_line_is_cut_and_memory_stays_flat(
    tmp_path: Path, context: StepContext, logs: list[EventDict]
) -> None:
    size = 20 * 1024 * 1024
    code = (
        "import sys\n"
        "for _ in range(20): sys.stdout.buffer.write(b'x' * 1024 * 1024)\n"
        "sys.stdout.buffer.flush()\n"
    )
    tracemalloc.start()
    try:
        result = await run_step(python_step(tmp_path, code), context=context)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.status is RunStatus.SUCCEEDED
    (line,) = output_lines(logs)
    assert line == "x" * MAX_LINE_CHARS + f" …[cut: line was {size} bytes]"
    assert result.output_tail == (f"stdout: {line}",)
    assert peak < 4 * 1024 * 1024, f"reading a {size}-byte line peaked at {peak} bytes"


@contextmanager
def counted_logs() -> Iterator[collections.Counter[str]]:
    """Count log events by name without keeping them, then restore the configuration."""
    counts: collections.Counter[str] = collections.Counter()

    def count(_: Any, __: str, event_dict: EventDict) -> EventDict:
        counts[event_dict["event"]] += 1
        raise structlog.DropEvent

    saved = structlog.get_config()
    structlog.configure(processors=[count])
    try:
        yield counts
    finally:
        structlog.configure(**saved)


async def test_huge_output_is_all_logged_and_the_tail_stays_bounded(
    tmp_path: Path, context: StepContext
) -> None:
    lines = 200_000
    code = f"import sys\nsys.stdout.writelines(f'line {{i}}\\n' for i in range({lines}))\n"
    with counted_logs() as counts:
        result = await run_step(python_step(tmp_path, code), context=context, keep_lines=5)
    assert result.status is RunStatus.SUCCEEDED
    assert counts["step_output"] == lines
    assert result.output_tail == tuple(f"stdout: line {i}" for i in range(lines - 5, lines))


async def test_a_million_lines_keep_memory_flat(tmp_path: Path, context: StepContext) -> None:
    """Every line is logged as it comes; only the kept tail stays: RSS barely moves."""
    lines = 1_000_000
    code = f"import sys\nsys.stdout.writelines(f'line {{i}}\\n' for i in range({lines}))\n"
    process = psutil.Process()
    before = process.memory_info().rss
    with counted_logs() as counts:
        result = await run_step(python_step(tmp_path, code), context=context, keep_lines=50)
    grown = process.memory_info().rss - before
    assert result.status is RunStatus.SUCCEEDED
    assert counts["step_output"] == lines
    assert len(result.output_tail) == 50
    # A million lines of ~11 bytes is ~11 MB of text; keeping them would show.
    assert grown < 8 * 1024 * 1024, f"RSS grew by {grown} bytes over {lines} lines"


def test_line_splitter_joins_chunks_and_cuts_long_lines() -> None:
    splitter = LineSplitter(max_bytes=8)
    assert splitter.feed(b"ab") == []
    assert splitter.feed(b"c\r\nde\n\nf") == ["abc", "de", ""]
    assert splitter.feed(b"ghijklmnop") == []
    assert splitter.feed(b"q\nr") == ["fghijklm …[cut: line was 12 bytes]"]
    assert splitter.close() == "r"
    assert splitter.close() is None


# --- spawn failures ---------------------------------------------------------------------------


async def test_missing_executable_fails_to_start(tmp_path: Path, context: StepContext) -> None:
    step = CommandStep(name="s", cwd=tmp_path, argv=(str(tmp_path / "no-such-program"),))
    result = await run_step(step, context=context)
    assert (result.status, result.error_type) == (RunStatus.FAILED, ErrorType.UNKNOWN)
    assert result.error == f"cannot run '{tmp_path}/no-such-program': No such file or directory"
    assert result.exit_code is None


async def test_missing_working_directory_fails_to_start(
    tmp_path: Path, context: StepContext, logs: list[EventDict]
) -> None:
    result = await run_step(shell_step(tmp_path / "gone", "true"), context=context)
    assert (result.status, result.error_type) == (RunStatus.FAILED, ErrorType.UNKNOWN)
    missing = tmp_path / "gone"
    assert result.error == f"cannot use working directory {missing}: No such file or directory"
    assert events(logs, "step_started") == []
    assert events(logs, "step_finished")[0]["error_type"] == "unknown"


# --- process groups: timeout, leftovers, cancellation ---------------------------------------


async def test_timeout_stops_the_whole_group_including_a_background_sleeper(
    tmp_path: Path, context: StepContext, logs: list[EventDict]
) -> None:
    step = shell_step(tmp_path, "sleep 1000 & echo $!; wait", timeout_seconds=0.5)
    result = await run_step(step, context=context, kill_grace=GRACE)

    assert (result.status, result.error_type) == (RunStatus.FAILED, ErrorType.TIMEOUT)
    assert result.error == "timed out after 0.5 s"
    assert (result.exit_code, result.signal) == (None, signal.SIGTERM)
    sleeper = int(output_lines(logs)[0])
    await assert_group_gone(started_pid(logs), sleeper)
    assert events(logs, "step_timed_out")


async def test_a_group_that_ignores_sigterm_gets_sigkill(
    tmp_path: Path, context: StepContext, logs: list[EventDict]
) -> None:
    step = shell_step(tmp_path, "trap '' TERM; sleep 1000 & echo $!; wait", timeout_seconds=0.3)
    begun = time.monotonic()
    result = await run_step(step, context=context, kill_grace=GRACE)
    assert time.monotonic() - begun < 5
    assert (result.error_type, result.signal) == (ErrorType.TIMEOUT, signal.SIGKILL)
    await assert_group_gone(started_pid(logs), int(output_lines(logs)[0]))


async def test_a_sleeper_left_by_a_successful_step_is_stopped(
    tmp_path: Path, context: StepContext, logs: list[EventDict]
) -> None:
    # The sleeper keeps stdout open: without the group kill the reader would wait forever.
    step = shell_step(tmp_path, "sleep 1000 & echo $!; exit 0")
    begun = time.monotonic()
    result = await run_step(step, context=context, kill_grace=GRACE)
    assert time.monotonic() - begun < 5
    assert (result.status, result.exit_code) == (RunStatus.SUCCEEDED, 0)
    await assert_group_gone(started_pid(logs), int(output_lines(logs)[0]))
    assert events(logs, "step_left_processes")


async def test_a_step_tells_its_group_and_leader_create_time_while_it_runs(
    tmp_path: Path, context: StepContext, logs: list[EventDict]
) -> None:
    """`on_spawned` gets the step's pgid (its leader's pid) and the leader's create time,
    while the step is still running: what a daemon records to find the group after a kill."""
    told: list[tuple[int, float | None, list[int]]] = []

    async def spawned(pgid: int, created: float | None) -> None:
        told.append((pgid, created, live_group_members(pgid)))

    step = shell_step(tmp_path, "sleep 1000 & echo $!; sleep 0.2")
    result = await run_step(step, context=context, kill_grace=GRACE, on_spawned=spawned)
    assert result.status is RunStatus.SUCCEEDED
    ((pgid, created, members),) = told
    assert pgid == started_pid(logs) and pgid in members
    assert created is not None and abs(created - time.time()) < 30
    await assert_group_gone(pgid, int(output_lines(logs)[0]))


async def test_a_failing_spawn_callback_is_logged_and_the_step_still_runs(
    tmp_path: Path, context: StepContext, logs: list[EventDict]
) -> None:
    """A group that cannot be recorded (a store refusing the write) costs the record only."""

    def spawned(pgid: int, created: float | None) -> None:
        raise OSError("the disk is full")

    step = shell_step(tmp_path, "echo hi")
    result = await run_step(step, context=context, kill_grace=GRACE, on_spawned=spawned)
    assert (result.status, result.output_tail) == (RunStatus.SUCCEEDED, ("stdout: hi",))
    (event,) = events(logs, "step_group_not_recorded")
    assert "the disk is full" in event["error"]


async def test_a_pipeline_tells_the_group_of_every_command_attempt(
    tmp_path: Path, context: StepContext
) -> None:
    """`on_step_spawned` is told each attempt's group, retries included."""
    told: list[int] = []
    steps = (
        shell_step(tmp_path, "true", name="a"),
        shell_step(tmp_path, "exit 3", name="b", retries=1, retry_backoff_seconds=0),
    )
    pipeline = Pipeline(name="p", path=tmp_path / "p.toml", steps=steps)
    await run_pipeline(
        pipeline, context=context, kill_grace=GRACE, on_step_spawned=lambda g, _: told.append(g)
    )
    assert len(told) == 3 and len(set(told)) == 3


async def test_cancellation_stops_the_group_reports_cancelled_and_reraises(
    tmp_path: Path, context: StepContext, logs: list[EventDict]
) -> None:
    reported: list[StepResult] = []
    step = shell_step(tmp_path, "sleep 1000 & echo $!; wait")
    task = asyncio.create_task(
        run_step(step, context=context, kill_grace=GRACE, on_finished=reported.append)
    )
    await eventually(lambda: bool(output_lines(logs)))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await assert_group_gone(started_pid(logs), int(output_lines(logs)[0]))
    (result,) = reported
    assert (result.status, result.error_type) == (RunStatus.CANCELLED, ErrorType.CANCELLED)
    assert result.signal == signal.SIGTERM
    assert events(logs, "step_finished")[0]["status"] == "cancelled"


async def test_a_process_that_left_the_group_cannot_hang_the_reader(
    tmp_path: Path, context: StepContext, logs: list[EventDict]
) -> None:
    # A new session puts the sleeper out of reach of the group kill, but it still holds
    # stdout: the runner gives up on the pipe after a bounded wait instead of hanging.
    code = (
        "import subprocess\n"
        "p = subprocess.Popen(['sleep', '1000'], start_new_session=True)\n"
        "print(p.pid, flush=True)\n"
    )
    begun = time.monotonic()
    result = await run_step(python_step(tmp_path, code), context=context, kill_grace=GRACE)
    escaped = psutil.Process(int(output_lines(logs)[0]))
    try:
        assert time.monotonic() - begun < 10
        assert result.status is RunStatus.SUCCEEDED
        assert events(logs, "step_output_abandoned")
    finally:
        escaped.kill()


# --- pipelines -----------------------------------------------------------------------------


def pipeline_of(tmp_path: Path, *steps: CommandStep) -> Pipeline:
    return Pipeline(name="demo", path=tmp_path / "demo.toml", steps=steps)


async def test_pipeline_runs_in_order_and_skips_after_a_failure(
    tmp_path: Path, context: StepContext, logs: list[EventDict]
) -> None:
    pipeline = pipeline_of(
        tmp_path,
        shell_step(tmp_path, "echo a", name="a"),
        shell_step(tmp_path, "exit 1", name="b", continue_on_error=True),
        shell_step(tmp_path, "exit 2", name="c"),
        shell_step(tmp_path, "echo never", name="d"),
    )
    seen: list[tuple[int, str, RunStatus]] = []
    results = await run_pipeline(
        pipeline,
        context=context,
        kill_grace=GRACE,
        on_step_finished=lambda pos, r: seen.append((pos, r.step, r.status)),
    )
    statuses = [r.status for r in results]
    assert statuses == [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.FAILED, RunStatus.SKIPPED]
    assert results[3].error == "not run: step 'c' failed"
    assert seen == [(i, r.step, r.status) for i, r in enumerate(results)]
    assert "never" not in output_lines(logs)
    assert run_status(pipeline, results) is RunStatus.FAILED
    (finished,) = events(logs, "pipeline_finished")
    assert finished["status"] == "failed"
    assert finished["steps"] == {"succeeded": 1, "failed": 2, "skipped": 1}


async def test_failures_allowed_by_continue_on_error_do_not_fail_the_pipeline(
    tmp_path: Path, context: StepContext
) -> None:
    pipeline = pipeline_of(
        tmp_path,
        shell_step(tmp_path, "exit 1", name="a", continue_on_error=True),
        shell_step(tmp_path, "true", name="b"),
    )
    recorded: list[StepResult] = []

    async def record(position: int, result: StepResult) -> None:
        await asyncio.sleep(0)
        recorded.append(result)

    results = await run_pipeline(pipeline, context=context, on_step_finished=record)
    assert [r.status for r in results] == [RunStatus.FAILED, RunStatus.SUCCEEDED]
    assert recorded == results
    assert run_status(pipeline, results) is RunStatus.SUCCEEDED


async def test_cancelled_pipeline_reports_the_interrupted_step_and_the_rest(
    tmp_path: Path, context: StepContext, logs: list[EventDict]
) -> None:
    pipeline = pipeline_of(
        tmp_path,
        shell_step(tmp_path, "true", name="first"),
        shell_step(tmp_path, "sleep 1000 & echo $!; wait", name="slow"),
        shell_step(tmp_path, "true", name="last"),
    )
    seen: list[StepResult] = []
    task = asyncio.create_task(
        run_pipeline(
            pipeline,
            context=context,
            kill_grace=GRACE,
            on_step_finished=lambda _, r: seen.append(r),
        )
    )
    await eventually(lambda: bool(output_lines(logs)))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    statuses = [(r.step, r.status) for r in seen]
    assert statuses == [
        ("first", RunStatus.SUCCEEDED),
        ("slow", RunStatus.CANCELLED),
        ("last", RunStatus.SKIPPED),
    ]
    slow_pid = events(logs, "step_started")[1]["pid"]
    await assert_group_gone(slow_pid, int(output_lines(logs)[0]))
    assert run_status(pipeline, seen) is RunStatus.CANCELLED
    assert events(logs, "pipeline_finished")[0]["status"] == "cancelled"


async def test_the_demo_pipeline_runs_and_writes_under_the_state_dir(
    tmp_path: Path, logs: list[EventDict]
) -> None:
    pipeline = load_pipelines(REPO / "pipelines").get("default")
    context = StepContext(
        run_id="run-demo",
        pipeline=pipeline.name,
        scheduled_for=SCHEDULED_FOR,
        extra_env={"CRONMGR_STATE_DIR": str(tmp_path)},
    )
    results = await run_pipeline(pipeline, context=context, kill_grace=GRACE)
    assert [r.status for r in results] == [RunStatus.SUCCEEDED] * len(pipeline.steps)
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["run_id"] == "run-demo"
    progress = [line for line in output_lines(logs) if line.startswith("[")]
    assert progress[0].startswith(f"[1/{len(pipeline.steps)}] extract: ")
