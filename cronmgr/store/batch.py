"""Group commit: the run writes of many tasks, applied together in one transaction.

A run writes three times or more (claimed, each attempt, finished), and 2,000 runs due on
the same second would otherwise be 6,000 transactions, each a round trip to the driver's
thread. Here a write joins a queue and waits for its result; one drainer applies
everything queued so far in one call of `apply`, then the writes that arrived meanwhile,
and so on. An idle store adds no delay (the first write goes at once); a busy one needs far
fewer transactions. Callers await their own write, so a task's writes are applied in the
order it made them, and read-your-writes holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Write:
    """One queued write: which statement, its parameters, and where its result goes."""

    statement: str
    params: dict[str, Any]
    result: asyncio.Future[int] = field(repr=False)


Apply = Callable[[Sequence[Write]], Awaitable[list[int]]]
"""Apply writes in one transaction; the rows each one changed, in order."""


class WriteBatcher:
    """Queues writes and applies them in batches, one batch at a time."""

    def __init__(self, apply: Apply, max_batch: int = 5000) -> None:
        self._apply = apply
        self._max_batch = max_batch
        self._queue: list[Write] = []
        self._drainer: asyncio.Task[None] | None = None

    async def write(self, statement: str, params: dict[str, Any]) -> int:
        """Queue one write and wait until it is committed; the rows it changed."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append(Write(statement, params, future))
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain(), name="store write batcher")
        # Shielded: a caller that is cancelled while waiting must not cancel the batch
        # its write is in (nor lose the write: it is applied all the same).
        return await asyncio.shield(future)

    async def flush(self) -> None:
        """Wait until every write queued so far is applied."""
        while self._drainer is not None:
            await asyncio.shield(self._drainer)

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                await self._apply_batch(batch)
        finally:
            self._drainer = None

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
        for write, count in zip(batch, counts, strict=True):
            if not write.result.done():
                write.result.set_result(count)


def _fail(write: Write, exc: BaseException) -> None:
    if not write.result.done():
        write.result.set_exception(exc)
