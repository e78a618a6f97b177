"""The targets the job runner fires at, read once and read ahead of their slots.

A target is read from the store the first time one of its runs needs it and kept by id;
the daemon forgets the targets of schedules that changed (a target edit re-revisions its
schedules). Slots claimed ahead have their targets read in one query with the claim, and
the connections their requests will use opened ahead (prewarmed), so that a run fires
without waiting for a read or a handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

import structlog

from cronmgr.core.models import Target
from cronmgr.runners.http.runner import HttpRunner
from cronmgr.store import Store

log = structlog.get_logger("cronmgr.jobs")


class TargetCache:
    """The job runner's targets by id, and their reads ahead (a mixin of `JobRunner`,
    which provides the store and the HTTP runner)."""

    store: Store
    http: HttpRunner

    def __init__(self) -> None:
        # Targets by id, read once: a target edit re-revisions its schedules, and the
        # daemon forgets the targets of changed schedules when it applies them.
        self._targets: dict[str, Target] = {}
        # Targets being read ahead for slots claimed ahead, by id; `_epoch` counts edits,
        # so a read that an edit overtook is not cached.
        self._prefetching: dict[str, asyncio.Task[None]] = {}
        self._epoch = 0

    def forget_targets(self, target_ids: set[str]) -> None:
        """Drop cached targets so their next run reads the current definition."""
        self._epoch += 1
        for target_id in target_ids:
            self._targets.pop(target_id, None)

    def _prefetch(self, target_ids: set[str], due: list[tuple[str, datetime]]) -> None:
        """Read the targets of slots claimed ahead in one query, so their requests do not
        wait for a read when they fire (2,000 first firings would be 2,000 reads)."""
        target_ids -= self._prefetching.keys()
        if not target_ids:
            return  # all on their way already; that read opens the connections it can
        task = asyncio.ensure_future(self._read_targets(sorted(target_ids), self._epoch, due))
        for target_id in target_ids:
            self._prefetching[target_id] = task

    async def _read_targets(
        self, target_ids: list[str], epoch: int, due: list[tuple[str, datetime]]
    ) -> None:
        try:
            found = await self.store.get_targets(target_ids)
            if epoch == self._epoch:
                self._targets.update(found)
        except Exception as exc:  # each run reads its own target then
            log.warning("targets_not_read_ahead", count=len(target_ids), error=str(exc))
        finally:
            for target_id in target_ids:
                self._prefetching.pop(target_id, None)
        self._prewarm(due)

    def _prewarm(self, due: list[tuple[str, datetime]]) -> None:
        """Connections opened ahead for the claimed slots that fire together."""
        known = [(self._targets[t], slot) for t, slot in due if t in self._targets]
        if known:
            self.http.prewarm(known)

    async def _target_of(self, target_id: str) -> Target:
        target = self._targets.get(target_id)
        if target is None and (reading := self._prefetching.get(target_id)) is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(reading)
            target = self._targets.get(target_id)
        if target is None:
            target = self._targets[target_id] = await self.store.get_target(target_id)
        return target
