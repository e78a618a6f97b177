"""The spread load on the PostgreSQL store beside the SQLite store, in the same run.

The engine bench's spread load (1,000 schedules at 1/s, phases spread over the second)
runs on a real daemon twice, once on SQLite in its home and once on PostgreSQL (a fresh
database on the local server), against the same target process. Reported for each: slots
missed and doubled, lag p50/p99, and the daemon's CPU per recorded run; for PostgreSQL
also the server's CPU per run (every `postgres` process of the machine over the load:
the daemon's backends and the server's own writers). Skipped, saying why, where no
PostgreSQL server answers on 127.0.0.1:5432.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import psutil

from bench.bench_engine import (
    WARM_SLOTS,
    LoadResult,
    Plan,
    TargetServer,
    cronmgr_load,
    sizes,
    target_server,
    watch_load,
)

SERVER = os.environ.get("CRONMGR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASE = "cronmgr_bench"


def run() -> list[dict[str, Any]]:
    """The rows of both stores' spread loads."""
    return asyncio.run(_measure())


async def _measure() -> list[dict[str, Any]]:
    size = sizes()
    label = f"{size.spread}/s x {size.seconds} s"
    try:
        async with fresh_database() as url, target_server() as target:
            n, spacing, slots = size.spread, 1.0 / size.spread, WARM_SLOTS + size.seconds
            sqlite = await cronmgr_load(target, n, spacing, slots)
            server = ServerCpu()
            postgres = await cronmgr_load(target, n, spacing, slots, url, server.watch)
    except (OSError, asyncpg.PostgresError) as exc:
        return [_row(f"PostgreSQL store, {label}", None, "", f"skipped: {exc}", "")]
    return _rows(label, sqlite, postgres, server.ms_per_run(postgres))


class ServerCpu:
    """The PostgreSQL server's CPU seconds over a load (all its processes)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._before = 0.0

    def begin(self) -> None:
        """The load starts: note the server's CPU so far."""
        self._before = server_seconds()

    def end(self) -> None:
        """The load is over: `seconds` is the server's CPU since `begin`."""
        self.seconds = server_seconds() - self._before

    async def watch(self, target: TargetServer, plan: Plan, process: psutil.Process) -> LoadResult:
        self.begin()
        result = await watch_load(target, plan, process)
        self.end()
        return result

    def ms_per_run(self, load: LoadResult) -> float:
        return self.seconds * 1000 / max(1, load.verdict.arrived)


def server_seconds() -> float:
    """CPU seconds (user and system) of every `postgres` process of the machine so far."""
    total = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "postgres":
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
    return total


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """The URL of a fresh, empty database `cronmgr_bench` on the server, dropped after."""
    admin = await asyncpg.connect(SERVER, timeout=5)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {DATABASE}")
        base = SERVER.rsplit("/", 1)[0]
        yield f"{base}/{DATABASE}"
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        await admin.close()


def _rows(
    label: str, sqlite: LoadResult, postgres: LoadResult, server_ms: float
) -> list[dict[str, Any]]:
    rows = []
    for store, load in (("SQLite", sqlite), ("PostgreSQL", postgres)):
        v = load.verdict
        name = f"{store} store, {label}"
        rows += [
            _row(f"{name}: slots missed", v.missed, "slots", "0", v.missed == 0),
            _row(f"{name}: slots doubled", v.doubled, "slots", "0", v.doubled == 0),
            _row(f"{name}: lag p50", round(v.lag(0.5), 3), "ms", "", ""),
            _row(f"{name}: lag p99", round(v.lag(0.99), 3), "ms", "", ""),
            _row(f"{name}: daemon CPU per run", round(load.cpu_ms_per_run, 3), "ms", "", ""),
        ]
        rows += [_row(f"{name}: note", None, "", note, "") for note in load.notes]
    rows.append(
        _row(f"PostgreSQL store, {label}: server CPU per run", round(server_ms, 3), "ms", "", "")
    )
    return rows


def _row(name: str, value: Any, unit: str, target: str, ok: bool | str) -> dict[str, Any]:
    verdict = ok if isinstance(ok, str) else ("yes" if ok else "NO")
    return {"name": name, "value": value, "unit": unit, "target": target, "ok": verdict}
