"""The recording floor: the least a Python scheduler on this machine can spend per run while
it records every run as cronmgr does, measured under the same spread load.

It is not a scheduler: a heap of slots known in advance, one timerfd wake-up per slot
(`cronmgr.engine.wake.Alarm`), a prepared GET written on a kept-alive connection and its reply
parsed by httptools (no timeout, no retry, no assertion), one JSON line per run, and the
writes cronmgr's daemon makes for a run, batched the same way in a writer thread on
cronmgr's real schema: each slot claimed ahead as a pending run (every 10 ms), its end and
its attempt (with the next claim batch), the schedule's bookkeeping (every 200 ms).

Whatever cronmgr does beyond this (policies, retries, timeouts, the API's view of live
runs) costs more; what lies below it cannot be reached by any engine recording each run in
this store. `bench_engine` prints its CPU per run beside cronmgr's and the peer's.

`python -m bench.floor floor URL plan...` runs it as a child of the bench, as the peer runs.
"""

from __future__ import annotations

import asyncio
import heapq
import os
import queue
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import httptools
import orjson
import uvloop

from bench import bench_engine as engine
from cronmgr.core.config import load_settings
from cronmgr.core.models import new_id
from cronmgr.engine.wake import Alarm
from cronmgr.store.queries import load_queries
from cronmgr.store.sqlite import PRAGMAS

CLAIM_EVERY_SECONDS = 0.01
CLAIM_AHEAD_SECONDS = 0.25
PROGRESS_EVERY_SECONDS = 0.2
CONNECTIONS = 16
"""Kept-alive connections: a request takes well under a millisecond, one slot is due per
millisecond, so a handful are ever busy at once."""

Rows = list[dict[str, Any]]
Job = list[tuple[str, Rows]]


class Ended(NamedTuple):
    """A run that ended, waiting for the next claim batch to be written."""

    run_id: str
    status: str
    started: str
    finished: str
    status_code: int
    duration_ms: float


def _ts(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="microseconds")


class Writer(threading.Thread):
    """Applies each job (statements over JSON rows) in one transaction, as the store does."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="floor writer", daemon=True)
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._path = path

    def run(self) -> None:
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        for pragma in PRAGMAS:
            connection.execute(pragma)
        while (job := self.jobs.get()) is not None:
            connection.execute("BEGIN IMMEDIATE")
            for sql, rows in job:
                connection.execute(sql, {"rows": orjson.dumps(rows).decode()})
            connection.execute("COMMIT")
        connection.close()


class Connection(asyncio.Protocol):
    """One kept-alive HTTP/1.1 connection: a request written, its reply parsed."""

    def __init__(self, idle: list[Connection]) -> None:
        self._idle = idle
        self._transport: asyncio.Transport | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._done: Callable[[int], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._idle.append(self)

    def data_received(self, data: bytes) -> None:
        assert self._parser is not None
        self._parser.feed_data(data)

    def on_message_complete(self) -> None:
        assert self._parser is not None and self._done is not None
        done, self._done = self._done, None
        self._idle.append(self)
        done(self._parser.get_status_code())

    def send(self, head: bytes, done: Callable[[int], None]) -> None:
        """Write a request; `done` gets the reply's status code."""
        assert self._transport is not None
        self._done = done
        self._parser = httptools.HttpResponseParser(self)
        self._transport.write(head)


class Floor:
    """The load of a plan, fired and recorded with as little as that takes."""

    def __init__(self, plan: engine.Plan, url: str, store: Path, log: Path) -> None:
        self._plan = plan
        self._queries = load_queries("sqlite")
        self._writer = Writer(store)
        self._log = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        host, port = url.removeprefix("http://").split(":")
        self._address = (host, int(port))
        self._heads = [
            f"GET {plan.base('')}/s/{i} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
            for i in range(plan.n)
        ]
        self._heap = [(plan.first(i), i, 0) for i in range(plan.n)]
        self._claim_heap = list(self._heap)
        self._claims: dict[tuple[int, int], str] = {}
        self._ended: list[Ended] = []
        self._progress: dict[int, dict[str, Any]] = {}
        self._idle: list[Connection] = []
        self._alarm: Alarm | None = None

    async def start(self) -> None:
        """Open the connections, start the writer and the timers."""
        loop = asyncio.get_running_loop()
        for _ in range(CONNECTIONS):
            await loop.create_connection(lambda: Connection(self._idle), *self._address)
        self._writer.start()
        self._claim()
        self._flush_progress()
        self._alarm = Alarm(self._on_timer)
        self._alarm.set_at(self._heap[0][0])

    def _claim(self) -> None:
        horizon = time.time() + CLAIM_AHEAD_SECONDS + CLAIM_EVERY_SECONDS
        claimed: Rows = []
        while self._claim_heap and self._claim_heap[0][0] <= horizon:
            at, i, k = heapq.heappop(self._claim_heap)
            run_id = self._claims[i, k] = new_id()
            claimed.append(_pending(run_id, i, at))
            if k + 1 < self._plan.slots:
                heapq.heappush(self._claim_heap, (at + 1, i, k + 1))
        job: Job = [(self._queries["insert_run_bulk"], claimed)] if claimed else []
        if self._ended:
            ended, self._ended = self._ended, []
            job.append((self._queries["update_run_bulk"], [_end(e) for e in ended]))
            job.append((self._queries["insert_step_result_bulk"], [_attempt(e) for e in ended]))
        if job:
            self._writer.jobs.put(job)
        asyncio.get_running_loop().call_later(CLAIM_EVERY_SECONDS, self._claim)

    def _flush_progress(self) -> None:
        if self._progress:
            rows, self._progress = list(self._progress.values()), {}
            self._writer.jobs.put([(self._queries["record_progress_bulk"], rows)])
        asyncio.get_running_loop().call_later(PROGRESS_EVERY_SECONDS, self._flush_progress)

    def _on_timer(self) -> None:
        now = time.time()
        while self._heap and self._heap[0][0] <= now:
            self._fire(*heapq.heappop(self._heap))
        if self._heap and self._alarm is not None:
            self._alarm.set_at(self._heap[0][0])

    def _fire(self, at: float, i: int, k: int) -> None:
        run_id, started = self._claims.pop((i, k)), time.time()

        def done(status_code: int) -> None:
            ended = time.time()
            status = "succeeded" if status_code == 200 else "failed"
            end = _ts(ended)
            duration_ms = round((ended - started) * 1000, 3)
            self._ended.append(Ended(run_id, status, _ts(started), end, status_code, duration_ms))
            line = {
                "event": "run_finished",
                "status": status,
                "run_id": run_id,
                "schedule_id": f"s{i}",
                "duration_ms": duration_ms,
                "status_code": status_code,
                "level": "info",
                "timestamp": end,
            }
            os.write(self._log, orjson.dumps(line) + b"\n")
            self._progress[i] = _progress(i, k, at)

        self._idle.pop().send(self._heads[i], done)
        if k + 1 < self._plan.slots:
            heapq.heappush(self._heap, (at + 1, i, k + 1))


def _pending(run_id: str, i: int, at: float) -> dict[str, Any]:
    return {
        "id": run_id,
        "job": f"target:bench-{i}",
        "schedule_id": f"s{i}",
        "scheduled_for": _ts(at),
        "trigger": "schedule",
        "status": "pending",
        "started_at": None,
        "finished_at": None,
        "error": None,
        "created_at": _ts(time.time()),
    }


def _end(ended: Ended) -> dict[str, Any]:
    return {
        "id": ended.run_id,
        "status": ended.status,
        "started_at": ended.started,
        "finished_at": ended.finished,
        "error": None,
    }


def _attempt(ended: Ended) -> dict[str, Any]:
    return {
        "run_id": ended.run_id,
        "position": 0,
        "step": "GET",
        "attempt": 1,
        "status": ended.status,
        "started_at": ended.started,
        "duration_ms": ended.duration_ms,
        "exit_code": None,
        "signal": None,
        "status_code": ended.status_code,
        "response_size": 2,
        "error_type": None,
        "error": None,
        "output_tail": "[]",
    }


def _progress(i: int, k: int, at: float) -> dict[str, Any]:
    return {
        "schedule_id": f"s{i}",
        "run_count": k + 1,
        "consecutive_failures": 0,
        "last_run_at": _ts(at),
        "next_run_at": _ts(at + 1),
        "circuit_open_until": None,
        "status": None,
        "status_reason": None,
        "revision": None,
    }


async def floor_main(url: str, plan: engine.Plan) -> None:
    """Fill a store as the bench fills cronmgr's, then run the plan on it."""
    root = Path(tempfile.mkdtemp(prefix="cronmgr-floor-"))
    try:
        (root / "pipelines").mkdir()
        settings = load_settings(env={}, home=root, supervise=False)
        targets = [engine.bench_target(i, plan.base(url)) for i in range(plan.n)]
        await engine.insert_targets(settings, targets)
        await engine.insert_schedules(settings, engine.plan_schedules(plan))
        floor = Floor(plan, url, settings.state_path / "cronmgr.db", root / "floor.jsonl")
        await floor.start()
        engine.say_ready()
        await engine.held(plan)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str]) -> int:
    """`floor URL plan...`, as the bench starts its children: the plan on uvloop, the
    daemon's loop."""
    if not argv or argv[0] != "floor":
        print("usage: python -m bench.floor floor URL N T0 SPACING SLOTS TAG", file=sys.stderr)
        return 2
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(floor_main(argv[1], engine.parse_plan(argv[2:])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
