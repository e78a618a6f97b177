"""Concurrency limits for pipeline runs: one cap for the daemon, one per pipeline.

A pipeline run holds a slot of the daemon-wide cap (`max_concurrent_pipeline_runs`) and,
when its file sets `max_concurrent_runs`, a slot of its pipeline's own cap, for as long as
its steps execute. A run that finds either cap full waits in line, in arrival order, and
is reported as queued (its run turns `pending` in the store) until it gets both. HTTP
target runs are not counted: they are cheap I/O bounded by the shared connection pool.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from cronmgr.core.pipelines.pipeline import Pipeline

QueueCallback = Callable[[bool, str], Awaitable[None]]
"""Told `(True, why)` when a run starts waiting for a slot, `(False, "")` when it got one."""


class RunLimits:
    """The daemon-wide cap and the per-pipeline caps, with the runs waiting for them."""

    def __init__(self, max_runs: int) -> None:
        self.max_runs = max_runs
        self._global = asyncio.Semaphore(max_runs)
        self._per_pipeline: dict[str, tuple[int, asyncio.Semaphore]] = {}
        self._waiting: dict[str, str] = {}  # run id -> pipeline, in arrival order

    def waiting(self) -> list[str]:
        """Ids of the runs waiting for a slot, first in line first."""
        return list(self._waiting)

    @contextlib.asynccontextmanager
    async def slot(
        self, pipeline: Pipeline, run_id: str, on_queue: QueueCallback
    ) -> AsyncIterator[None]:
        """Hold a slot of each cap that applies to `pipeline` for the block's duration."""
        semaphores = [self._global]
        own = self._pipeline_semaphore(pipeline)
        if own is not None:
            semaphores.insert(0, own)
        full = self._full(pipeline, own)
        if full is not None:
            self._waiting[run_id] = pipeline.name
            await on_queue(True, full)
        async with contextlib.AsyncExitStack() as held:
            try:
                # The pipeline's own cap first: a run blocked on it holds no global slot
                # that runs of other pipelines could use meanwhile.
                for semaphore in semaphores:
                    await held.enter_async_context(semaphore)
            finally:
                queued = self._waiting.pop(run_id, None) is not None
            if queued:
                await on_queue(False, "")
            yield

    def _full(self, pipeline: Pipeline, own: asyncio.Semaphore | None) -> str | None:
        if own is not None and own.locked():
            cap = pipeline.max_concurrent_runs
            return f"pipeline {pipeline.name!r} already runs {cap} at once (max_concurrent_runs)"
        if self._global.locked():
            return f"{self.max_runs} pipeline runs already execute (max_concurrent_pipeline_runs)"
        return None

    def _pipeline_semaphore(self, pipeline: Pipeline) -> asyncio.Semaphore | None:
        cap = pipeline.max_concurrent_runs
        if cap is None:
            return None
        known = self._per_pipeline.get(pipeline.name)
        if known is None or known[0] != cap:
            # A reload changed the cap: new runs count against a fresh semaphore; runs
            # holding the old one release it when they end.
            known = self._per_pipeline[pipeline.name] = (cap, asyncio.Semaphore(cap))
        return known[1]
