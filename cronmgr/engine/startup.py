"""What the daemon's start needs: the verdict it owes, its start schedule, the bulk load.

The controller that launched the daemon waits for one line on the ready pipe ("READY
<pid>" or "ERROR <why>"). The pipeline the daemon was started with runs on a schedule of
its own (`daemon-interval`), created or reset with each start; a daemon started without a
pipeline runs the schedules only, and pauses that schedule if an earlier start left it.
The schedules are loaded with the cyclic garbage collector held, then frozen.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from cronmgr.core.errors import InvalidInput, NotFound
from cronmgr.core.launch import ERROR_PREFIX, READY_PREFIX, LaunchSpec
from cronmgr.core.models import (
    FailurePolicy,
    MisfirePolicy,
    Schedule,
    ScheduleStatus,
    ScheduleType,
    utcnow,
)
from cronmgr.core.triggers.schedules import build_trigger
from cronmgr.engine.schedule_faults import check_spans, explain
from cronmgr.store import Store
from cronmgr.store.records import Progress

GC_YOUNG, GC_MIDDLE, GC_OLD = 700, 10, 1000
"""The collector's thresholds once loaded (Python's are 700, 10, 10)."""


class ReadyPipe:
    """The one-line verdict the daemon owes the controller that launched it."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def ok(self) -> None:
        """Say the daemon is ready."""
        self._send(READY_PREFIX + str(os.getpid()).encode())

    def fail(self, message: str) -> None:
        """Say why the daemon could not start (one line)."""
        self._send(ERROR_PREFIX + " ".join(message.split()).encode(errors="replace"))

    def _send(self, line: bytes) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._fd, line + b"\n")
            os.close(self._fd)
        self._fd = None


START_SCHEDULE_ID = "daemon-interval"
"""The schedule `POST /api/cron/start {"interval_seconds": N}` runs its pipeline on."""
SCHEDULES_ONLY_REASON = "the daemon was started without a pipeline: it runs the schedules only"


@contextmanager
def bulk_load() -> Iterator[None]:
    """Hold the cyclic garbage collector while the schedules load, then freeze them.

    Loading makes several objects per schedule and nothing cyclic to collect: each full
    collection on the way would walk everything loaded so far (a quarter of the start
    time with 100,000 schedules). Frozen, the loaded objects are skipped by later
    collections too; reference counting still frees them when a schedule changes.
    """
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
        # A full collection stalls the loop for milliseconds, and at a thousand runs a
        # second the default thresholds start one every few seconds: young cycles are
        # still collected as often as before, the old generation a hundredth as often.
        gc.set_threshold(GC_YOUNG, GC_MIDDLE, GC_OLD)


def start_schedule(spec: LaunchSpec, now: datetime) -> Schedule:
    """The schedule of the pipeline the daemon was started with: from now, every N s."""
    assert spec.pipeline is not None, "a daemon without a pipeline has no start schedule"
    return Schedule(
        id=START_SCHEDULE_ID,
        name=START_SCHEDULE_ID,
        schedule_type=ScheduleType.INTERVAL,
        pipeline=spec.pipeline,
        interval_seconds=float(spec.interval_seconds),
        start_at=now,
        misfire_policy=MisfirePolicy.SKIP,
        failure_policy=FailurePolicy.NONE,
        created_at=now,
        updated_at=now,
    )


async def ensure_start_schedule(store: Store, spec: LaunchSpec) -> None:
    """Create or reset the start schedule: first slot now, counters from zero; without a
    pipeline, pause the one an earlier start left."""
    if spec.pipeline is None:
        await _pause_start_schedule(store)
        return
    now = utcnow()
    try:  # the one schedule asked for with the start: refuse it, rather than set it aside
        schedule = start_schedule(spec, now)
        check_spans(schedule)
        build_trigger(schedule)
    except (ValueError, OverflowError) as exc:
        raise InvalidInput(f"the start interval can't be used: {explain(exc)}") from exc
    try:
        await store.get_schedule(START_SCHEDULE_ID)
    except NotFound:
        await store.insert_schedule(schedule)
        return
    await store.update_schedule(schedule)
    await store.set_schedule_status(START_SCHEDULE_ID, ScheduleStatus.ACTIVE)
    await store.record_progress([Progress(START_SCHEDULE_ID, 0, 0, None, now)])


async def _pause_start_schedule(store: Store) -> None:
    try:
        schedule = await store.get_schedule(START_SCHEDULE_ID)
    except NotFound:
        return
    if schedule.status is ScheduleStatus.ACTIVE:
        await store.set_schedule_status(
            START_SCHEDULE_ID, ScheduleStatus.PAUSED, SCHEDULES_ONLY_REASON
        )
