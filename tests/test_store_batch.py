"""Group commit of run writes: many tasks' writes share transactions, each gets its answer."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import until

from cronmgr.core.models import ErrorType, Run, RunStatus, StepResult, Trigger, new_id, utcnow
from cronmgr.store import Store
from cronmgr.store.batch import Write, WriteBatcher
from cronmgr.store.queries import load_queries
from cronmgr.store.relational.writes import WRITE_KINDS
from cronmgr.store.sqlite import SQLiteStore

SLOT = datetime(2030, 1, 1, tzinfo=UTC)


def run_at(slot: datetime, schedule_id: str = "s1") -> Run:
    return Run(
        id=new_id(),
        job="target:t1",
        schedule_id=schedule_id,
        scheduled_for=slot,
        trigger=Trigger.SCHEDULE,
        status=RunStatus.RUNNING,
        started_at=utcnow(),
    )


async def test_concurrent_claims_each_learn_whether_their_slot_was_free(
    store: Store,
) -> None:
    """300 runs for 200 slots, all at once: exactly one claim per slot wins."""
    slots = [SLOT + timedelta(seconds=i) for i in range(200)]
    runs = [run_at(slot) for slot in slots] + [run_at(slot) for slot in slots[:100]]
    claimed = await asyncio.gather(*(store.insert_run(run) for run in runs))
    assert claimed == [True] * 200 + [False] * 100
    stored = await store.list_runs(schedule_id="s1", limit=500)
    assert {r.id for r in stored} == {r.id for r in runs[:200]}


async def test_steps_and_updates_of_many_runs_land_together(store: Store) -> None:
    runs = [run_at(SLOT + timedelta(seconds=i)) for i in range(50)]
    await asyncio.gather(*(store.insert_run(run) for run in runs))
    result = StepResult(
        step="request", status=RunStatus.SUCCEEDED, started_at=utcnow(), duration_ms=3
    )
    await asyncio.gather(*(store.insert_step_result(run.id, 0, result) for run in runs))
    done = utcnow()
    await asyncio.gather(
        *(store.update_run(run.id, RunStatus.SUCCEEDED, finished_at=done) for run in runs)
    )
    for run in (runs[0], runs[-1]):
        stored = await store.get_run(run.id)
        assert stored.status is RunStatus.SUCCEEDED and stored.finished_at == done
        assert [s.step for s in stored.steps] == ["request"]


async def test_writes_queued_during_a_batch_go_in_the_next_one() -> None:
    """The first write goes alone, at once; those made while it is applied share one."""
    sizes: list[int] = []
    release = asyncio.Event()

    async def apply(writes: Sequence[Write]) -> list[int]:
        sizes.append(len(writes))
        if len(sizes) == 1:
            await release.wait()
        return [1] * len(writes)

    batcher = WriteBatcher(apply)
    first = asyncio.create_task(batcher.write("w", {}))
    for _ in range(10):  # a few turns of the loop: the write, then its drainer
        await asyncio.sleep(0)
    assert sizes == [1]
    others = [asyncio.create_task(batcher.write("w", {"n": n})) for n in range(20)]
    await asyncio.sleep(0)
    release.set()
    assert await first == 1 and await asyncio.gather(*others) == [1] * 20
    assert sizes == [1, 20]


async def test_a_failing_write_fails_alone() -> None:
    async def apply(writes: Sequence[Write]) -> list[int]:
        if any(w.params.get("bad") for w in writes):
            raise ValueError("bad write")
        return [1] * len(writes)

    batcher = WriteBatcher(apply)
    tasks = [asyncio.create_task(batcher.write("w", {"bad": n == 3})) for n in range(6)]
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert [isinstance(o, ValueError) for o in outcomes] == [n == 3 for n in range(6)]


async def test_a_cancelled_caller_does_not_lose_its_write(tmp_path: Path) -> None:
    """Cancelled while its write waits (a daemon stopping), the write still lands."""
    path = tmp_path / "cancel.db"
    store = await SQLiteStore.open(path)
    run = run_at(SLOT)
    task = asyncio.create_task(store.insert_run(run))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.close()  # flushes what is queued
    reopened = await SQLiteStore.open(path)
    try:
        assert (await reopened.get_run(run.id)).status is RunStatus.RUNNING
    finally:
        await reopened.close()


async def test_a_lingering_write_rides_along_with_the_next_urgent_one() -> None:
    """A run's end waits for the next claim, and both go in one batch."""
    batches: list[list[str]] = []

    async def apply(writes: Sequence[Write]) -> list[int]:
        batches.append([w.statement for w in writes])
        return [1] * len(writes)

    batcher = WriteBatcher(apply, linger_seconds=60.0)
    finish = asyncio.create_task(batcher.write_many([("step", {}), ("end", {})], linger=True))
    for _ in range(10):
        await asyncio.sleep(0)
    assert batches == [] and not finish.done()
    assert await batcher.write("claim", {}) == 1
    assert await finish == 1
    assert batches == [["step", "end", "claim"]]


async def test_lingering_writes_made_during_a_trip_wait_for_the_next_urgent_one() -> None:
    """Runs that end while a batch is applied do not make the next trip on their own:
    at a thousand runs a second that would be a transaction per run."""
    batches: list[list[str]] = []
    release = asyncio.Event()

    async def apply(writes: Sequence[Write]) -> list[int]:
        batches.append([w.statement for w in writes])
        if len(batches) == 1:
            await release.wait()
        return [1] * len(writes)

    batcher = WriteBatcher(apply, linger_seconds=60.0)
    claim = asyncio.create_task(batcher.write("claim", {}))
    for _ in range(10):
        await asyncio.sleep(0)
    ends = [
        asyncio.create_task(batcher.write_many([("end", {"n": n})], linger=True)) for n in range(3)
    ]
    await asyncio.sleep(0)
    release.set()
    assert await claim == 1
    for _ in range(10):
        await asyncio.sleep(0)
    assert batches == [["claim"]] and not any(end.done() for end in ends)
    assert await batcher.write("claim", {}) == 1
    assert await asyncio.gather(*ends) == [1, 1, 1]
    assert batches == [["claim"], ["end", "end", "end", "claim"]]


async def test_flush_during_a_trip_waits_for_the_writes_queued_behind_it() -> None:
    release = asyncio.Event()

    async def apply(writes: Sequence[Write]) -> list[int]:
        await release.wait()
        return [1] * len(writes)

    batcher = WriteBatcher(apply, linger_seconds=3600.0)
    claim = asyncio.create_task(batcher.write("claim", {}))
    await asyncio.sleep(0)
    end = asyncio.create_task(batcher.write_many([("end", {})], linger=True))
    await asyncio.sleep(0)
    flushed = asyncio.create_task(batcher.flush())
    await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(flushed, 10)
    assert claim.done() and end.done() and end.result() == 1


async def test_a_lingering_write_alone_goes_when_its_time_is_up() -> None:
    applied = asyncio.Event()

    async def apply(writes: Sequence[Write]) -> list[int]:
        applied.set()
        return [1] * len(writes)

    batcher = WriteBatcher(apply, linger_seconds=0.01)
    assert await asyncio.wait_for(batcher.write_many([("end", {})], linger=True), 10) == 1
    assert applied.is_set()


async def test_flush_sends_lingering_writes_at_once() -> None:
    async def apply(writes: Sequence[Write]) -> list[int]:
        return [1] * len(writes)

    batcher = WriteBatcher(apply, linger_seconds=3600.0)
    finish = asyncio.create_task(batcher.write_many([("end", {})], linger=True))
    await asyncio.sleep(0)
    await asyncio.wait_for(batcher.flush(), 10)
    assert finish.done() and finish.result() == 1


async def test_finish_run_records_the_last_attempt_and_the_end_together(
    store: Store,
) -> None:
    """The end's trigger counts the error class of the attempt written with it."""
    run = run_at(SLOT)
    assert await store.insert_run(run)
    attempt = StepResult(
        step="request",
        status=RunStatus.FAILED,
        started_at=utcnow(),
        duration_ms=3,
        status_code=503,
        error_type=ErrorType.HTTP_5XX,
        error="HTTP 503",
    )
    await store.finish_run(
        run.id, RunStatus.FAILED, finished_at=utcnow(), error="http_5xx", steps=[(0, attempt)]
    )
    stored = await store.get_run(run.id)
    assert stored.status is RunStatus.FAILED and stored.error == "http_5xx"
    assert [(s.status_code, s.error_type) for s in stored.steps] == [(503, ErrorType.HTTP_5XX)]
    summary = await store.metrics_summary(SLOT - timedelta(days=1))
    assert summary.lifetime[0].errors == {"http_5xx": 1}


async def test_a_closed_store_applies_what_was_queued_to_its_writer(tmp_path: Path) -> None:
    """close() waits for the writer thread: a lingering end is on disk afterwards."""
    path = tmp_path / "close.db"
    store = await SQLiteStore.open(path)
    run = run_at(SLOT)
    assert await store.insert_run(run)
    task = asyncio.ensure_future(
        store.finish_run(run.id, RunStatus.SUCCEEDED, finished_at=utcnow())
    )
    await asyncio.sleep(0)
    await store.close()
    assert task.done()
    reopened = await SQLiteStore.open(path)
    try:
        assert (await reopened.get_run(run.id)).status is RunStatus.SUCCEEDED
    finally:
        await reopened.close()


async def test_a_run_end_whose_waiter_is_cancelled_is_written_all_the_same(
    tmp_path: Path,
) -> None:
    """A run cancelled while it waits for its end to be committed is still recorded: the
    end and its attempt were queued when finish_run returned."""
    path = tmp_path / "cancelled.db"
    store = await SQLiteStore.open(path)
    run = run_at(SLOT)
    assert await store.insert_run(run)
    attempt = StepResult(
        step="request", status=RunStatus.CANCELLED, started_at=utcnow(), duration_ms=1
    )
    waiting = asyncio.ensure_future(
        store.finish_run(
            run.id,
            RunStatus.CANCELLED,
            finished_at=utcnow(),
            error="cancelled: the daemon is stopping",
            steps=[(0, attempt)],
        )
    )
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await store.close()
    reopened = await SQLiteStore.open(path)
    try:
        stored = await reopened.get_run(run.id)
        assert stored.status is RunStatus.CANCELLED
        assert [s.status for s in stored.steps] == [RunStatus.CANCELLED]
    finally:
        await reopened.close()


async def test_a_store_that_cannot_open_its_writer_says_so(tmp_path: Path) -> None:
    from cronmgr.store.writer import SyncWriter

    writer = SyncWriter(tmp_path / "missing" / "dir" / "x.db", 1.0, ())
    with pytest.raises(Exception, match="unable to open"):
        await writer.open()


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="a thread's own nice value is Linux only"
)
async def test_the_writer_thread_runs_nicer_than_the_event_loop(tmp_path: Path) -> None:
    from cronmgr.store.writer import WRITER_NICENESS, SyncWriter

    loop_thread = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, loop_thread)
    writer = SyncWriter(tmp_path / "x.db", 1.0, ())
    await writer.open()
    try:
        assert writer.native_id is not None and writer.native_id != loop_thread
        writer_nice = os.getpriority(os.PRIO_PROCESS, writer.native_id)
        assert writer_nice == min(19, before + WRITER_NICENESS)
        assert os.getpriority(os.PRIO_PROCESS, loop_thread) == before  # the loop is untouched
        assert await writer.call(lambda c: c.execute("select 1").fetchone()[0]) == 1
    finally:
        await writer.close()


class NoRoom(Exception):
    """What the store raises when its disk is full, for these batchers."""


async def test_with_no_room_records_wait_and_claims_fail_at_once() -> None:
    """Records (retry) are held through the outage and land after it; claims (retry=False)
    fail, at once while records are held, and go through again once the store has room."""
    full = True
    tried: list[list[str]] = []

    async def apply(writes: Sequence[Write]) -> list[int]:
        tried.append([w.statement for w in writes])
        if full:
            raise NoRoom("disk full")
        return [1] * len(writes)

    batcher = WriteBatcher(apply, no_room=NoRoom)
    # Claims alone: they fail, and nothing is held to try again.
    with pytest.raises(NoRoom):
        await batcher.write("claim", {}, retry=False)
    assert batcher.holding == 0
    end = asyncio.create_task(batcher.write("end", {}))
    await until(lambda: len(tried) >= 3)  # tried, paused, tried again: held
    assert not end.done() and batcher.holding == 1
    tries = len(tried)
    with pytest.raises(NoRoom):  # while a record is held, a claim does not wait its turn
        await batcher.write("claim", {}, retry=False)
    assert all("claim" not in batch for batch in tried[tries:])
    full = False
    assert await asyncio.wait_for(end, 10.0) == 1
    assert batcher.holding == 0
    assert await batcher.write("claim", {}, retry=False) == 1


async def test_a_closing_batcher_gives_held_records_up_after_a_while() -> None:
    async def apply(writes: Sequence[Write]) -> list[int]:
        raise NoRoom("disk full")

    batcher = WriteBatcher(apply, no_room=NoRoom)
    end = asyncio.create_task(batcher.write("end", {}))
    await until(lambda: batcher.holding == 1)
    await asyncio.wait_for(batcher.flush(give_up_after=0.3), 10.0)
    with pytest.raises(NoRoom):
        await end


def test_each_run_write_kind_has_a_query_and_a_place_of_its_own() -> None:
    """The run writes are one table: each kind names a query of sqlite.sql and has its own
    place in a batch; only a claim may change no row (its slot was taken)."""
    queries = load_queries("sqlite")
    assert {"record_step_group", "insert_run", "update_run"} <= set(WRITE_KINDS)
    assert all(kind.statement == name and name in queries for name, kind in WRITE_KINDS.items())
    orders = [kind.order for kind in WRITE_KINDS.values()]
    assert len(set(orders)) == len(orders)
    assert [name for name, kind in WRITE_KINDS.items() if kind.may_skip] == ["insert_run"]


async def test_a_step_group_and_its_runs_end_in_one_batch_leave_no_group(
    store: Store,
) -> None:
    """A group is recorded before an end written in the same batch, whose trigger then
    forgets it: it is never left behind for an ended run."""
    run = run_at(SLOT)
    assert await store.insert_run(run)
    await asyncio.gather(
        store.record_step_group(run.id, 4321, 12.5),
        store.update_run(run.id, RunStatus.SUCCEEDED, finished_at=utcnow()),
    )
    assert await store.list_step_groups() == []
