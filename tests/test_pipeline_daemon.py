"""Pipelines in the running daemon: file schedules, manual runs, overlap, limits, steps.

Every test drives a real controller and a real daemon through the HTTP API; steps are real
subprocesses, HTTP steps hit a real server on 127.0.0.1. A step that must stay running
until the test says so waits for a release file in the state directory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from support import Controller

ServerFactory = Callable[..., Awaitable[TestServer]]
HITS = web.AppKey("hits", list[str])
FAR_FUTURE = 'type = "once"\nat = "2099-01-01T00:00:00Z"\n'

# A step that prints, then waits for `release-<pipeline>` in the state directory.
HELD_STEP = """
[[steps]]
name = "held"
shell = '''
echo "held $CRONMGR_RUN_ID"
while [ ! -e "$CRONMGR_STATE_DIR/release-$CRONMGR_PIPELINE" ]; do sleep 0.05; done
'''
timeout_seconds = 60
"""


def write_pipeline(controller: Controller, name: str, text: str) -> Path:
    path = controller.settings.pipelines_path / f"{name}.toml"
    path.write_text(text)
    return path


def release(controller: Controller, pipeline: str) -> None:
    (controller.settings.state_path / f"release-{pipeline}").touch()


async def eventually(probe: Callable[[], Awaitable[Any]], what: str, timeout: float = 20.0) -> Any:
    """Await `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def call(
    http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    async with http.request(method, path, **kwargs) as resp:
        return resp.status, await resp.json()


async def start_daemon(http: aiohttp.ClientSession) -> None:
    # The start schedule runs `quick` once now; tests look at their own pipelines.
    status, body = await call(
        http, "POST", "/api/cron/start", json={"interval_seconds": 3600, "pipeline": "quick"}
    )
    assert status == 200, body
    await eventually(
        lambda: _runs_of(http, "pipeline:quick", "succeeded"), "the start run of quick to end"
    )


async def _runs_of(http: aiohttp.ClientSession, job: str, status: str) -> list[Any]:
    code, runs = await call(http, "GET", "/api/v1/runs", params={"status": status})
    assert code == 200
    return [r for r in runs if r["job"] == job]


async def run_now(http: aiohttp.ClientSession, pipeline: str) -> str:
    status, body = await call(http, "POST", f"/api/v1/pipelines/{pipeline}/run")
    assert status == 202, body
    assert body["status"] == "pending" and body["trigger"] == "api"
    return str(body["id"])


async def run_of(http: aiohttp.ClientSession, run_id: str) -> dict[str, Any]:
    status, body = await call(http, "GET", f"/api/v1/runs/{run_id}")
    assert status == 200, body
    return dict(body)


async def run_in(http: aiohttp.ClientSession, run_id: str, *statuses: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        run = await run_of(http, run_id)
        return run if run["status"] in statuses else None

    return dict(await eventually(probe, f"run {run_id} to be {' or '.join(statuses)}"))


async def until_queued(http: aiohttp.ClientSession, run_id: str) -> None:
    """Wait until status lists `run_id` among the queued runs."""

    async def queued() -> bool:
        _, state = await call(http, "GET", "/api/cron/status")
        return run_id in state["queued_runs"]

    await eventually(queued, f"run {run_id} to be queued")


# --- manual runs -------------------------------------------------------------------------


async def test_a_manual_run_is_carried_out_by_the_daemon_with_its_steps(
    controller: Controller, http: aiohttp.ClientSession
) -> None:
    await start_daemon(http)
    run_id = await run_now(http, "quick")
    run = await run_in(http, run_id, "succeeded")
    assert run["job"] == "pipeline:quick" and run["schedule_id"] is None
    (step,) = run["steps"]
    assert step["step"] == "hello" and step["attempts"][0]["exit_code"] == 0
    status, detail = await call(http, "GET", "/api/v1/pipelines/quick")
    assert status == 200
    assert run_id in [r["id"] for r in detail["recent_runs"]]


async def test_a_manual_run_needs_a_running_daemon_and_a_known_pipeline(
    http: aiohttp.ClientSession,
) -> None:
    status, body = await call(http, "POST", "/api/v1/pipelines/quick/run")
    assert status == 409
    assert "the daemon is not running" in body["detail"]
    await start_daemon(http)
    status, body = await call(http, "POST", "/api/v1/pipelines/nope/run")
    assert status == 404 and "unknown pipeline 'nope'" in body["detail"]


async def test_skip_policy_answers_409_while_a_run_is_in_flight(
    controller: Controller, http: aiohttp.ClientSession
) -> None:
    write_pipeline(controller, "held", HELD_STEP)
    await start_daemon(http)
    first = await run_now(http, "held")
    await run_in(http, first, "running")
    status, body = await call(http, "POST", "/api/v1/pipelines/held/run")
    assert status == 409
    assert first in body["detail"] and "overlap_policy is 'skip'" in body["detail"]
    release(controller, "held")
    await run_in(http, first, "succeeded")
    await run_in(http, await run_now(http, "held"), "succeeded")


async def test_queue_policy_runs_the_second_after_the_first(
    controller: Controller, http: aiohttp.ClientSession
) -> None:
    write_pipeline(
        controller, "held", f'[schedule]\n{FAR_FUTURE}overlap_policy = "queue"\n{HELD_STEP}'
    )
    await start_daemon(http)
    first = await run_now(http, "held")
    await run_in(http, first, "running")
    second = await run_now(http, "held")
    await until_queued(http, second)
    assert (await run_of(http, second))["status"] == "pending"
    release(controller, "held")
    done = [await run_in(http, run_id, "succeeded") for run_id in (first, second)]
    assert done[1]["started_at"] >= done[0]["finished_at"]


async def test_replace_policy_cancels_the_running_one(
    controller: Controller, http: aiohttp.ClientSession
) -> None:
    write_pipeline(
        controller, "held", f'[schedule]\n{FAR_FUTURE}overlap_policy = "replace"\n{HELD_STEP}'
    )
    await start_daemon(http)
    first = await run_now(http, "held")
    await run_in(http, first, "running")
    second = await run_now(http, "held")
    cancelled = await run_in(http, first, "cancelled")
    assert cancelled["error"] == "cancelled: replaced by a newer run"
    await run_in(http, second, "running")
    release(controller, "held")
    await run_in(http, second, "succeeded")


async def test_allow_policy_runs_both_at_once(
    controller: Controller, http: aiohttp.ClientSession
) -> None:
    write_pipeline(
        controller, "held", f'[schedule]\n{FAR_FUTURE}overlap_policy = "allow"\n{HELD_STEP}'
    )
    await start_daemon(http)
    runs = [await run_now(http, "held"), await run_now(http, "held")]
    for run_id in runs:
        await run_in(http, run_id, "running")
    release(controller, "held")
    for run_id in runs:
        await run_in(http, run_id, "succeeded")


async def test_a_pending_manual_run_survives_a_daemon_restart(
    controller: Controller, http: aiohttp.ClientSession
) -> None:
    """Queued behind a held run when the daemon stops, it runs under the next daemon."""
    write_pipeline(
        controller, "held", f'[schedule]\n{FAR_FUTURE}overlap_policy = "queue"\n{HELD_STEP}'
    )
    await start_daemon(http)
    first = await run_now(http, "held")
    await run_in(http, first, "running")
    second = await run_now(http, "held")
    status, _ = await call(http, "POST", "/api/cron/stop")
    assert status == 200
    assert (await run_of(http, first))["status"] == "cancelled"
    assert (await run_of(http, second))["status"] == "pending"
    release(controller, "held")
    await start_daemon(http)
    await run_in(http, second, "succeeded")


# --- concurrency limits --------------------------------------------------------------------


async def test_the_global_cap_queues_runs_visibly(controller_factory: Any) -> None:
    controller = controller_factory(max_concurrent_pipeline_runs=1)
    write_pipeline(controller, "held", HELD_STEP)
    write_pipeline(controller, "other", HELD_STEP)
    async with aiohttp.ClientSession(controller.url, headers=controller.headers) as http:
        await start_daemon(http)
        first = await run_now(http, "held")
        await run_in(http, first, "running")
        second = await run_now(http, "other")
        await until_queued(http, second)
        assert (await run_of(http, second))["status"] == "pending"
        release(controller, "held")
        await run_in(http, first, "succeeded")
        await run_in(http, second, "running")
        release(controller, "other")
        await run_in(http, second, "succeeded")


async def test_the_pipeline_cap_queues_its_own_runs_only(
    controller: Controller, http: aiohttp.ClientSession
) -> None:
    write_pipeline(
        controller,
        "held",
        f'max_concurrent_runs = 1\n[schedule]\n{FAR_FUTURE}overlap_policy = "allow"\n{HELD_STEP}',
    )
    await start_daemon(http)
    first = await run_now(http, "held")
    await run_in(http, first, "running")
    second = await run_now(http, "held")
    quick = await run_now(http, "quick")
    await run_in(http, quick, "succeeded")  # another pipeline is not held back
    assert (await run_of(http, second))["status"] == "pending"
    release(controller, "held")
    await run_in(http, second, "succeeded")


async def test_retention_removes_a_finished_runs_work_dir_once_it_is_old(
    controller_factory: Any,
) -> None:
    """With retention_days of a few seconds the daemon's purge removes the work directory a
    run's step wrote into, after the run ended and not before."""
    keep_seconds = 4.0
    controller = controller_factory(
        retention_days=keep_seconds / 86400, retention_interval_seconds=0.2
    )
    write_pipeline(
        controller,
        "scratch",
        '[[steps]]\nname = "write"\nshell = \'echo data > "$CRONMGR_WORK_DIR/out.txt"\'\n',
    )
    async with aiohttp.ClientSession(controller.url, headers=controller.headers) as http:
        await start_daemon(http)
        run_id = await run_now(http, "scratch")
        await run_in(http, run_id, "succeeded")
        written = controller.settings.state_path / "work" / run_id / "out.txt"
        assert written.read_text() == "data\n"  # kept while younger than retention_days

        async def removed() -> bool:
            return not written.parent.exists()

        await eventually(removed, "the purge of the run's work directory", timeout=30.0)


# --- schedules declared in files -------------------------------------------------------------


async def test_a_file_schedule_is_synced_runs_and_belongs_to_the_file(
    controller: Controller, http: aiohttp.ClientSession
) -> None:
    path = write_pipeline(
        controller,
        "ticker",
        '[schedule]\ntype = "interval"\ninterval_seconds = 1\n'
        '[[steps]]\nname = "tick"\nshell = "echo tick"\n',
    )
    await start_daemon(http)
    schedule_path = "/api/v1/schedules/pipeline.ticker"
    status, schedule = await call(http, "GET", schedule_path)
    assert status == 200 and schedule["pipeline"] == "ticker"
    assert schedule["interval_seconds"] == 1 and schedule["status"] == "active"

    async def ran() -> list[Any]:
        _, runs = await call(http, "GET", "/api/v1/runs", params={"schedule_id": "pipeline.ticker"})
        return [r for r in runs if r["status"] == "succeeded"]

    await eventually(ran, "a scheduled run of the file's schedule")

    status, body = await call(http, "PATCH", schedule_path, json={"interval_seconds": 5})
    assert status == 409 and "edit it there" in body["detail"]
    status, body = await call(http, "DELETE", schedule_path)
    assert status == 409

    # Paused through the API, it stays paused across an edit of the file and a reload.
    status, _ = await call(http, "POST", f"{schedule_path}/pause")
    assert status == 200
    path.write_text(path.read_text().replace("interval_seconds = 1", "interval_seconds = 7"))
    await call(http, "POST", "/api/cron/reload")

    async def edited() -> dict[str, Any] | None:
        _, found = await call(http, "GET", schedule_path)
        return found if found["interval_seconds"] == 7 else None

    assert (await eventually(edited, "the edited interval"))["status"] == "paused"
    _, detail = await call(http, "GET", "/api/v1/pipelines/ticker")
    assert detail["schedule"]["status"] == "paused" and detail["schedule"]["interval_seconds"] == 7

    # Without its [schedule] table the schedule goes.
    path.write_text('[[steps]]\nname = "tick"\nshell = "echo tick"\n')
    await call(http, "POST", "/api/cron/reload")

    async def gone() -> bool:
        code, _ = await call(http, "GET", schedule_path)
        return code == 404

    await eventually(gone, "the schedule to go with its table")


async def test_a_broken_file_keeps_its_schedule(
    controller: Controller, http: aiohttp.ClientSession
) -> None:
    path = write_pipeline(
        controller,
        "nightly",
        f'[schedule]\n{FAR_FUTURE}[[steps]]\nname = "a"\nshell = "true"\n',
    )
    await start_daemon(http)
    status, _ = await call(http, "GET", "/api/v1/schedules/pipeline.nightly")
    assert status == 200
    path.write_text(path.read_text() + "oops =\n")
    status, _ = await call(http, "POST", "/api/cron/reload")
    assert status == 200
    status, _ = await call(http, "POST", "/api/v1/pipelines/quick/run")
    assert status == 202  # the reload went through: the daemon answers manual runs
    status, _ = await call(http, "GET", "/api/v1/schedules/pipeline.nightly")
    assert status == 200


# --- HTTP and target steps, the work directory ----------------------------------------------


@pytest.fixture
async def target_server(aiohttp_server: ServerFactory) -> TestServer:
    hits: list[str] = []

    async def ok(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"ok": True})

    app = web.Application()
    app[HITS] = hits
    app.router.add_get("/ping", ok)
    app.router.add_get("/hook", ok)
    return await aiohttp_server(app, host="127.0.0.1")


async def test_http_and_target_steps_call_the_server_and_share_the_work_dir(
    controller: Controller, http: aiohttp.ClientSession, target_server: TestServer
) -> None:
    status, _ = await call(
        http,
        "POST",
        "/api/v1/targets",
        json={"name": "hook", "url": str(target_server.make_url("/hook"))},
    )
    assert status == 201
    write_pipeline(
        controller,
        "calls",
        f'[[steps]]\nname = "ping"\nhttp = {{ url = "{target_server.make_url("/ping")}" }}\n'
        '[[steps]]\nname = "hook"\ntarget = "hook"\n'
        '[[steps]]\nname = "where"\n'
        'shell = \'echo "$CRONMGR_WORK_DIR" > "$CRONMGR_WORK_DIR/here"\'\n',
    )
    await start_daemon(http)
    run = await run_in(http, await run_now(http, "calls"), "succeeded")
    assert [s["status"] for s in run["steps"]] == ["succeeded"] * 3
    assert run["steps"][0]["attempts"][0]["status_code"] == 200
    assert target_server.app[HITS] == ["/ping", "/hook"]
    work_dir = controller.settings.state_path / "work" / run["id"]
    assert (work_dir / "here").read_text().strip() == str(work_dir)
