"""The cluster bench's results and its table rows (the loads are in `bench_cluster.py`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bench.bench_engine import WARM_SLOTS, LoadResult, Plan, Verdict
from bench.cluster_nodes import Edit, RunRecord
from bench.cluster_verdict import SlotVerdict, failover_at, reasons, span
from cronmgr.core.config import Settings

LEASE_SECONDS: float = Settings.model_fields["lease_seconds"].default
"""The nodes run with the default lease; the table says which it is."""
LAG_LIMIT_MS = 1000.0
"""A throughput step counts while its lag p99 stays under this."""
LATE_SECONDS = 1.0
"""A slot whose request came this late or later is counted as run late."""
IN_FLIGHT = "lost its lease while this run was in flight"
CLAIMED = "lost its lease: this slot was claimed ahead"


@dataclass(slots=True)
class Failover:
    """The failover load and what it showed."""

    label: str
    plan: Plan
    slots: SlotVerdict
    runs: list[RunRecord]
    owned: list[str]  # the owner of each schedule while all nodes were live
    victim: str
    kill_at: int  # seconds after the first slot
    killed_at: float  # Unix seconds
    lease_left: float  # seconds the victim's lease had left at the kill, as stored
    edits: list[Edit]
    propagation_ms: list[float]
    daemon_cpu: float  # CPU seconds of all the daemons over the load
    server_cpu: float  # CPU seconds of the PostgreSQL server over the load

    @property
    def lost(self) -> set[int]:
        """The schedules the victim owned."""
        return {i for i, owner in enumerate(self.owned) if owner == self.victim}

    @property
    def taken_over(self) -> float:
        """The first arrival of a slot of the victim's schedules that another node ran."""
        return failover_at(self.slots, self.lost, self.victim, self.killed_at)

    def count(self, status: str | None = None, error: str = "") -> int:
        """Runs of `status` (any if None) whose error holds `error`."""
        return sum(
            1
            for r in self.runs
            if (status is None or r.status == status) and error in (r.error or "")
        )


@dataclass(frozen=True, slots=True)
class Step:
    """One throughput step: its schedule count, recorded runs a second, lag p99 (ms)."""

    n: int
    runs_per_second: float
    lag_p99: float
    missed: int
    not_run: int
    doubled: int


def step_of(plan: Plan, slots: SlotVerdict, runs: list[RunRecord]) -> Step:
    """Recorded runs a second: the succeeded runs over the time from the first slot to
    the last run's end (a cluster that falls behind takes longer than the plan)."""
    ended = [r.finished for r in runs if r.status == "succeeded" and r.finished is not None]
    seconds = max(ended, default=plan.t0) - plan.t0
    rate = len(ended) / seconds if seconds > 0 else 0.0
    lag = slots.lags(warm=WARM_SLOTS).lag(0.99)
    return Step(plan.n, rate, lag, len(slots.missed()), len(slots.not_run()), slots.doubled)


def failover_rows(f: Failover) -> list[dict[str, Any]]:
    """The rows of the failover load."""
    rows = slot_rows(f) + timing_rows(f) + cost_rows(f)
    return [{**row, "name": f"{f.label}: {row['name']}"} for row in rows]


def slot_rows(f: Failover) -> list[dict[str, Any]]:
    """Who was killed, and what became of every slot."""
    s, n = f.slots, f.plan.n
    missed, not_run = s.missed(), s.not_run()
    lease = f"<= lease ({LEASE_SECONDS:g} s)"
    late = [slot for slot, at in s.first.items() if at - s.slot_time(slot) >= LATE_SECONDS]
    caught_up = len({i for i, _ in late} & f.lost)
    rows = [
        _row(
            f"node killed at {f.kill_at} s (SIGKILL)",
            len(f.lost),
            "schedules",
            f"{f.victim}: {len(f.lost)} of {n} schedules ({len(f.lost) / n:.1%}), the most",
            "",
        ),
        _row("slots doubled", s.doubled, "slots", "0", s.doubled == 0),
        _row("slots missed (no arrival, no run record)", len(missed), "slots", "", ""),
        _row("slots missed: window", span(s, missed), "s", lease, span(s, missed) <= LEASE_SECONDS),
        _row("slots not run, recorded failed or skipped", len(not_run), "slots", "", ""),
        _row(
            "slots not run: window", span(s, not_run), "s", lease, span(s, not_run) <= LEASE_SECONDS
        ),
        _row(
            f"slots run late (>= {LATE_SECONDS:g} s)",
            len(late),
            "slots",
            f"a gap slot of {caught_up} of the {len(f.lost)} taken-over schedules",
            "",
        ),
    ]
    sent = [slot for slot in s.hits if (r := s.records.get(slot)) and r.status == "failed"]
    rows.append(_row("slots that arrived but are recorded failed", len(sent), "slots", "", ""))
    for text, count in reasons(s, not_run).most_common(4):
        rows.append(_row(f"not run: {count} slots", "", "", text, ""))
    return rows


def timing_rows(f: Failover) -> list[dict[str, Any]]:
    """The failover's time, the lags on either side of it, change propagation."""
    failover = f.taken_over - f.killed_at
    before = f.slots.lags(until=f.killed_at, warm=WARM_SLOTS)
    after = f.slots.lags(since=f.taken_over)
    p50, p99 = _quantiles(f.propagation_ms)
    edits = f"{len(f.edits)} edits"
    return [
        _row("lease left at the kill (as stored)", f.lease_left, "s", "", ""),
        _row(
            "failover: kill -> first taken-over arrival",
            failover,
            "s",
            f"<= lease ({LEASE_SECONDS:g} s)",
            failover <= LEASE_SECONDS,
        ),
        _row("lag p50 before the kill", before.lag(0.5), "ms", "", ""),
        _row("lag p99 before the kill", before.lag(0.99), "ms", "", ""),
        _row("lag p50 after the failover", after.lag(0.5), "ms", "", ""),
        _row("lag p99 after the failover", after.lag(0.99), "ms", "", ""),
        _row(f"change propagation p50 ({edits})", p50, "ms", "", ""),
        _row(f"change propagation p99 ({edits})", p99, "ms", "commit -> owner applied", ""),
    ]


def cost_rows(f: Failover) -> list[dict[str, Any]]:
    """The victim's runs failed, and the CPU per recorded run on both sides."""
    succeeded = f.count("succeeded")
    return [
        _row(
            "runs failed: in flight on the lost node", f.count("failed", IN_FLIGHT), "runs", "", ""
        ),
        _row(
            "runs failed: claimed ahead by the lost node",
            f.count("failed", CLAIMED),
            "runs",
            "",
            "",
        ),
        _row("daemon CPU per recorded run (all nodes)", _ms(f.daemon_cpu, succeeded), "ms", "", ""),
        _row("server CPU per recorded run", _ms(f.server_cpu, succeeded), "ms", "", ""),
    ]


def single_rows(label: str, single: LoadResult) -> list[dict[str, Any]]:
    """The rows of the one-daemon SQLite load."""
    v = single.verdict
    counts = f"{v.missed} / {v.doubled}"
    ok = v.missed == 0 and v.doubled == 0
    rows = [
        _row(f"{label}: slots missed / doubled", counts, "slots", "0 / 0", ok),
        _row(f"{label}: daemon CPU per run", single.cpu_ms_per_run, "ms", "", ""),
    ]
    return rows + [_row(f"{label}: note", "", "", note, "") for note in single.notes]


def step_rows(label: str, steps: list[Step]) -> list[dict[str, Any]]:
    """A row per throughput step, and the best step under the lag limit."""
    rows = [
        _row(
            f"{label}: {step.n}/s: recorded runs/s",
            step.runs_per_second,
            "runs/s",
            f"lag p99 {step.lag_p99:,.1f} ms (< 1 s); {step.missed} missed,"
            f" {step.not_run} not run, {step.doubled} doubled",
            step.lag_p99 < LAG_LIMIT_MS,
        )
        for step in steps
    ]
    kept = [step for step in steps if step.lag_p99 < LAG_LIMIT_MS]
    best = max(kept, key=lambda step: step.runs_per_second, default=None)
    value = best.runs_per_second if best else ""
    where = "no step kept lag p99 under 1 s"
    if best:  # the lag is of the slots that ran: say how many did not
        where = f"step {best.n}/s, where {best.not_run:,} slots did not run"
    rows.append(
        _row(f"{label}: aggregate recorded runs/s, lag p99 < 1 s", value, "runs/s", where, "")
    )
    return rows


def skip_row(label: str, why: str) -> dict[str, Any]:
    """The one row of a bench that could not run."""
    return _row(label, "", "", f"skipped: {why}", "")


def _quantiles(values: list[float]) -> tuple[float, float]:
    """p50 and p99 of the known values, picked as Verdict.lag picks lags."""
    known = Verdict(expected=0, lags_ms=[v for v in values if not math.isnan(v)])
    return known.lag(0.5), known.lag(0.99)


def _ms(seconds: float, runs: int) -> float:
    return seconds * 1000 / max(1, runs)


def _row(name: str, value: Any, unit: str, target: str, ok: bool | str) -> dict[str, Any]:
    verdict = ok if isinstance(ok, str) else ("yes" if ok else "NO")
    return {"name": name, "value": value, "unit": unit, "target": target, "ok": verdict}
