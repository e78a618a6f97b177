"""What the engine holds per schedule and what it asks of the jobs.

An `Entry` is one schedule in the engine: its definition, its trigger, the next slot and
the runs going on; a `HeapItem` is one planned firing of it in the engine's timer heaps.
The `Jobs` protocol is all the engine needs from whoever runs and records jobs
(`jobs.JobRunner`). The helpers turn slots into the heaps' float moments and back, and walk
a heap in order.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from cronmgr.core.models import RunStatus, Schedule
from cronmgr.core.triggers.rules import Trigger

MAX_TIMER_SECONDS = 60.0
"""Longest single sleep: the engine re-reads the wall clock at least this often."""


class Jobs(Protocol):
    """What the engine needs from whoever runs and records jobs (see `jobs.py`).

    A claim is the jobs' own token for a slot claimed ahead; the engine only keeps it and
    hands it back with that slot.
    """

    async def run(self, schedule: Schedule, slot: datetime, claim: Any = None) -> RunStatus | None:
        """Claim the slot (unless `claim` did), run it, record it; its final status, or
        None if it was claimed already."""
        ...

    async def skip(
        self, schedule: Schedule, slot: datetime, reason: str, claim: Any = None
    ) -> None:
        """Record a slot that will not run, with the reason."""
        ...

    def claim_ahead(self, slots: Sequence[tuple[Schedule, datetime]]) -> Sequence[Any]:
        """Claim these slots in the store now, in one write; a claim per slot, in order."""
        ...

    async def release(self, claims: Sequence[Any]) -> None:
        """Free claimed slots that will not fire."""
        ...

    def busy(self, job: str) -> bool:
        """Whether a run of `job` started elsewhere (a manual run) is in flight."""
        ...

    def cancel(self, job: str, reason: str) -> int:
        """Cancel every run of `job` in flight, wherever it started; how many were."""
        ...


@dataclass(slots=True)
class Entry:
    """One schedule in the engine: its definition, trigger, next slot and live runs."""

    schedule: Schedule
    trigger: Trigger
    slot: datetime | None = None
    # The next_run_at the store holds (or is about to): a new slot is written only when it
    # differs. Kept here rather than in `schedule`, which would cost a copy per firing.
    saved_next: datetime | None = None
    version: int = 0
    fire_at: float = 0.0  # when `slot` fires, jitter included
    running: dict[datetime, asyncio.Task[RunStatus | None]] = field(default_factory=dict)
    # A list, not a deque: it holds at most QUEUE_LIMIT slots, and an empty deque costs
    # 760 bytes, 76 MB over 100,000 schedules.
    queued: list[datetime] = field(default_factory=list)


class _NoSlots:
    """The trigger of a schedule set aside (status `error`): it never fires."""

    def after(self, moment: datetime) -> datetime | None:
        """None: no slot."""
        return None

    def at_or_after(self, moment: datetime) -> datetime | None:
        """None: no slot."""
        return None

    def upcoming(self, moment: datetime, count: int) -> list[datetime]:
        """No slots."""
        return []


NO_SLOTS: Trigger = _NoSlots()

LAST_MOMENT = datetime.max.replace(tzinfo=UTC).timestamp() - 1.0
"""The latest fire moment a datetime can still show."""

HeapItem = tuple[float, int, str, int]
"""(fire at, sequence, schedule id, entry version): one planned firing in the timer heap."""


def smallest_first(heap: list[HeapItem]) -> Iterator[HeapItem]:
    """A heap's items in ascending order, looking only at as many as are taken.

    `heapq.nsmallest` reads the whole heap (100,000 items for each status heartbeat);
    walking down from the root costs O(k log k) for the first k.
    """
    frontier: list[tuple[HeapItem, int]] = [(heap[0], 0)] if heap else []
    while frontier:
        item, index = heapq.heappop(frontier)
        yield item
        for child in (2 * index + 1, 2 * index + 2):
            if child < len(heap):
                heapq.heappush(frontier, (heap[child], child))


def ts(moment: datetime) -> float:
    return moment.timestamp()


def from_ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)
