"""What the cluster did with every slot: the target's arrivals matched to the store's runs.

The engine bench's `judge` reads an arrival's slot from its time (the latest slot begun by
then), which holds while every request goes out within a second of its slot. After a
failover it does not: the node taking a schedule over may fire a slot of the gap seconds
late, and judged by its time it would count as the slot of that moment. So an arrival is
first matched to the run that sent it, the run of its schedule started last before it
and not finished by then, and takes that run's slot; an arrival no run matches (its start
never recorded: the node died first) is judged by its time, as `judge` does.

Per slot, then: the arrivals (more than one: doubled), the run record (none and no
arrival: missed; a record but no arrival: not run, recorded failed or skipped), the lag of
its first arrival, and the node that ran it.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bench.bench_engine import Plan, Verdict, schedule_index, slot_index
from bench.cluster_nodes import RunRecord

MATCH_SECONDS = 1.0
"""For a run whose end is not recorded: an arrival this long or less after its start is
its request."""
STAMP_TOLERANCE = 0.001
"""A run's start is stamped before its request goes out and its end after the answer,
on the clock the target reads: the slack is for the stamps' rounding, not for drift. (The
engine bench's EARLY_TOLERANCE, 50 ms, would give a taken-over run's late request, sent
just before the next slot, to that next slot's run.)"""
Slot = tuple[int, int]
"""(schedule index, slot index) of a plan."""


@dataclass(slots=True)
class SlotVerdict:
    """Every slot of a plan: its arrivals, first arrival, run record and the node of it."""

    plan: Plan
    hits: Counter[Slot] = field(default_factory=Counter)
    first: dict[Slot, float] = field(default_factory=dict)
    node: dict[Slot, str | None] = field(default_factory=dict)
    records: dict[Slot, RunRecord] = field(default_factory=dict)
    arrived: int = 0
    stray: int = 0

    def slot_time(self, slot: Slot) -> float:
        """When a slot was due, in Unix seconds."""
        return self.plan.first(slot[0]) + slot[1]

    def slots(self) -> Iterable[Slot]:
        """Every slot of the plan."""
        return ((i, k) for i in range(self.plan.n) for k in range(self.plan.slots))

    @property
    def doubled(self) -> int:
        """Arrivals beyond the first of a slot, and arrivals for no slot of the plan."""
        return self.arrived - len(self._on_plan())

    def missed(self) -> list[Slot]:
        """Slots with no arrival and no run record."""
        return [s for s in self.slots() if s not in self.hits and s not in self.records]

    def not_run(self) -> list[Slot]:
        """Slots with no arrival whose run the store holds (failed or skipped)."""
        return [s for s in self.slots() if s not in self.hits and s in self.records]

    def lags(self, since: float = -math.inf, until: float = math.inf, warm: int = 0) -> Verdict:
        """The lags of slots due in [since, until) from slot index `warm` on, as a Verdict."""
        verdict = Verdict(expected=0)
        for slot, arrived in self.first.items():
            due = self.slot_time(slot)
            if since <= due < until and slot[1] >= warm:
                verdict.lags_ms.append((arrived - due) * 1000)
        return verdict

    def _on_plan(self) -> list[Slot]:
        return [s for s in self.hits if 0 <= s[1] < self.plan.slots]


def verdict(
    arrivals: Iterable[tuple[str, float]], plan: Plan, runs: Sequence[RunRecord]
) -> SlotVerdict:
    """Match every arrival of the plan to its run and slot."""
    result = SlotVerdict(plan)
    starts = _starts(plan, runs, result)
    for path, arrived in sorted(arrivals, key=lambda a: a[1]):
        i = schedule_index(path, plan.tag)
        if i is None or not 0 <= i < plan.n:
            result.stray += 1
            continue
        result.arrived += 1
        run = _sender(starts[i], arrived)
        k = round(run.slot - plan.first(i)) if run else slot_index(plan, i, arrived)
        result.hits[i, k] += 1
        if result.hits[i, k] == 1:
            result.first[i, k] = arrived
            result.node[i, k] = run.node if run else None
    return result


def _starts(
    plan: Plan, runs: Sequence[RunRecord], result: SlotVerdict
) -> dict[int, tuple[list[float], list[RunRecord]]]:
    """Per schedule, its runs that may have sent a request (started, not skipped), by
    start; every run's record kept by slot on the way."""
    started: dict[int, list[RunRecord]] = defaultdict(list)
    for run in runs:
        result.records[run.schedule, round(run.slot - plan.first(run.schedule))] = run
        if run.started is not None and run.status != "skipped":
            started[run.schedule].append(run)
    by_start = {}
    for i in range(plan.n):
        ordered = sorted(started[i], key=lambda r: r.started or 0.0)
        by_start[i] = ([r.started or 0.0 for r in ordered], ordered)
    return by_start


def _sender(starts: tuple[list[float], list[RunRecord]], arrived: float) -> RunRecord | None:
    """The run whose request this arrival is: the last one started by then, if it had
    not finished yet (its end is recorded after the answer to its request)."""
    times, runs = starts
    at = bisect.bisect_right(times, arrived + STAMP_TOLERANCE) - 1
    if at < 0:
        return None
    run = runs[at]
    ended = run.finished if run.finished is not None else times[at] + MATCH_SECONDS
    return run if arrived <= ended + STAMP_TOLERANCE else None


def span(result: SlotVerdict, slots: Sequence[Slot]) -> float:
    """Seconds from the first to the last of `slots` (0 for none or one)."""
    if not slots:
        return 0.0
    due = [result.slot_time(s) for s in slots]
    return max(due) - min(due)


def failover_at(result: SlotVerdict, lost: set[int], killed: str, after: float) -> float:
    """The first arrival after `after`, for a schedule in `lost`, of a slot that another
    node than `killed` ran (NaN when none came)."""
    taken = [
        arrived
        for slot, arrived in result.first.items()
        if slot[0] in lost and arrived > after and result.node.get(slot) not in (None, killed)
    ]
    return min(taken, default=math.nan)


def reasons(result: SlotVerdict, slots: Iterable[Slot]) -> Counter[str]:
    """How the store recorded `slots`: status and error, counted."""
    return Counter(
        f"{record.status}: {record.error}"
        for slot in slots
        if (record := result.records.get(slot)) is not None
    )
