"""The scheduling engine against APScheduler 3, judged from arrival times at a local target.

Four measurements (issue 3, item 10), each with the peer's figure beside ours:

1. N schedules firing once a second, phases spread evenly over the second (interval
   schedules with start_at = t0 + i/N): every slot must arrive exactly once; the lag
   (arrival at the target minus slot) must have p99 ≤ 2 ms and be no worse than the peer's.
2. M schedules due on the same second: nothing missed; p99 lag within 1.3 x that of the
   bare aiohttp client sending M requests at once, measured in the same run. Each party
   runs the burst three times, the order turning, and is judged on its median p99.
3. CPU time per run over phase 1: the daemon (which records every run in its store)
   against the peer (which records nothing): ≤ 0.6 x.
4. 100,000 idle schedules (daily cron and hourly interval, none due during the test):
   ready < 10 s, RSS ≤ 300 MB, CPU < 1 % once the daemon settled (the busy seconds after
   READY, when it writes every schedule's first next_run_at, are shown on their own).

Beside measurement 3 stands the recording floor (`bench/floor.py`): the least CPU a run
costs on this machine when it is recorded as cronmgr records it, by code that does nothing
else, under the same spread load.

Every party runs in a process of its own, so no two share an event loop: the target
(`bench/target_server.py`, which notes each request's path and arrival time), cronmgr's
real daemon (started with `cronmgr.controller.launcher.launch` on a temporary home whose store was
filled beforehand), the peer (`python -m bench.bench_engine peer ...`: an AsyncIOScheduler
whose jobs GET the target over one shared aiohttp session) and the bare client
(`python -m bench.bench_engine burst ...`). Both schedulers and the bare client use the
connection limits of cronmgr's `HttpRunner` (1,000 connections, none per host), and all
of them start with cold connections. Schedule i requests `/<tag>/s/<i>`, the tag naming
the load, so an arrival names its load and schedule; its slot follows from the schedule's
phase and the arrival time.

The peer and the bare client hold on after their load until the parent closed their stdin,
so their CPU time can still be read; every child is terminated, then killed, on the way out.

`BENCH_QUICK=1` shrinks every size for a smoke run (about a minute and a half instead of
five).
`python -m bench.bench_engine` runs this module alone and prints its table.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil

from cronmgr.controller.launcher import launch
from cronmgr.controller.processes import terminate
from cronmgr.core.config import Settings, load_settings
from cronmgr.core.launch import STATE_FILENAME, LaunchSpec, read_json
from cronmgr.core.models import Schedule, ScheduleType, Target
from cronmgr.store import open_store
from cronmgr.store.queries import load_queries

# --- sizes and targets --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big each measurement is."""

    spread: int  # schedules firing once a second, phases spread over the second
    seconds: int  # measured seconds of the spread load, after one cold second
    burst: int  # schedules due on the same second
    idle: int  # idle schedules
    idle_seconds: float  # how long idle CPU is measured once the daemon settled
    burst_rounds: int  # how many times each party runs the burst


FULL = Sizes(spread=1000, seconds=20, burst=2000, idle=100_000, idle_seconds=10.0, burst_rounds=3)
QUICK = Sizes(spread=200, seconds=5, burst=500, idle=10_000, idle_seconds=3.0, burst_rounds=1)

LAG_P99_MS = 2.0
BURST_FACTOR = 1.3
CPU_FACTOR = 0.6
IDLE_RSS_MB = 300.0
IDLE_CPU_PERCENT = 1.0
READY_SECONDS = 10.0
SETTLED_CPU_PERCENT = 5.0
"""A second of idle-daemon CPU below this ends its busy time after READY."""
SETTLE_CAP_SECONDS = 30.0
"""The longest the idle daemon's busy time after READY is waited out."""

WARM_SLOTS = 1
"""Leading slots of the spread load left out of the lag figures (connections opening)."""
SETTLE_SECONDS = 1.5
"""After the last slot: time for the last requests to land and the last runs to be written."""
STRAGGLER_SECONDS = 30.0
"""How long past the settle time arrivals that keep coming are waited for."""
LEAD_SECONDS = 4.0
"""Between a party reporting ready and its first slot."""
NO_PEER = "APScheduler 3 is not installed: pip install -e '.[bench]'"
EARLY_TOLERANCE = 0.05
"""An arrival this much before a slot still counts for it (clocks of two processes)."""
# The daemon's own pipeline schedule fires once at start and then not for a year.
DAEMON_SPEC = LaunchSpec(interval_seconds=365 * 86400, pipeline="bench")
PIPELINE = 'description = "does nothing"\n\n[[steps]]\nname = "noop"\ncommand = ["true"]\n'
CHILD_START_SECONDS = 30.0
"""How long a child process has to print its READY line."""
CHILD_STOP_SECONDS = 5.0
"""How long a child has to exit after SIGTERM, and again after SIGKILL."""
HOLD_SECONDS = SETTLE_SECONDS + STRAGGLER_SECONDS + 30.0
"""A peer or bare client exits this long after its last slot even if nobody released it."""
CHILD_MODULE = "bench.bench_engine"
"""This module, as the peer and the bare client run it (`python -m`)."""
FLOOR_MODULE = "bench.floor"
FLOOR_FILL_SECONDS_EACH = 0.004
"""Lead time per schedule for the floor, which fills its store (a target and a schedule
each, about 2 ms on this kind of machine) between its start and its READY line."""


def sizes() -> Sizes:
    """FULL, or QUICK under BENCH_QUICK=1."""
    return QUICK if os.environ.get("BENCH_QUICK", "") not in ("", "0") else FULL


def run() -> list[dict[str, Any]]:
    """Run the four measurements and return their rows."""
    return asyncio.run(measure(sizes()))


async def measure(size: Sizes) -> list[dict[str, Any]]:
    """The spread and burst loads against one target process, then the idle daemon."""
    rows = [peer_row()]
    async with target_server() as target:
        rows += await spread_rows(target, size)
        rows += await burst_rows(target, size)
    rows += await idle_rows(size)
    return rows


# --- the plan of a load and its verdict ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """n schedules; schedule i has `slots` slots, one a second, from t0 + i·spacing.

    Schedule i requests `/<tag>/s/<i>`: the tag names the load, so a straggler of one party
    can never be counted for the next one.
    """

    n: int
    t0: float
    spacing: float
    slots: int
    tag: str

    def base(self, url: str) -> str:
        """The URL prefix this load's requests go to."""
        return f"{url}/{self.tag}"

    def first(self, i: int) -> float:
        """The first slot of schedule i, in Unix seconds."""
        return self.t0 + i * self.spacing

    @property
    def last(self) -> float:
        """The last slot of all."""
        return self.first(self.n - 1) + self.slots - 1


@dataclass(slots=True)
class Verdict:
    """What arrived for a plan: slots missed, slots hit more than once, lags."""

    expected: int
    arrived: int = 0
    missed: int = 0
    doubled: int = 0
    stray: int = 0
    lags_ms: list[float] = field(default_factory=list)

    def lag(self, quantile: float) -> float:
        """A lag quantile in ms (0.5: median, 1.0: max); NaN when nothing arrived."""
        if not self.lags_ms:
            return math.nan
        ordered = sorted(self.lags_ms)
        return ordered[min(len(ordered) - 1, math.ceil(quantile * len(ordered)) - 1)]


def judge(arrivals: Iterable[tuple[str, float]], plan: Plan, warm: int = 0) -> Verdict:
    """Match arrivals to slots; lags of slots from index `warm` on."""
    hits: Counter[tuple[int, int]] = Counter()
    verdict = Verdict(expected=plan.n * plan.slots)
    for path, arrived in arrivals:
        i = schedule_index(path, plan.tag)
        if i is None or not 0 <= i < plan.n:
            verdict.stray += 1
            continue
        verdict.arrived += 1
        k = slot_index(plan, i, arrived)
        hits[i, k] += 1
        if 0 <= k < plan.slots and k >= warm and hits[i, k] == 1:
            verdict.lags_ms.append((arrived - plan.first(i) - k) * 1000)
    on_plan = sum(1 for (_, k) in hits if 0 <= k < plan.slots)
    verdict.missed = verdict.expected - on_plan
    verdict.doubled = verdict.arrived - on_plan
    return verdict


def slot_index(plan: Plan, i: int, arrived: float) -> int:
    """Which slot of schedule i an arrival is for: the latest one begun by then.

    A slot is one second apart from the next, so a lag of a second or more would be read as
    the next slot (a double and a miss); with one slot, every arrival is for it.
    """
    if plan.slots == 1:
        return 0
    return math.floor(arrived - plan.first(i) + EARLY_TOLERANCE)


def schedule_index(path: str, tag: str) -> int | None:
    """i from `/<tag>/s/<i>`; None for any other path."""
    head, _, tail = path.rpartition("/")
    return int(tail) if head == f"/{tag}/s" and tail.isdigit() else None


# --- the target ---------------------------------------------------------------------------


@dataclass(slots=True)
class TargetServer:
    """The target process and how to reach it."""

    url: str
    process: asyncio.subprocess.Process

    async def take(self) -> list[tuple[str, float]]:
        """The arrivals since the last take."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}/_bench/take") as response,
        ):
            return [(path, at) for path, at in orjson.loads(await response.read())]


@asynccontextmanager
async def target_server() -> AsyncIterator[TargetServer]:
    """`bench.target_server` in its own process, for the life of the block."""
    process, line = await start_child("bench.target_server")
    try:
        yield TargetServer(f"http://127.0.0.1:{line.split()[1]}", process)
    finally:
        # The target serves until told to stop.
        await stop_child(process, wait=0.0)


async def start_child(module: str, *args: str) -> tuple[asyncio.subprocess.Process, str]:
    """`python -m module args...`, once it printed its READY line (returned)."""
    # stdin: the child holds on after its load until it sees EOF there (see `held`).
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=_repo(),
    )
    assert process.stdout is not None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), CHILD_START_SECONDS)).decode()
        if not line.startswith("READY"):
            raise RuntimeError(f"{module} did not start: {line!r}")
    except BaseException:
        await stop_child(process, wait=0.0)
        raise
    return process, line


async def stop_child(process: asyncio.subprocess.Process, wait: float = 10.0) -> None:
    """Release a child (EOF on its stdin), give it `wait` seconds, then SIGTERM, SIGKILL."""
    if process.stdin is not None:
        process.stdin.close()
    for signal_it in (None, process.terminate, process.kill):
        if process.returncode is not None:
            return
        if signal_it is not None:
            with contextlib.suppress(ProcessLookupError):
                signal_it()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                process.wait(), wait if signal_it is None else CHILD_STOP_SECONDS
            )


def _repo() -> Path:
    return Path(__file__).resolve().parent.parent


# --- cronmgr: a home, a filled store, the daemon ------------------------------------------


@asynccontextmanager
async def cronmgr_home(store_url: str | None = None) -> AsyncIterator[Settings]:
    """Settings for a daemon on a fresh temporary home with a do-nothing pipeline, its
    store in the home (SQLite) or at `store_url`."""
    root = Path(tempfile.mkdtemp(prefix="cronmgr-bench-"))
    (root / "pipelines").mkdir()
    (root / "pipelines" / "bench.toml").write_text(PIPELINE)
    try:
        yield load_settings(
            env={},
            home=root,
            supervise=False,
            stop_grace_seconds=5.0,
            database_url=store_url,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


@asynccontextmanager
async def daemon(settings: Settings) -> AsyncIterator[tuple[psutil.Process, float]]:
    """The real daemon, launched and waited for; yields it and its launch → READY seconds."""
    started = time.perf_counter()
    pid = await launch(settings, DAEMON_SPEC)
    ready = time.perf_counter() - started
    process = psutil.Process(pid)
    try:
        yield process, ready
    finally:
        await terminate(process, settings.stop_grace_seconds + 5.0)


def bench_target(i: int, base: str) -> Target:
    """The target of schedule i: GET <base>/s/<i>."""
    return Target(id=f"t{i}", name=f"bench-{i}", url=f"{base}/s/{i}", timeout_seconds=10.0)


def plan_schedules(plan: Plan) -> list[Schedule]:
    """The plan as cronmgr schedules: one interval schedule each, or `once` for one slot."""
    schedules = []
    for i in range(plan.n):
        first = _moment(plan.first(i))
        common: dict[str, Any] = {"id": f"s{i}", "name": f"bench-{i}", "target_id": f"t{i}"}
        if plan.slots == 1:
            schedules.append(Schedule(schedule_type=ScheduleType.ONCE, run_at=first, **common))
            continue
        # The window ends half a second after the last slot: exactly `slots` of them.
        end = first + timedelta(seconds=plan.slots - 0.5)
        schedules.append(
            Schedule(
                schedule_type=ScheduleType.INTERVAL,
                interval_seconds=1.0,
                start_at=first,
                end_at=end,
                **common,
            )
        )
    return schedules


async def insert_targets(settings: Settings, targets: Sequence[Target]) -> float:
    """Insert the targets through the store API; seconds per target."""
    started = time.perf_counter()
    async with open_store(settings.store_url) as store:
        for target in targets:
            await store.insert_target(target)
    return (time.perf_counter() - started) / max(1, len(targets))


async def insert_schedules(settings: Settings, schedules: Sequence[Schedule]) -> None:
    """Insert schedules one by one through the store API."""
    async with open_store(settings.store_url) as store:
        for schedule in schedules:
            await store.insert_schedule(schedule)


async def recorded_runs(settings: Settings) -> Counter[str]:
    """Runs of target jobs in the daemon's store, by status."""
    if not settings.store_url.startswith("sqlite:///"):
        import asyncpg

        connection = await asyncpg.connect(settings.store_url)
        try:
            records = await connection.fetch(
                "SELECT status, count(*) FROM runs WHERE job LIKE 'target:%' GROUP BY status"
            )
        finally:
            await connection.close()
        return Counter({record[0]: record[1] for record in records})
    path = settings.store_url.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT status, count(*) FROM runs WHERE job LIKE 'target:%' GROUP BY status"
        ).fetchall()
    return Counter({status: count for status, count in rows})


# --- measurements 1 and 3: the spread load ------------------------------------------------


@dataclass(slots=True)
class LoadResult:
    """One party's run of a load: its verdict, its CPU seconds over the load, and notes."""

    verdict: Verdict
    cpu_seconds: float = math.nan
    notes: list[str] = field(default_factory=list)
    loop_cpu_seconds: float = math.nan
    """Of `cpu_seconds`, the main thread's: the event loop (the rest: cronmgr's store
    writer thread, the peer's executor threads)."""

    @property
    def cpu_ms_per_run(self) -> float:
        """CPU milliseconds per arrival."""
        return self.cpu_seconds * 1000 / max(1, self.verdict.arrived)

    @property
    def loop_cpu_ms_per_run(self) -> float:
        """The main thread's CPU milliseconds per arrival."""
        return self.loop_cpu_seconds * 1000 / max(1, self.verdict.arrived)


async def spread_rows(target: TargetServer, size: Sizes) -> list[dict[str, Any]]:
    """Measurements 1 and 3 for cronmgr, the peer and the bare client, one after the other."""
    slots = WARM_SLOTS + size.seconds
    ours = await cronmgr_load(target, size.spread, 1.0 / size.spread, slots)
    peer = await peer_load(target, size.spread, 1.0 / size.spread, slots)
    bare = await child_load("bare", target, size.spread, 1.0 / size.spread, slots)
    floor = await floor_load(target, size.spread, 1.0 / size.spread, slots)
    return spread_table(f"{size.spread}/s x {size.seconds} s", ours, peer, bare, floor)


async def cronmgr_load(
    target: TargetServer,
    n: int,
    spacing: float,
    slots: int,
    store_url: str | None = None,
    watch: Callable[[TargetServer, Plan, psutil.Process], Awaitable[LoadResult]] | None = None,
) -> LoadResult:
    """A load on a real daemon; CPU over the load; the runs its store holds checked after.
    The store is SQLite in the home, or the one at `store_url`; `watch` measures the load
    (default `watch_load`)."""
    async with cronmgr_home(store_url) as settings:
        tag = f"cronmgr-{time.time_ns()}"
        targets = [bench_target(i, f"{target.url}/{tag}") for i in range(n)]
        per_target = await insert_targets(settings, targets)
        # Schedules go in at about the pace of targets; then the daemon starts.
        t0 = math.ceil(time.time() + 2 * per_target * n + LEAD_SECONDS)
        plan = Plan(n=n, t0=t0, spacing=spacing, slots=slots, tag=tag)
        await insert_schedules(settings, plan_schedules(plan))
        async with daemon(settings) as (process, _ready):
            result = await (watch or watch_load)(target, plan, process)
        result.notes += runs_note(await recorded_runs(settings), plan)
    return result


async def watch_load(target: TargetServer, plan: Plan, process: psutil.Process) -> LoadResult:
    """Sample the party's CPU around the load, then judge what arrived."""
    late = time.time() > plan.t0 - 0.5
    await _sleep_until(plan.t0 - 0.3)
    before, loop_before = _cpu_seconds(process), _main_thread_seconds(process)
    await _sleep_until(plan.last + SETTLE_SECONDS)
    arrivals = await late_arrivals(target, plan)
    cpu = _cpu_seconds(process) - before
    loop_cpu = _main_thread_seconds(process) - loop_before
    warm = WARM_SLOTS if plan.slots > 1 else 0
    result = LoadResult(judge(arrivals, plan, warm), cpu, loop_cpu_seconds=loop_cpu)
    if late:
        result.notes.append("started less than 0.5 s before its first slot")
    if result.verdict.stray:
        result.notes.append(f"{result.verdict.stray} requests of another load arrived meanwhile")
    return result


async def late_arrivals(target: TargetServer, plan: Plan) -> list[tuple[str, float]]:
    """The arrivals so far, and the stragglers: until all came or none for a second."""
    arrivals = await target.take()
    ours = _of_plan(arrivals, plan)
    deadline = time.monotonic() + STRAGGLER_SECONDS
    while ours < plan.n * plan.slots and time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        more = await target.take()
        if not _of_plan(more, plan):
            arrivals += more
            break
        arrivals += more
        ours += _of_plan(more, plan)
    return arrivals


def _of_plan(arrivals: Iterable[tuple[str, float]], plan: Plan) -> int:
    return sum(1 for path, _ in arrivals if schedule_index(path, plan.tag) is not None)


def runs_note(runs: Counter[str], plan: Plan) -> list[str]:
    """A note when the store does not hold every run as succeeded."""
    expected = plan.n * plan.slots
    if runs.get("succeeded", 0) == expected and sum(runs.values()) == expected:
        return []
    return [f"store holds {dict(runs)} runs, expected {expected} succeeded"]


async def floor_load(target: TargetServer, n: int, spacing: float, slots: int) -> LoadResult:
    """The load on `bench/floor.py`, which fills its own store before it reports ready."""
    lead = LEAD_SECONDS + FLOOR_FILL_SECONDS_EACH * n
    return await child_load("floor", target, n, spacing, slots, module=FLOOR_MODULE, lead=lead)


def spread_table(
    label: str,
    ours: LoadResult,
    peer: LoadResult | None,
    bare: LoadResult,
    floor: LoadResult,
) -> list[dict[str, Any]]:
    """Rows of measurements 1 and 3, with the bare client's lag and CPU and the recording
    floor's CPU (`bench/floor.py`) as what no scheduler here gets below."""
    mine, theirs = ours.verdict, peer.verdict if peer else None
    p99, peer_p99 = mine.lag(0.99), theirs.lag(0.99) if theirs else math.nan
    cpu, peer_cpu = ours.cpu_ms_per_run, peer.cpu_ms_per_run if peer else math.nan
    rows = [
        *_count_rows(label, mine, theirs),
        _row(f"{label}: lag p50", mine.lag(0.5), "ms", "", "", _peer(theirs, 0.5)),
        _row(
            f"{label}: lag p99",
            p99,
            "ms",
            f"<= {LAG_P99_MS:g} ms and <= peer",
            p99 <= LAG_P99_MS and p99 <= peer_p99,
            peer_p99,
        ),
        _row(f"{label}: lag max", mine.lag(1.0), "ms", "", "", _peer(theirs, 1.0)),
        _row(f"{label}: bare client lag p99 (floor)", bare.verdict.lag(0.99), "ms", "", ""),
        _row(
            f"{label}: CPU per run",
            cpu,
            "ms",
            f"<= {CPU_FACTOR:g} x peer ({CPU_FACTOR * peer_cpu:.3f} ms)",
            cpu <= CPU_FACTOR * peer_cpu,
            peer_cpu,
        ),
        _row(
            f"{label}: of which the event loop thread",
            ours.loop_cpu_ms_per_run,
            "ms",
            "",
            "",
            peer.loop_cpu_ms_per_run if peer else None,
        ),
        _row(f"{label}: bare client CPU per request (floor)", bare.cpu_ms_per_run, "ms", "", ""),
        _row(
            f"{label}: recording floor CPU per run (bench/floor.py)",
            floor.cpu_ms_per_run,
            "ms",
            f"{floor.cpu_ms_per_run / peer_cpu:.2f} x peer" if peer else "",
            "",
        ),
    ]
    return rows + _note_rows(label, ours, peer, bare, floor)


def _count_rows(label: str, mine: Verdict, theirs: Verdict | None) -> list[dict[str, Any]]:
    return [
        _row(
            f"{label}: slots missed",
            mine.missed,
            "slots",
            "0",
            mine.missed == 0,
            theirs.missed if theirs else None,
        ),
        _row(
            f"{label}: slots doubled",
            mine.doubled,
            "slots",
            "0",
            mine.doubled == 0,
            theirs.doubled if theirs else None,
        ),
    ]


def _peer(verdict: Verdict | None, quantile: float) -> float | None:
    return verdict.lag(quantile) if verdict else None


def _note_rows(
    label: str,
    ours: LoadResult | None,
    peer: LoadResult | None,
    bare: LoadResult,
    floor: LoadResult | None = None,
) -> list[dict[str, Any]]:
    """Notes of the parties; `ours` None: the bare client's only."""
    notes = []
    if floor is not None and (floor.verdict.missed or floor.verdict.doubled):
        notes.append(("floor", f"{floor.verdict.missed} missed, {floor.verdict.doubled} doubled"))
    if ours is not None:
        notes += [("cronmgr", note) for note in ours.notes]
        notes += [("peer", note) for note in peer.notes] if peer else [("peer", NO_PEER)]
    notes += [("bare client", note) for note in bare.notes]
    if bare.verdict.missed or bare.verdict.doubled:
        notes.append(
            ("bare client", f"{bare.verdict.missed} missed, {bare.verdict.doubled} doubled")
        )
    return [_note(label, who, text) for who, text in notes]


# --- the peer and the bare client ---------------------------------------------------------


def peer_row() -> dict[str, Any]:
    """Which peer ran: its version, and aiohttp's, as this interpreter (the peer's) has them."""
    if find_spec("apscheduler") is None:
        return _row("peer", "", "", NO_PEER, "")
    peer = f"APScheduler {version('apscheduler')} AsyncIOScheduler"
    return _row("peer", "", "", f"{peer}, aiohttp {version('aiohttp')}", "")


async def peer_load(target: TargetServer, n: int, spacing: float, slots: int) -> LoadResult | None:
    """The load on APScheduler 3; None when it is not installed."""
    if find_spec("apscheduler") is None:
        return None
    return await child_load("peer", target, n, spacing, slots)


async def child_load(
    role: str,
    target: TargetServer,
    n: int,
    spacing: float,
    slots: int,
    module: str = CHILD_MODULE,
    lead: float = LEAD_SECONDS,
) -> LoadResult:
    """The load run by `python -m <module> <role>` (peer, bare or floor), its first slot
    `lead` seconds or more from now."""
    t0 = math.ceil(time.time() + lead)
    plan = Plan(n=n, t0=t0, spacing=spacing, slots=slots, tag=f"{role}-{time.time_ns()}")
    process, _ = await start_child(module, role, target.url, *_plan_args(plan))
    try:
        return await watch_load(target, plan, psutil.Process(process.pid))
    finally:
        await stop_child(process)


def _plan_args(plan: Plan) -> list[str]:
    return [str(plan.n), repr(plan.t0), repr(plan.spacing), str(plan.slots), plan.tag]


def parse_plan(args: Sequence[str]) -> Plan:
    """A plan from its command-line form (`_plan_args`)."""
    n, t0, spacing, slots, tag = args
    return Plan(n=int(n), t0=float(t0), spacing=float(spacing), slots=int(slots), tag=tag)


async def peer_main(url: str, plan: Plan) -> None:
    """The peer: one APScheduler job per schedule, each a GET, recording nothing."""
    from apscheduler.schedulers.asyncio import (  # type: ignore[import-untyped]
        AsyncIOScheduler,  # the bench extra
    )

    base = plan.base(url)
    async with client_session() as session:
        scheduler = AsyncIOScheduler(timezone=UTC)
        for i in range(plan.n):
            scheduler.add_job(_get, peer_trigger(plan, i), args=(session, f"{base}/s/{i}"))
        scheduler.start()
        say_ready()
        await held(plan)
        scheduler.shutdown(wait=False)


def peer_trigger(plan: Plan, i: int) -> Any:
    """APScheduler's trigger for schedule i of the plan (job options left at defaults)."""
    from apscheduler.triggers.date import DateTrigger  # type: ignore[import-untyped]
    from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

    first = _moment(plan.first(i))
    if plan.slots == 1:
        return DateTrigger(run_date=first)
    end = first + timedelta(seconds=plan.slots - 0.5)
    return IntervalTrigger(seconds=1, start_date=first, end_date=end, timezone=UTC)


async def bare_main(url: str, plan: Plan) -> None:
    """The bare client: every slot a `loop.call_at` that starts a GET; no scheduler at all."""
    loop, base = asyncio.get_running_loop(), plan.base(url)
    async with client_session() as session:
        tasks: set[asyncio.Task[None]] = set()

        def fire(url: str) -> None:
            task = asyncio.create_task(_get(session, url))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        offset = loop.time() - time.time()
        for k in range(plan.slots):
            for i in range(plan.n):
                loop.call_at(plan.first(i) + k + offset, fire, f"{base}/s/{i}")
        say_ready()
        await held(plan)


def client_session() -> aiohttp.ClientSession:
    """A session with the connection limits of cronmgr's HttpRunner (its lean client's pool).

    The peer and the bare client get the same limits (1,000 connections, none per host),
    so the comparison is of schedulers, not of connection pools.
    """
    connector = aiohttp.TCPConnector(
        limit=1000, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=30
    )
    return aiohttp.ClientSession(connector=connector)


async def _get(session: aiohttp.ClientSession, url: str) -> None:
    async with session.get(url) as response:
        await response.read()


async def held(plan: Plan) -> None:
    """Until the parent closes our stdin (it read our CPU time), at most until HOLD_SECONDS
    after the plan's last slot: a child that ended by itself would take its CPU time along."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(reader.read(), plan.last + HOLD_SECONDS - time.time())


def say_ready() -> None:
    """Tell the parent the child is ready: its first line."""
    sys.stdout.write("READY\n")
    sys.stdout.flush()


# --- measurement 2: the burst -------------------------------------------------------------


async def burst_rows(target: TargetServer, size: Sizes) -> list[dict[str, Any]]:
    """Measurement 2: rounds of the bare client, cronmgr and the peer, M GETs due at once.

    On a shared machine one burst's p99 swings by a third from one try to the next, so each
    party runs `size.burst_rounds` times, the order turning each round, and is judged on the
    median of its p99s; every round's p99 is shown.
    """
    rounds = [await burst_round(target, size.burst, r) for r in range(size.burst_rounds)]
    ours = [r["cronmgr"] for r in rounds if r["cronmgr"]]
    peers = [r["peer"] for r in rounds if r["peer"]]
    bares = [r["bare"] for r in rounds if r["bare"]]
    label = f"{size.burst} due at once, {len(rounds)} round{'s' * (len(rounds) != 1)}"
    floor, p99 = _median_lag(bares, 0.99), _median_lag(ours, 0.99)
    peer_p99 = _median_lag(peers, 0.99) if peers else None
    theirs = _merged(peers) if peers else None
    rows = [
        *_count_rows(label, _merged(ours), theirs),
        _row(f"{label}: lag p50 (median)", _median_lag(ours, 0.5), "ms", "", "", _m(peers, 0.5)),
        _row(
            f"{label}: lag p99 (median)",
            p99,
            "ms",
            f"<= {BURST_FACTOR:g} x bare ({BURST_FACTOR * floor:.1f} ms)",
            p99 <= BURST_FACTOR * floor,
            peer_p99,
        ),
        _row(f"{label}: lag max", _merged(ours).lag(1.0), "ms", "", "", _peer(theirs, 1.0)),
        _row(f"{label}: bare client lag p99 (median)", floor, "ms", "", ""),
        _row(
            f"{label}: lag p99 / bare client p99",
            p99 / floor,
            "x",
            f"<= {BURST_FACTOR:g}",
            p99 <= BURST_FACTOR * floor,
            peer_p99 / floor if peer_p99 is not None else None,
        ),
        _row(f"{label}: p99 of each round", "", "ms", _by_round(rounds), ""),
    ]
    for r in rounds:
        bare = r["bare"]
        assert bare is not None
        rows += _note_rows(label, r["cronmgr"], r["peer"], bare)
    return rows


async def burst_round(target: TargetServer, n: int, index: int) -> dict[str, LoadResult | None]:
    """One burst of each party; round `index` starts with party `index` (mod 3)."""
    parties = ["bare", "cronmgr", "peer"]
    results: dict[str, LoadResult | None] = {}
    for who in parties[index % 3 :] + parties[: index % 3]:
        if who == "cronmgr":
            results[who] = await cronmgr_load(target, n, 0.0, 1)
        elif who == "peer":
            results[who] = await peer_load(target, n, 0.0, 1)
        else:
            results[who] = await child_load("bare", target, n, 0.0, 1)
    return results


def _median_lag(results: Sequence[LoadResult], quantile: float) -> float:
    return statistics.median(r.verdict.lag(quantile) for r in results)


def _m(results: Sequence[LoadResult], quantile: float) -> float | None:
    return _median_lag(results, quantile) if results else None


def _merged(results: Sequence[LoadResult]) -> Verdict:
    """The verdicts of several rounds as one: counts added up, lags pooled."""
    merged = Verdict(expected=0)
    for r in results:
        v = r.verdict
        merged.expected += v.expected
        merged.arrived += v.arrived
        merged.missed += v.missed
        merged.doubled += v.doubled
        merged.stray += v.stray
        merged.lags_ms += v.lags_ms
    return merged


def _by_round(rounds: Sequence[dict[str, LoadResult | None]]) -> str:
    """`cronmgr a/b/c, peer ..., bare ...`: each party's p99 per round, in ms."""
    parts = []
    for who in ("cronmgr", "peer", "bare"):
        p99s = [f"{r.verdict.lag(0.99):.0f}" for round_ in rounds if (r := round_[who])]
        if p99s:
            parts.append(f"{who} {'/'.join(p99s)}")
    return ", ".join(parts)


# --- measurement 4: idle schedules --------------------------------------------------------


def idle_schedules(n: int, now: datetime) -> Iterator[Schedule]:
    """n schedules none of which is due for hours: daily cron and hourly interval, alternately."""
    later = now + timedelta(hours=12)
    cron = f"{later.minute} {later.hour} * * *"
    for i in range(n):
        common: dict[str, Any] = {"id": f"idle{i}", "name": f"idle-{i}", "target_id": "t0"}
        if i % 2:
            yield Schedule(schedule_type=ScheduleType.CRON, cron_expression=cron, **common)
        else:
            start = now + timedelta(minutes=30, seconds=i % 3600)
            yield Schedule(
                schedule_type=ScheduleType.INTERVAL,
                interval_seconds=3600.0,
                start_at=start,
                **common,
            )


def insert_batch(settings: Settings, schedules: Iterable[Schedule]) -> None:
    """Insert schedules in one transaction with the store's own query and row mapping.

    The Store interface inserts one schedule per transaction (about a millisecond each):
    100,000 would take minutes. This is what a batch `insert_schedules` verb would do.
    """
    from cronmgr.store.relational.rows import _schedule_params  # no public batch insert yet

    query = load_queries("sqlite")
    path = settings.store_url.removeprefix("sqlite:///")
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute(query["bump_revision"])
        db.executemany(query["insert_schedule"], (_schedule_params(s) for s in schedules))
        db.execute("COMMIT")
    finally:
        db.close()


async def idle_rows(size: Sizes) -> list[dict[str, Any]]:
    """Measurement 4: ready time, RSS and CPU of a daemon holding `size.idle` schedules."""
    async with cronmgr_home() as settings:
        await insert_targets(settings, [bench_target(0, "http://127.0.0.1:9")])
        started = time.perf_counter()
        insert_batch(settings, idle_schedules(size.idle, datetime.now(UTC)))
        fill = time.perf_counter() - started
        async with daemon(settings) as (process, ready):
            idle = await watch_idle(process, size.idle_seconds)
            loaded = (read_json(settings.state_path / STATE_FILENAME) or {}).get("schedules")
    label = f"{size.idle:,} idle"
    return [
        _row(f"{label}: store insert, one transaction (setup)", fill, "s", "", ""),
        _row(
            f"{label}: launch -> READY", ready, "s", f"< {READY_SECONDS:g} s", ready < READY_SECONDS
        ),
        _row(
            f"{label}: schedules in the engine",
            loaded,
            "",
            f"{size.idle + 1}",
            loaded == size.idle + 1,
        ),
        _row(
            f"{label}: RSS (max)",
            idle.rss_mb,
            "MB",
            f"<= {IDLE_RSS_MB:g} MB",
            idle.rss_mb <= IDLE_RSS_MB,
        ),
        _row(f"{label}: busy after READY (one-time store writes)", idle.busy_seconds, "s", "", ""),
        _row(f"{label}: CPU while busy after READY", idle.busy_cpu, "%", "", ""),
        _row(
            f"{label}: CPU, idle, {size.idle_seconds:g} s once settled",
            idle.cpu,
            "%",
            f"< {IDLE_CPU_PERCENT:g} %",
            idle.cpu < IDLE_CPU_PERCENT,
        ),
    ]


@dataclass(slots=True)
class Idle:
    """An idle daemon: how long it stayed busy after READY, then its idle CPU; its peak RSS."""

    busy_seconds: float = 0.0
    busy_cpu: float = 0.0
    cpu: float = math.nan
    rss_mb: float = 0.0


async def watch_idle(process: psutil.Process, seconds: float) -> Idle:
    """Wait out the daemon's busy seconds after READY (capped), then CPU over `seconds`.

    After READY the daemon still writes each schedule's first `next_run_at` to the store;
    that one-off is reported on its own, and idle CPU is what follows it.
    """
    idle = Idle()
    while idle.busy_seconds < SETTLE_CAP_SECONDS:
        cpu, rss = await _cpu_over(process, 1.0)
        idle.rss_mb = max(idle.rss_mb, rss)
        if cpu < SETTLED_CPU_PERCENT:
            break
        idle.busy_seconds += 1.0
        idle.busy_cpu += cpu
    idle.busy_cpu /= max(1.0, idle.busy_seconds)
    idle.cpu, rss = await _cpu_over(process, seconds)
    idle.rss_mb = max(idle.rss_mb, rss)
    return idle


async def _cpu_over(process: psutil.Process, seconds: float) -> tuple[float, float]:
    """CPU percent over `seconds` from now, and the largest RSS (MB) seen meanwhile."""
    started, before = time.perf_counter(), _cpu_seconds(process)
    rss = 0
    while time.perf_counter() - started < seconds:
        rss = max(rss, process.memory_info().rss)
        await asyncio.sleep(0.25)
    elapsed = time.perf_counter() - started
    cpu = 100 * (_cpu_seconds(process) - before) / elapsed
    return cpu, max(rss, process.memory_info().rss) / 1e6


# --- small helpers ------------------------------------------------------------------------


def _row(
    name: str, value: Any, unit: str, target: str, ok: Any, peer: Any = None
) -> dict[str, Any]:
    row = {"name": name, "value": value, "unit": unit, "target": target, "ok": ok}
    if peer is not None:
        row["peer"] = peer
    return row


def _note(label: str, who: str, text: str) -> dict[str, Any]:
    """Something that went wrong beside the figures (ok is NO)."""
    return _row(f"{label}: note ({who})", "", "", text, False)


def _moment(unix_seconds: float) -> datetime:
    return datetime.fromtimestamp(unix_seconds, UTC)


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _main_thread_seconds(process: psutil.Process) -> float:
    # On Linux the main thread's id is the process id.
    for thread in process.threads():
        if thread.id == process.pid:
            return thread.user_time + thread.system_time
    return math.nan


async def _sleep_until(unix_seconds: float) -> None:
    await asyncio.sleep(max(0.0, unix_seconds - time.time()))


def main(argv: Sequence[str]) -> int:
    """`peer URL plan...` and `bare URL plan...` for the child processes; alone: the table."""
    if argv and argv[0] in ("peer", "bare"):
        role = peer_main if argv[0] == "peer" else bare_main
        asyncio.run(role(argv[1], parse_plan(argv[2:])))
        return 0
    from bench.__main__ import format_table

    print(format_table(run()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
