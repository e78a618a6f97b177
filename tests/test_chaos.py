"""Chaos: a real daemon killed with SIGKILL and restarted, over and over, with real targets
and real step processes. Nothing may run twice, stay `running`, be recorded succeeded
without having happened, or outlive the daemon that started it.

The target server on 127.0.0.1 records every request that reaches it by the run id and
slot its body carries (the target's body template), so the store can be checked against
what really happened.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from support import Controller, until

from cronmgr.controller.control import DaemonControl
from cronmgr.core import pidfile
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
from cronmgr.engine.orphans import ORPHAN_REASON
from cronmgr.engine.policies import MISSED_DOWN_REASON, OVERLAP_REASON
from cronmgr.engine.service import CLAIMED_ORPHAN_REASON
from cronmgr.store import open_store

ServerFactory = Callable[..., Awaitable[TestServer]]
ORPHANED_REASON = "the daemon stopped before this run finished"
KILLED_REASONS = {ORPHANED_REASON, CLAIMED_ORPHAN_REASON}
"""What a run the daemon was killed under ends with (target runs have no step processes)."""
SCHEDULES = 50


class Arrivals:
    """Every request that reached the target: run id → slot, counted per run and per path."""

    def __init__(self) -> None:
        self.runs: collections.Counter[str] = collections.Counter()
        self.slots: dict[str, tuple[str, str]] = {}
        self.held: set[str] = set()
        self.released = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        """Record the arrival, hold it if its path is held (bounded), answer 200."""
        body = orjson.loads(await request.read())
        self.runs[body["run_id"]] += 1
        self.slots[body["run_id"]] = (body["schedule_id"], body["scheduled_for"])
        if request.path in self.held:
            async with asyncio.timeout(30):
                await self.released.wait()
        return web.Response(text="ok")


@pytest.fixture
async def target(aiohttp_server: ServerFactory) -> AsyncIterator[tuple[TestServer, Arrivals]]:
    """The recording target server on 127.0.0.1."""
    arrivals = Arrivals()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", arrivals.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    yield server, arrivals
    arrivals.released.set()


BODY = (
    '{"run_id": "{{ run_id }}", "schedule_id": "{{ schedule_id }}",'
    ' "scheduled_for": "{{ scheduled_for }}"}'
)


async def add_schedules(
    controller: Controller, server: TestServer, count: int, path: str = "/hit", **fields: Any
) -> list[Schedule]:
    """`count` POST targets whose body names the run and slot, each on a 1 s interval."""
    now = utcnow()
    schedules = []
    async with open_store(controller.settings.store_url) as store:
        for index in range(count):
            target = Target(
                id=new_id(),
                name=f"chaos-{index}-{new_id()[-6:]}",
                url=str(server.make_url(path)),
                method="POST",
                body_template=BODY,
                retry=RetryPolicy(max_attempts=1),
            )
            schedule = Schedule(
                id=new_id(),
                name=f"s-{target.name}",
                schedule_type=ScheduleType.INTERVAL,
                target_id=target.id,
                interval_seconds=1.0,
                # Spread over the second, so that a kill always finds slots under way.
                start_at=now + timedelta(seconds=index / count),
                created_at=now,
                **fields,
            )
            await store.insert_target(target)
            await store.insert_schedule(schedule)
            schedules.append(schedule)
    DaemonControl(controller.settings).definitions_changed()
    return schedules


async def api(controller: Controller, path: str, **body: Any) -> dict[str, Any]:
    """POST to the controller's daemon-control API and insist on 200."""
    async with (
        aiohttp.ClientSession(controller.url, headers=controller.headers) as http,
        http.post(path, json=body) as resp,
    ):
        data = await resp.json()
        assert resp.status == 200, data
        return dict(data)


async def start(controller: Controller, pipeline: str = "quick") -> int:
    """Start the daemon (its own pipeline once now, then hourly); its pid."""
    body = await api(controller, "/api/cron/start", interval_seconds=3600, pipeline=pipeline)
    return int(body["pid"])


def gone(pid: int) -> bool:
    """Whether `pid` has exited (a zombie nobody reaped yet counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def kill_9(controller: Controller) -> None:
    """SIGKILL the daemon and wait until it is gone."""
    found = pidfile.inspect(controller.settings.pid_file)
    assert found.record is not None
    os.kill(found.record.pid, signal.SIGKILL)
    await until(lambda: gone(found.record.pid), what="the daemon to die")


def ended_target_runs(db: Path) -> int:
    """How many target runs have ended, read straight from the SQLite file."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        query = "SELECT count(*) FROM runs WHERE job LIKE 'target:%' AND status = 'succeeded'"
        (count,) = conn.execute(query).fetchone()
    conn.close()
    return int(count)


async def all_runs(controller: Controller, schedules: list[Schedule]) -> list[Run]:
    """Every run of `schedules`."""
    async with open_store(controller.settings.store_url) as store:
        found = []
        for schedule in schedules:
            found += await store.list_runs(schedule_id=schedule.id, limit=10_000)
        return found


async def cycle(controller: Controller, db: Path, kill: bool, new_runs: int) -> None:
    """Start the daemon, wait for `new_runs` more target runs to end, kill it or stop it."""
    before = ended_target_runs(db)
    await start(controller)
    await until(lambda: ended_target_runs(db) >= before + new_runs, what=f"{new_runs} more runs")
    if kill:
        await kill_9(controller)
    else:
        await api(controller, "/api/cron/stop")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kills, restarts", [pytest.param(20, 20, id="20+20")])
async def test_kill_9_and_restart_cycles_run_no_slot_twice_and_lose_none(
    controller: Controller,
    target: tuple[TestServer, Arrivals],
    kills: int,
    restarts: int,
) -> None:
    """SIGKILL cycles, then graceful restarts, of a daemon firing 50 targets a second: no
    slot twice, no run left running or pending, no run succeeded that never arrived, and
    every arrival not recorded succeeded is a run the daemon was killed under, failed so."""
    server, arrivals = target
    db = Path(controller.settings.store_url.removeprefix("sqlite:///"))
    began = time.monotonic()
    await start(controller)
    schedules = await add_schedules(controller, server, SCHEDULES)
    await api(controller, "/api/cron/stop")
    for index in range(kills + restarts):
        await cycle(controller, db, kill=index < kills, new_runs=SCHEDULES // 2)
    await start(controller)  # the last kill's runs are recovered by a start...
    await api(controller, "/api/cron/stop")  # ...and everything ends with a graceful stop

    runs = await all_runs(controller, schedules)
    by_id = {run.id: run for run in runs}
    slots = collections.Counter((r.schedule_id, r.scheduled_for) for r in runs)
    doubled = [slot for slot, count in slots.items() if count > 1]
    stuck = [r for r in runs if r.status in (RunStatus.RUNNING, RunStatus.PENDING)]
    succeeded = {r.id for r in runs if r.status is RunStatus.SUCCEEDED}
    lost = succeeded - set(arrivals.runs)  # recorded succeeded, never arrived
    unknown = set(arrivals.runs) - set(by_id)  # arrived, never recorded at all
    sent_twice = [run_id for run_id, count in arrivals.runs.items() if count > 1]
    unrecorded = [by_id[i] for i in set(arrivals.runs) - succeeded - unknown]
    figures = {
        "kill_cycles": kills,
        "graceful_restarts": restarts,
        "schedules": SCHEDULES,
        "slots_fired": len(arrivals.runs),
        "runs_succeeded": len(succeeded),
        "doubled": len(doubled),
        "stuck": len(stuck),
        "lost": len(lost),
        "arrived_unrecorded": len(unknown),
        "killed_in_flight": len(unrecorded),
        "failed_by_kills": sum(r.error in KILLED_REASONS for r in runs),
        "skipped": collections.Counter(r.error for r in runs if r.status is RunStatus.SKIPPED),
        "seconds": round(time.monotonic() - began, 1),
    }
    print(f"\nchaos figures: {figures}")
    assert doubled == [] and sent_twice == []
    assert stuck == []
    assert lost == set() and unknown == set()
    assert all(r.status is RunStatus.FAILED and r.error in KILLED_REASONS for r in unrecorded)
    assert len(unrecorded) <= kills * SCHEDULES  # at most the slots under way at each kill


# --- step processes ------------------------------------------------------------------------


# A step whose processes ignore SIGTERM and outlive it unless something kills them: two
# background sleepers and a child shell with a sleeper of its own. Every pid is written to
# `grandkids.pids` in the state directory, then `grandkids.ready` says they all are.
# Written by the tests that use it (a file in tests/pipelines would be in every home).
GRANDKIDS = """
[[steps]]
name = "spawn"
shell = '''
trap '' TERM
pids="$CRONMGR_STATE_DIR/grandkids.pids"
echo $$ >> "$pids"
sleep 300 & echo $! >> "$pids"
sleep 300 & echo $! >> "$pids"
sh -c 'sleep 300 & echo $! >> "$1"; wait' child "$pids" & echo $! >> "$pids"
while [ "$(wc -l < "$pids")" -lt 5 ]; do sleep 0.01; done
touch "$CRONMGR_STATE_DIR/grandkids.ready"
wait
'''
timeout_seconds = 600
"""


async def start_grandkids(controller: Controller) -> list[int]:
    """Start the daemon on the grandkids pipeline; the pids of its step's processes."""
    (controller.settings.pipelines_path / "grandkids.toml").write_text(GRANDKIDS)
    await start(controller, "grandkids")
    pids: list[int] = await until(lambda: grandkid_pids(controller), what="the step's pids")
    return pids


def grandkid_pids(controller: Controller) -> list[int]:
    """The pids the grandkids pipeline's step wrote, once it says all are written."""
    state = controller.settings.state_path
    if not (state / "grandkids.ready").exists():
        return []
    return [int(line) for line in (state / "grandkids.pids").read_text().split()]


def log_events(controller: Controller, name: str) -> list[dict[str, Any]]:
    """The daemon log's events called `name`."""
    path = controller.settings.log_file
    lines = path.read_bytes().splitlines() if path.exists() else []
    return [e for e in map(orjson.loads, filter(None, lines)) if e.get("event") == name]


async def grandkids_run(controller: Controller) -> Run:
    """The one run of the grandkids pipeline."""
    async with open_store(controller.settings.store_url) as store:
        (run,) = await store.list_runs(job="pipeline:grandkids")
        return run


async def test_stop_leaves_none_of_a_steps_grandchildren(controller: Controller) -> None:
    """A graceful stop during a step whose children ignore SIGTERM ends all of them."""
    pids = await start_grandkids(controller)
    await api(controller, "/api/cron/stop")
    await until(lambda: all(map(gone, pids)), timeout=10, what="every step process to end")


async def test_the_start_after_a_kill_9_ends_the_steps_the_dead_daemon_left(
    controller: Controller,
) -> None:
    """kill -9 during such a step leaves its processes running (reparented); the next start
    ends every one of them before it fails the run, and says so in the run and the log."""
    pids = await start_grandkids(controller)
    await kill_9(controller)
    assert not any(map(gone, pids)), "the step's processes die with the daemon anyway"
    await start(controller)  # quick: nothing more of grandkids
    assert all(map(gone, pids)), "left running after the next start"
    run = await grandkids_run(controller)
    assert (run.status, run.error) == (RunStatus.FAILED, ORPHAN_REASON)
    (event,) = log_events(controller, "orphan_group_killed")
    assert event["run_id"] == run.id and event["count"] == len(pids)
    await api(controller, "/api/cron/stop")


# --- missed slots ------------------------------------------------------------------------


async def test_slots_missed_while_no_daemon_ran_say_so_not_overlap(
    controller: Controller, target: tuple[TestServer, Arrivals]
) -> None:
    """After an outage, the late first slot runs (within the grace) and is held; the other
    slots that fell during the outage are skipped as missed while no daemon ran, and only
    the slots that came on time behind the held run as overlap."""
    server, arrivals = target
    await start(controller)
    (schedule,) = await add_schedules(controller, server, 1, path="/held")
    await until(lambda: arrivals.runs.total() >= 1, what="a first request")
    await api(controller, "/api/cron/stop")
    stopped, before = time.time(), arrivals.runs.total()
    arrivals.held.add("/held")
    await until(lambda: time.time() > stopped + 3.5, what="three slots to fall")
    restarted = utcnow()
    await start(controller)
    ready = utcnow()
    await until(lambda: arrivals.runs.total() > before, what="the late slot's request")

    async def skipped_after_restart() -> list[Run]:
        runs = await all_runs(controller, [schedule])
        skipped = [r for r in runs if r.status is RunStatus.SKIPPED]
        return skipped if any(r.error == OVERLAP_REASON for r in skipped) else []

    skipped = await until(skipped_after_restart, what="an overlap skip after the restart")
    arrivals.released.set()
    await api(controller, "/api/cron/stop")
    assert {r.error for r in skipped} == {MISSED_DOWN_REASON, OVERLAP_REASON}
    for run in skipped:
        if run.scheduled_for < restarted:
            assert run.error == MISSED_DOWN_REASON, "a slot of the outage skipped as overlap"
        if run.error == MISSED_DOWN_REASON:
            assert run.scheduled_for < ready, "a slot after the start said missed"
