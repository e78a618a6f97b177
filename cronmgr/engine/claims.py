"""A slot claimed as a run: the claim token, its batch write, and claims that failed.

A slot claimed ahead of its time (`JobRunner.claim_ahead`) is a `Claim`: its pending run
and the store write that claimed it, shared by every slot of that batch. When its slot
fires, its run begins once the batch has `settled` with its slot won. While the store
takes no claim (a full disk), the slots missed are reported by `Unclaimed`, summed up
rather than told one line each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

from cronmgr.core.models import Run

UNCLAIMED_REPORT_SECONDS = 60.0
"""While slots can't be claimed (a full disk), how often the missed ones are summed up."""

log = structlog.get_logger("cronmgr.jobs")


class Unclaimed:
    """Slots missed because the store could not take their claim (a full disk): the first
    is logged in full (`run_not_claimed`), the rest summed up every `every` seconds
    (`runs_not_claimed`), and the outage's end says how many it cost (`runs_claimed_again`).
    A line per slot would be a thousand a second, and say nothing more."""

    def __init__(
        self, every: float = UNCLAIMED_REPORT_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._every = every
        self._clock = clock
        self.since: float | None = None
        """When the outage began (the clock's time); None while claims land."""
        self._missed = 0  # in all, this outage
        self._unreported = 0  # since the last line
        self._reported_at = 0.0
        self._error = ""

    def missed(self, schedule_id: str, slot: datetime, error: str) -> None:
        """A slot of `schedule_id` was not run: its claim failed with `error`."""
        now = self._clock()
        self._missed += 1
        self._error = error
        if self.since is None:
            self.since = self._reported_at = now
            log.error(
                "run_not_claimed", schedule_id=schedule_id, slot=slot.isoformat(), error=error
            )
            return
        self._unreported += 1
        if now - self._reported_at >= self._every:
            self._report(now)

    def claimed(self) -> None:
        """A claim landed: the outage, if there was one, is over."""
        if self.since is None:
            return
        now = self._clock()
        if self._unreported:
            self._report(now)
        log.info("runs_claimed_again", missed=self._missed, seconds=round(now - self.since, 1))
        self.since, self._missed = None, 0

    def _report(self, now: float) -> None:
        assert self.since is not None
        log.error(
            "runs_not_claimed",
            missed=self._unreported,
            missed_in_all=self._missed,
            seconds=round(now - self.since, 1),
            error=self._error,
        )
        self._unreported, self._reported_at = 0, now


@dataclass(slots=True)
class Claim:
    """A slot claimed ahead of its time: its pending run, and the store write claiming it
    (shared by every slot of that batch), which yields the ids of the slots won."""

    run: Run
    batch: asyncio.Future[set[str]]


async def settled(batch: asyncio.Future[set[str]]) -> set[str]:
    """A claim batch's outcome. Claimed ahead, it is in as a rule: then without the extra
    future a shield costs; otherwise shielded, so a cancelled run leaves the batch alone."""
    if batch.done():
        return batch.result()
    return await asyncio.shield(batch)
