"""No silent death: a fault in one step of a long-lived task, or in one schedule, is logged
and set aside while everything else goes on.

The faults are real: rows written straight into the daemon's SQLite file (values no API
would accept), webhooks that misbehave, a log file that can't be read.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from support import Controller, add_target_schedule, until

from cronmgr.controller.control import DaemonControl
from cronmgr.core.models import Schedule, utcnow
from cronmgr.core.supervision import PAUSE_FIRST_SECONDS, Faults, spawn, supervised
from cronmgr.core.triggers.rules import IntervalTrigger
from cronmgr.engine.daemon import _describe_failure as describe_failure

ServerFactory = Callable[..., Awaitable[TestServer]]


# --- the mechanism ---------------------------------------------------------------------


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_faults_log_one_line_per_period_and_count_the_rest() -> None:
    """Ten failures in a burst make one `task_failed` line; the next period's line counts
    the nine held back; the pause doubles up to its cap and a success resets it."""
    clock = Clock()
    faults = Faults("refresher", log_every=60.0, clock=clock, schedule_id="s1")
    with structlog.testing.capture_logs() as logs:
        pauses = [faults.failed(ValueError(f"bad {i}")) for i in range(10)]
        clock.now += 60.0
        faults.failed(OverflowError("date value out of range"))
        faults.succeeded()
    failed = [e for e in logs if e["event"] == "task_failed"]
    assert len(failed) == 2
    assert failed[0]["task"] == "refresher" and failed[0]["schedule_id"] == "s1"
    assert failed[0]["error"] == "ValueError: bad 0" and failed[0]["failures_not_logged"] == 0
    assert failed[1]["failures_not_logged"] == 9
    assert failed[1]["error"] == "OverflowError: date value out of range"
    assert pauses[0] == PAUSE_FIRST_SECONDS and pauses[1] == 2 * PAUSE_FIRST_SECONDS
    assert max(pauses) == 5.0
    assert [e["event"] for e in logs][-1] == "task_recovered"
    assert faults.pause == PAUSE_FIRST_SECONDS


async def test_a_supervised_task_goes_on_after_a_failing_step() -> None:
    """A step that raises is logged and the task runs the next one."""
    done = asyncio.Event()
    calls: list[int] = []

    async def step() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("first step breaks")
        if len(calls) == 3:
            done.set()
            await asyncio.Event().wait()  # then waits, as a step waiting for work does

    with structlog.testing.capture_logs() as logs:
        task = spawn("example", supervised("example", step))
        await asyncio.wait_for(done.wait(), 10)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert calls == [0, 1, 2]
    assert [e["event"] for e in logs] == ["task_failed", "task_recovered"]


async def test_a_task_that_dies_anyway_is_logged() -> None:
    """Outside `supervised`, the done-callback of `spawn` still logs a death."""

    async def broken() -> None:
        raise KeyError("lost")

    with structlog.testing.capture_logs() as logs:
        task = spawn("broken", broken())
        with contextlib.suppress(KeyError):
            await task
        await asyncio.sleep(0)  # done-callbacks run on the next loop pass
    assert [(e["event"], e["task"]) for e in logs] == [("task_died", "broken")]


# --- bad schedules in a real daemon ------------------------------------------------------


@pytest.fixture
async def ok_server(aiohttp_server: ServerFactory) -> AsyncIterator[TestServer]:
    """An HTTP target that answers 200 on /ok."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/ok", ok)
    yield await aiohttp_server(app, host="127.0.0.1")


async def add_schedule(controller: Controller, server: TestServer, **fields: Any) -> Schedule:
    """A target on /ok and a 1 s interval schedule of it, stored (the daemon not told)."""
    return await add_target_schedule(controller, server, "/ok", tell=False, **fields)


def write_row(controller: Controller, schedule_id: str, **columns: Any) -> None:
    """Overwrite columns of a schedule's row in the SQLite file, at a new revision, as a
    hand edit or an older version would have left them."""
    path = controller.settings.state_path / "cronmgr.db"
    assignments = ", ".join(f"{name} = :{name}" for name in columns)
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db, db:
        db.execute("UPDATE meta SET revision = revision + 1 WHERE id = 1")
        db.execute(
            f"UPDATE schedules SET {assignments},"
            " revision = (SELECT revision FROM meta WHERE id = 1) WHERE id = :id",
            {**columns, "id": schedule_id},
        )


async def api(http: aiohttp.ClientSession, method: str, path: str, status: int = 200) -> Any:
    """One controller request; assert its status and return the JSON body."""
    async with http.request(method, path) as resp:
        assert resp.status == status, await resp.text()
        return await resp.json()


async def run_count(http: aiohttp.ClientSession, schedule_id: str) -> int:
    """How many runs of the schedule the API lists."""
    return len(await api(http, "GET", f"/api/v1/runs?schedule_id={schedule_id}&limit=500"))


def log_events(controller: Controller, event: str) -> list[dict[str, Any]]:
    """The daemon's log lines of one event."""
    path = controller.settings.log_file
    lines = path.read_bytes().splitlines() if path.exists() else []
    found = [orjson.loads(line) for line in lines if line.startswith(b"{")]
    return [entry for entry in found if entry.get("event") == event]


async def keeps_firing(http: aiohttp.ClientSession, schedule_id: str, more: int = 2) -> None:
    """The schedule gets `more` runs recorded from now on."""
    start = await run_count(http, schedule_id)

    async def grown() -> bool:
        return await run_count(http, schedule_id) >= start + more

    await until(grown, timeout=15, what=f"{more} more runs of the healthy schedule")


async def error_of(http: aiohttp.ClientSession, schedule_id: str) -> str:
    """Wait until the API shows the schedule in status `error`; its reason."""

    async def errored() -> dict[str, Any] | None:
        body: dict[str, Any] = await api(http, "GET", f"/api/v1/schedules/{schedule_id}")
        return body if body["status"] == "error" else None

    body = await until(errored, timeout=15, what=f"schedule {schedule_id} in status error")
    reason: str = body["status_reason"]
    return reason


async def truly_running(http: aiohttp.ClientSession) -> bool:
    """Status says running, and the daemon's heartbeat says so too (a fresh state file)."""
    status = await api(http, "GET", "/api/cron/status")
    return bool(status["is_running"] and status["state"] == "running")


UNREADABLE = "its stored definition can't be used ("
CANT_COMPUTE = "its next time can't be computed: "
BAD_ROWS: list[tuple[dict[str, Any], str, str]] = [
    # Values that break a field rule: the store's read path sets them aside.
    ({"interval_seconds": 1e308}, UNREADABLE, "interval_seconds: Input should be less than"),
    ({"misfire_grace_seconds": 1e300}, UNREADABLE, "misfire_grace_seconds: Input should be"),
    (
        {"schedule_type": "cron", "cron_expression": "61 * * * *", "interval_seconds": None},
        UNREADABLE,
        "cron field minute is '61', which is not valid",
    ),
    (
        {"schedule_type": "cron", "cron_expression": "* * * * *", "timezone": "Mars/Olympus"},
        UNREADABLE,
        "unknown timezone 'Mars/Olympus'",
    ),
    (
        {"start_at": "9999-12-31T23:00:00.000000+00:00", "jitter_seconds": 1e10},
        UNREADABLE,
        "start_at: must be within 1970-01-01 to 9998-12-31",
    ),
    # Fields that each pass but can't make a trigger together: the engine sets it aside.
    (
        {"interval_seconds": None},
        CANT_COMPUTE,
        "an interval schedule needs interval_seconds",
    ),
]


async def test_the_daemon_starts_with_bad_rows_and_sets_each_aside(
    controller: Controller, http: aiohttp.ClientSession, ok_server: TestServer
) -> None:
    """Rows whose next time can't be computed don't refuse the start: each one shows status
    `error` with its reason through the API, is logged once, and the healthy schedule
    fires on while status says running."""
    healthy = await add_schedule(controller, ok_server)
    bad = []
    for columns, _, _ in BAD_ROWS:
        schedule = await add_schedule(controller, ok_server)
        write_row(controller, schedule.id, **columns)
        bad.append(schedule.id)
    async with http.post("/api/cron/start", json={"interval_seconds": 600}) as resp:
        assert resp.status == 200, await resp.text()
    for schedule_id, (_, prefix, words) in zip(bad, BAD_ROWS, strict=True):
        reason = await error_of(http, schedule_id)
        assert reason.startswith(prefix) and words in reason, reason
        assert await run_count(http, schedule_id) == 0
    await keeps_firing(http, healthy.id)
    logged = {e["schedule_id"]: e for e in log_events(controller, "schedule_error")}
    assert sorted(logged) == sorted(bad)
    assert all(e["level"] == "error" and e["reason"] for e in logged.values())
    assert await truly_running(http)


async def test_a_bad_edit_while_running_goes_to_its_schedule_and_resume_recovers(
    controller: Controller, http: aiohttp.ClientSession, ok_server: TestServer
) -> None:
    """Resuming a schedule with a huge misfire grace sets it aside (the refresher lives on:
    later changes still apply); once the row is fixed, a resume makes it active and it
    fires; still broken, a resume sends it back to error."""
    healthy = await add_schedule(controller, ok_server)
    victim = await add_schedule(controller, ok_server)
    async with http.post("/api/cron/start", json={"interval_seconds": 600}) as resp:
        assert resp.status == 200, await resp.text()
    await api(http, "POST", f"/api/v1/schedules/{victim.id}/pause")
    write_row(controller, victim.id, misfire_grace_seconds=1e300)
    await api(http, "POST", f"/api/v1/schedules/{victim.id}/resume")
    assert "misfire_grace_seconds: Input should be" in await error_of(http, victim.id)
    # The API shows the error at once (the read path); the daemon's line follows. Waited
    # for before the next resume, so that the two changes can't reach it as one.
    await until(lambda: len(log_events(controller, "schedule_error")) == 1, what="a schedule_error")
    await keeps_firing(http, healthy.id)

    await api(http, "POST", f"/api/v1/schedules/{victim.id}/resume")  # still broken
    assert "misfire_grace_seconds" in await error_of(http, victim.id)
    await until(
        lambda: len(log_events(controller, "schedule_error")) == 2, what="a second schedule_error"
    )

    write_row(controller, victim.id, misfire_grace_seconds=60.0)
    resumed = await api(http, "POST", f"/api/v1/schedules/{victim.id}/resume")
    assert resumed["status"] == "active" and resumed["status_reason"] is None
    await keeps_firing(http, victim.id)
    await keeps_firing(http, healthy.id, more=1)
    assert not log_events(controller, "task_failed")
    assert await truly_running(http)


async def test_a_schedule_that_cant_be_computed_met_while_running_is_set_aside(
    controller: Controller, http: aiohttp.ClientSession, ok_server: TestServer
) -> None:
    """A row whose fields each pass but make no trigger together, met by a running engine,
    stops that schedule alone; the timer goes on for the others. (A slot past the year
    9999 is no fault: the triggers end there, see tests/test_properties.py.)"""
    healthy = await add_schedule(controller, ok_server)
    async with http.post("/api/cron/start", json={"interval_seconds": 600}) as resp:
        assert resp.status == 200, await resp.text()
    late = await add_schedule(controller, ok_server)
    write_row(controller, late.id, interval_seconds=None)
    DaemonControl(controller.settings).definitions_changed()
    reason = await error_of(http, late.id)
    assert reason.startswith(CANT_COMPUTE), reason
    assert "an interval schedule needs interval_seconds" in reason
    await keeps_firing(http, healthy.id)
    assert await truly_running(http)


def test_a_start_refused_by_a_bug_says_where_and_what() -> None:
    """An exception that is none of cronmgr's own errors (a bug) reaches the ready pipe
    as "an unexpected error in <module.function>: <type>: <message>", not a bare type."""
    try:
        IntervalTrigger(float("nan"), utcnow())
    except ValueError as exc:
        reason = describe_failure(exc)
    assert reason == (
        "an unexpected error in cronmgr.core.triggers.rules.IntervalTrigger.__post_init__:"
        " ValueError: interval must be positive, got nan seconds (see the log)"
    )


async def test_a_row_that_cant_be_read_while_running_never_stops_the_rest(
    controller: Controller, http: aiohttp.ClientSession, ok_server: TestServer
) -> None:
    """An unknown enum value written into a row while the daemon runs: the healthy
    schedule keeps firing, a manual run is taken and status says running; the fault is not
    silent (the store sets the row aside as `error`, or the refresher logs `task_failed`
    and tries again)."""
    healthy = await add_schedule(controller, ok_server)
    odd = await add_schedule(controller, ok_server)
    async with http.post("/api/cron/start", json={"interval_seconds": 600}) as resp:
        assert resp.status == 200, await resp.text()
    write_row(controller, odd.id, misfire_policy="sometimes")
    DaemonControl(controller.settings).definitions_changed()

    async def told() -> bool:
        failed = [e for e in log_events(controller, "task_failed") if e["task"] == "refresher"]
        if failed:
            return True
        async with http.get(f"/api/v1/schedules/{odd.id}") as resp:
            return resp.status == 200 and (await resp.json())["status"] == "error"

    await until(told, timeout=15, what="the unreadable row to be reported")
    await keeps_firing(http, healthy.id)
    # Changes can't be read meanwhile, but a run asked for by hand is still taken.
    async with http.post("/api/v1/pipelines/quick/run") as resp:
        assert resp.status == 202, await resp.text()
        run = await resp.json()

    async def ran() -> bool:
        body = await api(http, "GET", f"/api/v1/runs/{run['id']}")
        return body["status"] == "succeeded"

    await until(ran, timeout=15, what="the manual run to be taken and succeed")
    assert await truly_running(http)


async def test_a_start_interval_that_cant_be_used_refuses_the_start_in_words(
    http: aiohttp.ClientSession,
) -> None:
    """The start's own schedule is the one thing asked for: past what a date can be moved
    by, the start is refused naming the interval (by the API's bounds, or else by the
    daemon: 503 "Failed to start daemon: the start interval can't be used: ...")."""
    for seconds in (10**15, 10**20):
        async with http.post("/api/cron/start", json={"interval_seconds": seconds}) as resp:
            body = await resp.json()
        assert resp.status in (422, 503), body
        assert "interval" in body["detail"]
        if resp.status == 503:
            assert body["detail"].startswith(
                "Failed to start daemon: the start interval can't be used: "
            ), body
    assert not (await api(http, "GET", "/api/cron/status"))["is_running"]
