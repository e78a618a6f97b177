"""Group commit of run writes: many tasks' writes share transactions, each gets its answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cronmgr.models import Run, RunStatus, StepResult, Trigger, new_id, utcnow
from cronmgr.store.batch import Write, WriteBatcher
from cronmgr.store.sqlite import SQLiteStore

SLOT = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = await SQLiteStore.open(tmp_path / "cronmgr.db")
    yield opened
    await opened.close()


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
    store: SQLiteStore,
) -> None:
    """300 runs for 200 slots, all at once: exactly one claim per slot wins."""
    slots = [SLOT + timedelta(seconds=i) for i in range(200)]
    runs = [run_at(slot) for slot in slots] + [run_at(slot) for slot in slots[:100]]
    claimed = await asyncio.gather(*(store.insert_run(run) for run in runs))
    assert claimed == [True] * 200 + [False] * 100
    stored = await store.list_runs(schedule_id="s1", limit=500)
    assert {r.id for r in stored} == {r.id for r in runs[:200]}


async def test_steps_and_updates_of_many_runs_land_together(store: SQLiteStore) -> None:
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
