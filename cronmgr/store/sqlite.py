"""The embedded store: one SQLite file in WAL mode, driven through aiosqlite's thread."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from cronmgr.errors import NotFound, StoreError
from cronmgr.models import ErrorType, Run, RunStatus, StepResult, Trigger, utcnow
from cronmgr.store.queries import load_queries, migrations

BUSY_TIMEOUT_MS = 5000

Row = Mapping[str, Any] | sqlite3.Row


def _ts(value: datetime | None) -> str | None:
    # One fixed-width UTC form, so that text order is time order in SQL.
    if value is None:
        return None
    return value.astimezone(tz=utcnow().tzinfo).isoformat(timespec="microseconds")


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def run_from_row(row: Row, steps: Iterable[StepResult] = ()) -> Run:
    """A Run from a `runs` row."""
    scheduled_for = _dt(row["scheduled_for"])
    assert scheduled_for is not None
    return Run(
        id=row["id"],
        job=row["job"],
        schedule_id=row["schedule_id"],
        scheduled_for=scheduled_for,
        trigger=Trigger(row["trigger"]),
        status=RunStatus(row["status"]),
        started_at=_dt(row["started_at"]),
        finished_at=_dt(row["finished_at"]),
        error=row["error"],
        steps=tuple(steps),
    )


def step_from_row(row: Row) -> StepResult:
    """A StepResult from a `step_results` row."""
    started_at = _dt(row["started_at"])
    assert started_at is not None
    return StepResult(
        step=row["step"],
        status=RunStatus(row["status"]),
        started_at=started_at,
        duration_ms=row["duration_ms"],
        attempt=row["attempt"],
        exit_code=row["exit_code"],
        signal=row["signal"],
        status_code=row["status_code"],
        response_size=row["response_size"],
        error_type=ErrorType(row["error_type"]) if row["error_type"] else None,
        error=row["error"],
        output_tail=tuple(orjson.loads(row["output_tail"])),
    )


class SQLiteStore:
    """The Store on one SQLite file."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._db = connection
        self._q = load_queries("sqlite")

    @classmethod
    async def open(cls, path: Path) -> SQLiteStore:
        """Open (creating and upgrading as needed) the store at `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = await aiosqlite.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)
            connection.row_factory = sqlite3.Row
            store = cls(connection)
            await store._prepare()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the SQLite store at {path}: {exc}") from exc
        return store

    async def _prepare(self) -> None:
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        await self._db.execute("PRAGMA foreign_keys=ON")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._migrate()

    async def _migrate(self) -> None:
        async with self._db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        current = row[0] if row else 0
        for version, sql in migrations(self._q):
            if version <= current:
                continue
            # executescript commits first; the version bump rides in the same script.
            await self._db.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version={version};\nCOMMIT;")

    async def _write(self, name: str, params: Mapping[str, Any]) -> int:
        try:
            cursor = await self._db.execute(self._q[name], params)
            await self._db.commit()
        except sqlite3.Error as exc:
            raise StoreError(f"store write {name} failed: {exc}") from exc
        return cursor.rowcount

    async def _read(self, name: str, params: Mapping[str, Any]) -> list[sqlite3.Row]:
        try:
            async with self._db.execute(self._q[name], params) as cursor:
                return list(await cursor.fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"store read {name} failed: {exc}") from exc

    async def insert_run(self, run: Run) -> bool:
        """Record a new run; False when its (schedule, scheduled_for) slot is taken."""
        params = {
            "id": run.id,
            "job": run.job,
            "schedule_id": run.schedule_id,
            "scheduled_for": _ts(run.scheduled_for),
            "trigger": run.trigger.value,
            "status": run.status.value,
            "started_at": _ts(run.started_at),
            "finished_at": _ts(run.finished_at),
            "error": run.error,
            "created_at": _ts(utcnow()),
        }
        return await self._write("insert_run", params) == 1

    async def update_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        error: str | None = None,
    ) -> None:
        """Move a run to `status`, setting the given timestamps and error."""
        params = {
            "id": run_id,
            "status": status.value,
            "started_at": _ts(started_at),
            "finished_at": _ts(finished_at),
            "error": error,
        }
        await self._write("update_run", params)

    async def insert_step_result(self, run_id: str, position: int, result: StepResult) -> None:
        """Record one attempt of one step of a run."""
        params = result.as_dict()
        params.update(
            run_id=run_id,
            position=position,
            started_at=_ts(result.started_at),
            output_tail=orjson.dumps(list(result.output_tail)).decode(),
        )
        await self._write("insert_step_result", params)

    async def get_run(self, run_id: str) -> Run:
        """A run with its step results; raises NotFound."""
        rows = await self._read("get_run", {"id": run_id})
        if not rows:
            raise NotFound(f"run {run_id!r} does not exist")
        steps = await self._read("get_step_results", {"run_id": run_id})
        return run_from_row(rows[0], (step_from_row(s) for s in steps))

    async def list_runs(
        self,
        *,
        job: str | None = None,
        schedule_id: str | None = None,
        status: RunStatus | None = None,
        since: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Run]:
        """Runs, newest first, without their steps."""
        params = {
            "job": job,
            "schedule_id": schedule_id,
            "status": status.value if status else None,
            "since": _ts(since),
            "limit": limit,
            "offset": offset,
        }
        return [run_from_row(row) for row in await self._read("list_runs", params)]

    async def fail_orphaned_runs(self, reason: str) -> int:
        """Mark runs a dead daemon left pending or running as failed; return how many."""
        return await self._write("fail_orphaned_runs", {"now": _ts(utcnow()), "reason": reason})

    async def close(self) -> None:
        """Flush and release the connection."""
        await self._db.close()
