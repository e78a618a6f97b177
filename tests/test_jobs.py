"""One firing, in-process: the JobRunner with a real SQLite store, the real HTTP runner and
a real target server on 127.0.0.1. Claiming ahead is what is shown here: a claimed slot is
pending in the store until it fires, its target is read before its time, and a quick run
goes from pending to its end in one write."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from cronmgr.core.config import load_settings
from cronmgr.core.models import (
    RetryPolicy,
    Run,
    RunStatus,
    Schedule,
    ScheduleType,
    Target,
    new_id,
    utcnow,
)
from cronmgr.core.pipelines.pipeline import PipelineSet
from cronmgr.engine.claims import Unclaimed
from cronmgr.engine.jobs import JobRunner
from cronmgr.runners.http.runner import HttpRunner
from cronmgr.store.sqlite import SQLiteStore


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/ok", ok)
    async with TestServer(app, host="127.0.0.1") as running:
        yield running


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = await SQLiteStore.open(tmp_path / "cronmgr.db")
    yield opened
    await opened.close()


@pytest.fixture
async def jobs(tmp_path: Path, store: SQLiteStore) -> AsyncIterator[JobRunner]:
    settings = load_settings(env={}, home=tmp_path)
    async with HttpRunner() as http:
        yield JobRunner(settings, store, http, lambda: PipelineSet({}))


async def add_schedule(store: SQLiteStore, server: TestServer | str) -> Schedule:
    url = server if isinstance(server, str) else str(server.make_url("/ok"))
    target = Target(
        id=new_id(),
        name=f"t-{new_id()[-6:]}",
        url=url,
        retry=RetryPolicy(max_attempts=1),
    )
    now = utcnow()
    schedule = Schedule(
        id=new_id(),
        name=f"s-{target.name}",
        schedule_type=ScheduleType.INTERVAL,
        target_id=target.id,
        interval_seconds=60,
        start_at=now,
        created_at=now,
    )
    await store.insert_target(target)
    await store.insert_schedule(schedule)
    return schedule


async def finished(store: SQLiteStore, run_id: str) -> Run:
    """The run once its end is written (it may wait 20 ms for company)."""
    deadline = time.monotonic() + 10
    while (run := await store.get_run(run_id)).status in (RunStatus.PENDING, RunStatus.RUNNING):
        assert time.monotonic() < deadline, "the run's end was never written"
        await asyncio.sleep(0.01)
    return run


async def test_a_claimed_slot_is_pending_then_runs_with_its_target_read_ahead(
    jobs: JobRunner, store: SQLiteStore, server: TestServer, tmp_path: Path
) -> None:
    """Claimed: a pending run with no start. The target is read with the claim: deleted
    from the store afterwards (behind the runner's back), the run still has it. The run
    ends succeeded with its start, written in one go with its end."""
    schedule = await add_schedule(store, server)
    slot = utcnow()
    (claim,) = jobs.claim_ahead([(schedule, slot)])
    await claim.batch
    (pending,) = await store.list_runs(schedule_id=schedule.id)
    assert (pending.id, pending.status, pending.started_at) == (
        claim.run.id,
        RunStatus.PENDING,
        None,
    )
    # Wait for the read ahead, then take the target away where only the store sees it.
    for _ in range(200):
        if not jobs._prefetching:
            break
        await asyncio.sleep(0.01)
    with sqlite3.connect(tmp_path / "cronmgr.db") as db:
        db.execute("PRAGMA foreign_keys=OFF")
        db.execute("DELETE FROM targets WHERE id = ?", (schedule.target_id,))

    assert await jobs.run(schedule, slot, claim) is RunStatus.SUCCEEDED
    done = await finished(store, claim.run.id)
    assert done.status is RunStatus.SUCCEEDED
    assert done.started_at is not None and done.finished_at is not None
    assert slot <= done.started_at <= done.finished_at
    assert [step.status_code for step in done.steps] == [200]


async def test_a_slot_claimed_by_another_run_is_not_run(
    jobs: JobRunner, store: SQLiteStore, server: TestServer
) -> None:
    """Two claims of one slot: the second loses and its run never starts."""
    schedule = await add_schedule(store, server)
    slot = utcnow()
    (first,) = jobs.claim_ahead([(schedule, slot)])
    (second,) = jobs.claim_ahead([(schedule, slot)])
    # The first claim's write goes first and takes the slot.
    assert await jobs.run(schedule, slot, second) is None
    assert await jobs.run(schedule, slot, first) is RunStatus.SUCCEEDED
    await finished(store, first.run.id)
    assert [r.id for r in await store.list_runs(schedule_id=schedule.id)] == [first.run.id]


async def test_released_claims_leave_no_run(
    jobs: JobRunner, store: SQLiteStore, server: TestServer
) -> None:
    """A claim given back (schedule changed, daemon stopping) deletes its pending run."""
    schedule = await add_schedule(store, server)
    claims = jobs.claim_ahead([(schedule, utcnow()), (schedule, utcnow())])
    await jobs.release(claims)
    assert await store.list_runs(schedule_id=schedule.id) == []


async def test_slots_due_together_get_their_connections_opened_ahead(
    jobs: JobRunner, store: SQLiteStore
) -> None:
    """Three targets on one server claimed for the same moment: three connections are
    open before the slot comes."""
    connections = 0
    closed = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await closed.wait()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        schedules = [await add_schedule(store, f"http://127.0.0.1:{port}/{n}") for n in range(3)]
        slot = utcnow() + timedelta(seconds=30)
        jobs.claim_ahead([(schedule, slot) for schedule in schedules])
        deadline = time.monotonic() + 10
        while connections < 3:
            assert time.monotonic() < deadline, f"{connections} connections opened ahead"
            await asyncio.sleep(0.01)
        closed.set()


async def test_a_target_run_writes_one_info_line_saying_how_its_request_went(
    jobs: JobRunner, store: SQLiteStore, server: TestServer
) -> None:
    """`run_finished` carries the last attempt's HTTP fields; that attempt's own line is
    debug, so a target run is one line at info."""
    schedule = await add_schedule(store, server)
    with capture_logs() as logs:
        assert await jobs.run(schedule, utcnow()) is RunStatus.SUCCEEDED
    info = [e for e in logs if e["log_level"] == "info"]
    assert [e["event"] for e in info] == ["run_finished"]
    (line,) = info
    target = await store.get_target(schedule.target_id or "")
    assert {k: line[k] for k in ("status", "target", "attempt", "method", "url")} == {
        "status": "succeeded",
        "target": target.name,
        "attempt": 1,
        "method": "GET",
        "url": target.url,
    }
    assert (line["status_code"], line["response_size"], line["error_type"]) == (200, 2, None)
    (attempt,) = [e for e in logs if e["event"] == "http_attempt_finished"]
    assert attempt["log_level"] == "debug" and attempt["status_code"] == 200


def test_a_long_claim_outage_is_summed_up_every_period_and_once_at_its_end() -> None:
    now = [100.0]
    unclaimed = Unclaimed(every=60.0, clock=lambda: now[0])
    slot = utcnow()
    with capture_logs() as logs:
        unclaimed.claimed()  # no outage: nothing to say
        for step in range(150):  # a slot a second for 150 s
            now[0] = 100.0 + step
            unclaimed.missed(f"s{step % 3}", slot, "the disk is full")
        now[0] = 300.0
        unclaimed.claimed()
        unclaimed.claimed()  # over already: said once
    told = [(e["event"], e.get("missed"), e.get("seconds")) for e in logs]
    assert told == [
        ("run_not_claimed", None, None),
        ("runs_not_claimed", 60, 60.0),
        ("runs_not_claimed", 60, 120.0),
        ("runs_not_claimed", 29, 200.0),
        ("runs_claimed_again", 150, 200.0),
    ]
    assert logs[0]["schedule_id"] == "s0" and logs[1]["error"] == "the disk is full"
    assert unclaimed.since is None
