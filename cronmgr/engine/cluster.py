"""The engine's share of the schedules when several nodes share a store.

The node's view of the live set (`membership.py`) decides which schedules its engine
holds (`ownership.py`). Changes read from the store are cut down to the node's share
(`share`); when the live set changes, the engine hands over the schedules another node
now owns and takes in those it gained (`rebalance`), read afresh from the store so that
each plans its next slot from the store's last run (slots missed meanwhile follow the
schedule's misfire policy). After a fence, every schedule of the share is read again.
"""

from __future__ import annotations

import hashlib

import structlog

from cronmgr.core.models import Run, Schedule
from cronmgr.core.pipelines.pipeline import PipelineSet
from cronmgr.engine.membership import Membership
from cronmgr.engine.ownership import pipeline_of_job
from cronmgr.engine.scheduler import Scheduler
from cronmgr.store import Store
from cronmgr.store.records import ScheduleChanges

log = structlog.get_logger("cronmgr.nodes")

MOVED_REASON = "missed while this schedule moved to this node from another"
"""Why a slot that fell before this node took its schedule over, and came behind a run
of it, is skipped."""
FENCED_REASON = "missed: this node was cut off from its store"
"""Why a slot that fell while this node was fenced, and came behind a run, is skipped."""
DIGEST_LENGTH = 16
"""Hex digits of a pipeline file's content hash shown and compared between nodes."""


def pipeline_digests(pipelines: PipelineSet) -> dict[str, str]:
    """Each loaded pipeline's file content hash (a file gone since reads as empty)."""
    digests = {}
    for pipeline in pipelines:
        try:
            content = pipeline.path.read_bytes()
        except OSError:
            content = b""
        digests[pipeline.name] = hashlib.sha256(content).hexdigest()[:DIGEST_LENGTH]
    return digests


class ClusterShare:
    """Cuts the store's schedules down to this node's share, and moves the share."""

    def __init__(self, engine: Scheduler, store: Store, membership: Membership) -> None:
        self._engine = engine
        self._store = store
        self._membership = membership

    def share(self, changes: ScheduleChanges) -> ScheduleChanges:
        """`changes` as this node's engine takes them: another node's schedules are
        deletions here (dropped if held, ignored otherwise)."""
        ownership = self._membership.ownership
        mine: list[Schedule] = []
        others: list[str] = []
        for schedule in changes.changed:
            if ownership.owns(schedule):
                mine.append(schedule)
            else:
                others.append(schedule.id)
        if not others:
            return changes
        return ScheduleChanges(mine, changes.deleted + others, changes.revision)

    async def rebalance(self, *, full: bool) -> None:
        """Hand over what another node now owns and take in what this one gained (with
        `full`, re-read every schedule of the share, as after a fence)."""
        everything = await self._store.changed_schedules(0)
        ownership = self._membership.ownership
        owned = [s for s in everything.changed if ownership.owns(s)]
        owned_ids = {s.id for s in owned}
        held = self._engine.schedule_ids()
        lost = [schedule_id for schedule_id in held if schedule_id not in owned_ids]
        self._engine.hand_over(lost)
        held_now = set(self._engine.schedule_ids())
        taken = owned if full else [s for s in owned if s.id not in held_now]
        # Revision 0: the engine's own revision stays, so edits made meanwhile to the
        # schedules it kept still come with the next incremental read.
        self._engine.apply(
            ScheduleChanges(taken, [], 0), taken_over=FENCED_REASON if full else MOVED_REASON
        )
        log.info(
            "schedules_rebalanced",
            node=self._membership.node_id,
            handed_over=len(lost),
            taken=len(taken),
            owned=len(owned),
            full=full,
        )

    def takes_run(self, run: Run) -> bool:
        """Whether this node takes a pending manual run: one node that has its pipeline
        as the others do (or, when no live node has it, the one that says so)."""
        pipeline = pipeline_of_job(run.job)
        if pipeline is None:
            return True
        return self._membership.ownership.runs_pipeline(pipeline, run.id)
