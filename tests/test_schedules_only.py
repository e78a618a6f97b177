"""A daemon without pipelines, as the API Scheduler's examples use it: targets and schedules
only, through a real controller, a real daemon and a real HTTP target on 127.0.0.1.

A start that asks for no pipeline, with none loaded, runs the schedules only and says so
in its answer and in the status; a schedule written while no daemon runs is answered with
a warning that it fires once the daemon starts, and without one while a daemon runs.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from support import Controller, kill_daemon, until

from cronmgr.controller.firing import DAEMON_NOT_RUNNING_WARNING
from cronmgr.core import pidfile

ServerFactory = Callable[..., Awaitable[TestServer]]


def fresh_home(root: Path) -> Path:
    """A CRONMGR_HOME whose pipelines directory holds no file."""
    home = root / "fresh"
    (home / "pipelines").mkdir(parents=True)
    return home


@pytest.fixture
def bare(tmp_path: Path, controller_factory: Callable[..., Controller]) -> Controller:
    """A controller on a fresh home: no pipeline at all."""
    return controller_factory(home=fresh_home(tmp_path))


@pytest.fixture
async def session(bare: Controller) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP session to the bare controller, with its token."""
    async with aiohttp.ClientSession(bare.url, headers=bare.headers) as http:
        yield http


@pytest.fixture
async def target(aiohttp_server: ServerFactory) -> tuple[TestServer, list[str]]:
    """A real HTTP target on 127.0.0.1 that records the paths it is asked for."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return await aiohttp_server(app, host="127.0.0.1"), seen


async def call(http: aiohttp.ClientSession, method: str, path: str, status: int, **kw: Any) -> Any:
    """One request; assert its status and return the JSON body."""
    async with http.request(method, path, **kw) as resp:
        body = await resp.json()
        assert resp.status == status, body
        return body


async def seed_schedule(http: aiohttp.ClientSession, server: TestServer, name: str) -> Any:
    """The seed's target and interval schedule (every second, for a minute)."""
    target = await call(
        http,
        "POST",
        "/api/v1/targets",
        201,
        json={"name": f"t-{name}", "url": str(server.make_url(f"/{name}")), "method": "GET"},
    )
    schedule = {
        "name": name,
        "target_id": target["id"],
        "schedule_type": "interval",
        "interval_seconds": 1,
        "duration_seconds": 60,
    }
    return await call(http, "POST", "/api/v1/schedules", 201, json=schedule)


async def test_a_bare_start_without_pipelines_fires_the_schedules_only(
    bare: Controller, session: aiohttp.ClientSession, target: tuple[TestServer, list[str]]
) -> None:
    server, seen = target
    created = await seed_schedule(session, server, "before")
    assert created["warnings"] == [DAEMON_NOT_RUNNING_WARNING]

    started = await call(session, "POST", "/api/cron/start", 200, json={})
    assert started["schedules_only"] is True and started["pipeline"] is None
    assert started["warnings"] == []
    assert started["message"].endswith(f"(PID: {started['pid']})")
    assert "schedules only" in started["message"]
    status = await call(session, "GET", "/api/cron/status", 200)
    assert status["is_running"] is True and status["schedules_only"] is True
    assert status["pipeline"] is None and status["interval_seconds"] is None

    await until(lambda: "/before" in seen, what="the target to be called")
    await until(
        lambda: _any_succeeded(session, created["id"]), what="a succeeded run of the schedule"
    )

    # With the daemon running, a new schedule has nothing to warn about.
    later = await seed_schedule(session, server, "after")
    assert later["warnings"] == []
    await until(lambda: "/after" in seen, what="the new schedule to fire")


async def _any_succeeded(http: aiohttp.ClientSession, schedule_id: str) -> bool:
    runs = await call(http, "GET", f"/api/v1/runs?schedule_id={schedule_id}", 200)
    return any(run["status"] == "succeeded" for run in runs)


async def test_the_seeds_start_body_without_pipelines_says_the_interval_is_unused(
    bare: Controller, session: aiohttp.ClientSession
) -> None:
    started = await call(session, "POST", "/api/cron/start", 200, json={"interval_seconds": 60})
    assert started["schedules_only"] is True and started["interval_seconds"] is None
    (warning,) = started["warnings"]
    assert "interval_seconds 60" in warning and str(bare.settings.pipelines_path) in warning
    restarted = await call(session, "POST", "/api/cron/restart", 200, json={})
    assert restarted["schedules_only"] is True
    assert restarted["message"].startswith("Daemon restarted")


async def test_a_pipeline_asked_for_by_name_is_still_refused_when_missing(
    bare: Controller, session: aiohttp.ClientSession
) -> None:
    """Only a start that names no pipeline falls back to the schedules only."""
    body = await call(session, "POST", "/api/cron/start", 422, json={"pipeline": "nightly"})
    assert body["errors"][0]["field"] == "pipeline"
    assert "no pipelines are loaded" in body["detail"]
    assert pidfile.inspect(bare.settings.pid_file).liveness is pidfile.Liveness.ABSENT


async def test_resuming_a_schedule_without_a_daemon_warns_and_pausing_does_not(
    bare: Controller, session: aiohttp.ClientSession, target: tuple[TestServer, list[str]]
) -> None:
    server, _ = target
    created = await seed_schedule(session, server, "resumed")
    paused = await call(session, "POST", f"/api/v1/schedules/{created['id']}/pause", 200)
    assert "warnings" not in paused  # the plain schedule: nothing will fire it anyway
    resumed = await call(session, "POST", f"/api/v1/schedules/{created['id']}/resume", 200)
    assert resumed["warnings"] == [DAEMON_NOT_RUNNING_WARNING]
    await call(session, "POST", "/api/cron/start", 200, json={})
    await call(session, "POST", f"/api/v1/schedules/{created['id']}/pause", 200)
    resumed = await call(session, "POST", f"/api/v1/schedules/{created['id']}/resume", 200)
    assert resumed["warnings"] == []


async def test_a_new_controller_resumes_a_schedules_only_daemon(
    tmp_path: Path, controller_factory: Callable[..., Controller]
) -> None:
    first = controller_factory(home=fresh_home(tmp_path), supervise=True)
    async with aiohttp.ClientSession(first.url, headers=first.headers) as http:
        await call(http, "POST", "/api/cron/start", 200, json={})
    first.shutdown()
    kill_daemon(first.settings)  # gone while no controller watched

    second = Controller(first.settings)
    try:
        second.start()
        async with aiohttp.ClientSession(second.url, headers=second.headers) as http:
            status = await until(lambda: _running_status(http), what="the daemon to be resumed")
        assert status["schedules_only"] is True
    finally:
        second.shutdown()
        kill_daemon(second.settings)


async def _running_status(http: aiohttp.ClientSession) -> Any:
    status = await call(http, "GET", "/api/cron/status", 200)
    return status if status["is_running"] else None


def test_the_cli_prints_the_start_warnings_on_stderr(bare: Controller) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cronmgr", "start", "--interval", "60"],
        env=bare.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "running the schedules only" in result.stdout
    (line,) = result.stderr.splitlines()
    assert line.startswith("cronmgr: warning: no pipeline is loaded")
    status = subprocess.run(
        [sys.executable, "-m", "cronmgr", "status"],
        env=bare.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "none (the schedules only)" in status.stdout, status.stderr
