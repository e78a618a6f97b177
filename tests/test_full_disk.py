"""A full disk: the store holds what it could not write and loses none of it, claims fail
at once, and the log drops lines (counted) instead of raising into the code that logs.

The disk is real: a small tmpfs mounted for the test (skipped, saying why, where this
process may not mount one), filled with a filler file until the kernel says ENOSPC, then
freed by deleting it. The log sink is also tried on /dev/full, which refuses every write.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs
from support import Controller, make_home, until

from cronmgr.controller.app import create_app
from cronmgr.controller.control import DaemonControl
from cronmgr.core.config import Settings, load_settings
from cronmgr.core.errors import StoreFull
from cronmgr.core.launch import STATE_FILENAME, read_json
from cronmgr.core.models import (
    RetryPolicy,
    Run,
    RunStatus,
    Schedule,
    ScheduleType,
    StepResult,
    Trigger,
    new_id,
    utcnow,
)
from cronmgr.core.models import Target as TargetModel
from cronmgr.core.pipelines.pipeline import PipelineSet
from cronmgr.engine.jobs import JobRunner
from cronmgr.observability.logs import _RotatingFile
from cronmgr.runners.http.runner import HttpRunner
from cronmgr.store import Store, open_store
from cronmgr.store.sqlite import SQLiteStore

DISK_BYTES = 8 * 1024 * 1024


@dataclass
class Disk:
    """A small filesystem of its own, and a way to fill it up and to free it."""

    path: Path

    @property
    def filler(self) -> Path:
        return self.path / "filler"

    def fill(self) -> None:
        """Write the filler until the disk has no byte left."""
        block = b"\0" * 65536
        with self.filler.open("ab", buffering=0) as fh:
            for size in (65536, 4096, 512, 1):
                with contextlib.suppress(OSError):
                    while True:
                        fh.write(block[:size])
        with pytest.raises(OSError) as full, (self.path / "probe").open("wb") as probe:
            probe.write(b"x" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
        assert full.value.errno == errno.ENOSPC

    def free(self) -> None:
        self.filler.unlink()
        (self.path / "probe").unlink(missing_ok=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    """A tmpfs of DISK_BYTES mounted under the test's directory."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill up: {mounted.stderr.strip()}")
    try:
        yield Disk(where)
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
async def store(disk: Disk) -> AsyncIterator[SQLiteStore]:
    store = await SQLiteStore.open(disk.path / "cronmgr.db")
    try:
        yield store
    finally:
        with contextlib.suppress(Exception):
            await store.close()


def pending_run(slot_seconds: int = 0) -> Run:
    slot = utcnow().replace(microsecond=0) + timedelta(seconds=slot_seconds)
    return Run(
        id=new_id(),
        job="pipeline:etl",
        schedule_id=None,
        scheduled_for=slot,
        trigger=Trigger.MANUAL,
        status=RunStatus.RUNNING,
        started_at=utcnow(),
    )


def attempt(error: str) -> StepResult:
    return StepResult(
        step="etl", status=RunStatus.FAILED, started_at=utcnow(), duration_ms=5, error=error
    )


def truncate_wal(path: Path) -> None:
    """Checkpoint the WAL into the database and cut it to nothing, as another connection
    may: the next write must then grow the file, which a full disk refuses."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


async def test_run_ends_are_held_on_a_full_disk_and_land_once_it_has_room(
    disk: Disk, store: SQLiteStore
) -> None:
    runs = [pending_run(n) for n in range(3)]
    for run in runs:
        assert await store.insert_run(run)
    truncate_wal(disk.path / "cronmgr.db")
    disk.fill()

    with capture_logs() as logs:
        ends = [
            store.finish_run(
                run.id,
                RunStatus.FAILED,
                finished_at=utcnow(),
                error="boom " * 2000,  # more than any page the WAL might still have
                steps=[(0, attempt("boom " * 2000))],
            )
            for run in runs
        ]
        await until(lambda: any(e["event"] == "store_writes_held" for e in logs))
        assert not any(end.done() for end in ends)  # held, not failed
        # A claim cannot be recorded now: it fails at once instead of waiting.
        with pytest.raises(StoreFull, match="disk is full"):
            await asyncio.wait_for(store.insert_run(pending_run(10)), 5.0)

        disk.free()
        assert await asyncio.wait_for(asyncio.gather(*ends), 30.0) == [1, 1, 1]
        assert any(e["event"] == "store_writes_resumed" for e in logs)
        assert not [e for e in logs if e["event"] == "run_attempt_not_recorded"]

    for run in runs:
        stored = await store.get_run(run.id)
        assert stored.status is RunStatus.FAILED and stored.finished_at is not None
        assert [s.error for s in stored.steps] == ["boom " * 2000]
    assert await store.insert_run(pending_run(10))  # and claims work again
    await store.close()
    with contextlib.closing(sqlite3.connect(disk.path / "cronmgr.db")) as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_slots_a_full_disk_cannot_claim_are_not_run_and_are_told_once_not_each(
    disk: Disk, store: SQLiteStore, tmp_path: Path
) -> None:
    """Claims fail at once on a full disk: none of those slots runs (the target is never
    asked), the log says so in one line and not one per slot, and the first claim that
    lands again ends the outage with how many slots it cost."""
    asked: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/ok", handle)
    async with TestServer(app, host="127.0.0.1") as server, HttpRunner() as http:
        jobs = JobRunner(load_settings(env={}, home=tmp_path), store, http, lambda: PipelineSet({}))
        schedule = await add_schedule(store, str(server.make_url("/ok")))
        slots = [utcnow().replace(microsecond=0) + timedelta(seconds=n) for n in range(5)]
        truncate_wal(disk.path / "cronmgr.db")
        disk.fill()
        with capture_logs() as logs:
            claims = jobs.claim_ahead([(schedule, slot) for slot in slots])
            outcomes = [await jobs.run(schedule, s, c) for s, c in zip(slots, claims, strict=True)]
            assert outcomes == [None] * 5 and asked == []
            assert [e["event"] for e in logs if "claim" in e["event"]] == ["run_not_claimed"]

            disk.free()
            later = slots[-1] + timedelta(seconds=1)
            assert await jobs.run(schedule, later) is RunStatus.SUCCEEDED
        told = [(e["event"], e.get("missed")) for e in logs if "claim" in e["event"]]
        # The outage is shorter than the summing-up period: summed up when it ends.
        assert told == [
            ("run_not_claimed", None),
            ("runs_not_claimed", 4),
            ("runs_claimed_again", 5),
        ]
    assert [r.scheduled_for for r in await store.list_runs(schedule_id=schedule.id)] == [later]


async def test_a_store_closing_on_a_full_disk_gives_held_writes_up_in_the_end(
    disk: Disk, store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop must not wait forever for room: the held writes fail after a while, and the
    next daemon fails the runs they would have ended (the run stays as it was)."""
    import cronmgr.store.sqlite.store as sqlite_store

    monkeypatch.setattr(sqlite_store, "CLOSE_HOLD_SECONDS", 0.5)
    run = pending_run()
    assert await store.insert_run(run)
    truncate_wal(disk.path / "cronmgr.db")
    disk.fill()
    end = store.finish_run(run.id, RunStatus.SUCCEEDED, finished_at=utcnow(), error="x" * 10**5)
    await asyncio.wait_for(store.close(), 15.0)
    with pytest.raises(StoreFull):
        end.result()
    disk.free()
    reopened = await SQLiteStore.open(disk.path / "cronmgr.db")
    try:
        assert (await reopened.get_run(run.id)).status is RunStatus.RUNNING
        assert await reopened.fail_orphaned_runs("the daemon stopped") == 1
    finally:
        await reopened.close()


def test_log_lines_a_full_device_refuses_are_counted_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "cronmgr.log"
    path.symlink_to("/dev/full")
    sink = _RotatingFile(path, max_bytes=10**6, backup_count=2)
    for n in range(3):
        sink.msg(orjson.dumps({"event": "lost", "n": n}))  # must not raise
    path.unlink()
    sink.reopen()  # the path is a regular file again (as after logrotate)
    sink.msg(orjson.dumps({"event": "kept"}))
    sink.close()
    first, second = (orjson.loads(line) for line in path.read_bytes().splitlines())
    assert first["event"] == "log_lines_dropped" and first["lines"] == 3
    assert "No space left on device" in first["error"]
    assert first["level"] == "error" and "timestamp" in first
    assert second == {"event": "kept"}


def test_a_log_line_a_full_disk_cut_short_is_ended_before_the_next(disk: Disk) -> None:
    path = disk.path / "cronmgr.log"
    sink = _RotatingFile(path, max_bytes=10**9, backup_count=0)
    disk.fill()
    big = orjson.dumps({"event": "big", "text": "y" * 100_000})
    sink.msg(big)  # part of it may land before the disk says no
    disk.free()
    sink.msg(orjson.dumps({"event": "after"}))
    sink.close()
    lines = [line for line in path.read_bytes().split(b"\n") if line]
    *cut, dropped, after = lines
    assert len(cut) <= 1 and (not cut or not cut[0].endswith(b"}"))  # the fragment alone
    assert orjson.loads(dropped)["event"] == "log_lines_dropped"
    assert orjson.loads(after) == {"event": "after"}


# --- the daemon on a full disk ----------------------------------------------------------------


class Target:
    """A local HTTP target: counts requests; can hold them until released."""

    def __init__(self) -> None:
        self.hits = 0
        self.hold = asyncio.Event()
        self.held = 0
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        if self.hold.is_set() and not self.release.is_set():
            self.held += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), 30.0)
        return web.Response(text="ok")


async def test_a_daemon_on_a_full_disk_keeps_running_and_loses_no_run(
    disk: Disk,
    controller_factory: Callable[..., Controller],
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> None:
    """The disk fills up while a request is in flight: the daemon stays up, that run's end
    is held and lands once there is room, slots that cannot be claimed are not run, and in
    the end every request the target answered is one recorded run, none left running."""
    target = Target()
    app = web.Application()
    app.router.add_get("/ok", target.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    controller = controller_factory(home=make_home(disk.path))
    settings = controller.settings
    async with aiohttp.ClientSession(controller.url, headers=controller.headers) as http:
        async with http.post("/api/cron/start", json={"interval_seconds": 600}) as resp:
            assert resp.status == 200, await resp.text()
        async with open_store(settings.store_url) as store:
            schedule = await add_schedule(store, str(server.make_url("/ok")))
        DaemonControl(settings).definitions_changed()
        await until(lambda: target.hits >= 2)

        target.hold.set()
        await until(lambda: target.held == 1)
        truncate_wal(settings.state_path / "cronmgr.db")
        disk.fill()
        target.release.set()  # its run ends now, on a full disk
        before = target.hits
        await asyncio.sleep(3.0)  # the outage: three slots come and go
        # Nothing was sent that could not be claimed (a slot claimed just before may be).
        assert target.hits <= before + 1
        async with http.get("/api/cron/status") as resp:
            assert (await resp.json())["is_running"] is True

        disk.free()
        freed_at = utcnow()
        resumed = target.hits
        await until(lambda: target.hits >= resumed + 2)
        # The heartbeat outlived the outage: the state file is written again.
        await until(lambda: heartbeat_at(settings) > freed_at, what="a heartbeat after it")
        async with http.post("/api/cron/stop") as resp:
            assert resp.status == 200, await resp.text()

    async with open_store(settings.store_url) as store:
        runs = await store.list_runs(schedule_id=schedule.id, limit=1000)
    assert [r for r in runs if not r.status.finished] == []
    assert sorted({r.status for r in runs}) == [RunStatus.SUCCEEDED]
    assert len(runs) == target.hits
    assert len({r.scheduled_for for r in runs}) == len(runs)
    with contextlib.closing(sqlite3.connect(settings.state_path / "cronmgr.db")) as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def heartbeat_at(settings: Settings) -> datetime:
    """The daemon's last heartbeat, as its state file has it."""
    state = read_json(settings.state_path / STATE_FILENAME) or {}
    return datetime.fromisoformat(state.get("heartbeat_at") or "1970-01-01T00:00:00+00:00")


async def add_schedule(store: Store, url: str) -> Schedule:
    """A target at `url` and a schedule running it every second, from now."""
    target = TargetModel(id=new_id(), name="full-disk", url=url, retry=RetryPolicy(max_attempts=1))
    now = utcnow()
    schedule = Schedule(
        id=new_id(),
        name="full-disk-every-second",
        schedule_type=ScheduleType.INTERVAL,
        target_id=target.id,
        interval_seconds=1.0,
        start_at=now,
        created_at=now,
    )
    await store.insert_target(target)
    await store.insert_schedule(schedule)
    return schedule


async def test_an_api_write_on_a_full_disk_answers_507_and_changes_nothing(
    disk: Disk, aiohttp_client: Callable[..., Awaitable[Any]]
) -> None:
    settings = load_settings(env={}, home=make_home(disk.path))
    client = await aiohttp_client(create_app(settings))
    headers = {"Authorization": f"Bearer {settings.token_file.read_text().strip()}"}
    body = {"name": "orders", "url": "http://127.0.0.1:9/orders", "headers": {"X": "y" * 50_000}}
    truncate_wal(settings.state_path / "cronmgr.db")
    disk.fill()
    async with client.post("/api/v1/targets", json=body, headers=headers) as resp:
        answer = await resp.json()
        assert resp.status == 507, answer
        assert "disk is full" in answer["detail"]
    disk.free()
    async with client.get("/api/v1/targets", headers=headers) as resp:
        assert await resp.json() == []
    async with client.post("/api/v1/targets", json=body, headers=headers) as resp:
        assert resp.status == 201, await resp.text()
    async with client.get("/openapi.json") as resp:
        responses = (await resp.json())["paths"]["/api/v1/targets"]["post"]["responses"]
    assert responses["507"] == {"$ref": "#/components/responses/E507"}


async def test_a_daemon_can_be_stopped_while_the_disk_is_full(
    disk: Disk, controller_factory: Callable[..., Controller]
) -> None:
    """The controller cannot save that the daemon should stay stopped; it stops it all the
    same, and says so in its answer rather than failing the request."""
    controller = controller_factory(home=make_home(disk.path))
    async with aiohttp.ClientSession(controller.url, headers=controller.headers) as http:
        async with http.post("/api/cron/start", json={"interval_seconds": 600}) as resp:
            assert resp.status == 200, await resp.text()
            pid = (await resp.json())["pid"]
        disk.fill()
        async with http.post("/api/cron/stop") as resp:
            assert resp.status == 200, await resp.text()
        await until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie")
        async with http.get("/api/cron/status") as resp:
            assert (await resp.json())["is_running"] is False
        disk.free()
