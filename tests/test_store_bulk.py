"""The bulk forms of the run and progress writes do exactly what their row-by-row forms do.

A batch of run writes runs each statement once over a JSON array (`<name>_bulk` in
sqlite.sql) instead of once per row. Here the same writes go into two copies of one store,
row by row into one and in bulk into the other: the rows each write changed and every
table the writes and their triggers touch must come out the same.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cronmgr.core.models import (
    ErrorType,
    Run,
    RunStatus,
    Schedule,
    ScheduleStatus,
    ScheduleType,
    StepResult,
    Target,
    Trigger,
    new_id,
)
from cronmgr.store.queries import load_queries
from cronmgr.store.records import Progress
from cronmgr.store.relational.columns import _ts
from cronmgr.store.relational.rows import _run_params, _step_params, _update_params
from cronmgr.store.relational.writes import _statement
from cronmgr.store.sqlite import SQLiteStore
from cronmgr.store.sqlite.connection import _write_progress
from cronmgr.store.writer import Statement, apply_writes

SLOT = datetime(2030, 1, 1, tzinfo=UTC)
TABLES = ("runs", "step_results", "run_stats", "run_error_stats", "run_latest", "schedules")
QUERIES = load_queries("sqlite")


def statement(name: str, bulk: bool) -> Statement:
    found = _statement(QUERIES, name)
    assert found.bulk is not None, f"{name} has no bulk form"
    return found if bulk else found._replace(bulk=None)


@pytest.fixture
async def seeded(tmp_path: Path) -> Path:
    """A store with one target and three schedules (s0, s1, s2)."""
    path = tmp_path / "seed.db"
    store = await SQLiteStore.open(path)
    try:
        await store.insert_target(Target(id="t1", name="t1", url="http://127.0.0.1:1/"))
        for i in range(3):
            await store.insert_schedule(
                Schedule(
                    id=f"s{i}",
                    name=f"s{i}",
                    target_id="t1",
                    schedule_type=ScheduleType.INTERVAL,
                    interval_seconds=60.0,
                )
            )
    finally:
        await store.close()
    return path


@pytest.fixture
def copies(seeded: Path) -> Iterator[tuple[sqlite3.Connection, sqlite3.Connection]]:
    """Two connections to two copies of the seeded store: row by row, and bulk."""
    connections = []
    for name in ("rows.db", "bulk.db"):
        path = seeded.with_name(name)
        shutil.copy(seeded, path)
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("PRAGMA foreign_keys=ON")
        connections.append(connection)
    yield connections[0], connections[1]
    for connection in connections:
        connection.close()


def dump(connection: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: sorted(connection.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
        for table in TABLES
    }


def both(
    copies: tuple[sqlite3.Connection, sqlite3.Connection],
    writes: list[tuple[str, dict[str, Any]]],
) -> list[int]:
    """Apply `writes` to both copies; the rows each changed, checked equal."""
    rows, bulk = copies
    params = [p for _, p in writes]
    by_row = apply_writes([statement(name, bulk=False) for name, _ in writes], params, rows)
    in_bulk = apply_writes([statement(name, bulk=True) for name, _ in writes], params, bulk)
    assert in_bulk == by_row
    return in_bulk


def run(i: int, slot: int | None = None) -> Run:
    return Run(
        id=new_id(),
        job="target:t1",
        schedule_id=f"s{i % 3}",
        scheduled_for=SLOT + timedelta(seconds=i if slot is None else slot),
        trigger=Trigger.SCHEDULE,
        status=RunStatus.PENDING,
        node_id=f"node-{i % 2}" if i % 5 else None,  # claimed by a node, or by none
    )


def attempt(i: int, number: int, failed: bool) -> StepResult:
    return StepResult(
        step="request",
        status=RunStatus.FAILED if failed else RunStatus.SUCCEEDED,
        started_at=SLOT + timedelta(seconds=i, microseconds=1234),
        duration_ms=3 + i,
        attempt=number,
        status_code=503 if failed else 200,
        response_size=2,
        error_type=ErrorType.HTTP_5XX if failed else None,
        error="HTTP 503" if failed else None,
        output_tail=("line one", f"line {i}"),
    )


def test_claims_starts_releases_attempts_and_ends_match_row_by_row(
    copies: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    runs = [run(i) for i in range(30)]
    # Ten more claims of slots already taken: they must change nothing.
    taken = [run(i, slot=i) for i in range(10)]
    counts = both(copies, [("insert_run", _run_params(r)) for r in runs + taken])
    assert counts == [1] * 30 + [0] * 10

    # Five claims end skipped before their start comes: the start leaves them so.
    skipped = [_update_params(r.id, RunStatus.SKIPPED, None, SLOT, "overlap") for r in runs[25:]]
    both(copies, [("update_run", p) for p in skipped])
    started = SLOT + timedelta(seconds=1, microseconds=5)
    starts = [
        ("start_run", {"id": r.id, "started_at": _ts(started)}) for r in runs[:20] + runs[25:]
    ]
    # Releases spare the runs that started (0-4) and free the others (20-24).
    releases = [("release_claim", {"id": r.id}) for r in runs[:5] + runs[20:25]]
    assert both(copies, starts + releases)

    writes = []
    for i, r in enumerate(runs[:20]):
        failed = i % 3 == 0
        writes.append(("insert_step_result", _step_params(r.id, 0, attempt(i, 1, True))))
        writes.append(("insert_step_result", _step_params(r.id, 0, attempt(i, 2, failed))))
        status = RunStatus.FAILED if failed else RunStatus.SUCCEEDED
        finished = SLOT + timedelta(seconds=i, milliseconds=i * 7 + 3, microseconds=i)
        # Every other end carries its start (a claimed run whose start was not written).
        begun = started if i % 2 else None
        error = "http_5xx" if failed else None
        writes.append(("update_run", _update_params(r.id, status, begun, finished, error)))
    both(copies, writes)
    # A later write without an error or an end keeps the ones stored.
    again = [_update_params(r.id, RunStatus.FAILED, None, None, None) for r in runs[:6]]
    both(copies, [("update_run", p) for p in again])

    rows, bulk = copies
    assert dump(bulk) == dump(rows)
    assert bulk.execute("SELECT count(*) FROM run_error_stats").fetchone()[0] > 0
    assert bulk.execute("SELECT count(*) FROM runs").fetchone()[0] == 25
    kept = bulk.execute("SELECT error FROM runs WHERE id = ?", (runs[0].id,)).fetchone()
    assert kept == ("http_5xx",)
    assert bulk.execute("SELECT count(*) FROM runs WHERE status = 'skipped'").fetchone()[0] == 5
    nodes = bulk.execute("SELECT node_id, count(*) FROM runs GROUP BY node_id ORDER BY 1")
    assert nodes.fetchall() == [(None, 5), ("node-0", 10), ("node-1", 10)]


def test_two_writes_of_one_row_in_a_batch_apply_in_order(
    copies: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    """An UPDATE over a JSON array would apply only one of two rows naming the same run: such
    a group goes row by row."""
    claims = [run(i) for i in range(3)]
    both(copies, [("insert_run", _run_params(r)) for r in claims])
    first, second = claims[0].id, claims[1].id
    end = SLOT + timedelta(seconds=5)
    both(
        copies,
        [
            ("update_run", _update_params(first, RunStatus.RUNNING, SLOT, None, None)),
            ("update_run", _update_params(second, RunStatus.SUCCEEDED, SLOT, end, None)),
            ("update_run", _update_params(first, RunStatus.FAILED, None, end, "late")),
        ],
    )
    rows, bulk = copies
    assert dump(bulk) == dump(rows)
    status = bulk.execute("SELECT status, error FROM runs WHERE id = ?", (first,)).fetchone()
    assert status == ("failed", "late")


def test_progress_in_bulk_matches_row_by_row(
    copies: tuple[sqlite3.Connection, sqlite3.Connection],
) -> None:
    """Counters, the revision guard and the engine's status change, schedule by schedule;
    an unknown schedule is ignored."""
    rows, bulk = copies
    revision = rows.execute("SELECT revision FROM schedules WHERE id = 's1'").fetchone()[0]
    when = SLOT + timedelta(minutes=1)
    progress = [
        Progress("s0", 4, 2, SLOT, when, None, None, None, None),
        # Written for an older revision: the failure count and circuit stay the store's.
        Progress("s1", 5, 3, SLOT, when, when, None, None, revision - 1),
        Progress("s2", 6, 0, SLOT, None, None, ScheduleStatus.COMPLETED, "max_runs", None),
        Progress("gone", 1, 0, SLOT, when, None, None, None, None),
    ]
    _write_progress(statement("record_progress", bulk=False), progress, rows)
    _write_progress(statement("record_progress", bulk=True), progress, bulk)
    assert dump(bulk) == dump(rows)
    s2 = bulk.execute("SELECT status, run_count FROM schedules WHERE id = 's2'").fetchone()
    assert s2 == ("completed", 6)
