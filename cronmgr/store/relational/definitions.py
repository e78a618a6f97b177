"""Targets and schedules: the definitions the controller writes, and the daemon's progress.

Every schedule write bumps the store-wide revision (deletes leave a tombstone at it), so
the daemon fetches just what changed (`changed_schedules`); an edited target touches the
schedules that use it. Progress, the engine's bookkeeping, takes no revision.
"""

from __future__ import annotations

from collections.abc import Sequence

from cronmgr.core.errors import Conflict, NotFound
from cronmgr.core.models import Schedule, ScheduleStatus, Target, utcnow
from cronmgr.store.records import Progress, ScheduleChanges
from cronmgr.store.relational.columns import _column, _json, _ts
from cronmgr.store.relational.connection import RelationalConnection, refusal_error
from cronmgr.store.relational.rows import (
    _schedule_params,
    _target_params,
    schedule_from_row,
    target_from_row,
)

PROGRESS_CHUNK = 2000  # rows per transaction of record_progress: ~0.1 s of write lock


class TargetsMixin(RelationalConnection):
    """Targets: added, edited, read and deleted (with their schedules, on cascade)."""

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
        except self._integrity_errors as exc:
            raise refusal_error(self._constraint(exc), exc, "target", target.name, None) from exc

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


class SchedulesMixin(RelationalConnection):
    """Schedules: their definitions, their status, the daemon's progress and its changes."""

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
        except self._integrity_errors as exc:
            constraint = self._constraint(exc)
            raise refusal_error(
                constraint, exc, "schedule", schedule.name, schedule.target_id
            ) from exc

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
        for start in range(0, len(progress), PROGRESS_CHUNK):
            await self._write_progress(progress[start : start + PROGRESS_CHUNK])

    async def changed_schedules(self, since_revision: int) -> ScheduleChanges:
        """Schedules written and ids deleted after `since_revision` (0: everything), read
        from one snapshot together with the current revision."""
        since = {"since": since_revision}
        # Everything: a plain table scan, a third faster than walking the revision index.
        query = "changed_schedules" if since_revision else "all_schedules"
        async with self._snapshot("changed_schedules"):
            revision = await self._rows("get_revision", {})
            changed = await self._rows(query, since)
            deleted = await self._rows("deleted_schedules", since)
        keys = tuple(changed[0].keys()) if changed else ()
        return ScheduleChanges(
            # By name, a driver's row may scan its columns one by one: a dict first is faster.
            changed=[schedule_from_row(dict(zip(keys, row, strict=True))) for row in changed],
            deleted=[row["id"] for row in deleted],
            revision=revision[0]["revision"],
        )
