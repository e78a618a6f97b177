"""Webhook notifications: incidents, auto-disabled schedules, a daemon that died.

`Notifier.publish(kind, data)` is what the rest of cronmgr calls. It is synchronous and
only appends to a bounded queue, so the scheduler's timer never waits on a webhook: each
webhook has its own queue and its own worker task, which POSTs the event, retries
transient failures with exponential backoff and jitter, and gives up after
`max_attempts`. A webhook that hangs costs its own worker at most `timeout_seconds` per
attempt and never delays the others. When a queue is full the oldest event goes
(`notification_dropped`): the newest says most about what is happening now.

What an event carries and how it is signed is `cronmgr.observability.notify_events`'s
part; one webhook's queue, worker and retries are `cronmgr.observability.webhook`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import aiohttp
import structlog

from cronmgr.core.config import WebhookConfig
from cronmgr.core.supervision import spawn
from cronmgr.core.version import __version__
from cronmgr.observability.notify_events import KINDS, Delivery, Event
from cronmgr.observability.webhook import Webhook

log = structlog.get_logger("cronmgr.notify")

DEFAULT_QUEUE_SIZE = 1000
DRAIN_SECONDS = 2.0
"""How long closing waits for queued events before it abandons them."""


class Notifier:
    """Delivers events to the configured webhooks, off the caller's path.

    Use `async with notifier:` (or `await start()` ... `await aclose()`); it owns one
    aiohttp session for all its webhooks. `publish` may be called before the start: the
    events wait in the queues until the workers run.
    """

    def __init__(
        self,
        webhooks: Sequence[WebhookConfig],
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        environ: Mapping[str, str] | None = None,
        drain_seconds: float = DRAIN_SECONDS,
        rng: random.Random | None = None,
    ) -> None:
        rng = rng or random.Random()
        self.webhooks = tuple(
            Webhook(i, hook, queue_size=queue_size, environ=environ, rng=rng)
            for i, hook in enumerate(webhooks)
        )
        self._drain_seconds = drain_seconds
        self._session: aiohttp.ClientSession | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._closed = False

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Open the session and start one worker per webhook."""
        if self._session is not None or not self.webhooks:
            return
        self._session = aiohttp.ClientSession(
            # Webhooks are not each other's business, nor are the process's proxy
            # variables or a .netrc: nothing but what the config says goes out.
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            headers={"User-Agent": f"cronmgr/{__version__}"},
        )
        self._workers = [
            spawn(f"notifier {hook.index}", hook.work(self._session)) for hook in self.webhooks
        ]

    async def aclose(self) -> None:
        """Give queued events a short grace to go out, then stop the workers and the session."""
        self._closed = True
        if self._session is None:
            return
        await self._drain()
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        await self._session.close()
        self._session = None

    async def _drain(self) -> None:
        idle = asyncio.gather(*(hook.idle.wait() for hook in self.webhooks))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(idle, self._drain_seconds)
        left = sum(len(hook.queue) + hook.busy for hook in self.webhooks)
        if left:
            log.warning("notifications_abandoned", count=left, reason="notifier closing")

    def publish(self, kind: str, data: Mapping[str, Any]) -> None:
        """Queue an event for every webhook that wants it; never blocks, never raises.

        Call it from the event loop's thread. `data` is copied (shallowly) at once.
        """
        try:
            self._publish(kind, data)
        except Exception:  # the caller is on a critical path: a notification bug stays here
            log.exception("notification_publish_failed", event_kind=kind)

    def _publish(self, kind: str, data: Mapping[str, Any]) -> None:
        if kind not in KINDS:
            log.error("notification_dropped", reason="unknown event kind", event_kind=kind)
            return
        if self._closed:
            log.warning("notification_dropped", reason="notifier closed", event_kind=kind)
            return
        event = Event(kind, dict(data))
        for hook in self.webhooks:
            if hook.config.wants(kind):
                hook.enqueue(event)

    def find(self, key: str) -> Webhook | None:
        """The webhook called `key`, else the one at index `key`; None if neither."""
        for hook in self.webhooks:
            if hook.config.name == key:
                return hook
        if key.isdigit() and int(key) < len(self.webhooks):
            return self.webhooks[int(key)]
        return None

    async def send_now(
        self, kind: str, data: Mapping[str, Any], hooks: Sequence[Webhook], wait_seconds: float
    ) -> list[Delivery]:
        """Deliver one event to `hooks` at once, past the queues and the `events` filters.

        Waits for every outcome, but about `wait_seconds` at most: no attempt or retry
        delay of any delivery reaches past that.
        """
        if self._session is None:
            raise RuntimeError("the notifier is not started")
        event = Event(kind, dict(data))
        session = self._session
        return list(
            await asyncio.gather(*(hook.deliver(session, event, wait_seconds) for hook in hooks))
        )
