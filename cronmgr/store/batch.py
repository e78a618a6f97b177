"""Group commit: the run writes of many tasks, applied together in one transaction.

A run writes twice or more (claimed, each retried attempt, finished with its last
attempt), and 2,000 runs due on the same second would otherwise be 4,000 transactions,
each a round trip to the writer thread. Here a write joins a queue and waits for its
result; one drainer applies everything queued so far in one call of `apply`, then the
writes that arrived meanwhile if one of them cannot wait, and so on. An idle store adds
no delay to a write that cannot wait (the first goes at once); a busy one needs far fewer
transactions. Callers await their own writes, so a task's writes are applied in the order
it made them, and read-your-writes holds.

When the store has no room (a full disk), a batch is not the writes' fault: the writes
that record what happened (a run's end, its attempts) are held and tried again, with a
growing pause, until they land, so a run is never left `running` for want of a write and
no record is lost; the writes that would begin something (claims, `retry=False`) fail at
once instead, so nothing starts that could not be recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from cronmgr.core.supervision import report_death

log = structlog.get_logger("cronmgr.store")

RESOLVE_CHUNK = 8
"""Writes whose results are handed back in one go; the loop turns between handfuls."""
RETRY_FIRST_SECONDS = 0.1
RETRY_MAX_SECONDS = 5.0
"""Pauses between tries of held writes: doubling from the first to this."""


@dataclass(slots=True)
class Write:
    """One queued write: which statement, its parameters, and where its result goes."""

    statement: str
    params: dict[str, Any]
    result: asyncio.Future[int] = field(repr=False)
    retry: bool = True
    """Held and tried again while the store has no room (False: fail at once)."""


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

    def __init__(
        self,
        apply: Apply,
        max_batch: int = 5000,
        linger_seconds: float = 0.02,
        *,
        no_room: type[Exception] | tuple[type[Exception], ...] = (),
    ) -> None:
        self._apply = apply
        self._max_batch = max_batch
        self._linger_seconds = linger_seconds
        self._no_room = no_room
        """What `apply` raises when the store has no room: held writes, not failed ones."""
        self._held_since: float | None = None  # monotonic: the first no-room try, until a success
        self._no_room_error: Exception | None = None  # what the last try said, meanwhile
        self._pause = RETRY_FIRST_SECONDS
        self._give_up_at = float("inf")  # set by `flush(give_up_after=...)`
        self._queue: list[Write] = []
        self._drainer: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        # Whether a write that cannot wait is queued: the drainer keeps going only then.
        self._urgent = False

    async def write(self, statement: str, params: dict[str, Any], *, retry: bool = True) -> int:
        """Queue one write and wait until it is committed; the rows it changed."""
        return await self.write_many([(statement, params)], retry=retry)

    async def write_many(
        self,
        writes: Sequence[tuple[str, dict[str, Any]]],
        *,
        linger: bool = False,
        retry: bool = True,
    ) -> int:
        """Queue writes of different statements, applied in order and normally in one
        transaction; wait until they are committed and return the rows the last changed."""
        return (await self.write_each(writes, linger=linger, retry=retry))[-1]

    async def write_each(
        self,
        writes: Sequence[tuple[str, dict[str, Any]]],
        *,
        linger: bool = False,
        retry: bool = True,
    ) -> list[int]:
        """As `write_many`, returning the rows each write changed."""
        futures = self.queue(writes, linger=linger, retry=retry)
        # Shielded: a caller that is cancelled while waiting must not cancel the batch
        # its writes are in (nor lose them: they are applied all the same). The writes go
        # in order, so once the last is settled the others are too.
        with contextlib.suppress(Exception):
            await asyncio.shield(futures[-1])
        # Every error read, not just the first: asyncio reports each one nobody read (a
        # line per claim of a batch a full disk refused).
        errors = [future.exception() for future in futures if future.done()]
        if (error := next((e for e in errors if e is not None), None)) is not None:
            raise error
        return [future.result() for future in futures]

    def queue(
        self,
        writes: Sequence[tuple[str, dict[str, Any]]],
        *,
        linger: bool = False,
        retry: bool = True,
    ) -> list[asyncio.Future[int]]:
        """Queue writes without waiting for them; the futures of their results. With
        `retry=False` they fail at once when the store has no room, instead of waiting."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in writes]
        if not retry and self._no_room_error is not None and self._queue:
            # Writes are held for want of room: one that may not wait fails now, not
            # after the pause before the next try.
            for future in futures:
                future.set_exception(self._no_room_error)
            return futures
        self._queue.extend(
            Write(statement, params, future, retry)
            for (statement, params), future in zip(writes, futures, strict=True)
        )
        if linger:
            self._later(loop)
        else:
            self._urgent = True
            self._start()
        return futures

    @property
    def holding(self) -> int:
        """How many writes wait for the store to have room again (0 when it has)."""
        return len(self._queue) if self._no_room_error is not None else 0

    async def flush(self, give_up_after: float | None = None) -> None:
        """Wait until every write queued so far is applied. With `give_up_after`, writes
        still held for want of room that long from now fail instead (when closing)."""
        if give_up_after is not None:
            self._give_up_at = time.monotonic() + give_up_after
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
            self._drainer.add_done_callback(report_death)  # its writes fail; it says why

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
        except self._no_room as exc:
            await self._hold(batch, exc)
            return
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
        if self._held_since is not None:
            self._resumed(self._held_since)
        await _settle(batch, counts)

    def _resumed(self, held_since: float) -> None:
        self._held_since, self._no_room_error = None, None
        self._pause = RETRY_FIRST_SECONDS
        held = time.monotonic() - held_since
        log.info("store_writes_resumed", held_seconds=round(held, 1))

    async def _hold(self, batch: list[Write], exc: Exception) -> None:
        """No room: fail the writes that may not wait, put the others back in front, and
        pause before the drainer tries again."""
        kept = [write for write in batch if write.retry and not write.result.done()]
        for write in batch:
            if not write.retry:
                _fail(write, exc)
        if time.monotonic() >= self._give_up_at:
            for write in kept:
                _fail(write, exc)
            return
        if self._held_since is None:
            self._held_since = time.monotonic()
            log.error("store_writes_held", error=str(exc), writes=len(kept) + len(self._queue))
        if not kept and not self._queue:
            return  # only claims, failed: nothing to try again (the next batch will)
        self._no_room_error = exc
        self._queue[:0] = kept
        self._urgent = True
        await asyncio.sleep(self._pause)
        self._pause = min(self._pause * 2, RETRY_MAX_SECONDS)


async def _settle(batch: list[Write], counts: list[int]) -> None:
    for start in range(0, len(batch), RESOLVE_CHUNK):
        if start:
            # Each result resumes a task; let due timers go between handfuls of them.
            await asyncio.sleep(0)
        for write, count in zip(
            batch[start : start + RESOLVE_CHUNK], counts[start : start + RESOLVE_CHUNK], strict=True
        ):
            if not write.result.done():
                write.result.set_result(count)


def _fail(write: Write, exc: BaseException) -> None:
    if not write.result.done():
        write.result.set_exception(exc)
