"""One configured webhook and its delivery worker: `Webhook` holds the webhook's bounded
queue (the oldest event goes when it is full), and its worker POSTs each event, retries
transient failures with exponential backoff and jitter within `max_attempts`, and logs
every outcome as sent or failed with nothing that could be a secret."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import aiohttp
import structlog

from cronmgr.core.config import WebhookConfig
from cronmgr.core.models import RetryPolicy, utcnow
from cronmgr.core.retry import retry_after_seconds, retry_delay, should_retry
from cronmgr.core.secret_refs import MissingSecret, SecretResolver
from cronmgr.core.supervision import supervised
from cronmgr.observability.notify_events import (
    EVENT_HEADER,
    SIGNATURE_HEADER,
    Delivery,
    Event,
    render,
    shown_url,
    sign,
)

log = structlog.get_logger("cronmgr.notify")


@dataclass(frozen=True, slots=True)
class _Target:
    """Where one delivery goes, resolved: URL, signing key, body, what to scrub."""

    url: str
    secret: str | None
    body: bytes
    secrets: SecretResolver


@dataclass(slots=True)
class _Answer:
    """One attempt's outcome."""

    status: int | None = None
    error: str | None = None
    retryable: bool = False
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Webhook:
    """One configured webhook: its queue, its worker and how it delivers an event."""

    def __init__(
        self,
        index: int,
        config: WebhookConfig,
        *,
        queue_size: int,
        environ: Mapping[str, str] | None,
        rng: random.Random,
    ) -> None:
        self.index = index
        self.config = config
        self.url = shown_url(config)
        self.queue: deque[Event] = deque()
        self.queue_size = queue_size
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()  # nothing queued, nothing in flight: closing may go on
        self.idle.set()
        self.busy = False
        self._environ = environ
        self._rng = rng
        self._policy = RetryPolicy(
            max_attempts=config.max_attempts,
            backoff_base_seconds=config.backoff_seconds,
            backoff_max_seconds=config.backoff_max_seconds,
            retry_after_max_seconds=config.backoff_max_seconds,
            jitter=True,
        )

    def enqueue(self, event: Event) -> None:
        """Queue `event`; when the queue is full, the oldest one is dropped."""
        if len(self.queue) >= self.queue_size:
            dropped = self.queue.popleft()
            log.warning(
                "notification_dropped",
                reason="queue full",
                queue_size=self.queue_size,
                event_kind=dropped.kind,
                event_id=dropped.id,
                **self._fields(),
            )
        self.queue.append(event)
        self.idle.clear()
        self.wake.set()

    async def work(self, session: aiohttp.ClientSession) -> None:
        """Deliver queued events one after the other, for as long as the notifier runs; a
        delivery that breaks (a bug, not a refused webhook) is logged and the next goes."""
        await supervised("notifier", partial(self._deliver_next, session), **self._fields())

    async def _deliver_next(self, session: aiohttp.ClientSession) -> None:
        while not self.queue:
            self.idle.set()
            self.wake.clear()
            await self.wake.wait()
        event = self.queue.popleft()
        self.busy = True
        try:
            await self.deliver(session, event)
        except Exception as exc:
            exc.add_note(f"while delivering the {event.kind} event {event.id}")
            raise
        finally:
            self.busy = False

    async def deliver(
        self, session: aiohttp.ClientSession, event: Event, within: float | None = None
    ) -> Delivery:
        """POST `event` with retries; the outcome, logged as sent or failed.

        With `within` (seconds), no attempt or retry delay reaches past that much time
        from now: the delivery gives up instead.
        """
        started = time.monotonic()
        deadline = started + within if within is not None else float("inf")
        secrets = SecretResolver(self._environ)
        try:
            target = _Target(*self._resolve(secrets), render(self.config, event), secrets)
        except MissingSecret as exc:
            return self._finish(event, started, 0, _Answer(error=str(exc)))
        attempt, answer = 0, _Answer()
        while attempt < self._policy.max_attempts:
            attempt += 1
            answer = await self._attempt(session, target, event, deadline)
            if answer.ok or not answer.retryable or attempt == self._policy.max_attempts:
                break
            if not await self._pause(event, attempt, answer, deadline):
                break
        return self._finish(event, started, attempt, answer)

    def _resolve(self, secrets: SecretResolver) -> tuple[str, str | None]:
        url = secrets.resolve(self.config.url, "the webhook URL")
        secret = self.config.secret
        if secret is None:
            return url, None
        return url, secrets.resolve(secret.get_secret_value(), "the webhook secret")

    async def _attempt(
        self, session: aiohttp.ClientSession, target: _Target, event: Event, deadline: float
    ) -> _Answer:
        headers = {"Content-Type": "application/json", EVENT_HEADER: event.kind}
        headers["X-Cronmgr-Event-Id"] = event.id
        if target.secret is not None:
            # Signed per attempt: a fresh timestamp, so a retry is never rejected as stale.
            headers[SIGNATURE_HEADER] = sign(target.secret, int(time.time()), target.body)
        seconds = max(min(self.config.timeout_seconds, deadline - time.monotonic()), 0.001)
        timeout = aiohttp.ClientTimeout(total=seconds)
        try:
            # The body of the answer is not wanted: left unread, a large one is dropped
            # with its connection instead of being buffered.
            async with session.post(
                target.url, data=target.body, headers=headers, timeout=timeout
            ) as resp:
                return _answered(resp)
        except TimeoutError:
            return _Answer(error=f"no answer within {seconds:g} s", retryable=True)
        except aiohttp.ClientError as exc:
            text = str(exc).replace(target.url, self.url) or type(exc).__name__
            return _Answer(error=target.secrets.scrub(text), retryable=_transient(exc))

    async def _pause(self, event: Event, attempt: int, answer: _Answer, deadline: float) -> bool:
        """Wait before the next attempt; False (at once) when that would pass the deadline."""
        delay = retry_delay(self._policy, attempt, answer.retry_after, self._rng)
        if time.monotonic() + delay >= deadline:
            return False
        log.info(
            "notification_retry",
            event_kind=event.kind,
            event_id=event.id,
            attempt=attempt,
            status=answer.status,
            error=answer.error,
            delay_seconds=round(delay, 3),
            **self._fields(),
        )
        await asyncio.sleep(delay)
        return True

    def _finish(self, event: Event, started: float, attempts: int, answer: _Answer) -> Delivery:
        delivery = Delivery(
            webhook=self.index,
            name=self.config.name,
            url=self.url,
            event=event.kind,
            event_id=event.id,
            delivered=answer.ok,
            status=answer.status,
            attempts=attempts,
            error=answer.error,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        fields = delivery.as_dict()
        fields["webhook_index"] = fields.pop("webhook")
        fields["event_kind"] = fields.pop("event")
        del fields["delivered"]
        if delivery.delivered:
            log.info("notification_sent", **fields)
        else:
            log.warning("notification_failed", **fields)
        return delivery

    def _fields(self) -> dict[str, Any]:
        return {"webhook_index": self.index, "name": self.config.name, "url": self.url}


def _answered(resp: aiohttp.ClientResponse) -> _Answer:
    if 200 <= resp.status < 300:
        return _Answer(status=resp.status)
    retry_after = retry_after_seconds(resp.headers.get("Retry-After"), utcnow())
    return _Answer(
        status=resp.status,
        error=f"HTTP {resp.status} {resp.reason or ''}".strip(),
        retryable=should_retry(resp.status, None),
        retry_after=retry_after,
    )


def _transient(exc: aiohttp.ClientError) -> bool:
    # A refused or dropped connection may work a moment later; a certificate the client
    # does not trust, or a URL it cannot use, will not.
    if isinstance(exc, aiohttp.ClientSSLError | aiohttp.InvalidURL):
        return False
    return isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError)
