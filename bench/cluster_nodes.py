"""The cluster bench's parties: real daemons as nodes of one PostgreSQL store.

`cluster()` starts the daemons one after the other, each in a home of its own (the engine
bench's `cronmgr_home` and `daemon`), and returns once every node's view holds all of
them, so that the load starts on settled ownership. The definitions go in through the
store's own named queries in one transaction (`insert_definitions`): a thousand schedules
one by one would take a second per 350 of them, and one transaction is one revision and
one change notice, which every node takes at once. What the nodes did is read back from
the store (`run_records`) and from their log files (`log_events`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson
import psutil

from bench.bench_engine import Plan, cronmgr_home, daemon
from cronmgr.controller.processes import terminate
from cronmgr.core.config import Settings
from cronmgr.core.models import Schedule, Target
from cronmgr.engine.ownership import owner
from cronmgr.store import open_store
from cronmgr.store.postgres.sql import compile_query
from cronmgr.store.queries import load_queries
from cronmgr.store.relational.rows import _schedule_params, _target_params

LOG_BYTES = 1024**3
"""The nodes' log files rotate above this: never during a bench, so one file holds it all."""
VIEW_SECONDS = 20.0
"""How long the nodes have to see each other once the last one is up (a node learns of
a newer one at its next renewal, a third of the lease later)."""
APPLY_SECONDS = 10.0
"""How long every node has to take in the schedules once they are written."""
POLL_SECONDS = 0.2


@dataclass(slots=True)
class Node:
    """One daemon of the cluster: its settings (home, node id), its process, its CPU."""

    settings: Settings
    process: psutil.Process
    cpu_before: float = math.nan
    cpu_after: float = math.nan
    """CPU seconds at the start and at the end of the load (for a killed node: at its kill)."""

    @property
    def id(self) -> str:
        """The node id."""
        assert self.settings.node_id is not None
        return self.settings.node_id

    def cpu_seconds(self) -> float:
        """The process's CPU seconds so far (user and system)."""
        times = self.process.cpu_times()
        return times.user + times.system

    @property
    def load_cpu(self) -> float:
        """CPU seconds over the load."""
        return self.cpu_after - self.cpu_before


@asynccontextmanager
async def cluster(url: str, count: int) -> AsyncIterator[list[Node]]:
    """`count` daemons on the store at `url`, every one seeing all; stopped after."""
    async with AsyncExitStack() as stack:
        nodes = []
        for k in range(count):
            home = await stack.enter_async_context(cronmgr_home(url))
            # Readable ids; a log that never rotates, so it can be read whole afterwards.
            settings = home.model_copy(
                update={"node_id": f"node-{k + 1}", "log_max_bytes": LOG_BYTES}
            )
            process, _ = await stack.enter_async_context(daemon(settings))
            nodes.append(Node(settings, process))
        await _seen_by_all(nodes)
        try:
            yield nodes
        finally:
            # All at once: one after the other, as the homes unwind, takes seconds each.
            grace = nodes[0].settings.stop_grace_seconds + 5.0
            await asyncio.gather(*(terminate(node.process, grace) for node in nodes))


async def _seen_by_all(nodes: Sequence[Node]) -> None:
    ids = {node.id for node in nodes}
    deadline = time.monotonic() + VIEW_SECONDS
    waiting = list(nodes)
    while waiting and time.monotonic() < deadline:
        views = [log_events(n.settings, "nodes_changed") for n in waiting]
        waiting = [n for n, v in zip(waiting, views, strict=True) if not _sees(v, ids)]
        await asyncio.sleep(POLL_SECONDS)
    if waiting:
        raise RuntimeError(f"{[n.id for n in waiting]} did not see all {len(ids)} nodes")


def _sees(views: Iterable[dict[str, Any]], ids: set[str]) -> bool:
    return any(set(view.get("live", ())) == ids for view in views)


def owners(plan: Plan, nodes: Sequence[Node]) -> list[str]:
    """The node owning each schedule of the plan (`s<i>`) while all of them are live."""
    ids = [node.id for node in nodes]
    return [str(owner(f"s{i}", ids)) for i in range(plan.n)]


async def insert_definitions(
    url: str, targets: Sequence[Target], schedules: Sequence[Schedule]
) -> int:
    """Insert targets and schedules in one transaction with the store's own queries and
    row mapping, at one new revision (returned); the store is migrated first."""
    async with open_store(url):
        pass  # opening the store applies its schema
    queries = load_queries("postgres")
    target_query = compile_query(queries["insert_target"])
    schedule_query = compile_query(queries["insert_schedule"])
    connection = await asyncpg.connect(url)
    try:
        async with connection.transaction():
            await connection.execute(queries["bump_revision"])
            rows = [target_query.args(_target_params(t)) for t in targets]
            await connection.executemany(target_query.sql, rows)
            rows = [schedule_query.args(_schedule_params(s)) for s in schedules]
            await connection.executemany(schedule_query.sql, rows)
            revision: int = await connection.fetchval(queries["get_revision"])
    finally:
        await connection.close()
    return revision


async def applied_by_all(nodes: Sequence[Node], revision: int) -> None:
    """Wait until every node logged `schedules_applied` at `revision` or later."""
    deadline = time.monotonic() + APPLY_SECONDS
    waiting = list(nodes)
    while waiting and time.monotonic() < deadline:
        waiting = [n for n in waiting if math.isnan(applied_at(applied(n), revision))]
        await asyncio.sleep(POLL_SECONDS)
    if waiting:
        raise RuntimeError(f"{[n.id for n in waiting]} did not take in revision {revision}")


def applied_at(lines: Sequence[dict[str, Any]], revision: int) -> float:
    """When a node first logged `schedules_applied` at `revision` or later (Unix seconds;
    NaN if it has not), from its `schedules_applied` lines."""
    for line in lines:
        if line.get("revision", -1) >= revision:
            return datetime.fromisoformat(line["timestamp"]).timestamp()
    return math.nan


def applied(node: Node) -> list[dict[str, Any]]:
    """The node's `schedules_applied` log lines, in order."""
    return log_events(node.settings, "schedules_applied")


def log_events(settings: Settings, event: str) -> list[dict[str, Any]]:
    """The node's log lines of one event, in order (only those lines are decoded)."""
    needle = f'"event":"{event}"'.encode()
    try:
        data = settings.log_file.read_bytes()
    except FileNotFoundError:
        return []
    return [orjson.loads(line) for line in data.splitlines() if needle in line]


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run of a target schedule as the store holds it (times in Unix seconds)."""

    schedule: int
    slot: float
    status: str
    started: float | None
    finished: float | None
    node: str | None
    error: str | None


async def run_records(url: str) -> list[RunRecord]:
    """Every run of the plan's schedules (`s<i>`) the store holds."""
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT schedule_id, scheduled_for, status, started_at, finished_at, node_id, error"
            " FROM runs WHERE job LIKE 'target:%'"
        )
    finally:
        await connection.close()
    return [
        RunRecord(
            schedule=int(row[0].removeprefix("s")),
            slot=_unix(row[1]),
            status=row[2],
            started=_unix(row[3]) if row[3] else None,
            finished=_unix(row[4]) if row[4] else None,
            node=row[5],
            error=row[6],
        )
        for row in rows
    ]


async def lease_left(url: str, node_id: str) -> float:
    """Seconds until the lease of `node_id` runs out, as the store has it now."""
    connection = await asyncpg.connect(url)
    try:
        expires = await connection.fetchval(
            "SELECT lease_expires_at FROM nodes WHERE id = $1", node_id
        )
    finally:
        await connection.close()
    return _unix(expires) - time.time()


@dataclass(frozen=True, slots=True)
class Edit:
    """A schedule edited during the load: its owner, the revision written, and when the
    write's commit came back (Unix seconds)."""

    schedule_id: str
    owner: str
    revision: int
    committed: float


async def edit_schedules(
    url: str, schedules: Sequence[Schedule], owned_by: Sequence[str], times: Sequence[float]
) -> list[Edit]:
    """At each of `times`, rename one schedule (a PATCH of its name: its slots stay), the
    schedules taken in turn across the plan; the edits, as written."""
    edits = []
    step = max(1, len(schedules) // max(1, len(times)))
    async with open_store(url) as store:
        for j, at in enumerate(times):
            await asyncio.sleep(max(0.0, at - time.time()))
            i = (j * step) % len(schedules)
            edited = dataclasses.replace(schedules[i], name=f"{schedules[i].name}-edit-{j}")
            await store.update_schedule(edited)
            committed = time.time()
            revision = (await store.get_schedule(edited.id)).revision
            edits.append(Edit(edited.id, owned_by[i], revision, committed))
    return edits


def _unix(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()
