"""A node's membership on a real store: the view of the live set, a node whose lease ran
out found lost by another and its run failed, a clean departure seen at once, and
fencing when the store is cut off (a TCP relay to the real PostgreSQL), lifted once the
lease is renewed again, rejoining when it was declared lost meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from pgproxy import PgProxy, pg_proxy
from test_store import make_run

from cronmgr.core.models import NodeState, RunStatus, utcnow
from cronmgr.engine.membership import FENCE_FRACTION, TAKEOVER_LEAD_FRACTION, Membership
from cronmgr.engine.ownership import Ownership
from cronmgr.store import Store, open_store

LEASE = 3.0


class Seen:
    """What a membership told its daemon: views of the live set and fence changes."""

    def __init__(self) -> None:
        self.views: list[Ownership] = []
        self.fences: list[bool] = []
        self.fenced_at = 0.0  # monotonic
        self.changed = asyncio.Event()

    def view(self, ownership: Ownership) -> None:
        self.views.append(ownership)
        self.changed.set()

    def fence(self, fenced: bool) -> None:
        self.fences.append(fenced)
        self.fenced_at = time.monotonic()
        self.changed.set()


def member(store: Store, node_id: str, seen: Seen, lease: float = 1.0) -> Membership:
    return Membership(
        store,
        node_id,
        lease,
        counts=lambda: (0, 0),
        on_view=seen.view,
        on_fence=seen.fence,
    )


async def beat_until(membership: Membership, done: Callable[[], bool], seconds: float = 15) -> None:
    """Run the membership's rounds until `done()` (bounded)."""
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.wait_for(membership.beat(), seconds)


async def test_a_node_sees_another_join_then_takes_it_for_lost_and_fails_its_run(
    store: Store,
) -> None:
    seen_a, seen_b = Seen(), Seen()
    a, b = member(store, "a", seen_a), member(store, "b", seen_b)
    await a.join()
    await b.join()
    assert b.ownership.node_ids == ("a", "b")
    await beat_until(a, lambda: a.ownership.node_ids == ("a", "b"))
    assert seen_a.views[-1].node_ids == ("a", "b")
    running = make_run("s1", b.node.started_at, RunStatus.RUNNING)
    await store.insert_run(replace(running, node_id="b"))
    # b beats no more (killed): a wakes when b's lease runs out, and takes it for lost.
    await beat_until(a, lambda: a.ownership.node_ids == ("a",))
    (run,) = await store.list_runs()
    assert run.status is RunStatus.FAILED
    assert run.error is not None and "node b lost its lease" in run.error
    states = {n.id: n.state for n in await store.list_nodes()}
    assert states == {"a": NodeState.LIVE, "b": NodeState.LOST}


async def test_a_lost_nodes_lease_is_taken_over_a_lead_early_and_after_its_fence(
    store: Store,
) -> None:
    """A node that beats no more is taken for lost TAKEOVER_LEAD_FRACTION of its lease
    before the lease ends, so that the takeover's work fits in the lease; never before
    the lost node's own fence, at FENCE_FRACTION of it, has stopped its firing."""
    lease = 6.0
    a, b = member(store, "a", Seen(), lease=lease), member(store, "b", Seen(), lease=lease)
    await b.join()
    await a.join()
    sent, expires = b.node.heartbeat_at, b.node.lease_expires_at
    await beat_until(a, lambda: a.ownership.node_ids == ("a",), seconds=20)
    lost_at = utcnow()
    assert lost_at < expires  # without the lead: EXPIRY_SLACK_SECONDS after it
    assert lost_at >= sent + timedelta(seconds=lease * FENCE_FRACTION)
    assert lost_at >= expires - timedelta(seconds=lease * TAKEOVER_LEAD_FRACTION)


async def test_a_node_that_leaves_is_gone_from_the_others_view_at_their_next_round(
    store: Store,
) -> None:
    seen = Seen()
    a, b = member(store, "a", seen, lease=30.0), member(store, "b", Seen(), lease=30.0)
    await a.join()
    await b.join()
    await b.leave()
    await beat_until(a, lambda: a.ownership.node_ids == ("a",), seconds=20)
    states = {n.id: n.state for n in await store.list_nodes()}
    assert states["b"] is NodeState.LEFT


@pytest.fixture
def relay(pg_url: str) -> Iterator[PgProxy]:
    with pg_proxy(pg_url) as proxy:
        yield proxy


@pytest.fixture
async def relayed(relay: PgProxy) -> AsyncIterator[Store]:
    async with open_store(relay.url) as store:
        yield store


async def test_a_node_cut_off_fences_itself_before_its_lease_runs_out_then_rejoins(
    relay: PgProxy, relayed: Store, pg_url: str
) -> None:
    seen = Seen()
    cut = member(relayed, "cut", seen, lease=LEASE)
    await cut.join()
    joined = time.monotonic()
    relay.cut()
    await beat_until(cut, lambda: cut.fenced)
    assert seen.fences == [True]
    # Fenced before the others could take its schedules: before its lease ran out (the
    # fence is due at 80 % of it; the rest is room for a loop busy elsewhere).
    assert seen.fenced_at - joined < LEASE * (1 - TAKEOVER_LEAD_FRACTION)
    async with open_store(pg_url) as direct:
        watcher = member(direct, "watcher", Seen(), lease=LEASE)
        await watcher.join()
        await beat_until(watcher, lambda: watcher.ownership.node_ids == ("watcher",))
        assert {n.id: n.state for n in await direct.list_nodes()}["cut"] is NodeState.LOST
        relay.restore()
        await beat_until(cut, lambda: not cut.fenced)
        assert seen.fences == [True, False]
        nodes = {n.id: n.state for n in await direct.list_nodes()}
        assert nodes["cut"] is NodeState.LIVE  # rejoined, as it was declared lost meanwhile
