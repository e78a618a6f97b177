"""Nodes, the daemons sharing one store, on both backends: joining (and refusing an id a live
daemon elsewhere holds), leases renewed and expired, clean departures, the runs a gone node
left failed or freed, orphans of a starting node scoped to the dead, and runs carrying the
node that ran them."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from dataclasses import replace
from datetime import timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from test_store import T0, claim, make_run, stored_row

from cronmgr.core.errors import Conflict
from cronmgr.core.models import Node, NodeState, Run, RunStatus, Trigger
from cronmgr.store import Store, open_store
from cronmgr.store.relational.nodes import _node_params, node_from_row

LEASE = timedelta(seconds=30)


def make_node(node_id: str = "a", host: str = "h1", **changes: Any) -> Node:
    """A live node that joined at T0, every field away from its default."""
    node = Node(
        id=node_id,
        host=host,
        pid=4242,
        version="1.2.3",
        started_at=T0,
        heartbeat_at=T0,
        lease_expires_at=T0 + LEASE,
        pipelines={"etl": "sha256:0f1e", "report": "sha256:9a8b"},
        schedules_owned=7,
        runs_in_flight=2,
    )
    return replace(node, **changes)


def renewed(node: Node, at: timedelta, **changes: Any) -> Node:
    """`node` as it renews its lease `at` after T0."""
    return replace(node, heartbeat_at=T0 + at, lease_expires_at=T0 + at + LEASE, **changes)


def manual(node_id: str | None = None) -> Run:
    """A pending run someone asked for, not claimed by any node yet."""
    return replace(
        make_run(None, T0),
        status=RunStatus.PENDING,
        trigger=Trigger.MANUAL,
        started_at=None,
        finished_at=None,
        node_id=node_id,
    )


async def execute(url: str, sql: str) -> None:
    """One statement straight on the store at `url`, behind the store's back."""
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            db.execute(sql)
            db.commit()
        return
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


# The model


def test_a_node_is_json_ready() -> None:
    data = make_node().as_dict()
    assert data["started_at"] == T0.isoformat() and data["state"] == "live"
    assert data["pipelines"] == {"etl": "sha256:0f1e", "report": "sha256:9a8b"}
    assert orjson.loads(orjson.dumps(data)) == data


def test_a_run_names_its_node_as_json() -> None:
    assert make_run("a", T0).as_dict()["node_id"] is None
    assert replace(make_run("a", T0), node_id="n1").as_dict()["node_id"] == "n1"


# Joining


async def test_a_joined_node_is_listed_with_every_field(store: Store) -> None:
    first, second = make_node("b"), make_node("a", host="h2", pipelines={})
    await store.join_node(first)
    await store.join_node(second)
    assert await store.list_nodes() == [second, first]


async def test_a_restarted_daemon_on_the_same_host_takes_its_id_over(store: Store) -> None:
    """The PID file keeps one daemon per home on a host: a live row of the same host is the
    previous run of this daemon, replaced whatever its lease."""
    await store.join_node(make_node())
    again = make_node(
        pid=9999,
        version="1.3.0",
        started_at=T0 + timedelta(seconds=5),
        heartbeat_at=T0 + timedelta(seconds=5),
        lease_expires_at=T0 + timedelta(seconds=35),
        pipelines={"etl": "sha256:ffff"},
        schedules_owned=0,
        runs_in_flight=0,
    )
    await store.join_node(again)
    assert await store.list_nodes() == [again]


async def test_an_id_held_live_on_another_host_is_a_conflict_naming_the_holder(
    store: Store,
) -> None:
    await store.join_node(make_node())
    with pytest.raises(Conflict) as refused:
        await store.join_node(make_node(host="h2", heartbeat_at=T0 + timedelta(seconds=29)))
    assert refused.value.status == 409
    assert refused.value.detail == (
        f"node id 'a' is held by a live daemon on host 'h1' until {(T0 + LEASE).isoformat()}:"
        " give this daemon another node_id"
    )
    assert [n.host for n in await store.list_nodes()] == ["h1"]


async def test_an_id_whose_lease_ran_out_or_that_left_may_join_from_another_host(
    store: Store,
) -> None:
    await store.join_node(make_node())
    expired = make_node(host="h2", started_at=T0 + LEASE, heartbeat_at=T0 + LEASE)
    await store.join_node(expired)  # the lease ends at T0 + LEASE: over by then
    assert [(n.host, n.state) for n in await store.list_nodes()] == [("h2", NodeState.LIVE)]
    await store.leave_node("a", T0 + LEASE)
    await store.join_node(renewed(make_node(host="h3"), LEASE))
    # Declared lost: free at once, whatever the lease said when it was last renewed.
    await store.join_node(make_node("b", lease_expires_at=T0 + timedelta(seconds=5)))
    assert await store.expire_nodes(T0 + timedelta(seconds=5)) == ["b"]
    await store.join_node(make_node("b", host="h4", heartbeat_at=T0 + timedelta(seconds=1)))
    assert [(n.host, n.state) for n in await store.list_nodes()] == [
        ("h3", NodeState.LIVE),
        ("h4", NodeState.LIVE),
    ]


# Leases


async def test_a_renewal_returns_the_nodes_live_then_by_id(store: Store) -> None:
    """Ordered by id as bytes (capitals first) on both backends; a node whose lease ran out
    or that left is not among them, even before anyone declared it lost."""
    short = make_node("c", lease_expires_at=T0 + timedelta(seconds=5))
    gone = make_node("d")
    upper, lower, dashed = make_node("B"), make_node("a"), make_node("a-2")
    for node in (short, lower, gone, upper, dashed):
        await store.join_node(node)
    await store.leave_node("d", T0 + timedelta(seconds=1))
    now = renewed(lower, timedelta(seconds=10), pipelines={"etl": "x"}, runs_in_flight=5)
    live = await store.renew_lease(now)
    assert live == [upper, now, dashed]
    assert [n.id for n in await store.list_nodes()] == ["B", "a", "a-2", "c", "d"]


async def test_a_node_declared_lost_or_gone_renews_nothing(store: Store) -> None:
    first, second = make_node("a"), make_node("b")
    await store.join_node(first)
    await store.join_node(second)
    assert await store.expire_nodes(T0 + LEASE) == ["a", "b"]
    assert await store.renew_lease(renewed(first, LEASE)) is None
    await store.join_node(renewed(second, LEASE))
    await store.leave_node("b", T0 + LEASE + timedelta(seconds=1))
    assert await store.renew_lease(renewed(second, LEASE * 2)) is None
    states = {n.id: (n.state, n.heartbeat_at, n.lease_expires_at) for n in await store.list_nodes()}
    left_at = T0 + LEASE + timedelta(seconds=1)
    assert states == {
        "a": (NodeState.LOST, T0, T0 + LEASE),
        "b": (NodeState.LEFT, left_at, left_at),
    }


async def test_only_leases_run_out_by_then_expire(store: Store) -> None:
    await store.join_node(make_node("a"))
    await store.join_node(make_node("b", lease_expires_at=T0 + LEASE * 2))
    assert await store.expire_nodes(T0 + LEASE - timedelta(microseconds=1)) == []
    assert await store.expire_nodes(T0 + LEASE) == ["a"]
    assert await store.expire_nodes(T0 + LEASE) == []


async def test_nodes_expiring_at_once_each_get_an_id_once(store: Store, store_url: str) -> None:
    """Two stores on one database (two nodes), two calls each, all at once: every expired
    id comes back exactly once among them."""
    ids = [f"n{n:02d}" for n in range(20)]
    for node_id in ids:
        await store.join_node(make_node(node_id))
    async with open_store(store_url) as other:
        calls = [s.expire_nodes(T0 + LEASE) for s in (store, other, store, other)]
        found = await asyncio.gather(*calls)
    assert sorted(i for result in found for i in result) == ids


async def test_prune_deletes_the_gone_nodes_not_heard_of_since(store: Store) -> None:
    for node_id in ("left-old", "left-new", "lost"):
        await store.join_node(make_node(node_id))
    await store.join_node(make_node("live", lease_expires_at=T0 + timedelta(days=2)))
    await store.leave_node("left-old", T0 + timedelta(seconds=1))
    await store.leave_node("left-new", T0 + timedelta(hours=2))
    assert await store.expire_nodes(T0 + LEASE) == ["lost"]  # its last heartbeat was T0
    assert await store.prune_nodes(T0 + timedelta(hours=1)) == 2
    assert [n.id for n in await store.list_nodes()] == ["left-new", "live"]
    assert await store.prune_nodes(T0 + timedelta(days=1)) == 1


# The runs of nodes


async def test_a_run_carries_its_node_through_every_write_and_read(store: Store) -> None:
    ran = replace(make_run("a", T0, RunStatus.RUNNING), node_id="n1")
    claimed = replace(claim("a", T0 + timedelta(seconds=1)), node_id="n2")
    other = claim("a", T0 + timedelta(seconds=2))
    assert await store.insert_run(ran)
    assert await store.claim_runs([claimed, other]) == {claimed.id, other.id}
    assert (await store.get_run(ran.id)).node_id == "n1"
    listed = {r.id: r.node_id for r in await store.list_runs()}
    assert listed == {ran.id: "n1", claimed.id: "n2", other.id: None}


async def test_claiming_a_requested_run_records_the_node(store: Store) -> None:
    mine, anyone = manual(), manual()
    await store.insert_run(mine)
    await store.insert_run(anyone)
    assert await store.claim_run(mine.id, node_id="n1")
    assert not await store.claim_run(mine.id, node_id="n2")
    assert await store.claim_run(anyone.id)
    stored = {r.id: (r.status, r.node_id) for r in await store.list_runs()}
    assert stored == {mine.id: (RunStatus.RUNNING, "n1"), anyone.id: (RunStatus.RUNNING, None)}


async def test_the_runs_of_a_gone_node_fail_or_free_their_slots(store: Store) -> None:
    """Its running run fails with the reason, its claim due already with the claim reason;
    its claim of a later slot is deleted, so that slot can be claimed again; a pending
    manual run, and the runs of other nodes, stay as they are."""
    now = T0 + timedelta(minutes=1)
    running = replace(make_run("a", T0, RunStatus.RUNNING), node_id="n1")
    due = replace(claim("a", now), node_id="n1")
    later = replace(claim("a", now + timedelta(seconds=1)), node_id="n1")
    waiting = manual("n1")
    others = replace(make_run("b", T0, RunStatus.RUNNING), node_id="n2")
    other_claim = replace(claim("b", now + timedelta(seconds=1)), node_id="n2")
    for run in (running, waiting, others):
        assert await store.insert_run(run)
    await store.claim_runs([due, later, other_claim])
    assert await store.fail_node_runs("n1", now, "n1 was lost", "claimed by n1, lost") == 2
    runs = {r.id: r for r in await store.list_runs()}
    assert later.id not in runs
    assert (runs[running.id].status, runs[running.id].error) == (RunStatus.FAILED, "n1 was lost")
    assert (runs[due.id].status, runs[due.id].error) == (RunStatus.FAILED, "claimed by n1, lost")
    assert {runs[running.id].finished_at, runs[due.id].finished_at} == {now}
    assert runs[waiting.id].status is RunStatus.PENDING
    assert runs[others.id].status is RunStatus.RUNNING
    assert runs[other_claim.id].status is RunStatus.PENDING
    assert await store.insert_run(replace(later, id="retaken", node_id="n2"))
    assert await store.fail_node_runs("n1", now, "again", "again") == 0


async def test_the_step_groups_of_a_gone_node_are_forgotten(store: Store) -> None:
    running = replace(make_run("a", T0, RunStatus.RUNNING), node_id="n1")
    assert await store.insert_run(running)
    await store.record_step_group(running.id, 4321, 12.5)
    await store.fail_node_runs("n1", T0 + LEASE, "lost", "lost")
    assert await store.list_step_groups() == []


async def test_orphans_of_a_starting_node_are_its_own_and_the_dead_ones(store: Store) -> None:
    """A node starting among others fails its own runs, those of no node and those of nodes
    not live with a lease unexpired at the time given; a live node's runs are its own."""
    now = T0 + timedelta(seconds=10)
    await store.join_node(make_node("me"))
    await store.join_node(make_node("alive"))
    await store.join_node(make_node("expired", lease_expires_at=now))
    await store.join_node(make_node("left"))
    await store.leave_node("left", T0 + timedelta(seconds=1))
    runs = {
        owner: replace(make_run(owner or "none", T0, RunStatus.RUNNING), node_id=owner)
        for owner in ("me", "alive", "expired", "left", "unknown", None)
    }
    alive_claim = replace(claim("alive", T0 + timedelta(seconds=1)), node_id="alive")
    await store.claim_runs([*runs.values(), alive_claim])
    failed = await store.fail_orphaned_runs("died", claimed_reason="claimed", node_id="me", now=now)
    assert failed == 5
    stored = {r.node_id: r.status for r in await store.list_runs() if r.id != alive_claim.id}
    assert stored == {
        "me": RunStatus.FAILED,
        "alive": RunStatus.RUNNING,
        "expired": RunStatus.FAILED,
        "left": RunStatus.FAILED,
        "unknown": RunStatus.FAILED,
        None: RunStatus.FAILED,
    }
    assert (await store.get_run(alive_claim.id)).status is RunStatus.PENDING
    # Unscoped, as before nodes: every orphan, whoever ran it.
    assert await store.fail_orphaned_runs("died") == 2


# Row mapping


async def test_node_row_mapping_covers_every_field_and_column(store: Store, store_url: str) -> None:
    node = make_node()
    await store.join_node(node)
    row = await stored_row(store_url, "nodes")
    assert list(row) == [f.name for f in dataclasses.fields(Node)]
    assert node_from_row(row) == node
    assert _node_params(node) == row


async def test_an_unreadable_node_row_keeps_what_can_be_read(store: Store, store_url: str) -> None:
    """A bad row does not fail the listing, and its id and state still count."""
    await store.join_node(make_node("a"))
    await store.join_node(make_node("b"))
    await execute(store_url, "UPDATE nodes SET pipelines = '[1]' WHERE id = 'a'")
    await execute(store_url, "UPDATE nodes SET state = 'zombie' WHERE id = 'b'")
    first, second = await store.list_nodes()
    assert (first.id, first.host, first.state, first.pipelines) == ("a", "h1", NodeState.LIVE, {})
    assert first.lease_expires_at == T0 + LEASE
    assert (second.id, second.state) == ("b", NodeState.LOST)
    live = await store.renew_lease(renewed(make_node("a"), LEASE / 2))
    assert live is not None and [n.id for n in live] == ["a"]
