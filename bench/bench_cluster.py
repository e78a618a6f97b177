"""Three daemons as nodes of one PostgreSQL store: failover, lag, propagation, CPU, throughput.

The failover load: three daemons (`cluster_nodes.py`) on a fresh database, the lease at its
default, 1,000 schedules firing once a second with their phases spread over the second
(the engine bench's spread plan), divided among the nodes by rendezvous hashing, for 60 s.
At 30 s the node owning the most schedules is killed with SIGKILL; the others take its
schedules over once its lease has run out. Meanwhile 50 schedules are renamed through the
store (a PATCH that leaves their slots as they are), each timed from its commit to the
owning node's `schedules_applied` log line at that revision or later. Every slot is then
judged from the target's arrivals matched to the store's runs (`cluster_verdict.py`).

Beside it, in the same run: the same 1,000 schedules on one daemon with SQLite, for its
daemon CPU per run; and the cluster's throughput, the schedule count raised in steps on
fresh clusters, each step's recorded runs a second and its lag p99.

`BENCH_QUICK=1` shrinks every size (about a minute and a half instead of four).
`python -m bench.bench_cluster` runs this module alone and prints its table. Skipped,
saying why, where no PostgreSQL server answers on 127.0.0.1:5432.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import asyncpg

from bench.bench_engine import (
    QUICK,
    SETTLE_SECONDS,
    WARM_SLOTS,
    Plan,
    TargetServer,
    bench_target,
    cronmgr_load,
    late_arrivals,
    plan_schedules,
    sizes,
    target_server,
)
from bench.bench_pg_store import SERVER, ServerCpu, fresh_database
from bench.cluster_nodes import (
    Edit,
    Node,
    applied,
    applied_at,
    applied_by_all,
    cluster,
    edit_schedules,
    insert_definitions,
    lease_left,
    owners,
    run_records,
)
from bench.cluster_rows import (
    LAG_LIMIT_MS,
    LEASE_SECONDS,
    Failover,
    Step,
    failover_rows,
    single_rows,
    skip_row,
    step_of,
    step_rows,
)
from bench.cluster_verdict import verdict
from cronmgr.core.models import Schedule


@dataclass(frozen=True, slots=True)
class ClusterSizes:
    """How big each load of the cluster bench is."""

    nodes: int  # daemons sharing the store
    schedules: int  # schedules of the failover load, firing once a second
    seconds: int  # measured seconds of the failover load, after one cold second
    kill_at: int  # seconds after the first slot that a node is killed
    edits: int  # schedules renamed during the failover load, before the kill
    single_seconds: int  # measured seconds of the one-daemon SQLite load
    steps: tuple[int, ...]  # schedule counts of the throughput steps
    step_seconds: int  # measured seconds of each step


FULL = ClusterSizes(3, 1000, 60, 30, 50, 20, (2000, 3000, 4000, 5000), 15)
QUICK_CLUSTER = ClusterSizes(3, 200, 25, 8, 10, 5, (200, 400), 5)
START_LEAD = 3.0
"""Between the schedules written (and taken in by every node) and the first slot."""
EDIT_MARGIN = 2.0
"""The edits start this long after the first slot and end this long before the kill."""


def cluster_sizes() -> ClusterSizes:
    """FULL, or QUICK_CLUSTER under BENCH_QUICK=1 (the engine bench's switch)."""
    return QUICK_CLUSTER if sizes() is QUICK else FULL


def run() -> list[dict[str, Any]]:
    """The rows of the failover load, the SQLite load and the throughput steps."""
    return asyncio.run(_measure(cluster_sizes()))


async def _measure(size: ClusterSizes) -> list[dict[str, Any]]:
    why = await _no_server()
    if why:
        return [skip_row(f"cluster of {size.nodes} nodes on PostgreSQL", why)]
    async with target_server() as target:
        failover = await failover_load(target, size)
        slots = WARM_SLOTS + size.single_seconds
        single = await cronmgr_load(target, size.schedules, 1.0 / size.schedules, slots)
        steps = await throughput_steps(target, size)
    single_label = f"SQLite store, 1 daemon, {size.schedules}/s x {size.single_seconds} s"
    steps_label = f"cluster {size.nodes} nodes, throughput, {size.step_seconds} s a step"
    return (
        failover_rows(failover) + single_rows(single_label, single) + step_rows(steps_label, steps)
    )


async def _no_server() -> str:
    """Why no PostgreSQL server can be used ("" when one answers)."""
    try:
        connection = await asyncpg.connect(SERVER, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        return str(exc) or type(exc).__name__
    await connection.close()
    return ""


# --- a load on a cluster --------------------------------------------------------------


async def start_load(
    url: str, target: TargetServer, nodes: list[Node], n: int, seconds: int
) -> tuple[Plan, list[Schedule]]:
    """Write the plan's targets and schedules (first slot START_LEAD from now) and wait
    until every node has taken them in."""
    t0 = math.ceil(time.time() + START_LEAD)
    plan = Plan(n=n, t0=t0, spacing=1.0 / n, slots=WARM_SLOTS + seconds, tag=f"cluster-{t0}-{n}")
    schedules = plan_schedules(plan)
    targets = [bench_target(i, plan.base(target.url)) for i in range(n)]
    revision = await insert_definitions(url, targets, schedules)
    await applied_by_all(nodes, revision)
    if time.time() > plan.t0 - 0.5:
        raise RuntimeError("the nodes took the schedules in less than 0.5 s before the first slot")
    return plan, schedules


async def failover_load(target: TargetServer, size: ClusterSizes) -> Failover:
    """The failover load: edits, then the node owning the most schedules killed."""
    async with fresh_database() as url, cluster(url, size.nodes) as nodes:
        plan, schedules = await start_load(url, target, nodes, size.schedules, size.seconds)
        owned = owners(plan, nodes)
        victim = next(node for node in nodes if node.id == Counter(owned).most_common(1)[0][0])
        server = ServerCpu()
        await _begin(plan, nodes, server)
        start, end = plan.t0 + EDIT_MARGIN, plan.t0 + size.kill_at - EDIT_MARGIN
        times = [start + j * (end - start) / size.edits for j in range(size.edits)]
        editing = asyncio.create_task(edit_schedules(url, schedules, owned, times))
        await _until(plan.t0 + size.kill_at)
        killed_at = _kill(victim)
        left = await lease_left(url, victim.id)
        edits = await editing
        arrivals = await _end(target, plan, [n for n in nodes if n is not victim], server)
        runs = await run_records(url)
        propagation = _propagation(nodes, edits)
    return Failover(
        label=_label(size),
        plan=plan,
        slots=verdict(arrivals, plan, runs),
        runs=runs,
        owned=owned,
        victim=victim.id,
        kill_at=size.kill_at,
        killed_at=killed_at,
        lease_left=left,
        edits=edits,
        propagation_ms=propagation,
        daemon_cpu=sum(node.load_cpu for node in nodes),
        server_cpu=server.seconds,
    )


async def _begin(plan: Plan, nodes: list[Node], server: ServerCpu) -> None:
    """Just before the first slot: note the CPU so far of every node and of the server."""
    await _until(plan.t0 - 0.3)
    for node in nodes:
        node.cpu_before = node.cpu_seconds()
    server.begin()


async def _end(
    target: TargetServer, plan: Plan, living: list[Node], server: ServerCpu
) -> list[tuple[str, float]]:
    """After the last slot and its stragglers: the arrivals, and the CPU of the living
    nodes and of the server over the load (`bench_engine.watch_load`'s window)."""
    await _until(plan.last + SETTLE_SECONDS)
    arrivals = await late_arrivals(target, plan)
    for node in living:
        node.cpu_after = node.cpu_seconds()
    server.end()
    return arrivals


def _label(size: ClusterSizes) -> str:
    return (
        f"cluster {size.nodes} nodes, {size.schedules}/s x {size.seconds} s,"
        f" lease {LEASE_SECONDS:g} s (default)"
    )


def _kill(node: Node) -> float:
    """SIGKILL the node, its CPU read just before; the moment of the kill."""
    node.cpu_after = node.cpu_seconds()
    node.process.kill()
    return time.time()


def _propagation(nodes: list[Node], edits: list[Edit]) -> list[float]:
    """Per edit, ms from its commit to the owner's first `schedules_applied` at its
    revision or later (NaN where the owner logged none)."""
    lines = {node.id: applied(node) for node in nodes}
    return [(applied_at(lines[e.owner], e.revision) - e.committed) * 1000 for e in edits]


async def throughput_steps(target: TargetServer, size: ClusterSizes) -> list[Step]:
    """Each step on a fresh cluster; the steps stop at the first whose p99 reaches 1 s."""
    steps = []
    for n in size.steps:
        async with fresh_database() as url, cluster(url, size.nodes) as nodes:
            plan, _ = await start_load(url, target, nodes, n, size.step_seconds)
            await _until(plan.last + SETTLE_SECONDS)
            arrivals = await late_arrivals(target, plan)
            runs = await run_records(url)
        steps.append(step_of(plan, verdict(arrivals, plan, runs), runs))
        if not steps[-1].lag_p99 < LAG_LIMIT_MS:
            break
    return steps


# --- small helpers --------------------------------------------------------------------


async def _until(unix_seconds: float) -> None:
    await asyncio.sleep(max(0.0, unix_seconds - time.time()))


def main() -> int:
    """This module alone: its table."""
    from bench.__main__ import format_table

    print(format_table(run()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
