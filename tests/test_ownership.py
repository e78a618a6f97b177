"""Ownership by rendezvous hashing: every node computes the same owner on its own, a
membership change moves only the schedules of the node that came or went, and a
pipeline's schedules go only to nodes that have the pipeline as most nodes have it."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from cronmgr.core.models import Node, Schedule, ScheduleType
from cronmgr.core.pipelines.agreement import agreed_pipelines
from cronmgr.engine.ownership import Ownership, owner

NOW = datetime(2026, 1, 1, tzinfo=UTC)
node_ids = st.lists(
    st.text("abcdefgh0123456789-", min_size=1, max_size=12), min_size=1, max_size=6, unique=True
)
keys = st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=60, unique=True)


def node(node_id: str, **pipelines: str) -> Node:
    return Node(node_id, "host", 1, "0", NOW, NOW, NOW, pipelines=pipelines)


def schedule(schedule_id: str, pipeline: str | None = None) -> Schedule:
    return Schedule(
        id=schedule_id,
        name=schedule_id,
        schedule_type=ScheduleType.INTERVAL,
        interval_seconds=60.0,
        pipeline=pipeline,
        target_id=None if pipeline else "t",
        created_at=NOW,
        updated_at=NOW,
    )


@given(node_ids, keys)
def test_every_node_computes_the_same_owner_whatever_order_it_lists_the_nodes(
    ids: list[str], names: list[str]
) -> None:
    for key in names:
        assert owner(key, ids) == owner(key, list(reversed(ids))) == owner(key, sorted(ids))
        assert owner(key, ids) in ids


@given(node_ids, keys, st.text("xyz", min_size=1, max_size=4))
def test_a_node_joining_takes_schedules_only_for_itself(
    ids: list[str], names: list[str], newcomer: str
) -> None:
    """A join moves a schedule only to the newcomer; no schedule moves between the others."""
    grown = [*ids, newcomer] if newcomer not in ids else ids
    for key in names:
        before, after = owner(key, ids), owner(key, grown)
        assert after in (before, newcomer)


@given(node_ids, keys)
def test_a_node_leaving_gives_up_only_its_own_schedules(ids: list[str], names: list[str]) -> None:
    gone, rest = ids[0], ids[1:]
    for key in names:
        if owner(key, ids) != gone:
            assert owner(key, rest) == owner(key, ids)


def test_schedules_spread_over_every_node() -> None:
    nodes = [node("n1"), node("n2"), node("n3")]
    views = [Ownership(n.id, nodes) for n in nodes]
    schedules = [schedule(f"s{i}") for i in range(300)]
    counts = [sum(view.owns(s) for s in schedules) for view in views]
    assert sum(counts) == 300  # each schedule has exactly one owner
    assert min(counts) > 60, counts  # and none of the nodes is left out


def test_a_pipeline_goes_only_to_nodes_that_have_it_as_most_do() -> None:
    nodes = [node("n1", etl="aaa"), node("n2", etl="aaa"), node("n3", etl="bbb")]
    assert agreed_pipelines(n.pipelines for n in nodes) == {"etl": "aaa"}
    views = {n.id: Ownership(n.id, nodes) for n in nodes}
    schedules = [schedule(f"p{i}", pipeline="etl") for i in range(100)]
    assert not any(views["n3"].owns(s) for s in schedules)
    assert all(views["n1"].owns(s) != views["n2"].owns(s) for s in schedules)
    assert views["n3"].differing({"etl": "bbb"}) == ["etl"]
    assert views["n1"].differing({"etl": "aaa"}) == []


def test_a_pipeline_no_node_has_still_goes_to_one_node_which_records_its_failure() -> None:
    nodes = [node("n1"), node("n2")]
    views = [Ownership(n.id, nodes) for n in nodes]
    orphan = schedule("p", pipeline="missing")
    assert sum(view.owns(orphan) for view in views) == 1
    assert sum(view.runs_pipeline("missing", "run-1") for view in views) == 1


def test_an_even_vote_on_a_pipeline_s_content_picks_the_same_one_everywhere() -> None:
    assert agreed_pipelines([{"etl": "222"}, {"etl": "111"}]) == {"etl": "111"}


def test_a_node_alone_owns_everything() -> None:
    view = Ownership("me", [node("me")])
    assert view.owns(schedule("s")) and view.owns(schedule("p", pipeline="x"))
    assert Ownership.alone("me").owns(schedule("s"))
