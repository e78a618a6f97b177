"""The embedded store: one SQLite file in WAL mode, driven through aiosqlite's thread."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import operator
import sqlite3
import time
import typing
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import orjson
import structlog

from cronmgr.core.errors import Conflict, NotFound, StoreError, StoreFull
from cronmgr.core.models import (
    Assertion,
    ErrorType,
    RetryPolicy,
    Run,
    RunStatus,
    Schedule,
    ScheduleStatus,
    StepResult,
    Target,
    Trigger,
    utcnow,
)
from cronmgr.store.base import (
    DURATION_BOUNDS,
    Incident,
    IncidentStatus,
    LatestRun,
    MetricsSummary,
    Progress,
    RunStats,
    ScheduleChanges,
    StepGroup,
)
from cronmgr.store.batch import Write, WriteBatcher
from cronmgr.store.queries import load_queries, migrations
from cronmgr.store.readable import (
    checked_schedule,
    checked_target,
    unreadable_run,
    unreadable_schedule,
    unreadable_step,
    unreadable_target,
)
from cronmgr.store.writer import Statement, SyncWriter, apply_writes, rollback, run_many

log = structlog.get_logger("cronmgr.store")

BUSY_TIMEOUT_MS = 5000
MIN_SQLITE = (3, 35)
CLOSE_HOLD_SECONDS = 10.0
"""How long a closing store goes on trying writes held for want of room."""
PROGRESS_CHUNK = 2000  # rows per transaction of record_progress: ~0.1 s of write lock

E = TypeVar("E", bound=Enum)


@dataclasses.dataclass(frozen=True, slots=True)
class WriteKind:
    """One kind of run write, all the store needs to know of it in one place: adding a
    kind is one row of `WRITE_KINDS` (and its named query in sqlite.sql)."""

    statement: str
    """The named query it runs; a `<statement>_bulk` query, if any, is its bulk form."""
    order: int
    """Its place in a batch: writes are applied lowest first (see `WRITE_KINDS`)."""
    key: str | None = None
    """The parameter naming the row an UPDATE changes (see writer.Statement.key)."""
    may_skip: bool = False
    """Whether it may change no row (see writer.Statement.may_skip)."""

    def prepared(self, queries: Mapping[str, str]) -> Statement:
        """The statement `apply_writes` runs for it."""
        sql, bulk = queries[self.statement], queries.get(f"{self.statement}_bulk")
        return Statement(sql=sql, may_skip=self.may_skip, bulk=bulk, key=self.key)


# A start goes before a release, which then spares that run; a release before a claim, so
# a slot released and claimed again in one batch is taken; an attempt before the end whose
# trigger reads its error class. (A start or a release waits for its claim to commit.)
WRITE_KINDS = {
    kind.statement: kind
    for kind in (
        WriteKind("start_run", 0, key="id"),
        WriteKind("release_claim", 1),
        WriteKind("insert_run", 2, may_skip=True),  # a slot already taken: no row
        WriteKind("record_step_group", 3),  # migration 5
        WriteKind("insert_step_result", 4),
        WriteKind("update_run", 5, key="id"),
    )
}
"""The run writes the batcher may queue, by statement name."""


PROGRESS_WRITE = WriteKind("record_progress", -1, key="schedule_id")
"""Progress, written in transactions of its own, never in a batch of run writes."""


_ALL_WRITES = {**WRITE_KINDS, PROGRESS_WRITE.statement: PROGRESS_WRITE}


def _statement(queries: Mapping[str, str], name: str) -> Statement:
    """The statement of the write kind `name`, run writes and progress alike."""
    return _ALL_WRITES[name].prepared(queries)


PRAGMAS = (
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=NORMAL",
)

Row = Mapping[str, Any] | sqlite3.Row


def _members(kind: type[E]) -> Callable[[str], E]:
    """value -> member by dict lookup: calling the enum class costs ten times as much,
    five times per schedule row, 100,000 rows when the daemon starts."""
    return {member.value: member for member in kind}.__getitem__


_schedule_status = _members(ScheduleStatus)


def _ts(value: datetime | None) -> str | None:
    # One fixed-width UTC form, so that text order is time order in SQL.
    if value is None:
        return None
    if value.tzinfo is not UTC:  # most are UTC already (utcnow): no conversion then
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _required_dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _column(value: Any) -> Any:
    """A model attribute as SQLite stores it."""
    if isinstance(value, datetime):
        return _ts(value)
    if isinstance(value, Enum):
        return value.value
    return value


def split_statements(script: str) -> list[str]:
    """The statements of an SQL script, one by one (executescript would commit first)."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if any(not line.strip().startswith("--") for line in pending.splitlines() if line.strip()):
        raise ValueError(f"incomplete SQL statement: {pending.strip()!r}")
    return statements


def run_from_row(row: Row, steps: Iterable[StepResult] = ()) -> Run:
    """A Run from a `runs` row; one that can't be mapped comes back failed, saying why."""
    steps = tuple(steps)
    try:
        return _mapped_run(row, steps)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        return unreadable_run(dict(row), exc, steps)


def _mapped_run(row: Row, steps: Iterable[StepResult]) -> Run:
    return Run(
        id=row["id"],
        job=row["job"],
        schedule_id=row["schedule_id"],
        scheduled_for=_required_dt(row["scheduled_for"]),
        trigger=Trigger(row["trigger"]),
        status=RunStatus(row["status"]),
        started_at=_dt(row["started_at"]),
        finished_at=_dt(row["finished_at"]),
        error=row["error"],
        steps=tuple(steps),
    )


def step_from_row(row: Row) -> StepResult:
    """A StepResult from a `step_results` row; one that can't be mapped is failed, saying why."""
    try:
        return _mapped_step(row)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        return unreadable_step(dict(row), exc)


def _mapped_step(row: Row) -> StepResult:
    return StepResult(
        step=row["step"],
        status=RunStatus(row["status"]),
        started_at=_required_dt(row["started_at"]),
        duration_ms=row["duration_ms"],
        attempt=row["attempt"],
        position=row["position"],
        exit_code=row["exit_code"],
        signal=row["signal"],
        status_code=row["status_code"],
        response_size=row["response_size"],
        error_type=ErrorType(row["error_type"]) if row["error_type"] else None,
        error=row["error"],
        output_tail=tuple(orjson.loads(row["output_tail"])),
    )


def _assertion(data: Mapping[str, Any]) -> Assertion:
    return Assertion(kind=data["type"], value=data.get("value"), path=data.get("path"))


def target_from_row(row: Row) -> Target:
    """A Target from a `targets` row; one that breaks the rules comes with its reason."""
    try:
        target = _mapped_target(row)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        return unreadable_target(dict(row), exc)
    return checked_target(target)


def _mapped_target(row: Row) -> Target:
    return Target(
        id=row["id"],
        name=row["name"],
        url=row["url"],
        method=row["method"],
        headers=orjson.loads(row["headers"]),
        body_template=row["body_template"],
        timeout_seconds=row["timeout_seconds"],
        expected_status=tuple(orjson.loads(row["expected_status"])),
        assertions=tuple(_assertion(a) for a in orjson.loads(row["assertions"])),
        follow_redirects=bool(row["follow_redirects"]),
        verify_tls=bool(row["verify_tls"]),
        retry=RetryPolicy(**orjson.loads(row["retry"])),
        created_at=_required_dt(row["created_at"]),
        updated_at=_required_dt(row["updated_at"]),
    )


def _target_params(target: Target) -> dict[str, Any]:
    params = {f.name: _column(getattr(target, f.name)) for f in dataclasses.fields(target)}
    del params["status_reason"]  # found when read, never stored
    params.update(
        headers=_json(target.headers),
        expected_status=_json(target.expected_status),
        assertions=_json([a.as_dict() for a in target.assertions]),
        retry=_json(target.retry.as_dict()),
    )
    return params


def schedule_from_row(row: Row) -> Schedule:
    """A Schedule, progress and revision included, from a `schedules` row.

    Read through the rule it was saved by: a row that breaks it comes back in status
    `error` with the reason, never as an exception that would fail a whole list.
    """
    try:
        schedule = _mapped_schedule(row)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        return unreadable_schedule(dict(row), exc)
    return checked_schedule(schedule)


def _conversion(name: str, kind: Any) -> Callable[[Any], Any] | None:
    """How a `schedules` column becomes the Schedule field of that type; None: as stored."""
    if kind in _AS_STORED:
        return None
    if isinstance(kind, type) and issubclass(kind, Enum):
        return _members(kind)
    if (convert := _PARSED.get(kind)) is not None:
        return convert
    # Said when the module loads: a field no column form was chosen for is a bug here.
    raise TypeError(f"Schedule.{name}: no column form for {kind!r}")


_AS_STORED: set[Any] = {str, int, float, str | None, int | None, float | None}
_PARSED: dict[Any, Callable[[Any], Any]] = {datetime: _required_dt, datetime | None: _dt}
_SCHEDULE_TYPES = typing.get_type_hints(Schedule)
SCHEDULE_COLUMNS = tuple(f.name for f in dataclasses.fields(Schedule))
"""The `schedules` columns, one per Schedule field, in the fields' order."""
# All columns in one C call, then only the fields that need it converted, by position:
# 100,000 rows at daemon start, and this is a sixth faster than 31 reads by name in Python.
_schedule_columns = operator.itemgetter(*SCHEDULE_COLUMNS)
_SCHEDULE_CONVERSIONS = tuple(
    (index, convert)
    for index, name in enumerate(SCHEDULE_COLUMNS)
    if (convert := _conversion(name, _SCHEDULE_TYPES[name])) is not None
)


def _mapped_schedule(row: Row) -> Schedule:
    values = list(_schedule_columns(row))
    for index, convert in _SCHEDULE_CONVERSIONS:
        values[index] = convert(values[index])
    return Schedule(*values)


def _schedule_params(schedule: Schedule) -> dict[str, Any]:
    return {f.name: _column(getattr(schedule, f.name)) for f in dataclasses.fields(schedule)}


def _run_params(run: Run) -> dict[str, Any]:
    return {
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


def _log_failed_start(future: asyncio.Future[int]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error("run_start_not_recorded", error=str(exc))


def _log_failed_attempt(future: asyncio.Future[int]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error("run_attempt_not_recorded", error=str(exc))


def _update_params(
    run_id: str,
    status: RunStatus,
    started_at: datetime | None,
    finished_at: datetime | None,
    error: str | None,
) -> dict[str, Any]:
    return {
        "id": run_id,
        "status": status.value,
        "started_at": _ts(started_at),
        "finished_at": _ts(finished_at),
        "error": error,
    }


def _step_params(run_id: str, position: int, result: StepResult) -> dict[str, Any]:
    # Column by column rather than through as_dict(): every attempt of every run is
    # written, and the generic walk over fields and values cost several times as much.
    return {
        "run_id": run_id,
        "position": position,
        "step": result.step,
        "attempt": result.attempt,
        "status": result.status.value,
        "started_at": _ts(result.started_at),
        "duration_ms": result.duration_ms,
        "exit_code": result.exit_code,
        "signal": result.signal,
        "status_code": result.status_code,
        "response_size": result.response_size,
        "error_type": result.error_type.value if result.error_type is not None else None,
        "error": result.error,
        "output_tail": orjson.dumps(result.output_tail).decode(),
    }


def _progress_params(progress: Progress) -> dict[str, Any]:
    return {name: _column(value) for name, value in zip(Progress._fields, progress, strict=True)}


def _write_progress(
    statement: Statement, chunk: Sequence[Progress], connection: sqlite3.Connection
) -> None:
    params = [_progress_params(p) for p in chunk]
    connection.execute("BEGIN IMMEDIATE")
    try:
        run_many(connection, statement, params)
        connection.execute("COMMIT")
    except BaseException:
        rollback(connection)
        raise


def _store_error(what: str, exc: sqlite3.Error) -> StoreError:
    """The driver's error in the store's words: StoreFull when the disk has no room.

    A full disk shows as SQLITE_FULL where the database or its WAL grows, and as one of the
    SQLITE_IOERR codes where the WAL index (the -shm file) grows; both are held and tried
    again by the run writes, never dropped."""
    code = getattr(exc, "sqlite_errorname", None) or ""
    if code == "SQLITE_FULL" or code.startswith("SQLITE_IOERR"):
        return StoreFull(f"store {what} failed: the disk is full or cannot be written ({exc})")
    return StoreError(f"store {what} failed: {exc}")


def _refusal(exc: sqlite3.IntegrityError, kind: str, name: str, target_id: str | None) -> Exception:
    """The caller's words for a constraint SQLite enforced."""
    code = exc.sqlite_errorname
    if code == "SQLITE_CONSTRAINT_FOREIGNKEY":
        return NotFound(f"target {target_id!r} does not exist")
    if code == "SQLITE_CONSTRAINT_UNIQUE" and str(exc).endswith(".name"):
        return Conflict(f"a {kind} named {name!r} already exists")
    if code in ("SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE"):
        return Conflict(f"a {kind} with this id already exists: {exc}")
    return StoreError(f"the store refused the {kind} {name!r}: {exc}")


class SQLiteStore:
    """The Store on one SQLite file.

    The controller and the daemon open the same file from two processes. Every write runs
    in `BEGIN IMMEDIATE`, which takes the write lock up front (waiting out the busy timeout)
    instead of upgrading a read lock mid-transaction, the upgrade two writers can deadlock on.
    """

    def __init__(self, connection: aiosqlite.Connection, writer: SyncWriter) -> None:
        self._db = connection
        # Run writes go through a thread and connection of their own (see writer.py).
        self._writer = writer
        self._q = load_queries("sqlite")
        self._statements = {name: kind.prepared(self._q) for name, kind in WRITE_KINDS.items()}
        # All tasks of a process share this one connection: a transaction's statements must
        # not interleave with another task's, so every use of the connection takes the lock.
        self._lock = asyncio.Lock()
        # Run writes from many tasks share transactions (see store/batch.py).
        self._batcher = WriteBatcher(self._apply_writes, no_room=StoreFull)

    @classmethod
    async def open(cls, path: Path) -> SQLiteStore:
        """Open (creating and upgrading as needed) the store at `path`."""
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            need = ".".join(map(str, MIN_SQLITE))
            raise StoreError(
                f"the SQLite store needs SQLite {need} or newer (RETURNING, UPDATE ... FROM,"
                f" JSON functions); this Python has {sqlite3.sqlite_version}"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: no implicit BEGIN from the driver; transactions are ours.
            connection = await aiosqlite.connect(
                path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the SQLite store at {path}: {exc}") from exc
        connection.row_factory = sqlite3.Row
        store = cls(connection, SyncWriter(path, BUSY_TIMEOUT_MS / 1000, PRAGMAS))
        try:
            await store._prepare()
            await store._writer.open()
        except sqlite3.Error as exc:
            await connection.close()
            raise StoreError(f"cannot open the SQLite store at {path}: {exc}") from exc
        except BaseException:
            await connection.close()
            raise
        return store

    async def _prepare(self) -> None:
        for pragma in PRAGMAS:
            await self._db.execute(pragma)
        await self._enable_wal()
        if await self._pending_migrations():
            # Two processes may open a new file at once: look again under the write lock.
            async with self._transaction("migrate"):
                for version, script in await self._pending_migrations():
                    await self._migrate(version, script)

    async def _enable_wal(self) -> None:
        # Turning a new file to WAL needs an exclusive lock, and SQLite answers BUSY at once,
        # without its busy handler, while another process opens the same new file: retry.
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                await self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorname != "SQLITE_BUSY" or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.01)

    async def _pending_migrations(self) -> list[tuple[int, str]]:
        async with self._db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        current = row[0] if row else 0
        return [(version, sql) for version, sql in migrations(self._q) if version > current]

    async def _migrate(self, version: int, script: str) -> None:
        for statement in split_statements(script):
            await self._db.execute(statement)
        await self._db.execute(f"PRAGMA user_version={version}")

    @asynccontextmanager
    async def _guard(self, what: str) -> AsyncIterator[None]:
        """Exclusive use of the connection; driver errors become StoreError."""
        async with self._lock:
            try:
                yield
            except sqlite3.Error as exc:
                raise _store_error(what, exc) from exc

    @asynccontextmanager
    async def _transaction(self, what: str, begin: str = "BEGIN IMMEDIATE") -> AsyncIterator[None]:
        """One transaction, committed at the end of the block, rolled back on any error."""
        async with self._guard(what):
            try:
                # Inside the try: a task cancelled while BEGIN waits for the lock must still
                # roll back, or the connection would keep the write lock once BEGIN succeeds.
                await self._db.execute(begin)
                yield
                await self._db.commit()
            except BaseException:
                await self._db.rollback()
                raise

    async def _run(self, name: str, params: Mapping[str, Any]) -> int:
        cursor = await self._db.execute(self._q[name], params)
        return cursor.rowcount

    async def _rows(self, name: str, params: Mapping[str, Any]) -> list[sqlite3.Row]:
        async with self._db.execute(self._q[name], params) as cursor:
            return list(await cursor.fetchall())

    async def _read(self, name: str, params: Mapping[str, Any]) -> list[sqlite3.Row]:
        async with self._guard(name):
            return await self._rows(name, params)

    async def _write(self, name: str, params: Mapping[str, Any]) -> int:
        # A single statement commits on its own (autocommit) and takes the write lock at once.
        async with self._guard(name):
            return await self._run(name, params)

    async def _bump_revision(self) -> None:
        await self._run("bump_revision", {})

    # Targets

    async def insert_target(self, target: Target) -> None:
        """Add a target; Conflict when the name is taken."""
        async with self._transaction("insert_target"):
            await self._write_target("insert_target", target)

    async def update_target(self, target: Target) -> None:
        """Replace a target's definition; NotFound, or Conflict on a taken name.

        The schedules that use the target take a new revision, so a daemon that caches
        targets learns of the edit through changed_schedules.
        """
        async with self._transaction("update_target"):
            if not await self._write_target("update_target", target):
                raise NotFound(f"target {target.id!r} does not exist")
            await self._bump_revision()
            await self._run("touch_target_schedules", {"target_id": target.id})

    async def _write_target(self, name: str, target: Target) -> int:
        try:
            return await self._run(name, _target_params(target))
        except sqlite3.IntegrityError as exc:
            raise _refusal(exc, "target", target.name, None) from exc

    async def get_target(self, target_id: str) -> Target:
        """One target; NotFound."""
        rows = await self._read("get_target", {"id": target_id})
        if not rows:
            raise NotFound(f"target {target_id!r} does not exist")
        return target_from_row(rows[0])

    async def get_targets(self, target_ids: Sequence[str]) -> dict[str, Target]:
        """The targets of these ids that exist, by id."""
        if not target_ids:
            return {}
        rows = await self._read("get_targets", {"ids": _json(list(target_ids))})
        return {row["id"]: target_from_row(row) for row in rows}

    async def get_target_by_name(self, name: str) -> Target:
        """The target called `name`; NotFound."""
        rows = await self._read("get_target_by_name", {"name": name})
        if not rows:
            raise NotFound(f"no target is named {name!r}")
        return target_from_row(rows[0])

    async def list_targets(self, *, limit: int = 100, offset: int = 0) -> list[Target]:
        """Targets by name."""
        rows = await self._read("list_targets", {"limit": limit, "offset": offset})
        return [target_from_row(row) for row in rows]

    async def delete_target(self, target_id: str, *, cascade: bool = False) -> list[str]:
        """Delete a target; Conflict when schedules use it unless `cascade`, which deletes
        them too (their runs stay). Returns the ids of the deleted schedules."""
        async with self._transaction("delete_target"):
            targets = await self._rows("get_target", {"id": target_id})
            if not targets:
                raise NotFound(f"target {target_id!r} does not exist")
            rows = await self._rows("target_schedule_ids", {"target_id": target_id})
            users = [row["id"] for row in rows]
            if users and not cascade:
                raise Conflict(
                    f"target {targets[0]['name']!r} is used by {len(users)} schedule(s);"
                    " delete them first or pass ?cascade=true"
                )
            if users:
                await self._delete_target_schedules(target_id)
            await self._run("delete_target", {"id": target_id})
            ended = {"job": f"target:{target_id}", "resolved_at": _ts(utcnow())}
            await self._run("resolve_incidents_of_job", ended)
        return users

    async def _delete_target_schedules(self, target_id: str) -> None:
        await self._bump_revision()
        await self._run("bury_target_schedules", {"target_id": target_id})
        await self._run("delete_target_schedules", {"target_id": target_id})

    # Schedules

    async def insert_schedule(self, schedule: Schedule) -> None:
        """Add a schedule at the next revision (its own `revision` is ignored); Conflict on a
        taken name, NotFound for a missing target."""
        async with self._transaction("insert_schedule"):
            await self._bump_revision()
            await self._run("unbury_schedule", {"id": schedule.id})
            await self._write_schedule("insert_schedule", schedule)

    async def update_schedule(self, schedule: Schedule) -> None:
        """Replace a schedule's definition, not its status, progress or created_at;
        NotFound or Conflict."""
        async with self._transaction("update_schedule"):
            await self._bump_revision()
            if not await self._write_schedule("update_schedule", schedule):
                raise NotFound(f"schedule {schedule.id!r} does not exist")

    async def _write_schedule(self, name: str, schedule: Schedule) -> int:
        try:
            return await self._run(name, _schedule_params(schedule))
        except sqlite3.IntegrityError as exc:
            raise _refusal(exc, "schedule", schedule.name, schedule.target_id) from exc

    async def get_schedule(self, schedule_id: str) -> Schedule:
        """One schedule with its progress; NotFound."""
        rows = await self._read("get_schedule", {"id": schedule_id})
        if not rows:
            raise NotFound(f"schedule {schedule_id!r} does not exist")
        return schedule_from_row(rows[0])

    async def list_schedules(
        self,
        *,
        status: ScheduleStatus | None = None,
        target_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Schedule]:
        """Schedules by name."""
        params = {
            "status": _column(status),
            "target_id": target_id,
            "limit": limit,
            "offset": offset,
        }
        return [schedule_from_row(row) for row in await self._read("list_schedules", params)]

    async def schedule_ids(self, prefix: str) -> list[str]:
        """Ids of the schedules whose id starts with `prefix`, in order."""
        rows = await self._read("schedule_ids_with_prefix", {"prefix": prefix})
        return [row["id"] for row in rows]

    async def delete_schedule(self, schedule_id: str) -> None:
        """Delete a schedule, leaving a tombstone at the next revision (its runs stay);
        NotFound."""
        async with self._transaction("delete_schedule"):
            await self._bump_revision()
            await self._run("bury_schedule", {"id": schedule_id})
            if not await self._run("delete_schedule", {"id": schedule_id}):
                raise NotFound(f"schedule {schedule_id!r} does not exist")

    async def set_schedule_status(
        self, schedule_id: str, status: ScheduleStatus, reason: str | None = None
    ) -> Schedule:
        """Pause, resume, complete or disable; resuming resets failures and the circuit and
        clears the reason. Returns the schedule as stored."""
        params = {"id": schedule_id, "status": status.value, "reason": reason, "now": _ts(utcnow())}
        async with self._transaction("set_schedule_status"):
            await self._bump_revision()
            rows = await self._rows("set_schedule_status", params)
            if not rows:
                raise NotFound(f"schedule {schedule_id!r} does not exist")
        return schedule_from_row(rows[0])

    async def record_progress(self, progress: list[Progress]) -> None:
        """Store the engine's bookkeeping for several schedules, PROGRESS_CHUNK rows per
        transaction.

        Only engine-owned fields (and status/reason when given); no revision is taken, so
        the daemon is not told about its own writes. Ids of deleted schedules are ignored.
        Each row stands alone, so a large batch (every schedule's first slot at start) is
        split: one transaction over 100,000 rows would hold the write lock for seconds and
        make the controller's writes wait out their busy timeout.
        """
        statement = PROGRESS_WRITE.prepared(self._q)
        for start in range(0, len(progress), PROGRESS_CHUNK):
            chunk = progress[start : start + PROGRESS_CHUNK]
            # On the writer thread, parameters included: the event loop only hands over
            # the tuples, and these writes queue behind run writes instead of racing them
            # for the write lock.
            try:
                await self._writer.call(functools.partial(_write_progress, statement, chunk))
            except sqlite3.Error as exc:
                raise _store_error("record_progress", exc) from exc

    async def changed_schedules(self, since_revision: int) -> ScheduleChanges:
        """Schedules written and ids deleted after `since_revision` (0: everything), read
        from one snapshot together with the current revision."""
        since = {"since": since_revision}
        # Everything: a plain table scan, a third faster than walking the revision index.
        query = "changed_schedules" if since_revision else "all_schedules"
        async with self._transaction("changed_schedules", begin="BEGIN"):
            revision = await self._rows("get_revision", {})
            changed = await self._rows(query, since)
            deleted = await self._rows("deleted_schedules", since)
        keys = changed[0].keys() if changed else []
        return ScheduleChanges(
            # By name, sqlite3.Row scans its columns one by one: a dict first is faster.
            changed=[schedule_from_row(dict(zip(keys, row, strict=True))) for row in changed],
            deleted=[row["id"] for row in deleted],
            revision=revision[0]["revision"],
        )

    # Runs

    async def insert_run(self, run: Run) -> bool:
        """Record a new run; False when its (schedule, scheduled_for) slot is taken."""
        # A new run is a claim: with no room to record it, it fails now, not later.
        return await self._batcher.write("insert_run", _run_params(run), retry=False) == 1

    async def claim_runs(self, runs: Sequence[Run]) -> set[str]:
        """Record many new runs in one transaction; the ids of those whose slot was free."""
        if not runs:
            return set()
        writes = [("insert_run", _run_params(r)) for r in runs]
        counts = await self._batcher.write_each(writes, retry=False)
        return {run.id for run, count in zip(runs, counts, strict=True) if count == 1}

    def start_run(self, run_id: str, started_at: datetime) -> None:
        """Queue the start of a claimed (pending) run without waiting for it: it goes with
        the next batch, and before that run's end."""
        params = {"id": run_id, "started_at": _ts(started_at)}
        (future,) = self._batcher.queue([("start_run", params)], linger=True)
        future.add_done_callback(_log_failed_start)

    async def release_claims(self, run_ids: Sequence[str]) -> None:
        """Delete claimed runs that never started, freeing their slots."""
        if run_ids:
            await self._batcher.write_each([("release_claim", {"id": i}) for i in run_ids])

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
        params = _update_params(run_id, status, started_at, finished_at, error)
        await self._batcher.write("update_run", params)

    async def insert_step_result(self, run_id: str, position: int, result: StepResult) -> None:
        """Record one attempt of one step of a run."""
        await self._batcher.write("insert_step_result", _step_params(run_id, position, result))

    async def record_step_group(self, run_id: str, pgid: int, leader_created: float | None) -> None:
        """Record the process group a step of run `run_id` was started in; committed once
        this returns. Forgotten when the run ends (a trigger of migration 5)."""
        # With the run writes, so it shares their transactions, but not lingering: the step
        # is already running, and until this commits a kill -9 leaves it to be found by
        # its environment alone (see cronmgr/orphans.py).
        params = {
            "run_id": run_id,
            "pgid": pgid,
            "leader_created": leader_created,
            "recorded_at": _ts(utcnow()),
        }
        await self._batcher.write("record_step_group", params)

    async def list_step_groups(self) -> list[StepGroup]:
        """The recorded process groups of runs still pending or running, oldest first."""
        rows = await self._read("list_step_groups", {})
        return [StepGroup(r["run_id"], r["pgid"], r["leader_created"]) for r in rows]

    def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        finished_at: datetime,
        error: str | None = None,
        steps: Sequence[tuple[int, StepResult]] = (),
        started_at: datetime | None = None,
    ) -> asyncio.Future[int]:
        """Record a run's last attempts (position, result) and its end, written together;
        with `started_at`, its start too (a claimed run whose start was not written).
        Queued at once; the future settles when the writes are committed, with the end's
        result (a failed attempt write is logged)."""
        writes = [("insert_step_result", _step_params(run_id, p, r)) for p, r in steps]
        writes.append(
            ("update_run", _update_params(run_id, status, started_at, finished_at, error))
        )
        # Nothing waits on a run's end to begin: it may wait a little for other writes.
        *attempts, end = self._batcher.queue(writes, linger=True)
        for attempt in attempts:
            attempt.add_done_callback(_log_failed_attempt)
        # The end alone: writes are applied in order, so once it settled so did the rest
        # (a gather would cost a future and a callback per write, a thousand times a second).
        return end

    async def _apply_writes(self, writes: Sequence[Write]) -> list[int]:
        """Apply queued run writes in one transaction, in one trip to the writer thread."""
        # A run's attempt goes in before its finish, whose trigger reads the attempt's
        # error class; a claim never shares a batch with its run's later writes.
        order = sorted(range(len(writes)), key=lambda i: WRITE_KINDS[writes[i].statement].order)
        ordered = [writes[i] for i in order]
        statements = [self._statements[w.statement] for w in ordered]
        params = [w.params for w in ordered]
        try:
            applied = await self._writer.call(functools.partial(apply_writes, statements, params))
        except sqlite3.Error as exc:
            raise _store_error("run writes", exc) from exc
        counts = [0] * len(writes)
        for index, count in zip(order, applied, strict=True):
            counts[index] = count
        return counts

    async def get_run(self, run_id: str) -> Run:
        """A run with its step results; raises NotFound."""
        async with self._guard("get_run"):
            rows = await self._rows("get_run", {"id": run_id})
            steps = await self._rows("get_step_results", {"run_id": run_id})
        if not rows:
            raise NotFound(f"run {run_id!r} does not exist")
        return run_from_row(rows[0], (step_from_row(s) for s in steps))

    async def list_runs(
        self,
        *,
        job: str | None = None,
        schedule_id: str | None = None,
        status: RunStatus | None = None,
        since: datetime | None = None,
        target_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Run]:
        """Runs, newest first, without their steps; `target_id` means job `target:<id>`."""
        jobs = {j for j in (job, f"target:{target_id}" if target_id else None) if j}
        if len(jobs) > 1:
            return []  # two different jobs asked for at once: nothing matches both
        params = {
            "job": jobs.pop() if jobs else None,
            "schedule_id": schedule_id,
            "status": _column(status),
            "since": _ts(since),
            "limit": limit,
            "offset": offset,
        }
        return [run_from_row(row) for row in await self._read(_runs_query(params), params)]

    async def claim_run(self, run_id: str) -> bool:
        """Move a pending run to running, started now; False when it was not pending."""
        return await self._write("claim_run", {"id": run_id, "now": _ts(utcnow())}) == 1

    async def list_requested_runs(self, *, limit: int = 1000) -> list[Run]:
        """Pending manual and API runs, newest first (not slots claimed ahead)."""
        return [
            run_from_row(row) for row in await self._read("list_requested_runs", {"limit": limit})
        ]

    async def fail_orphaned_runs(self, reason: str, *, claimed_reason: str | None = None) -> int:
        """Mark runs a dead daemon left running (or queued by a schedule) as failed; pending
        manual runs, which never started, stay for the next daemon. Slots it claimed ahead
        and never started get `claimed_reason` (default `reason`). Returns how many."""
        params = {
            "now": _ts(utcnow()),
            "reason": reason,
            "claimed_reason": claimed_reason or reason,
        }
        return await self._write("fail_orphaned_runs", params)

    async def recount_runs(self) -> int:
        """Add to each max_runs schedule's run_count the succeeded and failed runs of its
        firing after its last_run_at (a daemon killed before its bookkeeping was written),
        moving last_run_at along, and never leave it below all such runs the store holds
        (overlapping runs end out of order); run after `fail_orphaned_runs`. Returns how
        many schedules were behind."""
        return await self._write("recount_runs", {})

    async def purge_runs(
        self, *, keep_per_schedule: int | None = None, older_than: datetime | None = None
    ) -> int:
        """Delete finished runs (never pending or running ones) beyond the newest N finished
        runs of their schedule (per job for runs without one) and/or finished before
        `older_than`, with their step results; return how many runs went."""
        if keep_per_schedule is None and older_than is None:
            return 0
        params = {"keep": keep_per_schedule, "older_than": _ts(older_than)}
        async with self._transaction("purge_runs"):
            return await self._run("purge_runs", params)

    async def close(self) -> None:
        """Flush and release the connection. Writes held for want of room are tried for
        CLOSE_HOLD_SECONDS more, then given up (the next daemon fails the runs they would
        have ended, saying so)."""
        await self._batcher.flush(give_up_after=CLOSE_HOLD_SECONDS)
        await self._writer.close()
        await self._db.close()

    # Metrics and incidents: the run statistics are written by triggers (sql/sqlite.sql,
    # migration 3) in the transaction that finishes each run; these only read them.

    async def metrics_summary(self, since: datetime) -> MetricsSummary:
        """Run statistics: per hour bucket from the hour of `since` on, and lifetime totals,
        read from one snapshot."""
        window_params = {"since": _hour(since)}
        async with self._transaction("metrics_summary", begin="BEGIN"):
            window = await self._rows("run_stats_since", window_params)
            window_errors = await self._rows("run_error_stats_since", window_params)
            lifetime = await self._rows("run_stats_lifetime", {})
            lifetime_errors = await self._rows("run_error_stats_lifetime", {})
            latest = await self._rows("latest_runs", {})
            schedules = await self._rows("count_schedules_by_status", {})
            names = await self._rows("stats_names", {})
        return MetricsSummary(
            window=_run_stats(window, window_errors),
            lifetime=_run_stats(lifetime, lifetime_errors),
            latest=[latest_from_row(row) for row in latest],
            schedules={_schedule_status(row["status"]): row["schedules"] for row in schedules},
            names={row["id"]: row["name"] for row in names},
        )

    async def compact_run_stats(self, fold_before: datetime, drop_before: datetime) -> int:
        """Fold the hour buckets before the hour of `fold_before` into the lifetime totals
        (each hour once), and drop folded hour buckets before the hour of `drop_before`.
        Returns how many hour rows of run counts were dropped."""
        fold = {"before": _hour(fold_before)}
        drop = {"before": _hour(drop_before)}
        async with self._transaction("compact_run_stats"):
            await self._run("fold_run_stats", fold)
            await self._run("fold_run_error_stats", fold)
            await self._run("advance_run_stats_fold", fold)
            count = await self._run("drop_run_stats", drop)
            await self._run("drop_run_error_stats", drop)
        return count

    async def open_incident(self, incident: Incident) -> bool:
        """Record a new open incident; False when the job has an open one already."""
        return await self._write("insert_incident", _incident_params(incident)) == 1

    async def resolve_incident(
        self, incident_id: str, resolved_at: datetime, run_id: str | None, failed_runs: int
    ) -> Incident | None:
        """Close an open incident; the incident as stored, None when it was not open."""
        params = {
            "id": incident_id,
            "resolved_at": _ts(resolved_at),
            "resolved_by_run_id": run_id,
            "failed_runs": failed_runs,
        }
        async with self._transaction("resolve_incident"):
            rows = await self._rows("resolve_incident", params)
        return incident_from_row(rows[0]) if rows else None

    async def list_incidents(
        self,
        *,
        status: IncidentStatus | None = None,
        job: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Incident]:
        """Incidents, newest first; `since` keeps those open at some moment at or after it."""
        params = {
            "status": _column(status),
            "job": job,
            "since": _ts(since),
            "limit": limit,
            "offset": offset,
        }
        return [incident_from_row(row) for row in await self._read("list_incidents", params)]

    async def failing_jobs(self) -> list[LatestRun]:
        """Jobs whose last runs failed, with how many in a row (orphans failed at start
        included: the trigger counted them)."""
        rows = await self._read("failing_jobs", {"whole": WHOLE_JOB})
        return [latest_from_row(row) for row in rows]


def _runs_query(params: Mapping[str, Any]) -> str:
    # Fixing the most selective filter in the query text lets SQLite use its index.
    if params["job"] is not None:
        return "list_runs_of_job"
    if params["schedule_id"] is not None:
        return "list_runs_of_schedule"
    return "list_runs"

    # --- metrics and incidents ----------------------------------------------------------------


_BUCKET_COLUMNS = tuple(f"b{index:02d}" for index in range(1, len(DURATION_BOUNDS) + 1))
"""The run_stats columns of the duration histogram, one per bound."""

WHOLE_JOB = "*"
"""The schedule_id of run_latest rows about a job as a whole."""


def _hour(moment: datetime) -> str:
    """The hour bucket `moment` falls in, as run_stats keys it ('YYYY-MM-DDTHH', UTC)."""
    text = _ts(moment)
    assert text is not None
    return text[:13]


def _run_stats(rows: Iterable[Row], error_rows: Iterable[Row]) -> list[RunStats]:
    errors: dict[tuple[str, str], dict[str, int]] = {}
    for row in error_rows:
        errors.setdefault((row["job"], row["schedule_id"]), {})[row["error_class"]] = row["failed"]
    return [
        run_stats_from_row(row, errors.get((row["job"], row["schedule_id"]), {})) for row in rows
    ]


def run_stats_from_row(row: Row, errors: Mapping[str, int]) -> RunStats:
    """RunStats from a `run_stats` row (or a sum of rows) and its error counts."""
    return RunStats(
        job=row["job"],
        schedule_id=row["schedule_id"],
        succeeded=row["succeeded"],
        failed=row["failed"],
        cancelled=row["cancelled"],
        skipped=row["skipped"],
        timed=row["timed"],
        duration_sum=row["duration_sum"],
        duration_buckets=tuple(row[column] for column in _BUCKET_COLUMNS),
        errors=errors,
    )


def latest_from_row(row: Row) -> LatestRun:
    """A LatestRun from a `run_latest` row."""
    schedule_id = row["schedule_id"]
    return LatestRun(
        job=row["job"],
        schedule_id=None if schedule_id == WHOLE_JOB else schedule_id,
        run_id=row["run_id"],
        status=RunStatus(row["status"]),
        finished_at=_required_dt(row["finished_at"]),
        first_finished_at=_required_dt(row["first_finished_at"]),
        consecutive_failures=row["consecutive_failures"],
    )


def _incident_params(incident: Incident) -> dict[str, Any]:
    return {f.name: _column(getattr(incident, f.name)) for f in dataclasses.fields(incident)}


def incident_from_row(row: Row) -> Incident:
    """An Incident from an `incidents` row."""
    return Incident(
        id=row["id"],
        job=row["job"],
        started_at=_required_dt(row["started_at"]),
        opened_at=_required_dt(row["opened_at"]),
        failed_runs=row["failed_runs"],
        error_class=row["error_class"],
        cause=row["cause"],
        first_failed_run_id=row["first_failed_run_id"],
        last_failed_run_id=row["last_failed_run_id"],
        resolved_at=_dt(row["resolved_at"]),
        resolved_by_run_id=row["resolved_by_run_id"],
    )
