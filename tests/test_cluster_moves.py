"""Schedules moving between nodes, slot by slot: every request names its slot, so a slot
sent twice, or a slot skipped with no record, shows.

Nodes joining and leaving cleanly move schedules with no slot missed or doubled. The soak
(marked slow) kills nodes with SIGKILL and restarts them under a load of a few thousand
slots: no slot is sent twice, and every slot from a schedule's first run to its last is
recorded, run (in time or late, by its misfire policy) or failed with the reason.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from itertools import pairwise

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from support import Controller, add_target_schedule, kill_daemon, until
from test_cluster import LEASE, all_runs, settled, stop_all
from test_engine import start_daemon

from cronmgr.core.models import Run, RunStatus, Schedule

ServerFactory = Callable[..., Awaitable[TestServer]]
SLOT_BODY = "{{ schedule_id }} {{ scheduled_for }}"


class Slots:
    """The slots the target server was sent, as (schedule id, slot) pairs, counted."""

    def __init__(self) -> None:
        self.sent: Counter[tuple[str, str]] = Counter()

    async def handle(self, request: web.Request) -> web.Response:
        schedule_id, slot = (await request.text()).split(" ", 1)
        self.sent[(schedule_id, slot)] += 1
        return web.Response(text="ok")


@pytest.fixture
async def slot_server(aiohttp_server: ServerFactory) -> tuple[TestServer, Slots]:
    slots = Slots()
    app = web.Application()
    app.router.add_post("/slot", slots.handle)
    return await aiohttp_server(app, host="127.0.0.1"), slots


async def slot_schedules(controller: Controller, server: TestServer, count: int) -> list[Schedule]:
    target = {"method": "POST", "body_template": SLOT_BODY}
    return [
        await add_target_schedule(controller, server, "/slot", tell=False, target=target)
        for _ in range(count)
    ]


def check_every_slot_once(slots: Slots, schedules: Sequence[Schedule], runs: Sequence[Run]) -> int:
    """No slot sent twice, none sent unrecorded, and every 1 s slot from each schedule's
    first run to its last recorded; how many slots there were."""
    assert max(slots.sent.values(), default=1) == 1, slots.sent.most_common(3)
    recorded = {(r.schedule_id, r.scheduled_for.isoformat()) for r in runs}
    assert set(slots.sent) <= recorded
    total = 0
    for schedule in schedules:
        mine = sorted(r.scheduled_for for r in runs if r.schedule_id == schedule.id)
        assert mine, f"schedule {schedule.id} never ran"
        assert _gaps(mine) == [], f"slots of {schedule.id} with no record"
        total += len(mine)
    return total


def _gaps(moments: Sequence[datetime]) -> list[datetime]:
    step = timedelta(seconds=1)
    return [a for a, b in pairwise(moments) if b - a != step]


async def ran_after(url: str, schedules: Sequence[Schedule], moment: datetime, node: str) -> bool:
    runs = await all_runs(url, schedules)
    return any(r.node_id == node and r.scheduled_for > moment for r in runs)


async def test_nodes_joining_and_leaving_move_schedules_with_no_slot_missed_or_doubled(
    controller_factory: Callable[..., Controller],
    pg_url: str,
    slot_server: tuple[TestServer, Slots],
) -> None:
    server, slots = slot_server
    first, second, third = (
        controller_factory(database_url=pg_url, lease_seconds=LEASE) for _ in range(3)
    )
    for controller in (first, second):
        await start_daemon(controller)
    await settled(pg_url, 2)
    schedules = await slot_schedules(first, server, 24)
    await until(lambda: len(slots.sent) >= 48, what="the schedules running on two nodes")

    await start_daemon(third)  # joins: takes its share from the two
    ids = await settled(pg_url, 3)
    joined_at = max(r.scheduled_for for r in await all_runs(pg_url, schedules))
    await until(lambda: _newest_by_all(pg_url, schedules, joined_at, ids), what="all three running")

    left_at = max(r.scheduled_for for r in await all_runs(pg_url, schedules))
    await stop_all([first])  # leaves: its share goes to the other two at once
    survivors = await settled(pg_url, 2)
    await until(
        lambda: _newest_by_all(pg_url, schedules, left_at, survivors), what="two nodes again"
    )
    await stop_all([second, third])
    runs = await all_runs(pg_url, schedules)
    assert all(r.status is RunStatus.SUCCEEDED for r in runs), Counter(r.status for r in runs)
    check_every_slot_once(slots, schedules, runs)


async def _newest_by_all(
    url: str, schedules: Sequence[Schedule], moment: datetime, ids: Sequence[str]
) -> bool:
    """Every schedule ran at least 3 slots after `moment`, and every node of `ids` ran some."""
    runs = [r for r in await all_runs(url, schedules) if r.scheduled_for > moment]
    each = Counter(r.schedule_id for r in runs)
    every_schedule = all(each[s.id] >= 3 for s in schedules)
    return every_schedule and {r.node_id for r in runs} == set(ids)


@pytest.mark.slow
async def test_soak_kills_and_restarts_lose_no_slot_and_send_none_twice(
    controller_factory: Callable[..., Controller],
    pg_url: str,
    slot_server: tuple[TestServer, Slots],
) -> None:
    """Three nodes, 60 schedules at 1/s for about a minute; two of them killed with
    SIGKILL and restarted, one after the other."""
    server, slots = slot_server
    nodes = [controller_factory(database_url=pg_url, lease_seconds=LEASE) for _ in range(3)]
    for controller in nodes:
        await start_daemon(controller)
    ids = await settled(pg_url, 3)
    schedules = await slot_schedules(nodes[0], server, 60)
    await until(lambda: len(slots.sent) >= 600, timeout=60, what="the load running")
    for victim in nodes[:2]:
        # In a thread: waiting for the death must not stall the slot server on this loop,
        # or the nodes' requests in flight meanwhile would be slow for the test's sake.
        await asyncio.to_thread(kill_daemon, victim.settings)
        sent = len(slots.sent)
        await until(lambda sent=sent: len(slots.sent) >= sent + 300, timeout=60, what="failover")
        await start_daemon(victim)
        await settled(pg_url, 3)
        sent = len(slots.sent)
        await until(lambda sent=sent: len(slots.sent) >= sent + 600, timeout=60, what="rejoin")
    await stop_all(nodes)
    runs = await all_runs(pg_url, schedules)
    assert {r.node_id for r in runs} == set(ids)
    assert check_every_slot_once(slots, schedules, runs) >= 2000
    # A slot not run in time is run late (misfire grace), failed or skipped saying why.
    why = {r.error or "" for r in runs if r.status is not RunStatus.SUCCEEDED}
    said = (
        "lost its lease",
        "daemon stopped",
        "moved to this node",
        "was not running",
    )
    assert all(any(s in w for s in said) for w in why), why
