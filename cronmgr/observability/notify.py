"""Webhook notifications: incidents, auto-disabled schedules, a daemon that died.

`Notifier.publish(kind, data)` is what the rest of cronmgr calls. It is synchronous and
only appends to a bounded queue, so the scheduler's timer never waits on a webhook: each
webhook has its own queue and its own worker task, which POSTs the event, retries
transient failures with exponential backoff and jitter, and gives up after
`max_attempts`. A webhook that hangs costs its own worker at most `timeout_seconds` per
attempt and never delays the others. When a queue is full the oldest event goes
(`notification_dropped`): the newest says most about what is happening now.

The body is the JSON envelope `{"event", "id", "sent_at", "data"}`, or for
`format = "slack"` a Slack-compatible `{"text": "..."}`. With a `secret`, every attempt
carries `X-Cronmgr-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`:
the receiver recomputes it and rejects stale timestamps, so a captured request cannot be
replayed later. Secrets and resolved `${env:NAME}` values never reach a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import random
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson
import structlog

from cronmgr.core.config import EVENT_KINDS, WebhookConfig
from cronmgr.core.models import RetryPolicy, utcnow
from cronmgr.core.retry import retry_after_seconds, retry_delay, should_retry
from cronmgr.core.secret_refs import REDACTED, MissingSecret, SecretResolver, redact
from cronmgr.core.supervision import spawn, supervised
from cronmgr.core.version import __version__

log = structlog.get_logger("cronmgr.notify")

TEST_EVENT = "test"
"""The kind `POST /api/v1/notifications/test` sends; it ignores the `events` filters."""
KINDS = frozenset((*EVENT_KINDS, TEST_EVENT))
EVENT_HEADER = "X-Cronmgr-Event"
SIGNATURE_HEADER = "X-Cronmgr-Signature"
DEFAULT_QUEUE_SIZE = 1000
DRAIN_SECONDS = 2.0
"""How long closing waits for queued events before it abandons them."""


@dataclass(frozen=True, slots=True)
class Event:
    """One notification: its kind, a unique id (the same on every attempt) and its data."""

    kind: str
    data: Mapping[str, Any]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    sent_at: datetime = field(default_factory=utcnow)

    def envelope(self) -> dict[str, Any]:
        """The JSON body of `format = "json"`."""
        return {
            "event": self.kind,
            "id": self.id,
            "sent_at": self.sent_at.isoformat(),
            "data": dict(self.data),
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of one event at one webhook."""

    webhook: int
    name: str | None
    url: str
    event: str
    event_id: str
    delivered: bool
    status: int | None
    attempts: int
    error: str | None
    duration_ms: float

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return asdict(self)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Cronmgr-Signature` value of `body` sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def shown_url(hook: WebhookConfig) -> str:
    """The webhook's URL as the API and the logs show it: nothing that could be a secret.

    Passwords and query strings are masked; so is the path of a Slack-format URL, which
    is the credential there (`/services/T…/B…/<token>`). `${env:NAME}` references stay.
    """
    parts = urlsplit(redact(hook.url))
    path = "/" + REDACTED if hook.format == "slack" and parts.path.strip("/") else parts.path
    return urlunsplit((parts.scheme, parts.netloc, path, REDACTED if parts.query else "", ""))


def render(hook: WebhookConfig, event: Event) -> bytes:
    """The request body for `hook`: the envelope, or Slack's `{"text": ...}`."""
    payload = {"text": slack_text(event)} if hook.format == "slack" else event.envelope()
    # `default=str`: a publisher's odd value (a Path, an enum) must not lose the event.
    return orjson.dumps(payload, default=str)


def slack_text(event: Event) -> str:
    """One human sentence about `event`, escaped for Slack's mrkdwn."""
    data = event.data
    subject = data.get("name") or data.get("title") or data.get("schedule_id") or data.get("job")
    why = data.get("reason") or data.get("summary") or data.get("error")
    text = {
        "incident_opened": f"Incident opened: {subject or 'unnamed'}",
        "incident_resolved": f"Incident resolved: {subject or 'unnamed'}",
        "schedule_disabled": f"Schedule {subject} ({data.get('job')}) was disabled",
        "daemon_died": _daemon_died_text(data),
        TEST_EVENT: "Test notification: this webhook receives cronmgr's events",
    }.get(event.kind, event.kind)
    if why and event.kind != "daemon_died":
        text += f": {why}"
    return _slack_escape(f"[cronmgr] {text}.")


def _daemon_died_text(data: Mapping[str, Any]) -> str:
    then = "restarting it" if data.get("will_restart") else "not restarting it"
    where = f" on {data['host']}" if data.get("host") else ""
    return f"The daemon (pid {data.get('pid')}){where} died: {data.get('reason')}; {then}"


def _slack_escape(text: str) -> str:
    # The three characters Slack asks senders to escape; everything else is literal.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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
