"""The SQLite store against real files: definitions, revisions, progress, runs, retention,
the schema upgrade, and two connections writing at once."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from cronmgr.core.errors import Conflict, NotFound, StoreError
from cronmgr.core.models import (
    Assertion,
    ErrorType,
    FailurePolicy,
    MisfirePolicy,
    OverlapPolicy,
    RetryPolicy,
    Run,
    RunStatus,
    Schedule,
    ScheduleStatus,
    ScheduleType,
    StepResult,
    Target,
    Trigger,
    new_id,
    utcnow,
)
from cronmgr.store import Store
from cronmgr.store.queries import load_queries, migrations
from cronmgr.store.records import Progress, StepGroup
from cronmgr.store.relational.columns import _ts
from cronmgr.store.relational.rows import (
    SCHEDULE_COLUMNS,
    _schedule_params,
    _target_params,
    schedule_from_row,
    target_from_row,
)
from cronmgr.store.sqlite import SQLiteStore
from cronmgr.store.sqlite.connection import BUSY_TIMEOUT_MS

T0 = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "cronmgr.db"


@pytest.fixture
async def sqlite_store(db_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = await SQLiteStore.open(db_path)
    yield opened
    await opened.close()


def make_target(name: str = "orders", **changes: Any) -> Target:
    """A target with every field away from its default."""
    target = Target(
        id=new_id(),
        name=name,
        url="https://example.test/orders?page=1",
        method="POST",
        headers={"Authorization": "Bearer ${env:API_TOKEN}", "X-Trace": "on"},
        body_template='{"run": "{{ run_id }}"}',
        timeout_seconds=12.5,
        expected_status=(200, 202),
        assertions=(
            Assertion("body_contains", "ok"),
            Assertion("json_field", [1, {"a": None}], path="data.items.0"),
            Assertion("max_latency_ms", 250),
        ),
        follow_redirects=False,
        verify_tls=False,
        retry=RetryPolicy(
            max_attempts=5,
            backoff_base_seconds=0.5,
            backoff_max_seconds=10.0,
            retry_after_max_seconds=60.0,
            jitter=False,
        ),
        created_at=T0,
        updated_at=T0 + timedelta(minutes=1),
    )
    return replace(target, **changes)


def make_schedule(target_id: str | None, name: str = "nightly", **changes: Any) -> Schedule:
    """A schedule with every field away from its default, timestamps in several zones."""
    schedule = Schedule(
        id=new_id(),
        name=name,
        schedule_type=ScheduleType.CRON,
        target_id=target_id,
        pipeline=None if target_id else "etl",
        interval_seconds=90.5,
        cron_expression="30 2 * * *",
        run_at=datetime(2026, 7, 1, 9, 0, tzinfo=BERLIN),
        timezone="Europe/Berlin",
        jitter_seconds=1.5,
        start_at=T0,
        end_at=T0 + timedelta(days=30),
        duration_seconds=86400.0,
        max_runs=42,
        misfire_policy=MisfirePolicy.CATCH_UP,
        misfire_grace_seconds=15.0,
        catch_up_max=3,
        overlap_policy=OverlapPolicy.QUEUE,
        failure_policy=FailurePolicy.CIRCUIT_BREAKER,
        failure_threshold=7,
        cooldown_seconds=120.0,
        status=ScheduleStatus.PAUSED,
        status_reason="maintenance",
        run_count=9,
        consecutive_failures=2,
        circuit_open_until=T0 + timedelta(minutes=5, microseconds=7),
        last_run_at=T0 - timedelta(hours=1),
        next_run_at=datetime(2026, 3, 30, 2, 30, tzinfo=BERLIN),
        revision=999,
        created_at=T0,
        updated_at=T0 + timedelta(seconds=2),
    )
    return replace(schedule, **changes)


def make_run(
    schedule_id: str | None,
    slot: datetime,
    status: RunStatus = RunStatus.SUCCEEDED,
    job: str = "pipeline:etl",
    finished_at: datetime | None = None,
) -> Run:
    finished = finished_at or (slot + timedelta(seconds=1) if status.finished else None)
    return Run(
        id=new_id(),
        job=job,
        schedule_id=schedule_id,
        scheduled_for=slot,
        trigger=Trigger.SCHEDULE,
        status=status,
        started_at=slot,
        finished_at=finished,
    )


async def revision(store: Store) -> int:
    return (await store.changed_schedules(2**62)).revision


async def add_target_with_schedules(store: Store, count: int) -> tuple[Target, list[str]]:
    target = make_target()
    await store.insert_target(target)
    ids = []
    for n in range(count):
        schedule = make_schedule(target.id, name=f"s{n:04d}", status=ScheduleStatus.ACTIVE)
        await store.insert_schedule(schedule)
        ids.append(schedule.id)
    return target, ids


# Targets


def test_ids_are_version_7_uuids_in_creation_order() -> None:
    ids = [new_id() for _ in range(2000)]
    parsed = [uuid.UUID(i) for i in ids]
    assert all(str(u) == i for u, i in zip(parsed, ids, strict=True))  # canonical form
    assert {u.version for u in parsed} == {7} and {u.variant for u in parsed} == {uuid.RFC_4122}
    stamps = [u.int >> 80 for u in parsed]
    assert stamps == sorted(stamps) and abs(stamps[-1] - time.time_ns() // 10**6) < 60_000
    assert len(set(ids)) == len(ids)


def test_timestamps_are_stored_as_fixed_width_utc_text() -> None:
    berlin = datetime(2026, 3, 29, 3, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    assert _ts(berlin) == "2026-03-29T01:30:00.000000+00:00"
    assert _ts(datetime(2026, 3, 29, 1, 30, 0, 5, tzinfo=UTC)) == "2026-03-29T01:30:00.000005+00:00"
    assert _ts(None) is None


async def test_a_target_round_trips_with_every_field(store: Store) -> None:
    target = make_target()
    await store.insert_target(target)
    assert await store.get_target(target.id) == target


async def test_update_target_replaces_the_definition_but_not_created_at(
    store: Store,
) -> None:
    target = make_target()
    await store.insert_target(target)
    edited = make_target(
        id=target.id,
        name="orders-v2",
        headers={},
        expected_status=(),
        assertions=(),
        retry=RetryPolicy(),
        created_at=T0 + timedelta(days=1),
        updated_at=T0 + timedelta(days=2),
    )
    await store.update_target(edited)
    assert await store.get_target(target.id) == replace(edited, created_at=T0)


async def test_missing_targets_are_not_found_naming_the_id(store: Store) -> None:
    ghost = make_target()
    with pytest.raises(NotFound, match=ghost.id):
        await store.get_target(ghost.id)
    with pytest.raises(NotFound, match=ghost.id):
        await store.update_target(ghost)
    with pytest.raises(NotFound, match=ghost.id):
        await store.delete_target(ghost.id)


async def test_a_taken_target_name_is_a_conflict_naming_it(store: Store) -> None:
    first, second = make_target("alpha"), make_target("beta")
    await store.insert_target(first)
    await store.insert_target(second)
    with pytest.raises(Conflict, match="a target named 'alpha' already exists"):
        await store.insert_target(make_target("alpha"))
    with pytest.raises(Conflict, match="a target named 'alpha' already exists"):
        await store.update_target(replace(second, name="alpha"))
    assert (await store.get_target(second.id)).name == "beta"


async def test_a_taken_target_id_is_a_conflict(store: Store) -> None:
    target = make_target("alpha")
    await store.insert_target(target)
    with pytest.raises(Conflict, match="id already exists"):
        await store.insert_target(replace(target, name="other"))


async def test_targets_are_listed_by_name_with_limit_and_offset(store: Store) -> None:
    for name in ("delta", "alpha", "charlie", "bravo"):
        await store.insert_target(make_target(name))
    assert [t.name for t in await store.list_targets()] == ["alpha", "bravo", "charlie", "delta"]
    page = await store.list_targets(limit=2, offset=1)
    assert [t.name for t in page] == ["bravo", "charlie"]


async def test_editing_a_target_gives_its_schedules_a_new_revision(store: Store) -> None:
    """A daemon that caches targets learns of the edit through changed_schedules."""
    target, (used,) = await add_target_with_schedules(store, 1)
    other = make_target("other")
    await store.insert_target(other)
    await store.insert_schedule(make_schedule(other.id, name="unrelated"))
    before = await revision(store)
    await store.update_target(replace(target, url="https://example.test/v2"))
    changes = await store.changed_schedules(before)
    assert [s.id for s in changes.changed] == [used]
    assert changes.revision == before + 1


# Schedules


async def test_a_schedule_round_trips_with_every_field(store: Store) -> None:
    target = make_target()
    await store.insert_target(target)
    schedule = make_schedule(target.id)
    await store.insert_schedule(schedule)
    stored = await store.get_schedule(schedule.id)
    assert stored.revision == 1, "the store stamps its own revision"
    assert stored == replace(schedule, revision=1)


async def test_a_pipeline_schedule_with_defaults_round_trips(store: Store) -> None:
    schedule = Schedule(
        id=new_id(), name="every-minute", schedule_type=ScheduleType.INTERVAL, pipeline="etl"
    )
    schedule = replace(schedule, interval_seconds=60)
    await store.insert_schedule(schedule)
    assert await store.get_schedule(schedule.id) == replace(schedule, revision=1)


async def test_a_schedule_for_a_missing_target_is_not_found_naming_the_target(
    store: Store,
) -> None:
    with pytest.raises(NotFound, match="target 'no-such-target' does not exist"):
        await store.insert_schedule(make_schedule("no-such-target"))
    assert await store.list_schedules() == []


async def test_a_taken_schedule_name_is_a_conflict_naming_it(store: Store) -> None:
    _, (first, second) = await add_target_with_schedules(store, 2)
    with pytest.raises(Conflict, match="a schedule named 's0000' already exists"):
        await store.insert_schedule(make_schedule(None, name="s0000"))
    renamed = replace(await store.get_schedule(second), name="s0000")
    with pytest.raises(Conflict, match="a schedule named 's0000' already exists"):
        await store.update_schedule(renamed)
    assert (await store.get_schedule(first)).name == "s0000"


async def test_update_schedule_replaces_the_definition_not_status_or_progress(
    store: Store,
) -> None:
    target = make_target()
    await store.insert_target(target)
    original = make_schedule(target.id)
    await store.insert_schedule(original)
    edited = replace(
        make_schedule(None, name="nightly-etl"),
        id=original.id,
        status=ScheduleStatus.DISABLED,
        status_reason="ignored",
        run_count=0,
        consecutive_failures=0,
        circuit_open_until=None,
        last_run_at=None,
        next_run_at=None,
        created_at=T0 + timedelta(days=3),
        updated_at=T0 + timedelta(days=4),
    )
    await store.update_schedule(edited)
    stored = await store.get_schedule(original.id)
    kept = {
        f: getattr(original, f)
        for f in (
            "status",
            "status_reason",
            "run_count",
            "consecutive_failures",
            "circuit_open_until",
            "last_run_at",
            "next_run_at",
            "created_at",
        )
    }
    assert stored == replace(edited, revision=2, **kept)


async def test_updating_a_missing_schedule_or_to_a_missing_target_is_not_found(
    store: Store,
) -> None:
    _, (schedule_id,) = await add_target_with_schedules(store, 1)
    with pytest.raises(NotFound, match="schedule 'ghost' does not exist"):
        await store.update_schedule(make_schedule(None, id="ghost", name="ghost"))
    schedule = await store.get_schedule(schedule_id)
    with pytest.raises(NotFound, match="target 'gone' does not exist"):
        await store.update_schedule(replace(schedule, target_id="gone"))
    with pytest.raises(NotFound, match="schedule 'ghost' does not exist"):
        await store.get_schedule("ghost")


async def test_schedules_are_listed_by_name_filtered_by_status_and_target(
    store: Store,
) -> None:
    target, ids = await add_target_with_schedules(store, 3)
    await store.insert_schedule(
        make_schedule(None, name="a-pipeline", status=ScheduleStatus.ACTIVE)
    )
    await store.set_schedule_status(ids[1], ScheduleStatus.PAUSED)
    names = [s.name for s in await store.list_schedules()]
    assert names == ["a-pipeline", "s0000", "s0001", "s0002"]
    by_target = await store.list_schedules(target_id=target.id, limit=2, offset=1)
    assert [s.name for s in by_target] == ["s0001", "s0002"]
    active = await store.list_schedules(status=ScheduleStatus.ACTIVE, target_id=target.id)
    assert [s.name for s in active] == ["s0000", "s0002"]
    paused = await store.list_schedules(status=ScheduleStatus.PAUSED)
    assert [s.id for s in paused] == [ids[1]]


async def test_deleting_a_schedule_keeps_its_runs(store: Store) -> None:
    _, (schedule_id,) = await add_target_with_schedules(store, 1)
    run = make_run(schedule_id, T0)
    await store.insert_run(run)
    await store.delete_schedule(schedule_id)
    with pytest.raises(NotFound):
        await store.get_schedule(schedule_id)
    assert (await store.get_run(run.id)).schedule_id == schedule_id
    with pytest.raises(NotFound, match=schedule_id):
        await store.delete_schedule(schedule_id)


async def test_recount_adds_the_runs_after_the_last_counted_slot(store: Store) -> None:
    """What a kill -9 within the engine's flush period leaves: runs recorded after the
    last_run_at its count was written with. The recount adds the succeeded and failed runs
    of the schedule's own firing after that slot, and moves last_run_at along."""
    target = make_target()
    await store.insert_target(target)
    slots = [T0 + timedelta(minutes=n) for n in range(6)]
    behind = make_schedule(target.id, "behind", max_runs=5, run_count=1, last_run_at=slots[0])
    current = make_schedule(target.id, "current", max_runs=5, run_count=4, last_run_at=slots[1])
    unbounded = make_schedule(target.id, "unbounded", max_runs=None, run_count=0)
    fresh = make_schedule(target.id, "fresh", max_runs=5, run_count=0, last_run_at=None)
    # Overlapping runs: slot 2's end was counted before slot 1's, which the kill cut off.
    overlapped = make_schedule(
        target.id, "overlapped", max_runs=5, run_count=2, last_run_at=slots[2]
    )
    reborn = make_schedule(target.id, "reborn", max_runs=5, run_count=0, last_run_at=None)
    for schedule in (behind, current, unbounded, fresh, reborn, overlapped):
        await store.insert_schedule(schedule)
    runs = [
        make_run(behind.id, slots[0]),  # counted already
        make_run(behind.id, slots[1], RunStatus.FAILED),
        make_run(behind.id, slots[2]),
        make_run(behind.id, slots[3], RunStatus.SKIPPED),  # a slot that did not run
        replace(make_run(behind.id, slots[4]), trigger=Trigger.MANUAL),  # not its firing
        # Four counted, two left: retention purged the others.
        make_run(current.id, slots[0]),
        make_run(current.id, slots[1]),
        make_run(overlapped.id, slots[0]),
        make_run(overlapped.id, slots[1]),  # ended last, not counted
        make_run(overlapped.id, slots[2]),
        make_run(unbounded.id, slots[0]),
        make_run(fresh.id, slots[0]),
        make_run(reborn.id, slots[0]),
        make_run(reborn.id, slots[1]),
    ]
    await insert_runs(store, runs)
    # `reborn` is deleted and made anew under the same id (as a pipeline's file schedule
    # is): the runs of the old one stay, and are not the new one's.
    await store.delete_schedule(reborn.id)
    await store.insert_schedule(replace(reborn, created_at=utcnow() + timedelta(minutes=1)))

    assert await store.recount_runs() == 3
    recounted = await store.get_schedule(behind.id)
    assert recounted.run_count == 3 and recounted.last_run_at == slots[2]
    recounted = await store.get_schedule(overlapped.id)
    assert recounted.run_count == 3 and recounted.last_run_at == slots[2]
    assert (await store.get_schedule(current.id)).run_count == 4
    assert (await store.get_schedule(unbounded.id)).run_count == 0
    assert (await store.get_schedule(fresh.id)).run_count == 1
    assert (await store.get_schedule(reborn.id)).run_count == 0
    assert await store.recount_runs() == 0  # a second start adds nothing
    assert (await store.get_schedule(behind.id)).run_count == 3
    assert (await store.get_schedule(overlapped.id)).run_count == 3


# Revisions


async def test_every_schedule_write_takes_the_next_revision(store: Store) -> None:
    target = make_target()
    await store.insert_target(target)
    assert await revision(store) == 0, "target writes alone take no revision"
    schedule = make_schedule(target.id)
    await store.insert_schedule(schedule)
    await store.update_schedule(replace(schedule, jitter_seconds=0.0))
    await store.set_schedule_status(schedule.id, ScheduleStatus.ACTIVE)
    assert (await store.get_schedule(schedule.id)).revision == 3
    await store.delete_schedule(schedule.id)
    changes = await store.changed_schedules(2)
    assert (changes.changed, changes.deleted, changes.revision) == ([], [schedule.id], 4)


async def test_changed_schedules_returns_only_what_came_after(store: Store) -> None:
    _, ids = await add_target_with_schedules(store, 3)
    everything = await store.changed_schedules(0)
    assert [s.id for s in everything.changed] == ids
    assert [s.revision for s in everything.changed] == [1, 2, 3]
    assert everything.deleted == [] and everything.revision == 3
    await store.set_schedule_status(ids[0], ScheduleStatus.PAUSED, "by hand")
    await store.delete_schedule(ids[2])
    later = await store.changed_schedules(3)
    assert [(s.id, s.status, s.revision) for s in later.changed] == [
        (ids[0], ScheduleStatus.PAUSED, 4)
    ]
    assert later.deleted == [ids[2]] and later.revision == 5
    assert await store.changed_schedules(5) == replace(later, changed=[], deleted=[])


async def test_a_refused_write_takes_no_revision(store: Store) -> None:
    await add_target_with_schedules(store, 1)
    before = await revision(store)
    with pytest.raises(Conflict):
        await store.insert_schedule(make_schedule(None, name="s0000"))
    with pytest.raises(NotFound):
        await store.set_schedule_status("ghost", ScheduleStatus.PAUSED)
    with pytest.raises(NotFound):
        await store.delete_schedule("ghost")
    assert await revision(store) == before
    assert (await store.changed_schedules(before)).deleted == []


async def test_a_deleted_id_that_comes_back_is_a_change_not_a_deletion(
    store: Store,
) -> None:
    schedule = make_schedule(None)
    await store.insert_schedule(schedule)
    await store.delete_schedule(schedule.id)
    await store.insert_schedule(schedule)
    changes = await store.changed_schedules(0)
    assert [s.id for s in changes.changed] == [schedule.id] and changes.deleted == []


# Engine progress and status


def progress_for(schedule_id: str, n: int, **extra: Any) -> Progress:
    return Progress(
        schedule_id=schedule_id,
        run_count=n,
        consecutive_failures=n % 3,
        last_run_at=T0 + timedelta(seconds=n),
        next_run_at=T0 + timedelta(seconds=n + 60),
        circuit_open_until=T0 + timedelta(minutes=n),
        **extra,
    )


async def test_record_progress_writes_engine_fields_without_a_revision(
    store: Store,
) -> None:
    """The daemon's own bookkeeping must not look like a definition change to the daemon."""
    _, ids = await add_target_with_schedules(store, 3)
    before = await store.changed_schedules(0)
    await store.record_progress([progress_for(i, n) for n, i in enumerate(ids, start=1)])
    assert await store.changed_schedules(before.revision) == replace(before, changed=[], deleted=[])
    for n, (old, new) in enumerate(
        zip(before.changed, await store.list_schedules(), strict=True), start=1
    ):
        assert new == replace(
            old,
            run_count=n,
            consecutive_failures=n % 3,
            last_run_at=T0 + timedelta(seconds=n),
            next_run_at=T0 + timedelta(seconds=n + 60),
            circuit_open_until=T0 + timedelta(minutes=n),
        )


async def test_a_status_from_the_engine_is_visible_and_no_status_keeps_the_current_one(
    store: Store,
) -> None:
    _, (done, failing, paused) = await add_target_with_schedules(store, 3)
    await store.set_schedule_status(paused, ScheduleStatus.PAUSED, "by hand")
    await store.record_progress(
        [
            progress_for(done, 1, status=ScheduleStatus.COMPLETED),
            progress_for(failing, 2, status=ScheduleStatus.DISABLED, status_reason="5 failures"),
            progress_for(paused, 3),
        ]
    )
    statuses = {s.id: (s.status, s.status_reason) for s in await store.list_schedules()}
    assert statuses == {
        done: (ScheduleStatus.COMPLETED, None),
        failing: (ScheduleStatus.DISABLED, "5 failures"),
        paused: (ScheduleStatus.PAUSED, "by hand"),
    }


async def test_record_progress_skips_deleted_schedules_and_accepts_nothing(
    store: Store,
) -> None:
    _, (kept, gone) = await add_target_with_schedules(store, 2)
    await store.delete_schedule(gone)
    await store.record_progress([progress_for(gone, 5), progress_for(kept, 6)])
    await store.record_progress([])
    assert (await store.get_schedule(kept)).run_count == 6


async def test_pause_keeps_the_reason_and_resume_resets_failures_circuit_and_reason(
    store: Store,
) -> None:
    _, (schedule_id,) = await add_target_with_schedules(store, 1)
    tripped = progress_for(
        schedule_id,
        4,
        status=ScheduleStatus.DISABLED,
        status_reason="4 consecutive failures",
    )
    await store.record_progress([tripped._replace(consecutive_failures=4)])
    paused = await store.set_schedule_status(schedule_id, ScheduleStatus.PAUSED, "deploy")
    assert (paused.status, paused.status_reason, paused.consecutive_failures) == (
        ScheduleStatus.PAUSED,
        "deploy",
        4,
    )
    resumed = await store.set_schedule_status(schedule_id, ScheduleStatus.ACTIVE, "ignored")
    assert resumed == await store.get_schedule(schedule_id)
    assert resumed.status is ScheduleStatus.ACTIVE and resumed.status_reason is None
    assert resumed.consecutive_failures == 0 and resumed.circuit_open_until is None
    assert resumed.run_count == 4 and resumed.revision == paused.revision + 1


async def test_progress_of_an_older_revision_keeps_the_failure_reset_of_a_resume(
    store: Store,
) -> None:
    """A progress write the engine made before an API resume lands after it: run_count and
    slots are the engine's, but the resume's reset failure count and circuit stay."""
    _, (schedule_id,) = await add_target_with_schedules(store, 1)
    seen = (await store.get_schedule(schedule_id)).revision
    await store.record_progress([progress_for(schedule_id, 4, revision=seen)])
    await store.set_schedule_status(schedule_id, ScheduleStatus.PAUSED, "deploy")
    resumed = await store.set_schedule_status(schedule_id, ScheduleStatus.ACTIVE, None)
    stale = progress_for(schedule_id, 5, revision=seen)._replace(consecutive_failures=5)
    await store.record_progress([stale])
    after = await store.get_schedule(schedule_id)
    assert after.consecutive_failures == 0 and after.circuit_open_until is None
    assert after.run_count == 5 and after.last_run_at == stale.last_run_at
    current = progress_for(schedule_id, 6, revision=resumed.revision)
    await store.record_progress([current._replace(consecutive_failures=1)])
    assert (await store.get_schedule(schedule_id)).consecutive_failures == 1


async def test_record_progress_of_1000_schedules_in_one_call(store: Store) -> None:
    target = make_target()
    await store.insert_target(target)
    ids = [new_id() for _ in range(1000)]
    for n, schedule_id in enumerate(ids):
        await store.insert_schedule(make_schedule(target.id, name=f"s{n:04d}", id=schedule_id))
    started = time.perf_counter()
    await store.record_progress([progress_for(i, 7) for i in ids])
    elapsed = time.perf_counter() - started
    print(f"\nrecord_progress of 1,000 schedules: {elapsed * 1000:.1f} ms")
    assert {s.run_count for s in await store.list_schedules(limit=2000)} == {7}


# Deleting targets


async def test_deleting_a_used_target_is_a_conflict_counting_its_schedules(
    store: Store,
) -> None:
    target, ids = await add_target_with_schedules(store, 2)
    before = await revision(store)
    with pytest.raises(Conflict) as raised:
        await store.delete_target(target.id)
    assert raised.value.detail == (
        "target 'orders' is used by 2 schedule(s); delete them first or pass ?cascade=true"
    )
    assert await store.get_target(target.id) == target
    assert [s.id for s in await store.list_schedules()] == ids
    assert await revision(store) == before


async def test_cascade_deletes_the_schedules_with_tombstones_and_keeps_runs(
    store: Store,
) -> None:
    target, ids = await add_target_with_schedules(store, 2)
    survivor = make_schedule(None, name="pipeline-only")
    await store.insert_schedule(survivor)
    run = make_run(ids[0], T0, job=f"target:{target.id}")
    await store.insert_run(run)
    before = await revision(store)
    assert sorted(await store.delete_target(target.id, cascade=True)) == sorted(ids)
    with pytest.raises(NotFound):
        await store.get_target(target.id)
    assert [s.id for s in await store.list_schedules()] == [survivor.id]
    changes = await store.changed_schedules(before)
    assert sorted(changes.deleted) == sorted(ids) and changes.revision == before + 1
    assert [r.id for r in await store.list_runs(target_id=target.id)] == [run.id]


async def test_a_run_read_back_carries_its_target_id_and_a_pipeline_run_none(
    store: Store,
) -> None:
    """`target_id` comes from the stored job, so every read of a run has it (API Scheduler)."""
    target, (schedule_id,) = await add_target_with_schedules(store, 1)
    http_run = make_run(schedule_id, T0, job=f"target:{target.id}")
    pipeline_run = make_run(None, T0 + timedelta(minutes=1))
    for run in (http_run, pipeline_run):
        await store.insert_run(run)
    assert (await store.get_run(http_run.id)).target_id == target.id
    assert (await store.get_run(pipeline_run.id)).target_id is None
    listed = {run.id: run.target_id for run in await store.list_runs()}
    assert listed == {http_run.id: target.id, pipeline_run.id: None}
    assert http_run.as_dict()["target_id"] == target.id
    assert pipeline_run.as_dict()["target_id"] is None


async def test_an_unused_target_is_deleted_without_cascade(store: Store) -> None:
    target = make_target()
    await store.insert_target(target)
    assert await store.delete_target(target.id) == []
    assert await store.list_targets() == []


# Runs


async def test_runs_of_a_target_are_listed_newest_first_page_by_page(store: Store) -> None:
    target, (schedule_id,) = await add_target_with_schedules(store, 1)
    job = f"target:{target.id}"
    mine = [make_run(schedule_id, T0 + timedelta(minutes=n), job=job) for n in range(5)]
    for run in mine:
        await store.insert_run(run)
        await store.insert_run(make_run(None, run.scheduled_for, job="pipeline:etl"))
    newest_first = [r.id for r in reversed(mine)]
    assert [r.id for r in await store.list_runs(target_id=target.id)] == newest_first
    page = await store.list_runs(target_id=target.id, limit=2, offset=2)
    assert [r.id for r in page] == newest_first[2:4]
    assert len(await store.list_runs()) == 10
    assert [r.id for r in await store.list_runs(job=job, target_id=target.id)] == newest_first
    assert await store.list_runs(job="pipeline:etl", target_id=target.id) == []


async def test_list_runs_filters_by_schedule_status_and_since(store: Store) -> None:
    runs = [
        make_run("a", T0, RunStatus.SUCCEEDED),
        make_run("a", T0 + timedelta(minutes=1), RunStatus.FAILED),
        make_run("b", T0, RunStatus.FAILED),
    ]
    for run in runs:
        await store.insert_run(run)
    cutoff = datetime.now(UTC)
    late = make_run("a", T0 + timedelta(minutes=2), RunStatus.RUNNING)
    await store.insert_run(late)

    async def ids(**filters: Any) -> list[str]:
        return [r.id for r in await store.list_runs(**filters)]

    assert await ids(schedule_id="a") == [late.id, runs[1].id, runs[0].id]
    assert await ids(schedule_id="a", status=RunStatus.FAILED) == [runs[1].id]
    assert await ids(status=RunStatus.FAILED) == [runs[2].id, runs[1].id]
    assert await ids(since=cutoff) == [late.id]
    assert await ids(job="pipeline:etl", schedule_id="b") == [runs[2].id]


async def test_a_jobs_runs_are_counted_by_status_since_a_moment(store: Store) -> None:
    job = "target:t1"
    before = [make_run("a", T0, RunStatus.FAILED, job=job)]
    for run in before:
        await store.insert_run(run)
    cutoff = datetime.now(UTC)
    assert await store.count_job_runs(job, cutoff) == {}
    after = [
        make_run("a", T0 + timedelta(minutes=n), status, job=job)
        for n, status in enumerate(
            [RunStatus.SUCCEEDED, RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SKIPPED],
            start=1,
        )
    ]
    for run in [*after, make_run("b", T0, RunStatus.FAILED, job="target:other")]:
        await store.insert_run(run)
    assert await store.count_job_runs(job, cutoff) == {
        RunStatus.SUCCEEDED: 2,
        RunStatus.FAILED: 1,
        RunStatus.SKIPPED: 1,
    }
    everything = await store.count_job_runs(job, cutoff - timedelta(days=1))
    assert everything[RunStatus.FAILED] == 2


async def test_a_slot_is_one_run_and_a_run_keeps_its_steps(store: Store) -> None:
    run = make_run("a", T0, RunStatus.RUNNING)
    assert await store.insert_run(run)
    assert not await store.insert_run(replace(run, id=new_id()))
    step = StepResult(
        step="call",
        status=RunStatus.FAILED,
        started_at=T0,
        duration_ms=12,
        attempt=2,
        status_code=503,
        response_size=10,
        error_type=ErrorType.HTTP_5XX,
        error="503",
        output_tail=("busy",),
    )
    await store.insert_step_result(run.id, 0, step)
    await store.update_run(run.id, RunStatus.FAILED, finished_at=T0 + timedelta(seconds=1))
    stored = await store.get_run(run.id)
    assert stored.steps == (step,) and stored.status is RunStatus.FAILED


def claim(schedule_id: str, slot: datetime) -> Run:
    """A slot claimed ahead: pending, not started."""
    return replace(
        make_run(schedule_id, slot),
        status=RunStatus.PENDING,
        started_at=None,
        finished_at=None,
        job="target:t",
    )


async def test_claiming_many_slots_at_once_wins_only_the_free_ones(store: Store) -> None:
    """One claim write of many slots: the ids won are those whose slot was free."""
    taken = make_run("a", T0)
    assert await store.insert_run(taken)
    runs = [claim("a", T0), claim("a", T0 + timedelta(seconds=1)), claim("b", T0)]
    won = await store.claim_runs(runs)
    assert won == {runs[1].id, runs[2].id}
    assert await store.claim_runs([]) == set()
    pending = await store.list_runs(status=RunStatus.PENDING)
    assert {r.id for r in pending} == won
    assert all(r.started_at is None for r in pending)


async def test_a_claimed_run_starts_then_finishes_in_order(store: Store) -> None:
    """start_run is queued without waiting, and lands before the end written after it."""
    run = claim("a", T0)
    await store.claim_runs([run])
    store.start_run(run.id, T0 + timedelta(milliseconds=5))
    await store.finish_run(run.id, RunStatus.SUCCEEDED, finished_at=T0 + timedelta(seconds=1))
    stored = await store.get_run(run.id)
    assert stored.status is RunStatus.SUCCEEDED
    assert stored.started_at == T0 + timedelta(milliseconds=5)
    # A start that comes after the end (the run was skipped meanwhile) changes nothing.
    store.start_run(run.id, T0 + timedelta(seconds=2))
    await store.finish_run(run.id, RunStatus.SUCCEEDED, finished_at=T0 + timedelta(seconds=1))
    assert (await store.get_run(run.id)).started_at == T0 + timedelta(milliseconds=5)


async def test_an_end_may_carry_the_start_of_a_claimed_run(store: Store) -> None:
    """A claimed run that ended before its start was written gets both in one write."""
    run = claim("a", T0)
    await store.claim_runs([run])
    started, finished = T0 + timedelta(milliseconds=3), T0 + timedelta(milliseconds=20)
    await store.finish_run(run.id, RunStatus.SUCCEEDED, finished_at=finished, started_at=started)
    stored = await store.get_run(run.id)
    assert (stored.status, stored.started_at, stored.finished_at) == (
        RunStatus.SUCCEEDED,
        started,
        finished,
    )


async def test_releasing_claims_frees_their_slots_and_spares_started_runs(
    store: Store,
) -> None:
    """A released claim is gone and its slot free again; a started run is never released."""
    idle, started = claim("a", T0), claim("a", T0 + timedelta(seconds=1))
    await store.claim_runs([idle, started])
    store.start_run(started.id, T0)
    await store.release_claims([idle.id, started.id])
    assert {r.id for r in await store.list_runs()} == {started.id}
    assert await store.insert_run(make_run("a", T0))
    await store.release_claims([])


async def test_requested_runs_are_the_pending_manual_ones_not_the_claims(
    store: Store,
) -> None:
    """Pending runs someone asked for are listed for pick-up; slots claimed ahead are not."""
    await store.claim_runs([claim("a", T0 + timedelta(seconds=n)) for n in range(3)])
    manual = replace(
        make_run(None, T0),
        status=RunStatus.PENDING,
        trigger=Trigger.API,
        started_at=None,
        finished_at=None,
    )
    assert await store.insert_run(manual)
    assert [r.id for r in await store.list_requested_runs(limit=10)] == [manual.id]


async def test_orphaned_claims_fail_with_their_own_reason(store: Store) -> None:
    """After a crash a running run fails with the reason, a claimed slot with the claim
    reason; a pending manual run waits for the next daemon."""
    running = make_run("a", T0, RunStatus.RUNNING)
    claimed = claim("a", T0 + timedelta(seconds=1))
    manual = replace(
        make_run(None, T0),
        status=RunStatus.PENDING,
        trigger=Trigger.MANUAL,
        started_at=None,
        finished_at=None,
    )
    await insert_runs(store, [running, manual])
    await store.claim_runs([claimed])
    assert await store.fail_orphaned_runs("died", claimed_reason="claimed, died") == 2
    assert (await store.get_run(running.id)).error == "died"
    orphan = await store.get_run(claimed.id)
    assert orphan.status is RunStatus.FAILED and orphan.error == "claimed, died"
    assert (await store.get_run(manual.id)).status is RunStatus.PENDING


# Retention


async def insert_runs(store: Store, runs: list[Run]) -> None:
    for run in runs:
        assert await store.insert_run(run)


async def remaining(store: Store) -> set[str]:
    return {r.id for r in await store.list_runs(limit=10_000)}


async def test_purge_keeps_the_newest_finished_runs_per_schedule_and_every_unfinished_one(
    store: Store,
) -> None:
    slots = [T0 + timedelta(minutes=n) for n in range(6)]
    a = [make_run("a", s) for s in slots[:4]]
    a_running = make_run("a", slots[4], RunStatus.RUNNING)
    a_pending = make_run("a", slots[5], RunStatus.PENDING)
    b = [make_run("b", s, RunStatus.FAILED) for s in slots[:2]]
    manual = [make_run(None, s, job="pipeline:etl") for s in slots[:3]]
    manual_other = [make_run(None, slots[0], job="pipeline:other")]
    await insert_runs(store, [*a, a_running, a_pending, *b, *manual, *manual_other])
    assert await store.purge_runs(keep_per_schedule=2) == 2 + 0 + 1 + 0
    expected = {a[2].id, a[3].id, a_running.id, a_pending.id, b[0].id, b[1].id}
    assert await remaining(store) == expected | {manual[1].id, manual[2].id, manual_other[0].id}


async def test_purge_older_than_deletes_only_runs_finished_before_it(store: Store) -> None:
    old = make_run("a", T0, finished_at=T0 + timedelta(seconds=5))
    old_running = make_run("a", T0 + timedelta(minutes=1), RunStatus.RUNNING)
    recent = make_run("a", T0 + timedelta(minutes=2), finished_at=T0 + timedelta(days=2))
    await insert_runs(store, [old, old_running, recent])
    assert await store.purge_runs(older_than=T0 + timedelta(days=1)) == 1
    assert await remaining(store) == {old_running.id, recent.id}


async def test_purge_with_both_bounds_deletes_what_either_condemns(store: Store) -> None:
    runs = [make_run("a", T0 + timedelta(days=n)) for n in range(4)]
    await insert_runs(store, runs)
    deleted = await store.purge_runs(keep_per_schedule=3, older_than=T0 + timedelta(days=2))
    assert deleted == 2, "runs[0] is beyond the newest 3, runs[1] is too old"
    assert await remaining(store) == {runs[2].id, runs[3].id}


async def test_purge_takes_step_results_with_the_runs(
    sqlite_store: SQLiteStore, db_path: Path
) -> None:
    runs = [make_run("a", T0 + timedelta(minutes=n)) for n in range(2)]
    await insert_runs(sqlite_store, runs)
    for run in runs:
        step = StepResult(step="s", status=RunStatus.SUCCEEDED, started_at=T0, duration_ms=1)
        await sqlite_store.insert_step_result(run.id, 0, step)
    assert await sqlite_store.purge_runs(keep_per_schedule=1) == 1
    with sqlite3.connect(db_path) as db:
        left = db.execute("SELECT run_id FROM step_results").fetchall()
    assert left == [(runs[1].id,)]


async def test_purge_without_bounds_deletes_nothing(store: Store) -> None:
    await insert_runs(store, [make_run("a", T0)])
    assert await store.purge_runs() == 0
    assert await store.purge_runs(keep_per_schedule=1) == 0


def fill_runs(path: Path, schedules: int, per_schedule: int) -> None:
    """Bulk-load runs, one step result each, straight into the store's file, in time order;
    every 100th run of a schedule is still running."""
    runs, steps = [], []
    for k in range(per_schedule):
        slot = (T0 + timedelta(seconds=k)).isoformat(timespec="microseconds")
        status, finished = ("running", None) if k % 100 == 0 else ("succeeded", slot)
        for n in range(schedules):
            run_id = new_id()
            runs.append((run_id, f"s{n}", slot, status, slot, finished, slot))
            steps.append((run_id, slot))
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO runs (id, job, schedule_id, scheduled_for, trigger, status,"
            " started_at, finished_at, created_at)"
            " VALUES (?, 'pipeline:etl', ?, ?, 'schedule', ?, ?, ?, ?)",
            runs,
        )
        db.executemany(
            "INSERT INTO step_results (run_id, position, step, attempt, status, started_at,"
            " duration_ms) VALUES (?, 0, 'call', 1, 'succeeded', ?, 3)",
            steps,
        )
    db.close()  # `with` commits but does not close


async def test_purge_of_100k_runs(sqlite_store: SQLiteStore, db_path: Path) -> None:
    """Timing is printed, not asserted: 100 schedules x 1,000 runs, keep the newest 100."""
    fill_runs(db_path, schedules=100, per_schedule=1000)
    started = time.perf_counter()
    deleted = await sqlite_store.purge_runs(keep_per_schedule=100)
    first = time.perf_counter() - started
    started = time.perf_counter()
    assert await sqlite_store.purge_runs(keep_per_schedule=100) == 0
    again = time.perf_counter() - started
    print(
        f"\npurge of 100k runs: {deleted} deleted in {first * 1000:.0f} ms;"
        f" steady-state pass over the remaining {100_000 - deleted} in {again * 1000:.0f} ms"
    )
    # 990 finished runs per schedule, 100 kept; the 10 running ones stay too.
    assert deleted == 100 * 890
    with sqlite3.connect(db_path) as db:
        counts = db.execute(
            "SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM step_results)"
        )
        assert counts.fetchone() == (100_000 - deleted,) * 2
    db.close()


# Step process groups


async def test_step_groups_are_listed_while_their_run_is_unfinished(store: Store) -> None:
    """A step's recorded group is listed (with its leader's create time) while its run is
    pending or running, and forgotten once the run ends, however it ends."""
    running = make_run("s1", T0, RunStatus.RUNNING)
    ending = make_run("s1", T0 + timedelta(seconds=1), RunStatus.RUNNING)
    for run in (running, ending):
        assert await store.insert_run(run)
    await store.record_step_group(running.id, 4321, 1234.56)
    await store.record_step_group(ending.id, 4322, None)
    await store.record_step_group(running.id, 4323, 1240.5)
    assert await store.list_step_groups() == [
        StepGroup(running.id, 4321, 1234.56),
        StepGroup(ending.id, 4322, None),
        StepGroup(running.id, 4323, 1240.5),
    ]
    await store.update_run(ending.id, RunStatus.SUCCEEDED, finished_at=T0)
    assert [g.run_id for g in await store.list_step_groups()] == [running.id] * 2
    await store.fail_orphaned_runs("died")
    assert await store.list_step_groups() == []


# Schema upgrade and concurrency


async def test_a_version_1_database_is_upgraded_keeping_its_runs(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as db:
        db.executescript(load_queries("sqlite")["migration_1"])
        db.execute(
            "INSERT INTO runs (id, job, schedule_id, scheduled_for, trigger, status, created_at)"
            " VALUES ('r1', 'etl', 'interval:etl', ?, 'schedule', 'succeeded', ?)",
            (T0.isoformat(timespec="microseconds"),) * 2,
        )
        db.execute("PRAGMA user_version=1")
    db.close()
    store = await SQLiteStore.open(db_path)
    try:
        assert [r.id for r in await store.list_runs()] == ["r1"]
        await store.insert_schedule(make_schedule(None))
        assert (await store.changed_schedules(0)).revision == 1
    finally:
        await store.close()
    with sqlite3.connect(db_path) as db:
        # The newest schema version, whichever migration that is.
        latest = migrations(load_queries("sqlite"))[-1][0]
        assert db.execute("PRAGMA user_version").fetchone() == (latest,)
    db.close()


async def test_the_store_runs_in_wal_mode_with_a_busy_timeout(
    sqlite_store: SQLiteStore, db_path: Path
) -> None:
    """The store's own connection waits out a writer (busy_timeout) instead of failing at
    once, and the file is in WAL mode, which is persistent: a fresh connection sees it."""
    async with sqlite_store._db.execute("PRAGMA busy_timeout") as cursor:
        (busy_timeout,) = await cursor.fetchone() or (None,)
    assert busy_timeout == BUSY_TIMEOUT_MS and busy_timeout >= 1000
    async with sqlite_store._db.execute("PRAGMA journal_mode") as cursor:
        assert tuple(await cursor.fetchone() or ()) == ("wal",)
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()


async def test_stores_opening_a_new_file_at_once_all_open_it(tmp_path: Path) -> None:
    """Turning a new file to WAL fails at once while another opener holds it (no busy
    handler there), and two openers must not both create the tables; ten tries."""
    for attempt in range(10):
        path = tmp_path / f"new-{attempt}.db"
        stores = await asyncio.gather(*(SQLiteStore.open(path) for _ in range(4)))
        try:
            await stores[0].insert_schedule(make_schedule(None))
            assert len(await stores[3].list_schedules()) == 1
        finally:
            for opened in stores:
                await opened.close()


async def test_two_connections_write_at_once_without_locking_errors(db_path: Path) -> None:
    """The controller inserts and pauses schedules while the daemon records progress."""
    controller = await SQLiteStore.open(db_path)
    daemon = await SQLiteStore.open(db_path)
    try:
        target, ids = await add_target_with_schedules(controller, 50)

        async def define() -> None:
            for n in range(200):
                await controller.insert_schedule(make_schedule(target.id, name=f"new{n:04d}"))
                await controller.set_schedule_status(ids[n % 50], ScheduleStatus.ACTIVE)

        async def progress() -> None:
            for n in range(200):
                await daemon.record_progress([progress_for(i, n) for i in ids])
                await daemon.insert_run(make_run(ids[0], T0 + timedelta(seconds=n)))

        await asyncio.gather(define(), progress())
        schedules = await daemon.list_schedules(target_id=target.id, limit=1000)
        assert len(schedules) == 250
        assert {s.run_count for s in schedules if s.id in ids} == {199}
        assert (await daemon.changed_schedules(0)).revision == 50 + 200 + 200
    finally:
        await controller.close()
        await daemon.close()


async def test_a_write_cancelled_while_waiting_for_the_lock_leaves_no_transaction_open(
    sqlite_store: SQLiteStore, db_path: Path
) -> None:
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    task = asyncio.create_task(sqlite_store.insert_schedule(make_schedule(None, name="cancelled")))
    await asyncio.sleep(0.2)
    task.cancel()
    await asyncio.sleep(0.1)
    blocker.execute("ROLLBACK")
    with pytest.raises(asyncio.CancelledError):
        await task
    await sqlite_store.insert_schedule(make_schedule(None, name="after"))
    blocker.execute("BEGIN IMMEDIATE")  # the store let go of the write lock
    blocker.execute("ROLLBACK")
    blocker.close()
    assert [s.name for s in await sqlite_store.list_schedules()] == ["after"]


async def test_many_tasks_share_one_store_without_interleaving_transactions(
    store: Store,
) -> None:
    target, ids = await add_target_with_schedules(store, 10)
    tasks = [store.insert_schedule(make_schedule(target.id, name=f"t{n}")) for n in range(50)]
    tasks += [store.record_progress([progress_for(i, 3) for i in ids]) for _ in range(20)]
    tasks += [store.set_schedule_status(i, ScheduleStatus.PAUSED) for i in ids]
    await asyncio.gather(*tasks)
    with pytest.raises(Conflict):
        await store.insert_schedule(make_schedule(None, name="t1"))
    assert len(await store.list_schedules(limit=100)) == 60
    assert (await store.changed_schedules(0)).revision == 10 + 50 + 10


CONCURRENT_WRITES = 30

CHILD = """
import asyncio, sys
from datetime import UTC, datetime
from pathlib import Path
from cronmgr.store.records import Progress
from cronmgr.store import Store
from cronmgr.store.sqlite import SQLiteStore
from cronmgr.store.sqlite.connection import BUSY_TIMEOUT_MS

async def main(path, ids):
    store = await SQLiteStore.open(Path(path))
    print("ready", flush=True)
    writes = 0
    while writes < int(sys.argv[2]):  # a count, not a time: a loaded machine is slow
        now = datetime.now(UTC)
        await store.record_progress([Progress(i, writes, 0, now, now) for i in ids])
        writes += 1
    await store.close()
    print(writes, flush=True)

asyncio.run(main(sys.argv[1], sys.argv[3:]))
"""


async def test_a_daemon_process_records_progress_while_the_controller_writes(
    sqlite_store: SQLiteStore, db_path: Path
) -> None:
    target, ids = await add_target_with_schedules(sqlite_store, 20)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(db_path),
        str(CONCURRENT_WRITES),
        *ids,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    assert await child.stdout.readline() == b"ready\n"
    inserts = 0
    # Both sides write a fixed number of times, at once: each waits out the other's lock.
    while inserts < CONCURRENT_WRITES:
        await sqlite_store.insert_schedule(make_schedule(target.id, name=f"c{inserts:05d}"))
        inserts += 1
    child_writes = int(await child.stdout.readline())
    assert await child.wait() == 0
    assert inserts > 10 and child_writes > 10
    assert (await sqlite_store.get_schedule(ids[0])).run_count == child_writes - 1


async def test_an_unusable_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "not-a-db"
    path.write_bytes(b"this is not an SQLite database, just text" * 100)
    with pytest.raises(StoreError, match="cannot open the SQLite store"):
        await SQLiteStore.open(path)


async def test_many_targets_are_read_in_one_call(store: Store) -> None:
    """get_targets returns those that exist, by id; unknown ids are left out."""
    first, second = make_target("a"), make_target("b")
    for target in (first, second):
        await store.insert_target(target)
    found = await store.get_targets([first.id, second.id, "missing"])
    assert found == {first.id: first, second.id: second}
    assert await store.get_targets([]) == {}


async def test_an_sqlite_too_old_for_the_store_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(StoreError, match=r"needs SQLite 3\.35 or newer .* has 3\.31\.1"):
        await SQLiteStore.open(tmp_path / "cronmgr.db")
    assert not (tmp_path / "cronmgr.db").exists()


# Row mappings


async def stored_row(url: str, table: str) -> dict[str, Any]:
    """The one row of `table` in the store at `url`, by column (every column of the table)."""
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            db.row_factory = sqlite3.Row
            columns = [info["name"] for info in db.execute(f"PRAGMA table_info({table})")]
            (row,) = db.execute(f"SELECT * FROM {table}").fetchall()
        assert list(row.keys()) == columns
        return dict(row)
    connection = await asyncpg.connect(url)
    try:
        columns = await connection.fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            table,
        )
        (record,) = await connection.fetch(f"SELECT * FROM {table}")
    finally:
        await connection.close()
    assert list(record.keys()) == [c["column_name"] for c in columns]
    return dict(record)


async def test_schedule_row_mapping_covers_every_field_and_column(
    store: Store, store_url: str
) -> None:
    """Every Schedule field has a `schedules` column and every column a field, and a stored
    row read and written back is that row again, column by column: a field added without
    its column, or a column without its field, fails here."""
    target = make_target()
    await store.insert_target(target)
    await store.insert_schedule(make_schedule(target.id))
    row = await stored_row(store_url, "schedules")
    fields = [f.name for f in dataclasses.fields(Schedule)]
    assert set(row) == set(fields)
    assert tuple(fields) == SCHEDULE_COLUMNS
    assert _schedule_params(schedule_from_row(row)) == row


async def test_target_row_mapping_covers_every_stored_field_and_column(
    store: Store, store_url: str
) -> None:
    """As for schedules; `status_reason` alone is not stored: it is found when read."""
    await store.insert_target(make_target())
    row = await stored_row(store_url, "targets")
    fields = {f.name for f in dataclasses.fields(Target)}
    assert set(row) == fields - {"status_reason"}
    assert _target_params(target_from_row(row)) == row
