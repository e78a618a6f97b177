"""The engine end to end: a real daemon firing real HTTP targets served on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from support import Controller

from cronmgr.control import DaemonControl
from cronmgr.models import (
    FailurePolicy,
    MisfirePolicy,
    RetryPolicy,
    Run,
    RunStatus,
    Schedule,
    ScheduleStatus,
    ScheduleType,
    Target,
    new_id,
    utcnow,
)
from cronmgr.store import open_store

ServerFactory = Callable[..., Awaitable[TestServer]]


class Hits:
    """Arrival times per path at the local target server."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)

    def count(self, path: str) -> int:
        """How many requests reached `path`."""
        return len(self.times[path])


@pytest.fixture
async def target_server(aiohttp_server: ServerFactory) -> tuple[TestServer, Hits]:
    """An HTTP server with /ok, /fail (500), /missing (404) and /slow (2 s)."""
    hits = Hits()

    async def handle(request: web.Request) -> web.Response:
        hits.times[request.path].append(time.time())
        if request.path == "/fail":
            return web.Response(status=500, text="broken")
        if request.path == "/missing":
            return web.Response(status=404, text="no")
        if request.path == "/slow":
            await asyncio.sleep(2)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    return server, hits


async def start_daemon(controller: Controller) -> None:
    """Start the daemon through the API (its own pipeline schedule every 10 minutes)."""
    async with (
        aiohttp.ClientSession(controller.url, headers=controller.headers) as http,
        http.post("/api/cron/start", json={"interval_seconds": 600, "pipeline": "quick"}) as r,
    ):
        assert r.status == 200, await r.text()


async def add_target_schedule(
    controller: Controller, server: TestServer, path: str, **fields: Any
) -> Schedule:
    """Store a target and an interval schedule for it, then tell the daemon."""
    target = Target(
        id=new_id(),
        name=f"t-{path.strip('/')}-{new_id()[-6:]}",
        url=str(server.make_url(path)),
        retry=fields.pop("retry", RetryPolicy(max_attempts=1)),
    )
    now = utcnow()
    values: dict[str, Any] = {"interval_seconds": 1.0, "start_at": now, "created_at": now}
    values.update(fields)
    schedule = Schedule(
        id=new_id(),
        name=f"s-{target.name}",
        schedule_type=values.pop("schedule_type", ScheduleType.INTERVAL),
        target_id=target.id,
        **values,
    )
    async with open_store(controller.settings.store_url) as store:
        await store.insert_target(target)
        await store.insert_schedule(schedule)
    DaemonControl(controller.settings).definitions_changed()
    return schedule


async def runs_of(controller: Controller, schedule_id: str) -> list[Run]:
    """The schedule's runs with their steps, oldest first."""
    async with open_store(controller.settings.store_url) as store:
        runs = await store.list_runs(schedule_id=schedule_id, limit=500)
        return [await store.get_run(r.id) for r in reversed(runs)]


async def schedule_now(controller: Controller, schedule_id: str) -> Schedule:
    """The schedule as the store has it."""
    async with open_store(controller.settings.store_url) as store:
        return await store.get_schedule(schedule_id)


async def until(predicate: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    """Await `predicate()` until it is truthy, polling; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        await asyncio.sleep(0.1)


async def test_target_schedule_fires_max_runs_times_then_completes(
    controller: Controller, target_server: tuple[TestServer, Hits]
) -> None:
    """Created while the daemon runs: fires at once, exactly max_runs times, on time."""
    server, hits = target_server
    await start_daemon(controller)
    schedule = await add_target_schedule(controller, server, "/ok", max_runs=3)

    async def completed() -> bool:
        return (await schedule_now(controller, schedule.id)).status is ScheduleStatus.COMPLETED

    await until(completed)
    runs = await runs_of(controller, schedule.id)
    assert [r.status for r in runs] == [RunStatus.SUCCEEDED] * 3
    assert hits.count("/ok") == 3
    slots = [r.scheduled_for for r in runs]
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(slots)] == [1, 1]
    (attempt,) = runs[0].steps
    assert attempt.status_code == 200 and attempt.response_size == 2
    assert "max_runs (3) reached" in (
        (await schedule_now(controller, schedule.id)).status_reason or ""
    )


async def test_failing_target_is_retried_then_auto_disabled(
    controller: Controller, target_server: tuple[TestServer, Hits]
) -> None:
    """500s are retried per the policy; after the threshold the schedule is disabled."""
    server, hits = target_server
    await start_daemon(controller)
    retry = RetryPolicy(max_attempts=2, backoff_base_seconds=0.01, jitter=False)
    schedule = await add_target_schedule(
        controller,
        server,
        "/fail",
        retry=retry,
        failure_threshold=2,
        failure_policy=FailurePolicy.DISABLE,
    )

    async def disabled() -> Schedule | None:
        found = await schedule_now(controller, schedule.id)
        return found if found.status is ScheduleStatus.DISABLED else None

    found = await until(disabled)
    assert "2 consecutive failed runs" in (found.status_reason or "")
    runs = await runs_of(controller, schedule.id)
    assert [r.status for r in runs] == [RunStatus.FAILED] * 2
    assert [len(r.steps) for r in runs] == [2, 2]
    assert (
        runs[0].steps[0].error_type is not None and runs[0].steps[0].error_type.value == "http_5xx"
    )
    assert hits.count("/fail") == 4


async def test_404_is_not_retried(
    controller: Controller, target_server: tuple[TestServer, Hits]
) -> None:
    """A 4xx answer is final: one attempt, classified http_4xx."""
    server, hits = target_server
    await start_daemon(controller)
    retry = RetryPolicy(max_attempts=3, backoff_base_seconds=0.01)
    schedule = await add_target_schedule(controller, server, "/missing", retry=retry, max_runs=1)

    async def finished() -> list[Run]:
        runs = await runs_of(controller, schedule.id)
        return runs if runs and runs[0].status.finished else []

    (run,) = await until(finished)
    assert run.status is RunStatus.FAILED and len(run.steps) == 1
    assert run.error and "http_4xx" in run.error
    assert hits.count("/missing") == 1


async def test_slow_target_overlap_skips_are_recorded(
    controller: Controller, target_server: tuple[TestServer, Hits]
) -> None:
    """A 2 s target on a 1 s schedule: the slots that come meanwhile are recorded skipped."""
    server, _hits = target_server
    await start_daemon(controller)
    schedule = await add_target_schedule(controller, server, "/slow", max_runs=2)

    async def skipped() -> list[Run]:
        runs = await runs_of(controller, schedule.id)
        return [r for r in runs if r.status is RunStatus.SKIPPED]

    found = await until(skipped)
    assert found[0].error == "previous run still running"


async def test_pause_stops_and_resume_restarts_without_making_up(
    controller: Controller, target_server: tuple[TestServer, Hits]
) -> None:
    """Pause through the store and a signal: no more requests; resume fires again."""
    server, hits = target_server
    await start_daemon(controller)
    schedule = await add_target_schedule(controller, server, "/ok")

    async def fired(n: int) -> bool:
        return hits.count("/ok") >= n

    await until(lambda: fired(2))
    async with open_store(controller.settings.store_url) as store:
        await store.set_schedule_status(schedule.id, ScheduleStatus.PAUSED)
    DaemonControl(controller.settings).definitions_changed()
    await asyncio.sleep(0.5)  # a signal in flight may still let one slot through
    paused_at = hits.count("/ok")
    await asyncio.sleep(2.5)
    assert hits.count("/ok") == paused_at
    async with open_store(controller.settings.store_url) as store:
        await store.set_schedule_status(schedule.id, ScheduleStatus.ACTIVE)
    DaemonControl(controller.settings).definitions_changed()
    await until(lambda: fired(paused_at + 1))
    skipped = [r for r in await runs_of(controller, schedule.id) if r.status is RunStatus.SKIPPED]
    assert not skipped, "a pause is not an outage"


async def test_restart_never_runs_a_slot_twice_and_misfires_run_once(
    controller: Controller, target_server: tuple[TestServer, Hits]
) -> None:
    """Stop for a while, start again: missed slots → one run and one skipped record."""
    server, hits = target_server
    await start_daemon(controller)
    schedule = await add_target_schedule(
        controller, server, "/ok", misfire_policy=MisfirePolicy.RUN_ONCE, misfire_grace_seconds=1
    )

    async def fired(n: int) -> bool:
        return hits.count("/ok") >= n

    await until(lambda: fired(2))
    async with (
        aiohttp.ClientSession(controller.url, headers=controller.headers) as http,
        http.post("/api/cron/stop") as resp,
    ):
        assert resp.status == 200
    await asyncio.sleep(4)
    before = hits.count("/ok")
    await start_daemon(controller)
    await until(lambda: fired(before + 2))
    runs = await runs_of(controller, schedule.id)
    slots = [r.scheduled_for for r in runs]
    assert len(slots) == len(set(slots)), "a slot ran twice"
    missed = [r for r in runs if r.status is RunStatus.SKIPPED]
    assert len(missed) == 1 and "missed" in (missed[0].error or "")
    succeeded = [r for r in runs if r.status is RunStatus.SUCCEEDED]
    assert len(succeeded) == hits.count("/ok")


async def test_the_seed_api_flow_drives_the_running_daemon(
    controller: Controller, target_server: tuple[TestServer, Hits]
) -> None:
    """POST a target and a schedule through /api/v1: the daemon fires it at once; the run
    with its attempt is readable through /api/v1/runs; a PATCH of the URL takes effect."""
    server, hits = target_server
    await start_daemon(controller)
    async with aiohttp.ClientSession(controller.url, headers=controller.headers) as http:
        async with http.post(
            "/api/v1/targets",
            json={"name": "Example API", "url": str(server.make_url("/ok")), "method": "POST"},
        ) as resp:
            assert resp.status == 201, await resp.text()
            target = await resp.json()
        async with http.post(
            "/api/v1/schedules",
            json={
                "name": "Every second",
                "target_id": target["id"],
                "schedule_type": "interval",
                "interval_seconds": 1,
                "duration_seconds": 300,
            },
        ) as resp:
            assert resp.status == 201, await resp.text()
            schedule = await resp.json()

        async def arrived(path: str) -> bool:
            return hits.count(path) >= 1

        await until(lambda: arrived("/ok"), timeout=10)
        async with http.patch(
            f"/api/v1/targets/{target['id']}", json={"url": str(server.make_url("/moved"))}
        ) as resp:
            assert resp.status == 200, await resp.text()
        await until(lambda: arrived("/moved"), timeout=10)
        async with http.get("/api/v1/runs", params={"schedule_id": schedule["id"]}) as resp:
            runs = await resp.json()
        assert runs and all(r["schedule_id"] == schedule["id"] for r in runs)
        finished = next(r for r in runs if r["status"] == "succeeded")
        async with http.get(f"/api/v1/runs/{finished['id']}") as resp:
            detail = await resp.json()
        (step,) = detail["steps"]
        assert step["status"] == "succeeded" and step["attempts"][0]["status_code"] == 200
