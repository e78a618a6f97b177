"""Schedules declared in pipeline files, kept in the store like any other schedule.

A file's `[schedule]` becomes the schedule `pipeline.<name>` (named `pipeline:<name>`),
written when the daemon starts and on every reload. The file is the source of truth for
*what* and *when*: the API refuses to edit or delete such a schedule, and a file that
drops its `[schedule]`, or disappears, takes its schedule along. *Whether* it runs is the
API's: pause and resume work as for any schedule and survive reloads. `enabled = false`
in the file pauses it; setting it back to true resumes it, unless the API paused it.
A file that fails to load keeps its schedule as it was, so a typo never deletes history.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, fields, replace
from typing import Any

import structlog

from cronmgr.core.errors import CronmgrError, NotFound
from cronmgr.core.models import Schedule, ScheduleStatus, utcnow
from cronmgr.core.pipelines.pipeline import Pipeline, PipelineSchedule, PipelineSet
from cronmgr.store import Store

log = structlog.get_logger("cronmgr.pipeline_sync")

FILE_SCHEDULE_PREFIX = "pipeline."
FILE_PAUSED_REASON = "enabled = false in the pipeline file"
_DEFINITION = tuple(f.name for f in fields(PipelineSchedule) if f.name != "enabled")


def file_schedule_id(pipeline: str) -> str:
    """The id of the schedule declared in pipeline `pipeline`'s file."""
    return FILE_SCHEDULE_PREFIX + pipeline


def is_file_schedule(schedule_id: str) -> bool:
    """Whether the schedule is declared in a pipeline file (and so not the API's to edit)."""
    return schedule_id.startswith(FILE_SCHEDULE_PREFIX)


@dataclass(slots=True)
class SyncReport:
    """What one sync wrote: schedule ids created, updated, paused or resumed, deleted."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    status_changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether the store's schedules changed, so the engine must refresh."""
        return bool(self.created or self.updated or self.status_changed or self.deleted)


async def sync_pipeline_schedules(
    store: Store, pipelines: PipelineSet, keep: Collection[str] = ()
) -> SyncReport:
    """Make the store's file-declared schedules match the files; what changed. The
    schedules of pipelines named in `keep` (other nodes have them) are never deleted."""
    report = SyncReport()
    wanted = {p.name: p for p in pipelines if p.schedule is not None}
    for pipeline in wanted.values():
        try:
            await _sync_one(store, pipeline, report)
        except CronmgrError as exc:
            report.failed.append(file_schedule_id(pipeline.name))
            log.error("pipeline_schedule_sync_failed", pipeline=pipeline.name, error=exc.detail)
    broken = {problem.name for problem in pipelines.errors}
    for schedule_id in await store.schedule_ids(FILE_SCHEDULE_PREFIX):
        name = schedule_id.removeprefix(FILE_SCHEDULE_PREFIX)
        if name not in wanted and name not in broken and name not in keep:
            await store.delete_schedule(schedule_id)
            report.deleted.append(schedule_id)
    if report.changed:
        log.info("pipeline_schedules_synced", **_counts(report))
    return report


def schedule_from_file(pipeline: Pipeline) -> Schedule:
    """The schedule pipeline `pipeline`'s file declares (it must have one)."""
    declared = pipeline.schedule_fields()
    assert declared is not None
    now = utcnow()
    return Schedule(
        id=file_schedule_id(pipeline.name),
        name=f"pipeline:{pipeline.name}",
        created_at=now,
        updated_at=now,
        **declared,
    )


async def _sync_one(store: Store, pipeline: Pipeline, report: SyncReport) -> None:
    declared = schedule_from_file(pipeline)
    try:
        stored = await store.get_schedule(declared.id)
    except NotFound:
        await store.insert_schedule(declared)
        report.created.append(declared.id)
        return
    if _definition(stored) != _definition(declared):
        await store.update_schedule(replace(declared, created_at=stored.created_at))
        report.updated.append(declared.id)
    status = _status_wanted(stored, declared)
    if status is not None:
        reason = FILE_PAUSED_REASON if status is ScheduleStatus.PAUSED else None
        await store.set_schedule_status(declared.id, status, reason)
        report.status_changed.append(declared.id)


def _definition(schedule: Schedule) -> dict[str, Any]:
    return {name: getattr(schedule, name) for name in (*_DEFINITION, "pipeline", "name")}


def _status_wanted(stored: Schedule, declared: Schedule) -> ScheduleStatus | None:
    # Only the file's own pause is the file's to lift; the API's pause, an auto-disable
    # or a completed window stay as they are.
    file_paused = declared.status is ScheduleStatus.PAUSED
    if file_paused and stored.status is ScheduleStatus.ACTIVE:
        return ScheduleStatus.PAUSED
    paused_by_file = stored.status_reason == FILE_PAUSED_REASON
    if not file_paused and stored.status is ScheduleStatus.PAUSED and paused_by_file:
        return ScheduleStatus.ACTIVE
    return None


def _counts(report: SyncReport) -> dict[str, int]:
    return {
        "created": len(report.created),
        "updated": len(report.updated),
        "status_changed": len(report.status_changed),
        "deleted": len(report.deleted),
    }
