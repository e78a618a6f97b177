"""Three daemons in three homes on one PostgreSQL store, as real processes.

The schedules spread over the three; a node killed with SIGKILL has its schedules run by
the others and its run in flight marked; restarted, it rejoins; a node cut off from the
store stops firing, and comes back. Through all of it no slot's request goes out twice:
the target server's hits never exceed the slots recorded as run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import timedelta

import aiohttp
import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestServer
from pgproxy import PgProxy, pg_proxy
from support import Controller, add_target_schedule, kill_daemon, until
from test_engine import Hits, start_daemon, target_server

from cronmgr.core.models import Node, NodeState, Run, RunStatus, Schedule, utcnow
from cronmgr.engine.ownership import owner
from cronmgr.store import open_store

__all__ = ["target_server"]

LEASE = 2.0
"""Short leases, so that a failover takes seconds (the default is 10 s)."""


async def live_nodes(url: str) -> list[Node]:
    async with open_store(url) as store:
        return [n for n in await store.list_nodes() if n.state is NodeState.LIVE]


async def all_runs(url: str, schedules: Sequence[Schedule]) -> list[Run]:
    async with open_store(url) as store:
        found = []
        for schedule in schedules:
            found += await store.list_runs(schedule_id=schedule.id, limit=10_000)
        return found


async def cluster_of(factory: Callable[..., Controller], url: str) -> list[Controller]:
    """Three controllers on `url`, their daemons started."""
    controllers = [factory(database_url=url, lease_seconds=LEASE) for _ in range(3)]
    for controller in controllers:
        await start_daemon(controller)
    return controllers


async def settled(url: str, count: int) -> list[str]:
    """Wait until `count` nodes are live and each renewed after the last one joined (so
    each has seen all of them); their ids."""

    async def seen_by_all() -> list[str] | None:
        nodes = await live_nodes(url)
        if len(nodes) != count:
            return None
        joined = max(n.started_at for n in nodes)
        return [n.id for n in nodes] if all(n.heartbeat_at > joined for n in nodes) else None

    ids: list[str] = await until(seen_by_all, what=f"{count} live nodes that see each other")
    return ids


async def spread_schedules(
    controller: Controller, server: TestServer, count: int, **fields: object
) -> list[Schedule]:
    return [
        await add_target_schedule(controller, server, "/ok", tell=False, **fields)
        for _ in range(count)
    ]


async def stop_all(controllers: Sequence[Controller]) -> None:
    for controller in controllers:
        async with (
            aiohttp.ClientSession(controller.url, headers=controller.headers) as http,
            http.post("/api/cron/stop") as response,
        ):
            assert response.status in (200, 409), await response.text()


def no_slot_twice(hits: Hits, runs: Sequence[Run]) -> None:
    """Each request the target saw belongs to a different recorded slot."""
    slots = {(r.schedule_id, r.scheduled_for) for r in runs}
    assert len(slots) == len(runs)
    sent = [r for r in runs if r.status is not RunStatus.SKIPPED]
    succeeded = [r for r in runs if r.status is RunStatus.SUCCEEDED]
    assert len(succeeded) <= hits.count("/ok") <= len(sent), (len(succeeded), len(sent))


def logged(controller: Controller, event: str) -> list[dict[str, object]]:
    lines = controller.settings.log_file.read_bytes().splitlines()
    return [e for e in map(orjson.loads, lines) if e.get("event") == event]


async def test_schedules_spread_over_three_nodes_and_each_slot_runs_once(
    controller_factory: Callable[..., Controller],
    pg_url: str,
    target_server: tuple[TestServer, Hits],
) -> None:
    server, hits = target_server
    controllers = await cluster_of(controller_factory, pg_url)
    ids = await settled(pg_url, 3)
    schedules = await spread_schedules(controllers[0], server, 30, max_runs=3)

    async def all_completed() -> list[Run] | None:
        runs = await all_runs(pg_url, schedules)
        done = [r for r in runs if r.status is RunStatus.SUCCEEDED]
        return runs if len(done) == 90 else None

    runs: list[Run] = await until(all_completed, timeout=60, what="3 runs of 30 schedules")
    assert hits.count("/ok") == 90
    assert {r.node_id for r in runs} == set(ids)  # every node had its share
    by_schedule = {s.id: s for s in schedules}
    for run in runs:  # and each ran the schedules rendezvous hashing gave it
        assert run.schedule_id is not None
        assert run.node_id == owner(by_schedule[run.schedule_id].id, ids)
    nodes = await live_nodes(pg_url)
    assert sum(n.schedules_owned for n in nodes) >= 30


async def test_a_killed_node_s_schedules_move_its_run_in_flight_is_marked_and_it_rejoins(
    controller_factory: Callable[..., Controller],
    pg_url: str,
    target_server: tuple[TestServer, Hits],
) -> None:
    server, hits = target_server
    controllers = await cluster_of(controller_factory, pg_url)
    ids = await settled(pg_url, 3)
    hits.held.add("/hold")
    held = await add_target_schedule(controllers[0], server, "/hold", tell=False)
    victim_id = owner(held.id, ids)
    schedules = await spread_schedules(controllers[0], server, 12)
    victims = [s for s in schedules if owner(s.id, ids) == victim_id]
    assert victims, "rendezvous hashing gave the victim none of 12 schedules"
    await until(lambda: hits.count("/hold") >= 1, what="the held run in flight")
    victim = next(c for c in controllers if _node_of(c, victim_id))
    kill_daemon(victim.settings)
    killed_at = utcnow()

    async def held_run_marked() -> bool:
        runs = await all_runs(pg_url, [held])
        return any(r.error and "lost its lease" in r.error for r in runs)

    await until(held_run_marked, what="the victim's run in flight marked failed")

    async def taken_over() -> bool:
        runs = await all_runs(pg_url, victims)
        after = [r for r in runs if r.scheduled_for > killed_at and r.node_id != victim_id]
        return {r.schedule_id for r in after} == {s.id for s in victims}

    await until(taken_over, what="the victim's schedules run by the others")
    restarted_at = utcnow()
    await start_daemon(victim)  # the same home: the same node id, back in the live set

    async def rejoined() -> bool:
        runs = await all_runs(pg_url, victims)
        again = any(r.node_id == victim_id and r.scheduled_for > restarted_at for r in runs)
        return again and len(await live_nodes(pg_url)) == 3

    await until(rejoined, what="the victim back, running its schedules again")
    hits.released.set()
    await stop_all(controllers)
    no_slot_twice(hits, await all_runs(pg_url, schedules))


def _node_of(controller: Controller, node_id: str) -> bool:
    return any(e.get("node") == node_id for e in logged(controller, "daemon_ready"))


@pytest.fixture
def victim_proxy(pg_url: str) -> Iterator[PgProxy]:
    with pg_proxy(pg_url) as relay:
        yield relay


@pytest.fixture
async def admin(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(pg_url.split("?")[0])
    try:
        yield connection
    finally:
        await connection.close()


async def test_a_node_cut_off_from_the_store_stops_firing_and_no_slot_runs_twice(
    controller_factory: Callable[..., Controller],
    pg_url: str,
    target_server: tuple[TestServer, Hits],
    victim_proxy: PgProxy,
    admin: asyncpg.Connection,
) -> None:
    server, hits = target_server
    others = [controller_factory(database_url=pg_url, lease_seconds=LEASE) for _ in range(2)]
    victim_url = victim_proxy.url + "&application_name=cronmgr_cut_node"
    victim = controller_factory(database_url=victim_url, lease_seconds=LEASE)
    for controller in [*others, victim]:
        await start_daemon(controller)
    ids = await settled(pg_url, 3)
    victim_id = next(i for i in ids if _node_of(victim, i))
    schedules = await spread_schedules(others[0], server, 12)
    mine = [s for s in schedules if owner(s.id, ids) == victim_id]
    assert mine, "rendezvous hashing gave the victim none of 12 schedules"

    async def victim_ran() -> bool:
        return any(r.node_id == victim_id for r in await all_runs(pg_url, mine))

    await until(victim_ran, what="the victim running its schedules")
    victim_proxy.cut()
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'cronmgr_cut_node'"
    )
    cut_at = utcnow()
    await until(lambda: logged(victim, "node_fenced"), what="the victim fenced")

    async def taken_over() -> bool:
        runs = await all_runs(pg_url, mine)
        return {r.schedule_id for r in runs if r.scheduled_for > cut_at} == {s.id for s in mine}

    await until(taken_over, what="the victim's schedules run by the others")
    restored_at = utcnow()
    victim_proxy.restore()
    await until(lambda: logged(victim, "node_unfenced"), what="the victim back")

    async def firing_again() -> bool:
        runs = await all_runs(pg_url, mine)
        return any(r.node_id == victim_id and r.scheduled_for > restored_at for r in runs)

    await until(firing_again, what="the victim firing its share again")
    await stop_all([*others, victim])
    no_slot_twice(hits, await all_runs(pg_url, schedules))


async def test_an_edit_through_any_controller_reaches_the_node_that_owns_the_schedule(
    controller_factory: Callable[..., Controller],
    pg_url: str,
    target_server: tuple[TestServer, Hits],
) -> None:
    """Each schedule's owner plans its next slot from the edit made elsewhere (the
    change notice reaches every node; only the owner's engine holds the schedule)."""
    server, _ = target_server
    controllers = await cluster_of(controller_factory, pg_url)
    await settled(pg_url, 3)
    schedules = await spread_schedules(controllers[0], server, 9)
    for index, schedule in enumerate(schedules):  # each edited through another controller
        editor = controllers[index % 3]
        async with (
            aiohttp.ClientSession(editor.url, headers=editor.headers) as http,
            http.patch(f"/api/v1/schedules/{schedule.id}", json={"interval_seconds": 3600}) as r,
        ):
            assert r.status == 200, await r.text()

    async def all_planned_an_hour_out() -> bool:
        async with open_store(pg_url) as store:
            planned = [(await store.get_schedule(s.id)).next_run_at for s in schedules]
        later = utcnow() + timedelta(minutes=30)
        return all(at is not None and at > later for at in planned)

    await until(all_planned_an_hour_out, what="every owner planning from the edit")
