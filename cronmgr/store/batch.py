"""Group commit: the run writes of many tasks, applied together in one transaction.

A run writes twice or more (claimed, each retried attempt, finished with its last
attempt), and 2,000 runs due on the same second would otherwise be 4,000 transactions,
each a round trip to the writer thread. Here a write joins a queue and waits for its
result; one drainer applies everything queued so far in one call of `apply`, then the
writes that arrived meanwhile if one of them cannot wait, and so on. An idle store adds
no delay to a write that cannot wait (the first goes at once); a busy one needs far fewer
transactions. Callers await their own writes, so a task's writes are applied in the order
it made them, and read-your-writes holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

RESOLVE_CHUNK = 8
"""Writes whose results are handed back in one go; the loop turns between handfuls."""


@dataclass(slots=True)
class Write:
    """One queued write: which statement, its parameters, and where its result goes."""

    statement: str
    params: dict[str, Any]
    result: asyncio.Future[int] = field(repr=False)


Apply = Callable[[Sequence[Write]], Awaitable[list[int]]]
"""Apply writes in one transaction; the rows each one changed, in order."""


class WriteBatcher:
    """Queues writes and applies them in batches, one batch at a time.

    A write that can wait (`linger=True`: a run's end, which nothing is waiting on to
    start) is held up to `linger_seconds` for company: the next write that cannot wait (a
    claim, which a request is waiting on) takes it along, or the timer sends it alone.
    Every trip to the store wakes a thread and then the event loop, and on a small machine
    those wake-ups, not SQLite, are most of what a run costs.
    """

    def __init__(self, apply: Apply, max_batch: int = 5000, linger_seconds: float = 0.02) -> None:
        self._apply = apply
        self._max_batch = max_batch
        self._linger_seconds = linger_seconds
        self._queue: list[Write] = []
        self._drainer: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        # Whether a write that cannot wait is queued: the drainer keeps going only then.
        self._urgent = False

    async def write(self, statement: str, params: dict[str, Any]) -> int:
        """Queue one write and wait until it is committed; the rows it changed."""
        return await self.write_many([(statement, params)])

    async def write_many(
        self, writes: Sequence[tuple[str, dict[str, Any]]], *, linger: bool = False
    ) -> int:
        """Queue writes of different statements, applied in order and normally in one
        transaction; wait until they are committed and return the rows the last changed."""
        return (await self.write_each(writes, linger=linger))[-1]

    async def write_each(
        self, writes: Sequence[tuple[str, dict[str, Any]]], *, linger: bool = False
    ) -> list[int]:
        """As `write_many`, returning the rows each write changed."""
        futures = self.queue(writes, linger=linger)
        # Shielded: a caller that is cancelled while waiting must not cancel the batch
        # its writes are in (nor lose them: they are applied all the same). The writes go
        # in order, so once the last is settled the others are too.
        await asyncio.shield(futures[-1])
        return [future.result() for future in futures]  # raises what a write raised

    def queue(
        self, writes: Sequence[tuple[str, dict[str, Any]]], *, linger: bool = False
    ) -> list[asyncio.Future[int]]:
        """Queue writes without waiting for them; the futures of their results."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in writes]
        self._queue.extend(
            Write(statement, params, future)
            for (statement, params), future in zip(writes, futures, strict=True)
        )
        if linger:
            self._later(loop)
        else:
            self._urgent = True
            self._start()
        return futures

    async def flush(self) -> None:
        """Wait until every write queued so far is applied."""
        while self._queue or self._drainer is not None:
            if self._queue:
                self._urgent = True  # nothing may linger now
                self._start()
            assert self._drainer is not None
            await asyncio.shield(self._drainer)

    def _later(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._drainer is None and self._timer is None:
            self._timer = loop.call_later(self._linger_seconds, self._start)

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._drainer is None and self._queue:
            self._drainer = asyncio.create_task(self._drain(), name="store write batcher")

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                if not self._queue:
                    self._urgent = False
                await self._apply_batch(batch)
                # Writes that came meanwhile and can all wait go on waiting for company:
                # at a thousand runs a second, one or two end during every trip, and
                # taking them at once would make every trip a transaction of one run.
                if not self._urgent:
                    break
        finally:
            self._drainer = None
            if self._queue:
                self._later(asyncio.get_running_loop())

    async def _apply_batch(self, batch: list[Write]) -> None:
        try:
            counts = await self._apply(batch)
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0], exc)
                return
            # One bad write must not take the others down with it: apply them one by one.
            for write in batch:
                await self._apply_batch([write])
            return
        except BaseException as exc:
            for write in batch:
                _fail(write, exc)
            raise
        for start in range(0, len(batch), RESOLVE_CHUNK):
            if start:
                # Each result resumes a task; let due timers go between handfuls of them.
                await asyncio.sleep(0)
            for write, count in zip(
                batch[start : start + RESOLVE_CHUNK],
                counts[start : start + RESOLVE_CHUNK],
                strict=True,
            ):
                if not write.result.done():
                    write.result.set_result(count)


def _fail(write: Write, exc: BaseException) -> None:
    if not write.result.done():
        write.result.set_exception(exc)
