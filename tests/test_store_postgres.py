"""What only the PostgreSQL store has to show: migrations under a lock, and connections
that break (backends terminated, the server unreachable) without a record lost. The rest
of its contract runs in the store tests, on both backends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from datetime import timedelta

import aiohttp
import asyncpg
import pytest
from pgproxy import PgProxy, pg_proxy
from support import Controller
from test_store import T0, make_run, make_schedule, make_target

from cronmgr.core.errors import StoreUnavailable
from cronmgr.core.models import RunStatus, StepResult, Trigger
from cronmgr.store.postgres import PostgresStore
from cronmgr.store.queries import load_queries, migrations

DEADLINE_SECONDS = 30.0


@pytest.fixture
def proxy(pg_url: str) -> Iterator[PgProxy]:
    """A relay to the test server that the test can cut."""
    with pg_proxy(pg_url) as relay:
        yield relay


@pytest.fixture
async def relayed(proxy: PgProxy) -> AsyncIterator[PostgresStore]:
    """A store that reaches the server through the relay."""
    store = await PostgresStore.open(proxy.url)
    yield store
    proxy.restore()
    await store.close()


async def until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` until it holds, failing after DEADLINE_SECONDS."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_stores_starting_at_once_migrate_the_schema_once(pg_url: str) -> None:
    stores = await asyncio.gather(*(PostgresStore.open(pg_url) for _ in range(4)))
    try:
        connection = await asyncpg.connect(pg_url)
        try:
            versions = await connection.fetch("SELECT version FROM schema_version")
        finally:
            await connection.close()
        # Every migration once, whichever is the newest.
        expected = [version for version, _ in migrations(load_queries("postgres"))]
        assert [row["version"] for row in versions] == expected
        await stores[0].insert_target(make_target())
        assert len(await stores[3].list_targets()) == 1
    finally:
        for store in stores:
            await store.close()


async def test_a_version_1_schema_is_upgraded_keeping_its_runs(pg_url: str) -> None:
    """A store of the first schema (before nodes) gains the node of each run, None for the
    runs it holds, and the nodes table."""
    connection = await asyncpg.connect(pg_url)
    try:
        await connection.execute(load_queries("postgres")["migration_1"])
        await connection.execute(
            "CREATE TABLE schema_version (version integer NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now());"
            " INSERT INTO schema_version (version) VALUES (1)"
        )
        slot = T0.isoformat(timespec="microseconds")
        await connection.execute(
            "INSERT INTO runs (id, job, schedule_id, scheduled_for, trigger, status, created_at)"
            " VALUES ('r1', 'pipeline:etl', 'a', $1, 'schedule', 'succeeded', $1)",
            slot,
        )
    finally:
        await connection.close()
    store = await PostgresStore.open(pg_url)
    try:
        assert [(r.id, r.node_id) for r in await store.list_runs()] == [("r1", None)]
        assert await store.list_nodes() == []
    finally:
        await store.close()


async def test_an_unreachable_server_at_open_is_named_without_the_password() -> None:
    url = "postgresql://someone:hunter2@127.0.0.1:9/nowhere"
    with pytest.raises(StoreUnavailable) as caught:
        await PostgresStore.open(url)
    assert "postgresql://someone@127.0.0.1:9/nowhere" in caught.value.detail
    assert "hunter2" not in caught.value.detail


async def test_run_ends_are_held_while_the_server_is_unreachable_and_land_after(
    relayed: PostgresStore, proxy: PgProxy
) -> None:
    schedule = make_schedule(None)
    await relayed.insert_schedule(schedule)
    run = make_run(schedule.id, T0, status=RunStatus.RUNNING)
    assert await relayed.insert_run(run)
    proxy.cut()
    step = StepResult(
        step="load", status=RunStatus.SUCCEEDED, started_at=T0, duration_ms=5, attempt=1
    )
    ended = relayed.finish_run(
        run.id, RunStatus.SUCCEEDED, finished_at=T0 + timedelta(seconds=1), steps=[(0, step)]
    )
    await until(lambda: relayed._batcher.holding > 0, "the run's end to be held")
    # Meanwhile: reads say why, and a new slot is not claimed (it could not be recorded).
    with pytest.raises(StoreUnavailable, match="unreachable"):
        await relayed.get_run(run.id)
    with pytest.raises(StoreUnavailable):
        await relayed.insert_run(make_run(schedule.id, T0 + timedelta(minutes=1)))
    assert not ended.done()
    proxy.restore()
    await asyncio.wait_for(ended, DEADLINE_SECONDS)
    stored = await relayed.get_run(run.id)
    assert stored.status is RunStatus.SUCCEEDED
    assert [s.step for s in stored.steps] == ["load"]
    assert relayed._batcher.holding == 0


async def test_terminated_backends_are_replaced_and_no_write_is_lost(pg_url: str) -> None:
    url = pg_url + "&application_name=cronmgr_terminated"
    store = await PostgresStore.open(url)
    try:
        schedule = make_schedule(None)
        await store.insert_schedule(schedule)
        runs = [
            make_run(schedule.id, T0 + timedelta(minutes=n), RunStatus.RUNNING) for n in range(5)
        ]
        assert await store.claim_runs(runs) == {r.id for r in runs}
        admin = await asyncpg.connect(pg_url)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'cronmgr_terminated'"
            )
        finally:
            await admin.close()
        assert killed >= 1
        ends = [
            store.finish_run(r.id, RunStatus.FAILED, finished_at=T0 + timedelta(hours=1))
            for r in runs
        ]
        await asyncio.wait_for(asyncio.gather(*ends), DEADLINE_SECONDS)
        stored = await store.list_runs(schedule_id=schedule.id)
        assert sorted(r.status.value for r in stored) == ["failed"] * 5
    finally:
        await store.close()


async def test_the_api_answers_503_with_the_reason_while_the_store_is_unreachable(
    controller_factory: Callable[..., Controller], proxy: PgProxy
) -> None:
    controller = controller_factory(database_url=proxy.url)
    async with aiohttp.ClientSession(controller.url, headers=controller.headers) as http:
        async with http.get("/api/v1/targets") as response:
            assert response.status == 200
        proxy.cut()
        async with http.get("/api/v1/targets") as response:
            body = await response.json()
            assert response.status == 503, body
        assert "PostgreSQL store is unreachable" in body["detail"]
        proxy.restore()
        async with http.post(
            "/api/v1/targets", json={"name": "back", "url": "http://127.0.0.1:9/"}
        ) as response:
            assert response.status == 201, await response.text()


async def test_definition_writes_and_requested_runs_of_any_process_are_announced(
    pg_url: str, proxy: PgProxy
) -> None:
    watcher = await PostgresStore.open(proxy.url)
    writer = await PostgresStore.open(pg_url)
    notices = asyncio.Event()
    try:
        await watcher.watch_changes(notices.set)
        target = make_target()
        await writer.insert_target(target)  # no schedule uses it yet: nothing to tell
        for write in (
            lambda: writer.insert_schedule(make_schedule(target.id)),
            lambda: writer.update_target(replace(target, url="http://127.0.0.1:9/edited")),
            lambda: writer.insert_run(
                replace(make_run(None, T0, RunStatus.PENDING), trigger=Trigger.MANUAL)
            ),
        ):
            notices.clear()
            await write()
            await asyncio.wait_for(notices.wait(), DEADLINE_SECONDS)
        # The listening connection lost: once it is back, one notice stands for all missed.
        proxy.cut()
        await writer.insert_schedule(make_schedule(None, name="while-away"))
        notices.clear()
        proxy.restore()
        await asyncio.wait_for(notices.wait(), DEADLINE_SECONDS)
    finally:
        proxy.restore()
        await writer.close()
        await watcher.close()
