"""The engine's timing and policies, in-process, with a job runner that records calls.

`Recorder` implements the engine's `Jobs` protocol honestly (it records, it can block,
it returns the status it is told to); everything else is the real Scheduler with the
real triggers and the real clock, at sub-second intervals.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import pytest
import structlog

from cronmgr.core.models import (
    FailurePolicy,
    MisfirePolicy,
    OverlapPolicy,
    RunStatus,
    Schedule,
    ScheduleStatus,
    ScheduleType,
    new_id,
    utcnow,
)
from cronmgr.core.triggers.schedules import jitter_offset
from cronmgr.engine.policies import MISSED_DOWN_REASON, OVERLAP_REASON, QUEUE_LIMIT
from cronmgr.engine.scheduler import Scheduler
from cronmgr.engine.table import STALE_SLACK
from cronmgr.store.records import Progress, ScheduleChanges


@dataclass
class Recorder:
    """Runs nothing; remembers every run and skip, and returns `status`."""

    status: RunStatus = RunStatus.SUCCEEDED
    gate: asyncio.Event | None = None
    runs: list[tuple[str, datetime]] = field(default_factory=list)
    fired_at: list[float] = field(default_factory=list)  # wall clock of each run's start
    skips: list[tuple[str, datetime, str]] = field(default_factory=list)
    cancelled: list[tuple[datetime, str]] = field(default_factory=list)
    # Runs of a job started outside the engine (manual runs), as JobRunner counts them.
    elsewhere: dict[str, int] = field(default_factory=dict)
    cancelled_elsewhere: list[tuple[str, str]] = field(default_factory=list)

    def busy(self, job: str) -> bool:
        return self.elsewhere.get(job, 0) > 0

    def cancel(self, job: str, reason: str) -> int:
        count = self.elsewhere.pop(job, 0)
        if count:
            self.cancelled_elsewhere.append((job, reason))
        return count

    # Slots claimed ahead, released, and the claims handed back with a run or a skip.
    claimed: list[tuple[str, datetime]] = field(default_factory=list)
    released: list[tuple[str, datetime]] = field(default_factory=list)
    used: list[tuple[str, datetime]] = field(default_factory=list)

    def claim_ahead(self, slots: Sequence[tuple[Schedule, datetime]]) -> list[tuple[str, datetime]]:
        claims = [(schedule.id, slot) for schedule, slot in slots]
        self.claimed += claims
        return claims

    async def release(self, claims: Sequence[tuple[str, datetime]]) -> None:
        self.released += claims

    async def run(
        self, schedule: Schedule, slot: datetime, claim: tuple[str, datetime] | None = None
    ) -> RunStatus | None:
        if claim is not None:
            assert claim == (schedule.id, slot), "a claim came back with another slot"
            self.used.append(claim)
        self.runs.append((schedule.id, slot))
        self.fired_at.append(time.time())
        if self.gate is not None:
            try:
                await self.gate.wait()
            except asyncio.CancelledError as exc:
                self.cancelled.append((slot, str(exc.args[0]) if exc.args else ""))
                raise
        return self.status

    async def skip(
        self,
        schedule: Schedule,
        slot: datetime,
        reason: str,
        claim: tuple[str, datetime] | None = None,
    ) -> None:
        if claim is not None:
            assert claim == (schedule.id, slot), "a claim came back with another slot"
            self.used.append(claim)
        self.skips.append((schedule.id, slot, reason))


@dataclass
class Engine:
    """A scheduler with its recorder and the progress it saved."""

    scheduler: Scheduler
    jobs: Recorder
    progress: list[Progress]

    def add(self, *schedules: Schedule) -> None:
        self.scheduler.apply(ScheduleChanges(list(schedules), [], 1))

    def last_progress(self, schedule_id: str) -> Progress | None:
        found = [p for p in self.progress if p.schedule_id == schedule_id]
        return found[-1] if found else None


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    """A running scheduler whose bookkeeping lands in a list."""
    saved: list[Progress] = []

    async def save(batch: list[Progress]) -> None:
        saved.extend(batch)

    jobs = Recorder()
    scheduler = Scheduler(jobs, save)
    writer = asyncio.create_task(scheduler.progress_writer())
    yield Engine(scheduler, jobs, saved)
    scheduler.stop_firing()
    if jobs.gate is not None:
        jobs.gate.set()
    await scheduler.drain(1.0)
    writer.cancel()
    await asyncio.gather(writer, return_exceptions=True)


def interval(seconds: float, **fields: Any) -> Schedule:
    """An active interval schedule starting now unless told otherwise."""
    now = utcnow()
    values: dict[str, Any] = {"start_at": now, "created_at": now}
    values.update(fields)
    return Schedule(
        id=values.pop("id", new_id()),
        name=values.pop("name", "s"),
        schedule_type=ScheduleType.INTERVAL,
        pipeline=values.pop("pipeline", "p"),
        interval_seconds=seconds,
        **values,
    )


async def until(predicate: Any, timeout: float = 5.0) -> None:
    """Poll `predicate` on the loop until true; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        await asyncio.sleep(0.01)


async def test_interval_slots_fire_once_each_on_the_anchor(engine: Engine) -> None:
    """Slots are anchor + k·interval, each fired once, in order."""
    schedule = interval(0.1)
    engine.add(schedule)
    await until(lambda: len(engine.jobs.runs) >= 5)
    slots = [slot for _, slot in engine.jobs.runs]
    assert len(set(slots)) == len(slots)
    assert all(
        (slot - schedule.start_at).total_seconds() == pytest.approx(0.1 * i, abs=1e-6)
        for i, slot in enumerate(slots)
        if schedule.start_at
    )


async def test_max_runs_completes_the_schedule(engine: Engine) -> None:
    """After max_runs runs, no more firing and the schedule is completed."""
    schedule = interval(0.05, max_runs=3)
    engine.add(schedule)
    await until(lambda: (p := engine.last_progress(schedule.id)) is not None and p.status)
    await asyncio.sleep(0.2)
    assert len(engine.jobs.runs) == 3
    progress = engine.last_progress(schedule.id)
    assert progress is not None and progress.status is ScheduleStatus.COMPLETED
    assert progress.run_count == 3 and "max_runs" in (progress.status_reason or "")


async def test_window_end_completes_the_schedule(engine: Engine) -> None:
    """Slots after end_at are not fired; the schedule completes."""
    start = utcnow()
    schedule = interval(0.1, start_at=start, end_at=start + timedelta(seconds=0.25))
    engine.add(schedule)
    await until(lambda: (p := engine.last_progress(schedule.id)) is not None and p.status)
    assert len(engine.jobs.runs) == 3  # 0.0, 0.1, 0.2


async def test_overlap_skip_records_the_skipped_slots(engine: Engine) -> None:
    """While a run is going, new slots are recorded as skipped (the default policy)."""
    engine.jobs.gate = asyncio.Event()
    schedule = interval(0.05)
    engine.add(schedule)
    await until(lambda: len(engine.jobs.skips) >= 3)
    assert len(engine.jobs.runs) == 1
    assert {reason for *_, reason in engine.jobs.skips} == {"previous run still running"}


async def test_edits_do_not_pile_up_stale_timer_items(engine: Engine) -> None:
    """A schedule edited over and over leaves its old timer items behind, to be skipped
    when due; past a bound the heap is rebuilt without them. (The heap itself is what is
    tested, hence the private attribute.)"""
    schedule = interval(3600.0, start_at=utcnow() + timedelta(hours=1))
    for k in range(2 * STALE_SLACK):
        edited = replace(schedule, interval_seconds=3600.0 + k)
        engine.scheduler.apply(ScheduleChanges([edited], [], k + 2))
    assert len(engine.scheduler._heap) <= 2 + STALE_SLACK
    (upcoming,) = engine.scheduler.next_runs()
    assert upcoming["schedule_id"] == schedule.id


async def test_overlap_queue_runs_waiting_slots_in_order(engine: Engine) -> None:
    """Queued slots run one after another once the blocking run ends."""
    engine.jobs.gate = asyncio.Event()
    schedule = interval(0.05, overlap_policy=OverlapPolicy.QUEUE)
    engine.add(schedule)
    await asyncio.sleep(0.2)
    assert len(engine.jobs.runs) == 1
    engine.jobs.gate.set()
    await until(lambda: len(engine.jobs.runs) >= 4)
    slots = [slot for _, slot in engine.jobs.runs]
    assert slots == sorted(slots) and not engine.jobs.skips


async def test_overlap_allow_runs_concurrently(engine: Engine) -> None:
    """With allow, every slot starts even while earlier runs still go."""
    engine.jobs.gate = asyncio.Event()
    engine.add(interval(0.05, overlap_policy=OverlapPolicy.ALLOW))
    await until(lambda: len(engine.jobs.runs) >= 3)
    assert engine.scheduler.active_runs() >= 3


async def test_overlap_replace_cancels_the_running_one(engine: Engine) -> None:
    """With replace, the running run is cancelled, saying why, and the new slot starts."""
    engine.jobs.gate = asyncio.Event()
    engine.add(interval(0.1, overlap_policy=OverlapPolicy.REPLACE))
    await until(lambda: len(engine.jobs.cancelled) >= 2)
    assert engine.jobs.cancelled[0][1] == "replaced by a newer run"
    # A replaced run leaves once its cancellation has gone through: never two at rest.
    await until(lambda: engine.scheduler.active_runs() == 1)


async def test_a_manual_run_of_the_job_makes_the_slot_overlap(engine: Engine) -> None:
    """A run of the same pipeline started by hand counts as running for `skip`."""
    engine.jobs.elsewhere["pipeline:p"] = 1
    engine.add(interval(0.05))
    await until(lambda: len(engine.jobs.skips) >= 2)
    assert engine.jobs.runs == []
    engine.jobs.elsewhere.clear()
    await until(lambda: len(engine.jobs.runs) >= 1)


async def test_replace_cancels_a_manual_run_of_the_job_too(engine: Engine) -> None:
    engine.jobs.elsewhere["pipeline:p"] = 1
    engine.add(interval(0.05, overlap_policy=OverlapPolicy.REPLACE))
    await until(lambda: len(engine.jobs.runs) >= 1)
    assert engine.jobs.cancelled_elsewhere == [("pipeline:p", "replaced by a newer run")]


async def test_a_slot_skipped_late_says_how_late_not_overlap(engine: Engine) -> None:
    """A slot the engine gets to beyond its misfire grace while a run is going (a stalled
    loop) is skipped saying how late it was; on-time slots behind the run say overlap."""
    engine.jobs.gate = asyncio.Event()
    engine.add(interval(0.05, misfire_grace_seconds=0.1))
    await until(lambda: len(engine.jobs.runs) == 1)
    time.sleep(0.4)  # the stall itself, not a wait: the loop runs nothing meanwhile
    await until(lambda: any(reason == OVERLAP_REASON for *_, reason in engine.jobs.skips))
    reasons = [reason for *_, reason in engine.jobs.skips]
    late = [r for r in reasons if r != OVERLAP_REASON]
    assert late and all(r.startswith("missed: ") for r in late)
    assert all(r.endswith(" s late, beyond the misfire grace of 0.1 s") for r in late)
    assert MISSED_DOWN_REASON not in reasons  # every slot came after the engine started


@pytest.mark.parametrize(
    ("policy", "expected_runs"),
    [(MisfirePolicy.SKIP, 0), (MisfirePolicy.RUN_ONCE, 1), (MisfirePolicy.CATCH_UP, 3)],
)
async def test_misfire_policies_after_an_outage(
    engine: Engine, policy: MisfirePolicy, expected_runs: int
) -> None:
    """Slots missed during an outage: skipped, run once, or caught up (capped)."""
    now = utcnow()
    schedule = interval(
        60,
        start_at=now - timedelta(hours=1, seconds=30),
        last_run_at=now - timedelta(hours=1, seconds=30),
        misfire_policy=policy,
        catch_up_max=3,
    )
    engine.add(schedule)
    await until(lambda: bool(engine.jobs.skips))
    await until(lambda: engine.last_progress(schedule.id) is not None)
    assert len(engine.jobs.runs) == expected_runs
    ran = [slot for _, slot in engine.jobs.runs]
    assert all(now - timedelta(minutes=4) < slot <= now for slot in ran)
    assert ran == sorted(ran)
    (skip,) = engine.jobs.skips
    assert f"missed {60 - expected_runs} slot(s)" in skip[2]
    progress = engine.last_progress(schedule.id)
    assert progress is not None and progress.next_run_at is not None
    assert progress.next_run_at > now


async def test_failures_disable_the_schedule_at_the_threshold(engine: Engine) -> None:
    """N consecutive failed runs disable the schedule with a reason."""
    engine.jobs.status = RunStatus.FAILED
    schedule = interval(0.05, failure_threshold=2, failure_policy=FailurePolicy.DISABLE)
    engine.add(schedule)
    await until(
        lambda: (
            (p := engine.last_progress(schedule.id)) is not None
            and p.status is ScheduleStatus.DISABLED
        )
    )
    await asyncio.sleep(0.2)
    assert len(engine.jobs.runs) == 2
    progress = engine.last_progress(schedule.id)
    assert progress is not None and "2 consecutive failed runs" in (progress.status_reason or "")


async def test_circuit_breaker_skips_while_open_then_tries_again(engine: Engine) -> None:
    """Open circuit: slots skipped for the cool-down, then one half-open try."""
    engine.jobs.status = RunStatus.FAILED
    schedule = interval(
        0.05,
        failure_threshold=2,
        failure_policy=FailurePolicy.CIRCUIT_BREAKER,
        cooldown_seconds=0.3,
    )
    engine.add(schedule)
    await until(lambda: len(engine.jobs.runs) >= 2)
    await until(lambda: any("circuit open" in s[2] for s in engine.jobs.skips))
    engine.jobs.status = RunStatus.SUCCEEDED
    await until(lambda: len(engine.jobs.runs) >= 3, timeout=3)
    await until(lambda: len(engine.jobs.runs) >= 5, timeout=3)
    await until(lambda: (p := engine.last_progress(schedule.id)) is not None and p.run_count >= 5)
    progress = engine.last_progress(schedule.id)
    assert progress is not None and progress.consecutive_failures == 0
    assert progress.circuit_open_until is None


async def test_deleted_and_paused_schedules_stop_firing(engine: Engine) -> None:
    """A deletion or a pause applied while running takes effect at once."""
    first, second = interval(0.05, name="a"), interval(0.05, name="b")
    engine.add(first, second)
    await until(lambda: len(engine.jobs.runs) >= 4)
    engine.scheduler.apply(
        ScheduleChanges([dataclasses.replace(second, status=ScheduleStatus.PAUSED)], [first.id], 2)
    )
    count = len(engine.jobs.runs)
    await asyncio.sleep(0.3)
    assert len(engine.jobs.runs) == count


async def test_resume_plans_from_now_without_misfires(engine: Engine) -> None:
    """Resuming a paused schedule does not make up for the paused slots."""
    schedule = interval(0.05)
    engine.add(schedule)
    await until(lambda: len(engine.jobs.runs) >= 2)
    paused = dataclasses.replace(schedule, status=ScheduleStatus.PAUSED)
    engine.scheduler.apply(ScheduleChanges([paused], [], 2))
    await asyncio.sleep(0.3)
    before = len(engine.jobs.runs)
    engine.scheduler.apply(ScheduleChanges([schedule], [], 3))
    await until(lambda: len(engine.jobs.runs) >= before + 2)
    assert not engine.jobs.skips
    assert len(engine.jobs.runs) <= before + 3


async def test_once_fires_once_then_completes(engine: Engine) -> None:
    """A once schedule runs at its moment, then is completed."""
    now = utcnow()
    schedule = Schedule(
        id=new_id(),
        name="once",
        schedule_type=ScheduleType.ONCE,
        pipeline="p",
        run_at=now + timedelta(seconds=0.1),
        created_at=now,
    )
    engine.add(schedule)
    await until(
        lambda: (
            (p := engine.last_progress(schedule.id)) is not None
            and p.status is ScheduleStatus.COMPLETED
        )
    )
    assert [slot for _, slot in engine.jobs.runs] == [schedule.run_at]


async def test_drain_cancels_runs_past_the_grace(engine: Engine) -> None:
    """Stop: no new firing; runs past the grace are cancelled."""
    engine.jobs.gate = asyncio.Event()
    engine.add(interval(10))
    await until(lambda: len(engine.jobs.runs) == 1)
    engine.scheduler.stop_firing()
    assert await engine.scheduler.drain(0.05) == 1
    assert engine.jobs.cancelled[0][1] == "the daemon is stopping"


async def test_queue_full_skips_slots_beyond_the_limit_saying_so(engine: Engine) -> None:
    """Behind a blocked run at most QUEUE_LIMIT slots wait; the next one is recorded skipped
    as "queue full", and the waiting ones still run in order once the run ends."""
    engine.jobs.gate = asyncio.Event()
    schedule = interval(0.02, overlap_policy=OverlapPolicy.QUEUE)
    engine.add(schedule)
    await until(lambda: bool(engine.jobs.skips))
    assert len(engine.jobs.runs) == 1
    _, skipped_slot, reason = engine.jobs.skips[0]
    assert reason == f"queue full ({QUEUE_LIMIT} runs waiting)" == "queue full (10 runs waiting)"
    assert schedule.start_at is not None
    assert skipped_slot == schedule.start_at + timedelta(seconds=0.02 * (QUEUE_LIMIT + 1))
    assert engine.scheduler.queued_slots() == QUEUE_LIMIT  # the status's queue depth
    engine.jobs.gate.set()
    await until(lambda: len(engine.jobs.runs) >= QUEUE_LIMIT + 1)
    await until(lambda: engine.scheduler.queued_slots() < QUEUE_LIMIT)
    ran = [slot for _, slot in engine.jobs.runs[: QUEUE_LIMIT + 1]]
    assert ran == [schedule.start_at + timedelta(seconds=0.02 * k) for k in range(QUEUE_LIMIT + 1)]


async def test_a_failed_half_open_try_reopens_the_circuit(engine: Engine) -> None:
    """After the cool-down one try goes through; when it fails too, the circuit opens again
    for a new cool-down: slots are skipped before the next try."""
    engine.jobs.status = RunStatus.FAILED
    schedule = interval(
        0.05,
        failure_threshold=2,
        failure_policy=FailurePolicy.CIRCUIT_BREAKER,
        cooldown_seconds=0.5,  # longer than a progress flush, so each opening is saved
    )
    engine.add(schedule)

    def opened_after_runs(count: int) -> datetime | None:
        progress = [p for p in engine.progress if p.schedule_id == schedule.id]
        found = [p for p in progress if p.run_count == count and p.circuit_open_until]
        return found[-1].circuit_open_until if found else None

    await until(lambda: opened_after_runs(2) is not None, timeout=3)
    await until(lambda: len(engine.jobs.runs) >= 4, timeout=3)
    first_open, reopened = opened_after_runs(2), opened_after_runs(3)
    assert first_open is not None and reopened is not None and reopened > first_open
    third, fourth = engine.jobs.runs[2][1], engine.jobs.runs[3][1]
    between = [why for _, slot, why in engine.jobs.skips if third < slot < fourth]
    assert between and set(between) == {"circuit open after failures"}
    progress = engine.last_progress(schedule.id)
    assert progress is not None and progress.consecutive_failures >= 3


async def test_jitter_delays_the_firing_but_not_the_slot(engine: Engine) -> None:
    """Each firing waits its deterministic jitter offset; the run's slot stays nominal."""
    jitter = 0.5
    start = utcnow()
    # An id whose first two offsets are large enough that firing on the slot would show.
    schedule_id = next(
        candidate
        for candidate in (new_id() for _ in range(1000))
        if all(jitter_offset(candidate, start + timedelta(seconds=k), jitter) > 0.2 for k in (0, 1))
    )
    schedule = interval(1.0, id=schedule_id, start_at=start, jitter_seconds=jitter)
    engine.add(schedule)
    await until(lambda: len(engine.jobs.runs) >= 2, timeout=5)
    for k, ((_, slot), fired) in enumerate(
        zip(engine.jobs.runs[:2], engine.jobs.fired_at[:2], strict=True)
    ):
        assert slot == start + timedelta(seconds=k)
        # Not before slot + offset (a millisecond for the two clocks the loop and we read).
        assert fired >= slot.timestamp() + jitter_offset(schedule_id, slot, jitter) - 0.001


async def test_duration_seconds_completes_the_schedule_after_its_window(engine: Engine) -> None:
    """Slots up to start + duration_seconds run; then the schedule is completed, saying its
    window ended."""
    start = utcnow()
    schedule = interval(0.1, start_at=start, duration_seconds=0.35)
    engine.add(schedule)
    await until(
        lambda: (
            (p := engine.last_progress(schedule.id)) is not None
            and p.status is ScheduleStatus.COMPLETED
        )
    )
    assert [slot for _, slot in engine.jobs.runs] == [
        start + timedelta(seconds=0.1 * k) for k in range(4)
    ]
    progress = engine.last_progress(schedule.id)
    assert progress is not None and "its window ended" in (progress.status_reason or "")
    assert progress.next_run_at is None


# --- claiming target slots ahead ----------------------------------------------------------


def target_interval(seconds: float, **fields: Any) -> Schedule:
    """An interval schedule of an HTTP target (whose slots are claimed ahead)."""
    return interval(seconds, pipeline=None, target_id="t", **fields)


async def test_target_slots_are_claimed_ahead_and_run_with_their_claims(engine: Engine) -> None:
    """A target's next slot is claimed before its time and its run gets that claim back; a
    pipeline's slots are claimed only as they fire."""
    target, pipeline = target_interval(0.2), interval(0.2)
    engine.add(target, pipeline)
    await until(lambda: sum(1 for s, _ in engine.jobs.runs if s == target.id) >= 4)
    fired = [run for run in engine.jobs.runs if run[0] == target.id]
    # The first slot may fire before its claim wakes; every later one was claimed ahead.
    assert set(fired[1:]) <= set(engine.jobs.used)
    assert {schedule_id for schedule_id, _ in engine.jobs.claimed} == {target.id}
    assert len(set(engine.jobs.claimed)) == len(engine.jobs.claimed), "a slot claimed twice"
    # The slot after the last fired one is claimed already, before its time.
    last = max(slot for _, slot in fired)
    await until(lambda: (target.id, last + timedelta(seconds=0.2)) in engine.jobs.claimed)
    assert not engine.jobs.released


@pytest.mark.parametrize("change", ["pause", "edit", "delete"])
async def test_a_changed_schedule_releases_its_claimed_slot(engine: Engine, change: str) -> None:
    """Pausing, editing or deleting a schedule gives back the slot it claimed ahead; the
    slot is not run under the old definition (an edited one plans it anew)."""
    start = utcnow() + timedelta(seconds=0.3)
    schedule = target_interval(10, start_at=start)
    engine.add(schedule)
    await until(lambda: (schedule.id, start) in engine.jobs.claimed)
    if change == "pause":
        changes = ScheduleChanges([replace(schedule, status=ScheduleStatus.PAUSED)], [], 2)
    elif change == "edit":
        changes = ScheduleChanges([replace(schedule, name="renamed")], [], 2)
    else:
        changes = ScheduleChanges([], [schedule.id], 2)
    engine.scheduler.apply(changes)
    await until(lambda: (schedule.id, start) in engine.jobs.released)
    if change == "edit":
        await until(lambda: engine.jobs.runs == [(schedule.id, start)])
    else:
        await until(lambda: utcnow() > start + timedelta(seconds=0.1))
        assert engine.jobs.runs == []


async def test_drain_releases_claimed_slots_that_did_not_fire(engine: Engine) -> None:
    """A stopping engine gives back the slots it claimed ahead, for the next daemon."""
    start = utcnow() + timedelta(seconds=0.3)
    schedule = target_interval(10, start_at=start)
    engine.add(schedule)
    await until(lambda: (schedule.id, start) in engine.jobs.claimed)
    engine.scheduler.stop_firing()
    await engine.scheduler.drain(1.0)
    assert engine.jobs.released == [(schedule.id, start)]
    assert engine.jobs.runs == []


async def test_a_skipped_slot_ends_its_claim(engine: Engine) -> None:
    """A claimed slot skipped by the overlap policy is handed back with the skip."""
    engine.jobs.gate = asyncio.Event()
    schedule = target_interval(0.1)
    engine.add(schedule)
    await until(lambda: len(engine.jobs.skips) >= 3)
    skipped = [(schedule_id, slot) for schedule_id, slot, _ in engine.jobs.skips]
    assert set(skipped) <= set(engine.jobs.used)


async def test_a_schedule_whose_times_cant_be_computed_goes_to_error_alone(
    engine: Engine,
) -> None:
    """Each bad schedule is set aside with status `error` and its reason, and logged once;
    the good one fires on. Resumed still broken, it goes back to error; fixed, it fires."""
    good = interval(0.1)
    huge = interval(1e308)
    late = interval(0.1, misfire_grace_seconds=1e300)
    with structlog.testing.capture_logs() as logs:
        engine.add(good, huge, late)
        await until(lambda: len(engine.jobs.runs) >= 3)
        await until(lambda: engine.last_progress(late.id) is not None)
    assert {schedule_id for schedule_id, _ in engine.jobs.runs} == {good.id}
    errors = {e["schedule_id"]: e["reason"] for e in logs if e["event"] == "schedule_error"}
    assert errors == {
        huge.id: "its next time can't be computed: interval 1e+308 s is out of range",
        late.id: "its next time can't be computed: misfire grace 1e+300 s is out of range",
    }
    for schedule_id, reason in errors.items():
        saved = engine.last_progress(schedule_id)
        assert saved is not None and saved.status is ScheduleStatus.ERROR
        assert saved.status_reason == reason and saved.next_run_at is None
    engine.progress.clear()
    engine.scheduler.apply(ScheduleChanges([replace(late, revision=2)], [], 2))  # resumed
    await until(lambda: engine.last_progress(late.id) is not None)
    again = engine.last_progress(late.id)
    assert again is not None and again.status is ScheduleStatus.ERROR
    engine.scheduler.apply(ScheduleChanges([replace(late, misfire_grace_seconds=60)], [], 3))
    await until(lambda: late.id in {schedule_id for schedule_id, _ in engine.jobs.runs})


@pytest.mark.parametrize(
    ("policy", "expected_runs"),
    [(MisfirePolicy.SKIP, 0), (MisfirePolicy.RUN_ONCE, 1), (MisfirePolicy.CATCH_UP, 3)],
)
async def test_a_takeover_gap_follows_the_misfire_policy_one_record_per_slot(
    engine: Engine, policy: MisfirePolicy, expected_runs: int
) -> None:
    """The slots a schedule taken over from a lost node missed (here 8, well inside the
    misfire grace) follow its misfire policy: the latest run, every other one is recorded
    skipped with the takeover's reason, and none is called an overlap."""
    now = utcnow()
    last = now - timedelta(seconds=8.5)
    schedule = interval(
        1,
        start_at=last - timedelta(seconds=60),
        last_run_at=last,
        misfire_policy=policy,
        catch_up_max=3,
    )
    engine.scheduler.apply(ScheduleChanges([schedule], [], 0), taken_over="moved here")
    await until(lambda: len(engine.jobs.skips) + len(engine.jobs.runs) >= 8)
    gap = [last + timedelta(seconds=n) for n in range(1, 9)]
    ran = [slot for _, slot in engine.jobs.runs if slot < now]
    assert ran == gap[len(gap) - expected_runs :]
    skipped = {slot: reason for _, slot, reason in engine.jobs.skips}
    assert sorted(skipped) == gap[: len(gap) - expected_runs]
    assert set(skipped.values()) <= {"moved here"}
    progress = engine.last_progress(schedule.id)
    assert progress is None or progress.next_run_at is None or progress.next_run_at > now


async def test_a_slot_behind_a_takeovers_late_run_says_what_ran_late(engine: Engine) -> None:
    """The first on-time slot after a takeover, coming while the late run of the gap's
    slot still goes on, is skipped by the overlap rule saying that run is a catch-up."""
    engine.jobs.gate = asyncio.Event()
    now = utcnow()
    last = now - timedelta(seconds=2.5)
    schedule = interval(1, start_at=last - timedelta(seconds=10), last_run_at=last)
    engine.scheduler.apply(ScheduleChanges([schedule], [], 0), taken_over="moved here")
    await until(lambda: len(engine.jobs.skips) >= 2)
    (gap_skip, on_time) = engine.jobs.skips[:2]
    assert gap_skip[1:] == (last + timedelta(seconds=1), "moved here")
    assert engine.jobs.runs == [(schedule.id, last + timedelta(seconds=2))]
    assert on_time[1] == last + timedelta(seconds=3)
    assert (
        on_time[2]
        == f"{OVERLAP_REASON} (a late run of a slot from before the takeover: moved here)"
    )
