"""Pipeline files with schedules, HTTP and target steps, retries and `needs`, run for real."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs
from structlog.typing import EventDict

from cronmgr.core.errors import NotFound
from cronmgr.core.models import (
    ErrorType,
    MisfirePolicy,
    OverlapPolicy,
    RetryPolicy,
    RunStatus,
    ScheduleStatus,
    ScheduleType,
    StepResult,
    Target,
)
from cronmgr.core.pipelines.loading import load_pipelines
from cronmgr.core.pipelines.pipeline import Pipeline
from cronmgr.core.pipelines.steps import Step, StepKind
from cronmgr.runners.http.runner import HttpRunner
from cronmgr.runners.pipeline.context import StepContext
from cronmgr.runners.pipeline.run import run_pipeline, run_status
from cronmgr.runners.pipeline.work_dirs import purge_work_dirs

HITS = web.AppKey("hits", list[str])
ServerFactory = Callable[..., Awaitable[TestServer]]
SCHEDULED_FOR = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
GRACE = 0.3


@pytest.fixture(autouse=True)
def logs() -> Iterator[list[EventDict]]:
    with capture_logs() as captured:
        yield captured


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def only_error(directory: Path) -> str:
    found = load_pipelines(directory)
    assert found.pipelines == {}
    (error,) = found.errors
    return error.message


# --- the file format ------------------------------------------------------------------------


def test_a_schedule_table_uses_the_api_rules_and_file_names(tmp_path: Path) -> None:
    write(
        tmp_path,
        "etl.toml",
        '[schedule]\ntype = "cron"\ncron = "30 2 * * *"\ntimezone = "Europe/Berlin"\n'
        'overlap_policy = "queue"\nmisfire_policy = "skip"\nenabled = false\n'
        '[[steps]]\nname = "a"\nshell = "true"\n',
    )
    pipeline = load_pipelines(tmp_path).get("etl")
    assert pipeline.schedule is not None
    fields = pipeline.schedule_fields()
    assert fields is not None
    assert fields["schedule_type"] is ScheduleType.CRON
    assert fields["cron_expression"] == "30 2 * * *"
    assert fields["timezone"] == "Europe/Berlin"
    assert fields["overlap_policy"] is OverlapPolicy.QUEUE
    assert fields["misfire_policy"] is MisfirePolicy.SKIP
    assert fields["status"] is ScheduleStatus.PAUSED
    assert fields["pipeline"] == "etl"
    shown = pipeline.as_dict()["schedule"]
    assert shown["type"] == "cron" and shown["cron"] == "30 2 * * *"


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        pytest.param(
            'type = "cron"\ncron = "61 * * * *"',
            "schedule.cron: cron field minute is '61', which is not valid",
            id="bad-cron",
        ),
        pytest.param(
            'type = "cron"\ncron = "0 * * * *"\ntimezone = "Mars/Olympus"',
            "schedule.timezone: unknown timezone 'Mars/Olympus'",
            id="bad-timezone",
        ),
        pytest.param(
            'type = "interval"\ninterval_seconds = 0',
            "schedule.interval_seconds: must be greater than 0",
            id="zero-interval",
        ),
        pytest.param(
            'type = "interval"\ninterval_seconds = 60\nevery = 5',
            "schedule.every: unknown field (allowed: type, interval_seconds, cron, at,",
            id="unknown-schedule-field",
        ),
        pytest.param(
            'type = "interval"\ninterval_seconds = 60\nenabled = "yes"',
            "schedule.enabled: must be true or false",
            id="enabled-not-a-bool",
        ),
    ],
)
def test_an_invalid_schedule_names_the_file_and_the_field(
    tmp_path: Path, table: str, expected: str
) -> None:
    write(tmp_path, "bad.toml", f'[schedule]\n{table}\n[[steps]]\nname = "a"\nshell = "true"\n')
    assert expected in only_error(tmp_path)


def test_http_and_target_steps_are_read_with_their_retries(tmp_path: Path) -> None:
    write(
        tmp_path,
        "calls.toml",
        '[[steps]]\nname = "ping"\nretries = 2\nretry_backoff_seconds = 0.5\n'
        'http = { url = "http://127.0.0.1:9/ping?key=${env:KEY}", method = "POST", '
        "expected_status = [202] }\n"
        '[[steps]]\nname = "hook"\ntarget = "notify"\n',
    )
    ping, hook = load_pipelines(tmp_path).get("calls").steps
    assert ping.kind is StepKind.HTTP and hook.kind is StepKind.TARGET
    assert ping.http is not None and ping.http.method == "POST"
    assert ping.http.expected_status == (202,)
    assert ping.http.retry.max_attempts == 3
    assert ping.retry.backoff_base_seconds == 0.5
    assert hook.target == "notify"
    assert "${env:KEY}" in ping.command_line  # a reference, never a resolved secret


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param(
            '[[steps]]\nname = "a"\nshell = "true"\nneeds = ["zz"]\n',
            "step 1 ('a'): needs: unknown step 'zz' (steps: a)",
            id="unknown-need",
        ),
        pytest.param(
            '[[steps]]\nname = "a"\nshell = "true"\nneeds = ["b"]\n'
            '[[steps]]\nname = "b"\nshell = "true"\nneeds = ["a"]\n',
            "steps: needs form a cycle: ",
            id="cycle",
        ),
        pytest.param(
            '[[steps]]\nname = "a"\nshell = "true"\nneeds = ["a"]\n',
            "step 1 ('a'): needs: a step cannot need itself",
            id="needs-itself",
        ),
        pytest.param(
            '[[steps]]\nname = "a"\nshell = "true"\n'
            '[[steps]]\nname = "b"\nshell = "true"\nneeds = ["a", "a"]\n',
            "step 2 ('b'): needs: 'a' is listed twice",
            id="listed-twice",
        ),
        pytest.param(
            '[[steps]]\nname = "a"\nhttp = { url = "ftp://example.invalid/" }\n',
            "step 1 ('a'): http.url:",
            id="http-bad-scheme",
        ),
        pytest.param(
            '[[steps]]\nname = "a"\nhttp = { url = "http://127.0.0.1/", methd = "GET" }\n',
            "step 1 ('a'): http.methd: unknown field",
            id="http-unknown-field",
        ),
        pytest.param(
            '[[steps]]\nname = "a"\nhttp = { url = "http://127.0.0.1/" }\ncwd = "/"\n',
            "step 1 ('a'): cwd: only for command and shell steps",
            id="cwd-on-http-step",
        ),
        pytest.param(
            '[[steps]]\nname = "a"\ntarget = "t"\nretries = 2\n',
            "step 1 ('a'): retries: a target step retries as its target's retry policy says",
            id="retries-on-target-step",
        ),
        pytest.param(
            '[[steps]]\nname = "a"\nshell = "true"\nretries = 10\n',
            "step 1 ('a'): retries: must be at most 9",
            id="too-many-retries",
        ),
    ],
)
def test_invalid_steps_name_the_step_and_field(tmp_path: Path, steps: str, expected: str) -> None:
    write(tmp_path, "bad.toml", steps)
    assert expected in only_error(tmp_path)


# --- running: needs, retries, the work directory --------------------------------------------


def context_for(tmp_path: Path) -> StepContext:
    return StepContext(
        run_id="run-7", pipeline="demo", scheduled_for=SCHEDULED_FOR, work_root=tmp_path / "work"
    )


def pipeline_of(tmp_path: Path, *steps: Step) -> Pipeline:
    return Pipeline(name="demo", path=tmp_path / "demo.toml", steps=steps)


def shell(tmp_path: Path, name: str, script: str, **kwargs: object) -> Step:
    return Step(name=name, cwd=tmp_path, shell=script, **kwargs)  # type: ignore[arg-type]


async def test_independent_steps_run_at_the_same_time(tmp_path: Path) -> None:
    """Each of a and b waits for the other's file: only a parallel run can finish both."""
    wait_for = 'for i in $(seq 400); do [ -e "$CRONMGR_WORK_DIR/{0}" ] && exit 0; sleep 0.05; done'
    wait_for += "; exit 1"
    pipeline = pipeline_of(
        tmp_path,
        shell(tmp_path, "a", 'touch "$CRONMGR_WORK_DIR/a"; ' + wait_for.format("b"), needs=()),
        shell(tmp_path, "b", 'touch "$CRONMGR_WORK_DIR/b"; ' + wait_for.format("a"), needs=()),
        shell(tmp_path, "join", "true", needs=("a", "b")),
    )
    results = await run_pipeline(pipeline, context=context_for(tmp_path), kill_grace=GRACE)
    assert [r.status for r in results] == [RunStatus.SUCCEEDED] * 3
    assert [r.position for r in results] == [0, 1, 2]
    assert results[2].started_at >= max(results[0].started_at, results[1].started_at)


async def test_a_failed_need_skips_its_dependents_but_not_the_others(tmp_path: Path) -> None:
    pipeline = pipeline_of(
        tmp_path,
        shell(tmp_path, "extract", "exit 3", needs=()),
        shell(tmp_path, "other", "true", needs=()),
        shell(tmp_path, "load", "true", needs=("extract",)),
        shell(tmp_path, "report", "true", needs=("load", "other")),
    )
    results = await run_pipeline(pipeline, context=context_for(tmp_path), kill_grace=GRACE)
    by_name = {r.step: r for r in results}
    assert by_name["extract"].status is RunStatus.FAILED
    assert by_name["other"].status is RunStatus.SUCCEEDED
    assert by_name["load"].status is RunStatus.SKIPPED
    assert by_name["load"].error == "not run: its need 'extract' failed"
    assert by_name["report"].error == "not run: its need 'load' was skipped (step 'extract' failed)"
    assert run_status(pipeline, results) is RunStatus.FAILED


async def test_continue_on_error_lets_dependents_run(tmp_path: Path) -> None:
    pipeline = pipeline_of(
        tmp_path,
        shell(tmp_path, "flaky", "exit 1", needs=(), continue_on_error=True),
        shell(tmp_path, "after", "true", needs=("flaky",)),
    )
    results = await run_pipeline(pipeline, context=context_for(tmp_path), kill_grace=GRACE)
    assert [r.status for r in results] == [RunStatus.FAILED, RunStatus.SUCCEEDED]
    assert run_status(pipeline, results) is RunStatus.SUCCEEDED


async def test_a_failing_command_is_retried_and_every_attempt_reported(tmp_path: Path) -> None:
    """The step fails until its third attempt, counted in a file of the work directory."""
    script = 'n=$(cat "$CRONMGR_WORK_DIR/n" 2>/dev/null || echo 0); n=$((n+1)); '
    script += 'echo $n > "$CRONMGR_WORK_DIR/n"; [ $n -ge 3 ]'
    pipeline = pipeline_of(
        tmp_path, shell(tmp_path, "flaky", script, retries=4, retry_backoff_seconds=0.01)
    )
    attempts: list[StepResult] = []
    results = await run_pipeline(
        pipeline,
        context=context_for(tmp_path),
        kill_grace=GRACE,
        on_step_finished=lambda _, r: attempts.append(r),
    )
    assert [(a.attempt, a.status) for a in attempts] == [
        (1, RunStatus.FAILED),
        (2, RunStatus.FAILED),
        (3, RunStatus.SUCCEEDED),
    ]
    assert results == [attempts[-1]]


async def test_a_command_that_cannot_start_is_not_retried(tmp_path: Path) -> None:
    step = Step(name="ghost", cwd=tmp_path, argv=(str(tmp_path / "missing"),), retries=3)
    attempts: list[StepResult] = []
    await run_pipeline(
        pipeline_of(tmp_path, step),
        context=context_for(tmp_path),
        on_step_finished=lambda _, r: attempts.append(r),
    )
    assert [a.error_type for a in attempts] == [ErrorType.UNKNOWN]


READ_SHARED_FILE = "import os; print(open(os.environ['CRONMGR_WORK_DIR'] + '/f').read())"


async def test_steps_share_a_work_directory_that_outlives_the_run(tmp_path: Path) -> None:
    pipeline = pipeline_of(
        tmp_path,
        shell(tmp_path, "write", 'echo "$CRONMGR_RUN_ID $CRONMGR_STEP" > "$CRONMGR_WORK_DIR/f"'),
        Step(
            name="read",
            cwd=tmp_path,
            argv=(sys.executable, "-c", READ_SHARED_FILE),
        ),
    )
    results = await run_pipeline(pipeline, context=context_for(tmp_path), kill_grace=GRACE)
    assert results[1].output_tail[0] == "stdout: run-7 write"
    work = tmp_path / "work" / "run-7"
    assert (work / "f").read_text() == "run-7 write\n"
    assert purge_work_dirs(tmp_path / "work", datetime.now(UTC), keep={"run-7"}) == 0
    assert purge_work_dirs(tmp_path / "work", datetime.now(UTC)) == 1
    assert not work.exists()


async def test_without_a_work_root_the_directory_is_temporary(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    step = shell(tmp_path, "where", f'echo "$CRONMGR_WORK_DIR" > {seen}')
    context = StepContext(run_id="r", pipeline="demo", scheduled_for=SCHEDULED_FOR)
    await run_pipeline(pipeline_of(tmp_path, step), context=context)
    used = Path(seen.read_text().strip())
    assert used.name.startswith("cronmgr-run-") and not used.exists()


# --- HTTP and target steps against a local server --------------------------------------------


@pytest.fixture
async def server(aiohttp_server: ServerFactory) -> TestServer:
    hits: list[str] = []

    async def ok(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"ok": True})

    async def broken(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(status=500, text="down")

    app = web.Application()
    app[HITS] = hits
    app.router.add_get("/ok", ok)
    app.router.add_get("/broken", broken)
    return await aiohttp_server(app, host="127.0.0.1")


@pytest.fixture
async def http() -> AsyncIterator[HttpRunner]:
    async with HttpRunner(environ={}) as runner:
        yield runner


def request_target(server: TestServer, path: str, attempts: int = 1) -> Target:
    retry = RetryPolicy(max_attempts=attempts, backoff_base_seconds=0.01, backoff_max_seconds=0.02)
    return Target(id="", name="call", url=str(server.make_url(path)), retry=retry)


async def test_an_http_step_is_sent_and_its_attempts_reported(
    tmp_path: Path, server: TestServer, http: HttpRunner
) -> None:
    pipeline = pipeline_of(
        tmp_path,
        Step(name="ok", cwd=tmp_path, http=request_target(server, "/ok")),
        Step(name="down", cwd=tmp_path, http=request_target(server, "/broken", attempts=2)),
        shell(tmp_path, "after", "true"),
    )
    attempts: list[tuple[int, StepResult]] = []
    results = await run_pipeline(
        pipeline,
        context=context_for(tmp_path),
        http=http,
        on_step_finished=lambda pos, r: attempts.append((pos, r)),
    )
    assert [r.status for r in results] == [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SKIPPED]
    assert results[0].status_code == 200
    assert results[1].error_type is ErrorType.HTTP_5XX
    assert [(pos, r.attempt) for pos, r in attempts[:3]] == [(0, 1), (1, 1), (1, 2)]
    assert server.app[HITS] == ["/ok", "/broken", "/broken"]


async def test_a_target_step_resolves_its_target_by_name(
    tmp_path: Path, server: TestServer, http: HttpRunner
) -> None:
    targets = {"health": request_target(server, "/ok")}

    async def resolve(name: str) -> Target:
        await asyncio.sleep(0)
        if name not in targets:
            raise NotFound(f"no target named {name!r}")
        return targets[name]

    pipeline = pipeline_of(
        tmp_path,
        Step(name="known", cwd=tmp_path, target="health", needs=()),
        Step(name="unknown", cwd=tmp_path, target="nope", needs=()),
    )
    results = await run_pipeline(
        pipeline, context=context_for(tmp_path), http=http, resolve_target=resolve
    )
    assert results[0].status is RunStatus.SUCCEEDED
    assert results[1].status is RunStatus.FAILED
    assert results[1].error == "target 'nope': no target named 'nope'"
    assert server.app[HITS] == ["/ok"]
