"""What a node does with the slots of a schedule it takes over that fell before it did.

A schedule moved from a lost node (or held back while this node was fenced off its store)
has a gap: the slots from the one after its last run up to the moment of the takeover.
Whether they were late by less than the misfire grace does not matter here; they follow
the schedule's misfire policy, as an outage's slots do (`skip`: none runs, `run_once`: the
latest runs, `catch_up`: the latest `catch_up_max` run, oldest first). Unlike an outage's
slots, each slot not run gets a record of its own saying why, up to GAP_RECORD_CAP; the
older slots beyond the cap are counted in one record, so the cost follows the cap and not
the length of the gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cronmgr.core.models import MisfirePolicy, Schedule
from cronmgr.core.triggers.rules import Trigger
from cronmgr.engine.policies import COUNT_CAP, count_slots, recent_slots

GAP_RECORD_CAP = 1_000
"""Most slots of one gap recorded one by one; older ones share one record."""


@dataclass(frozen=True)
class Gap:
    """The slots of a takeover gap, sorted out by the schedule's misfire policy."""

    run: list[datetime]
    """The slots to run now, oldest first."""
    skip: list[datetime]
    """The slots recorded as skipped, each with the takeover's reason."""
    older: int
    """How many slots before `skip` and `run` are counted in one record (0: none)."""

    def older_reason(self, reason: str) -> str:
        """The reason in the one record of the slots beyond the cap."""
        more = "or more " if self.older + GAP_RECORD_CAP >= COUNT_CAP else ""
        return f"{reason} ({self.older} {more}earlier slot(s))"


def sort_gap(schedule: Schedule, trigger: Trigger, first: datetime, now: datetime) -> Gap:
    """The slots in [first, now] of `schedule`, run or skipped by its misfire policy."""
    recent = recent_slots(trigger, first, now, GAP_RECORD_CAP)
    total = count_slots(trigger, first, now) if len(recent) >= GAP_RECORD_CAP else len(recent)
    policy = schedule.misfire_policy
    if policy is MisfirePolicy.SKIP or not recent:
        keep = 0
    elif policy is MisfirePolicy.RUN_ONCE:
        keep = 1
    else:
        keep = schedule.catch_up_max
    split = max(len(recent) - keep, 0)
    return Gap(run=recent[split:], skip=recent[:split], older=total - len(recent))
