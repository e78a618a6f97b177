"""The engine end to end: a real daemon firing real HTTP targets served on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import aiohttp
import psutil
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from support import Controller, add_target_schedule, until

from cronmgr.controller.control import DaemonControl
from cronmgr.core import pidfile
from cronmgr.core.models import (
    FailurePolicy,
    MisfirePolicy,
    OverlapPolicy,
    RetryPolicy,
    Run,
    RunStatus,
    Schedule,
    ScheduleStatus,
    Trigger,
    new_id,
    utcnow,
)
from cronmgr.engine.service import CLAIMED_ORPHAN_REASON
from cronmgr.store import open_store

ServerFactory = Callable[..., Awaitable[TestServer]]


HOLD_LIMIT_SECONDS = 30.0
"""Longest a held request waits for its release, so a failing test cannot hang the server."""


class Hits:
    """Arrival times per path at the local target server, and the gate of held paths."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)
        self.held: set[str] = {"/hold"}
        self.released = asyncio.Event()
        self.in_flight = 0
        self.most_in_flight = 0

    def count(self, path: str) -> int:
        """How many requests reached `path`."""
        return len(self.times[path])

    async def hold(self) -> None:
        """Keep a request open until `released` is set (bounded)."""
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.released.wait(), HOLD_LIMIT_SECONDS)
        finally:
            self.in_flight -= 1


@pytest.fixture
async def target_server(aiohttp_server: ServerFactory) -> AsyncIterator[tuple[TestServer, Hits]]:
    """An HTTP server with /ok, /fail (500), /missing (404), /slow (2 s) and /hold (open until
    released; any path put in `Hits.held` is held too)."""
    hits = Hits()

    async def handle(request: web.Request) -> web.Response:
        hits.times[request.path].append(time.time())
        if request.path == "/fail":
            return web.Response(status=500, text="broken")
        if request.path == "/missing":
            return web.Response(status=404, text="no")
        if request.path == "/slow":
            await asyncio.sleep(2)
        if request.path in hits.held and not hits.released.is_set():
            await hits.hold()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    yield server, hits
    hits.released.set()  # let held handlers end before the server closes


async def start_daemon(controller: Controller) -> None:
    """Start the daemon through the API (its own pipeline schedule every 10 minutes)."""
    async with (
        aiohttp.ClientSession(controller.url, headers=controller.headers) as http,
        http.post("/api/cron/start", json={"interval_seconds": 600, "pipeline": "quick"}) as r,
    ):
        assert r.status == 200, await r.text()


async def runs_of(controller: Controller, schedule_id: str) -> list[Run]:
    """The schedule's runs with their steps, oldest first."""
    async with open_store(controller.settings.store_url) as store:
        runs = await store.list_runs(schedule_id=schedule_id, limit=500)
        return [await store.get_run(r.id) for r in reversed(runs)]


async def schedule_now(controller: Controller, schedule_id: str) -> Schedule:
    """The schedule as the store has it."""
    async with open_store(controller.settings.store_url) as store:
        return await store.get_schedule(schedule_id)


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

    async def recorded() -> list[Run]:
        # A run's end is written a few ms after its answer: wait until each one is.
        runs = await runs_of(controller, schedule.id)
        done = [r for r in runs if r.status is RunStatus.SUCCEEDED]
        return runs if len(done) == hits.count("/ok") else []

    runs = await until(recorded, what="every answered request recorded")
    slots = [r.scheduled_for for r in runs]
    assert len(slots) == len(set(slots)), "a slot ran twice"
    # On a loaded machine a 1 s run can outlast its interval and be skipped for overlap
    # ("previous run still running"): that is another record, not a misfire.
    missed = [r for r in runs if r.status is RunStatus.SKIPPED and "missed" in (r.error or "")]
    assert len(missed) == 1
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


# --- helpers for the scenarios below ---------------------------------------------------------


async def api(
    http: aiohttp.ClientSession, method: str, path: str, status: int = 200, **kwargs: Any
) -> Any:
    """One controller request; assert its status and return the JSON body."""
    async with http.request(method, path, **kwargs) as resp:
        assert resp.status == status, await resp.text()
        return await resp.json()


async def stop_daemon(controller: Controller) -> None:
    """Stop the daemon through the API (graceful: runs in flight finish first)."""
    async with aiohttp.ClientSession(controller.url, headers=controller.headers) as http:
        await api(http, "POST", "/api/cron/stop")


def process_gone(pid: int) -> bool:
    """Whether `pid` has exited (a zombie nobody reaped yet counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def get_run(controller: Controller, run_id: str) -> Run:
    """One run as the store has it."""
    async with open_store(controller.settings.store_url) as store:
        return await store.get_run(run_id)


async def completed(controller: Controller, schedule_id: str) -> bool:
    """Whether the store shows the schedule completed."""
    return (await schedule_now(controller, schedule_id)).status is ScheduleStatus.COMPLETED


# --- durability -------------------------------------------------------------------------------


async def test_kill_9_mid_request_runs_no_slot_twice_and_leaves_no_run_running(
    controller: Controller, target_server: tuple[TestServer, Hits]
) -> None:
    """SIGKILL the daemon while a target request is in flight, then start it again: every
    slot has one run, every request answered to a live daemon is one succeeded run, and the
    interrupted run ends failed with the reason instead of staying running."""
    server, hits = target_server
    await start_daemon(controller)
    schedule = await add_target_schedule(controller, server, "/ok")
    await until(lambda: hits.count("/ok") >= 2)
    hits.held.add("/ok")
    await until(lambda: hits.in_flight == 1)
    found = pidfile.inspect(controller.settings.pid_file)
    assert found.record is not None
    os.kill(found.record.pid, signal.SIGKILL)
    await until(lambda: process_gone(found.record.pid))
    hits.held.discard("/ok")
    hits.released.set()
    cut = await runs_of(controller, schedule.id)
    unfinished = sorted((r for r in cut if not r.status.finished), key=lambda r: r.scheduled_for)
    # The held request's run, running, or still pending if its start was not written yet;
    # any later one is a slot claimed ahead.
    interrupted = unfinished[0]
    assert [r.status for r in unfinished[1:]] == [RunStatus.PENDING] * (len(unfinished) - 1)

    await start_daemon(controller)
    orphan = await get_run(controller, interrupted.id)
    assert orphan.status is RunStatus.FAILED
    reasons = {"the daemon stopped before this run finished", CLAIMED_ORPHAN_REASON}
    if interrupted.status is RunStatus.RUNNING:
        reasons = {"the daemon stopped before this run finished"}
    assert orphan.error in reasons
    answered_before = hits.count("/ok")
    await until(lambda: hits.count("/ok") >= answered_before + 2)
    await stop_daemon(controller)

    runs = await runs_of(controller, schedule.id)
    slots = [(r.schedule_id, r.scheduled_for) for r in runs]
    assert len(slots) == len(set(slots)), "a slot ran twice"
    assert [r for r in runs if not r.status.finished] == []
    failed = {r.id for r in runs if r.status is RunStatus.FAILED}
    assert failed == {r.id for r in unfinished}
    succeeded = [r for r in runs if r.status is RunStatus.SUCCEEDED]
    # The held request reached the server, but its run is the failed orphan.
    assert len(succeeded) == hits.count("/ok") - 1


async def test_runs_recorded_before_a_kill_9_count_toward_max_runs(
    controller: Controller, target_server: tuple[TestServer, Hits]
) -> None:
    """The engine writes run_count every 0.2 s, after the runs' own ends: a kill -9 in
    between leaves the runs recorded and the count behind, as set up here. The next daemon
    counts the runs, so a max_runs schedule does not run once too often."""
    server, hits = target_server
    start = utcnow() - timedelta(seconds=10)
    schedule = await add_target_schedule(
        controller, server, "/ok", max_runs=2, run_count=0, start_at=start, created_at=start
    )
    async with open_store(controller.settings.store_url) as store:
        for n in range(2):
            slot = start + timedelta(seconds=n)
            run = Run(
                id=new_id(),
                job=schedule.job,
                schedule_id=schedule.id,
                scheduled_for=slot,
                trigger=Trigger.SCHEDULE,
                status=RunStatus.SUCCEEDED,
                started_at=slot,
                finished_at=slot + timedelta(milliseconds=5),
            )
            assert await store.insert_run(run)

    await start_daemon(controller)
    await until(lambda: completed(controller, schedule.id))
    stored = await schedule_now(controller, schedule.id)
    assert stored.run_count == 2
    assert "max_runs (2) reached" in (stored.status_reason or "")
    assert hits.count("/ok") == 0
    assert len(await runs_of(controller, schedule.id)) == 2


# --- retention --------------------------------------------------------------------------------


async def test_retention_purges_finished_runs_beyond_the_newest_n_in_the_background(
    controller_factory: Callable[..., Controller], target_server: tuple[TestServer, Hits]
) -> None:
    """With retention_runs_per_schedule=2 the daemon's purge soon leaves only the two
    newest finished runs of a schedule that ran six times."""
    controller = controller_factory(retention_runs_per_schedule=2, retention_interval_seconds=0.2)
    server, hits = target_server
    await start_daemon(controller)
    schedule = await add_target_schedule(
        controller, server, "/ok", interval_seconds=0.2, max_runs=6
    )
    await until(lambda: hits.count("/ok") >= 6)

    async def purged() -> tuple[list[Run], Schedule] | None:
        runs = await runs_of(controller, schedule.id)
        found = await schedule_now(controller, schedule.id)
        # run_count 6: the last run's bookkeeping (and its last_run_at) is in the store.
        done = found.run_count == 6 and all(r.status.finished for r in runs)
        return (runs, found) if done and len(runs) <= 2 else None

    kept, final = await until(purged)
    assert final.status is ScheduleStatus.COMPLETED and hits.count("/ok") == 6
    assert len(kept) == 2
    assert kept[0].scheduled_for < kept[1].scheduled_for == final.last_run_at


# --- overlap policies -------------------------------------------------------------------------


async def test_replace_cancels_the_slow_run_and_says_it_was_replaced(
    controller: Controller, target_server: tuple[TestServer, Hits]
) -> None:
    """A held request on a 1 s schedule with overlap replace: at the next slot the earlier
    run is recorded cancelled, "replaced by a newer run", and the newer one is sent."""
    server, hits = target_server
    await start_daemon(controller)
    schedule = await add_target_schedule(
        controller, server, "/hold", overlap_policy=OverlapPolicy.REPLACE
    )

    async def replaced() -> list[Run]:
        runs = await runs_of(controller, schedule.id)
        return [r for r in runs if r.status is RunStatus.CANCELLED]

    first, *_ = await until(replaced)
    await until(lambda: hits.count("/hold") >= 2)
    hits.released.set()
    runs = await runs_of(controller, schedule.id)
    assert runs[0].id == first.id and first.scheduled_for == schedule.start_at
    assert "replaced by a newer run" in (first.error or "")
    assert not [r for r in runs if r.status is RunStatus.SKIPPED]


async def test_queue_runs_the_waiting_slots_after_the_slow_one_and_skips_none(
    controller: Controller, target_server: tuple[TestServer, Hits]
) -> None:
    """Overlap queue: slots that come while a request is held wait, then run one after
    another, in slot order, each after the previous one finished; none is skipped."""
    server, hits = target_server
    await start_daemon(controller)
    schedule = await add_target_schedule(
        controller, server, "/hold", overlap_policy=OverlapPolicy.QUEUE, max_runs=3
    )
    assert schedule.start_at is not None
    slots = [schedule.start_at + timedelta(seconds=k) for k in range(3)]

    async def two_queued() -> bool:
        planned = (await schedule_now(controller, schedule.id)).next_run_at
        return planned is not None and planned > slots[2]

    await until(two_queued)
    assert hits.count("/hold") == 1 and hits.in_flight == 1
    hits.released.set()
    await until(lambda: completed(controller, schedule.id))
    runs = await runs_of(controller, schedule.id)
    assert [r.status for r in runs] == [RunStatus.SUCCEEDED] * 3
    assert sorted(r.scheduled_for for r in runs) == slots
    by_slot = sorted(runs, key=lambda r: r.scheduled_for)
    for earlier, later in itertools.pairwise(by_slot):
        assert earlier.finished_at is not None and later.started_at is not None
        assert later.started_at >= earlier.finished_at
    assert hits.count("/hold") == 3 and hits.most_in_flight == 1


async def test_allow_runs_two_slow_runs_at_once(
    controller: Controller, target_server: tuple[TestServer, Hits]
) -> None:
    """Overlap allow: the next slot's request goes out while the first is still held, and
    the store shows both runs running at the same time."""
    server, hits = target_server
    await start_daemon(controller)
    schedule = await add_target_schedule(
        controller, server, "/hold", overlap_policy=OverlapPolicy.ALLOW, max_runs=2
    )
    await until(lambda: hits.in_flight == 2)

    async def both_running() -> bool:
        # A claimed run's start is written once it has gone on for START_RECORD_SECONDS.
        runs = await runs_of(controller, schedule.id)
        return [r.status for r in runs] == [RunStatus.RUNNING] * 2

    await until(both_running, what="both runs recorded running")
    hits.released.set()

    async def all_finished() -> list[Run]:
        runs = await runs_of(controller, schedule.id)
        return runs if all(r.status.finished for r in runs) else []

    runs = await until(all_finished)
    assert [r.status for r in runs] == [RunStatus.SUCCEEDED] * 2


# --- API edits on a running daemon ------------------------------------------------------------


async def test_api_patch_pause_resume_and_delete_take_effect_on_the_running_daemon(
    controller: Controller, target_server: tuple[TestServer, Hits]
) -> None:
    """Through /api/v1 while the daemon runs: an interval PATCH from an hour to 0.5 s fires
    at once on the new slots; after a pause (or a delete) is answered at most the one run in
    flight arrives while a second schedule keeps firing; resume fires again, skipping none."""
    server, hits = target_server
    await start_daemon(controller)
    async with aiohttp.ClientSession(controller.url, headers=controller.headers) as http:

        async def schedule_for(path: str, interval: float) -> dict[str, Any]:
            target = await api(
                http,
                "POST",
                "/api/v1/targets",
                201,
                json={"name": f"t{path}", "url": str(server.make_url(path))},
            )
            body = {
                "name": f"s{path}",
                "target_id": target["id"],
                "schedule_type": "interval",
                "interval_seconds": interval,
            }
            created: dict[str, Any] = await api(http, "POST", "/api/v1/schedules", 201, json=body)
            return created

        subject = await schedule_for("/subject", 3600)
        await schedule_for("/witness", 0.5)
        url = f"/api/v1/schedules/{subject['id']}"
        await until(lambda: hits.count("/subject") >= 1)
        await api(http, "PATCH", url, json={"interval_seconds": 0.5})
        await until(lambda: hits.count("/subject") >= 3)
        runs = await runs_of(controller, subject["id"])
        offsets = [(r.scheduled_for - runs[0].scheduled_for).total_seconds() for r in runs]
        assert offsets[1:] and all(o > 0 and (o * 2) % 1 == 0 for o in offsets[1:])

        async def quiet_while_the_witness_fires(path: str) -> None:
            seen, witnessed = hits.count(path), hits.count("/witness")
            await until(lambda: hits.count("/witness") >= witnessed + 4)
            assert hits.count(path) <= seen + 1, "fired after the answer"

        paused = await api(http, "POST", f"{url}/pause")
        assert paused["status"] == "paused"
        await quiet_while_the_witness_fires("/subject")

        before = hits.count("/subject")
        resumed = await api(http, "POST", f"{url}/resume")
        assert resumed["status"] == "active"
        await until(lambda: hits.count("/subject") >= before + 2)
        skipped = [
            r for r in await runs_of(controller, subject["id"]) if r.status.value == "skipped"
        ]
        assert skipped == [], "a pause is not an outage"

        await api(http, "DELETE", url)
        await quiet_while_the_witness_fires("/subject")
        await api(http, "GET", url, 404)
