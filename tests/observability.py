"""Helpers of the metrics and incident tests: runs recorded through the real store, a local
HTTP target whose health a test switches, and calls to a real controller."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from support import Controller

from cronmgr.core.models import (
    ErrorType,
    Run,
    RunStatus,
    StepResult,
    Trigger,
    new_id,
)
from cronmgr.store.sqlite import SQLiteStore

ServerFactory = Callable[..., Awaitable[TestServer]]
_SLOT_OFFSETS = itertools.count()  # distinct slots for runs started at the same moment


async def record_run(
    store: SQLiteStore,
    job: str,
    *,
    schedule_id: str | None,
    status: RunStatus,
    started: datetime,
    seconds: float = 0.0,
    attempts: Sequence[tuple[int, RunStatus, ErrorType | None]] = (),
    slot: datetime | None = None,
) -> Run:
    """A run claimed, its attempts (position, status, error type) and its end recorded, as
    the daemon records them."""
    run = Run(
        id=new_id(),
        job=job,
        scheduled_for=slot or started + timedelta(microseconds=next(_SLOT_OFFSETS)),
        trigger=Trigger.SCHEDULE if schedule_id else Trigger.API,
        status=RunStatus.RUNNING,
        schedule_id=schedule_id,
        started_at=started,
    )
    assert await store.insert_run(run)
    numbers: Counter[int] = Counter()
    for position, attempt_status, error_type in attempts:
        numbers[position] += 1
        step = StepResult(
            step=f"step{position}",
            status=attempt_status,
            started_at=started,
            duration_ms=1,
            attempt=numbers[position],
            position=position,
            error_type=error_type,
            error=f"{error_type} happened" if error_type else None,
        )
        await store.insert_step_result(run.id, position, step)
    finished = started + timedelta(seconds=seconds)
    error = "it broke" if status is RunStatus.FAILED else None
    await store.update_run(run.id, status, finished_at=finished, error=error)
    return Run(
        id=run.id,
        job=job,
        scheduled_for=run.scheduled_for,
        trigger=run.trigger,
        status=status,
        schedule_id=schedule_id,
        started_at=started,
        finished_at=finished,
        error=error,
    )


async def record_skip(store: SQLiteStore, job: str, schedule_id: str, at: datetime) -> None:
    """A slot recorded skipped, as the engine records one."""
    run = Run(
        id=new_id(),
        job=job,
        scheduled_for=at,
        trigger=Trigger.SCHEDULE,
        status=RunStatus.SKIPPED,
        schedule_id=schedule_id,
        started_at=at,
        finished_at=at,
        error="previous run still running",
    )
    assert await store.insert_run(run)


@dataclass
class Health:
    """What the local target answers: `/ok` 200, `/fail` 500, `/flaky` 500 while `down`."""

    down: bool = True
    hits: Counter[str] = field(default_factory=Counter)


@pytest.fixture
async def target(aiohttp_server: ServerFactory) -> AsyncIterator[tuple[TestServer, Health]]:
    """A local HTTP target on 127.0.0.1 whose `/flaky` path a test switches."""
    health = Health()

    async def handle(request: web.Request) -> web.Response:
        health.hits[request.path] += 1
        failing = request.path == "/fail" or (request.path == "/flaky" and health.down)
        if failing:
            return web.Response(status=500, text="down for maintenance")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    yield await aiohttp_server(app, host="127.0.0.1"), health


async def api(
    http: aiohttp.ClientSession, method: str, path: str, status: int = 200, **kwargs: Any
) -> Any:
    """One controller request; assert its status and return the JSON body."""
    async with http.request(method, path, **kwargs) as resp:
        assert resp.status == status, await resp.text()
        return await resp.json()


async def start_daemon(http: aiohttp.ClientSession) -> None:
    """Start the daemon (its own pipeline schedule every 10 minutes: out of the way)."""
    await api(http, "POST", "/api/cron/start", json={"interval_seconds": 600, "pipeline": "quick"})


async def add_target_schedule(
    http: aiohttp.ClientSession, server: TestServer, path: str, **fields: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A target for `path` of the local server (no retries) and an interval schedule for
    it, created through the API, so the daemon learns of them at once."""
    name = f"{path.strip('/')}-{new_id()[-8:]}"
    target = await api(
        http,
        "POST",
        "/api/v1/targets",
        201,
        json={"name": name, "url": str(server.make_url(path)), "retry": {"max_attempts": 1}},
    )
    body = {
        "name": f"every {name}",
        "target_id": target["id"],
        "schedule_type": "interval",
        "interval_seconds": 0.3,
        **fields,
    }
    schedule = await api(http, "POST", "/api/v1/schedules", 201, json=body)
    return target, schedule


def controller_session(controller: Controller) -> aiohttp.ClientSession:
    """An HTTP session to `controller` with its token."""
    return aiohttp.ClientSession(controller.url, headers=controller.headers)
