"""Webhook notifications: envelope, signature, retries, Slack text, filters, isolation.

Every webhook here is a real aiohttp server on 127.0.0.1 that records what it receives;
the signature is checked with `hmac` directly, not with cronmgr's own `sign`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs
from support import free_port

from cronmgr.core.config import WebhookConfig
from cronmgr.observability.notify import Notifier
from cronmgr.observability.notify_events import shown_url

ServerFactory = Callable[..., Awaitable[TestServer]]
Logs = list[dict[str, Any]]

SECRET = "whsec-test-0123456789"
HOLD_LIMIT_SECONDS = 10.0


@dataclass
class Hit:
    """One request a receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        """The body, parsed."""
        return orjson.loads(self.body)


@dataclass
class Receiver:
    """Records every POST; `/fail/N` answers 500 N times then 200, `/status/N` always N,
    `/hang` holds the request until `release` is set."""

    base: str = ""
    hits: list[Hit] = field(default_factory=list)
    failures_left: dict[str, int] = field(default_factory=dict)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def url(self, path: str) -> str:
        """The receiver's URL of `path`."""
        return self.base + path

    def at(self, path: str) -> list[Hit]:
        """The requests that reached `path`, oldest first."""
        return [hit for hit in self.hits if hit.path == path]

    async def wait(self, path: str, count: int = 1, timeout: float = 5.0) -> list[Hit]:
        """Wait (bounded) until `path` got `count` requests; those requests."""
        async with self.arrived:
            await asyncio.wait_for(
                self.arrived.wait_for(lambda: len(self.at(path)) >= count), timeout
            )
        return self.at(path)

    async def handle(self, request: web.Request) -> web.Response:
        """Record, then answer as the path says."""
        hit = Hit(request.path, dict(request.headers), await request.read(), time.monotonic())
        async with self.arrived:
            self.hits.append(hit)
            self.arrived.notify_all()
        return await self._answer(request.path)

    async def _answer(self, path: str) -> web.Response:
        if path == "/hang":
            await asyncio.wait_for(self.release.wait(), HOLD_LIMIT_SECONDS)
        if match := re.fullmatch(r"/fail/(\d+)", path):
            left = self.failures_left.setdefault(path, int(match.group(1)))
            if left:
                self.failures_left[path] = left - 1
                return web.Response(
                    status=500 if left % 2 == 0 else 429, headers={"Retry-After": "0"}
                )
        if match := re.fullmatch(r"/status/(\d+)", path):
            return web.Response(status=int(match.group(1)))
        return web.Response(text="ok")


@pytest.fixture
async def receiver(aiohttp_server: ServerFactory) -> AsyncIterator[Receiver]:
    """A recording webhook receiver on 127.0.0.1."""
    recorder = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", recorder.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    recorder.base = str(server.make_url("")).rstrip("/")
    yield recorder
    recorder.release.set()  # let held requests end before the server closes


@pytest.fixture
async def notifiers() -> AsyncIterator[list[Notifier]]:
    """Notifiers a test made; each is closed afterwards."""
    made: list[Notifier] = []
    yield made
    for notifier in made:
        await notifier.aclose()


def hook(url: str, **fields: Any) -> WebhookConfig:
    """A webhook with quick retries."""
    values: dict[str, Any] = {"url": url, "timeout_seconds": 2.0, "backoff_seconds": 0.01}
    values.update(fields)
    return WebhookConfig.model_validate(values)


async def started(made: list[Notifier], *hooks: WebhookConfig, **options: Any) -> Notifier:
    """A running notifier for `hooks`, closed at teardown."""
    notifier = Notifier(hooks, **options)
    made.append(notifier)
    await notifier.start()
    return notifier


async def logged(logs: Logs, event: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
    """Wait (bounded) for a log entry `event` with the `match` fields; that entry."""
    deadline = time.monotonic() + timeout
    while True:
        for entry in logs:
            if entry["event"] == event and all(entry.get(k) == v for k, v in match.items()):
                return entry
        if time.monotonic() > deadline:
            pytest.fail(f"no {event} {match} logged within {timeout} s: {logs}")
        await asyncio.sleep(0.01)


def verify(secret: str, header: str, body: bytes, tolerance: float = 300) -> bool:
    """The receiver's check, as the README documents it."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    timestamp, given = fields["t"], fields["v1"]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    fresh = abs(time.time() - int(timestamp)) <= tolerance
    return fresh and hmac.compare_digest(expected.hexdigest(), given)


async def test_an_event_is_a_signed_json_envelope(
    receiver: Receiver, notifiers: list[Notifier]
) -> None:
    """The body is {event, id, sent_at, data}; the event kind is a header; the signature
    is HMAC-SHA256 of "<t>.<body>" under the secret, with a current timestamp."""
    notifier = await started(notifiers, hook(receiver.url("/hook"), secret=SECRET))
    notifier.publish("incident_opened", {"incident_id": "i-1", "name": "nightly"})
    (hit,) = await receiver.wait("/hook")
    body = hit.json()
    assert body["event"] == "incident_opened"
    assert body["data"] == {"incident_id": "i-1", "name": "nightly"}
    assert uuid.UUID(body["id"]) and datetime.fromisoformat(body["sent_at"]).tzinfo
    assert hit.headers["X-Cronmgr-Event"] == "incident_opened"
    assert hit.headers["X-Cronmgr-Event-Id"] == body["id"]
    assert hit.headers["Content-Type"] == "application/json"
    assert verify(SECRET, hit.headers["X-Cronmgr-Signature"], hit.body)
    assert not verify("another-secret", hit.headers["X-Cronmgr-Signature"], hit.body)
    assert not verify(SECRET, hit.headers["X-Cronmgr-Signature"], hit.body + b" ")


async def test_without_a_secret_nothing_is_signed(
    receiver: Receiver, notifiers: list[Notifier]
) -> None:
    """No secret, no signature header."""
    notifier = await started(notifiers, hook(receiver.url("/plain")))
    notifier.publish("daemon_died", {"pid": 1})
    (hit,) = await receiver.wait("/plain")
    assert "X-Cronmgr-Signature" not in hit.headers


async def test_5xx_and_429_are_retried_until_success(
    receiver: Receiver, notifiers: list[Notifier]
) -> None:
    """Two failures (500, then 429) then 200: three attempts of the same event, each
    freshly signed, logged as sent after 3 attempts."""
    notifier = await started(
        notifiers, hook(receiver.url("/fail/2"), secret=SECRET, max_attempts=4)
    )
    with capture_logs() as logs:
        notifier.publish("schedule_disabled", {"schedule_id": "s-1"})
        hits = await receiver.wait("/fail/2", 3)
        entry = await logged(logs, "notification_sent")
    assert entry["attempts"] == 3 and entry["status"] == 200
    assert len({hit.json()["id"] for hit in hits}) == 1
    assert all(verify(SECRET, h.headers["X-Cronmgr-Signature"], h.body) for h in hits)
    assert [e["status"] for e in logs if e["event"] == "notification_retry"] == [500, 429]


async def test_a_4xx_is_not_retried(receiver: Receiver, notifiers: list[Notifier]) -> None:
    """400 means the request is wrong: one attempt, logged as failed."""
    notifier = await started(notifiers, hook(receiver.url("/status/400"), max_attempts=4))
    with capture_logs() as logs:
        notifier.publish("incident_resolved", {"incident_id": "i-1"})
        entry = await logged(logs, "notification_failed")
    assert entry["attempts"] == 1 and entry["status"] == 400
    assert len(receiver.at("/status/400")) == 1


async def test_retries_stop_after_max_attempts(
    receiver: Receiver, notifiers: list[Notifier]
) -> None:
    """A webhook that keeps answering 503 gets exactly max_attempts tries."""
    notifier = await started(notifiers, hook(receiver.url("/status/503"), max_attempts=3))
    with capture_logs() as logs:
        notifier.publish("incident_opened", {})
        entry = await logged(logs, "notification_failed")
    assert entry["attempts"] == 3 and entry["status"] == 503
    assert len(receiver.at("/status/503")) == 3


async def test_a_refused_connection_is_retried_and_the_secret_never_logged(
    notifiers: list[Notifier],
) -> None:
    """Nobody listens: every attempt fails with a connection error, and no log line holds
    the secret or the resolved URL token."""
    url = f"http://127.0.0.1:{free_port()}/hook?token=${{env:HOOK_TOKEN}}"
    environ = {"HOOK_TOKEN": "tok-987654321", "HOOK_SECRET": SECRET}
    config = hook(url, secret="${env:HOOK_SECRET}", max_attempts=2)
    notifier = await started(notifiers, config, environ=environ)
    with capture_logs() as logs:
        notifier.publish("incident_opened", {})
        entry = await logged(logs, "notification_failed")
    assert entry["attempts"] == 2 and entry["status"] is None and entry["error"]
    text = repr(logs)
    assert SECRET not in text and "tok-987654321" not in text


async def test_a_missing_secret_variable_fails_without_sending(
    receiver: Receiver, notifiers: list[Notifier]
) -> None:
    """`${env:NAME}` naming an unset variable: nothing is sent, the failure says why."""
    config = hook(receiver.url("/never"), secret="${env:HOOK_SECRET}")
    notifier = await started(notifiers, config, environ={})
    with capture_logs() as logs:
        notifier.publish("daemon_died", {})
        entry = await logged(logs, "notification_failed")
    assert entry["attempts"] == 0 and "HOOK_SECRET" in entry["error"]
    assert receiver.at("/never") == []


async def test_slack_format_sends_one_sentence(
    receiver: Receiver, notifiers: list[Notifier]
) -> None:
    """format = "slack": {"text": "..."} saying what happened, Slack-escaped."""
    notifier = await started(notifiers, hook(receiver.url("/slack"), format="slack"))
    data = {
        "schedule_id": "s-1",
        "name": "<nightly>",
        "job": "target:t-1",
        "reason": "disabled after 3 consecutive failed runs",
        "consecutive_failures": 3,
    }
    notifier.publish("schedule_disabled", data)
    notifier.publish("daemon_died", {"pid": 42, "reason": "killed", "will_restart": True})
    first, second = (hit.json() for hit in await receiver.wait("/slack", 2))
    assert first == {
        "text": "[cronmgr] Schedule &lt;nightly&gt; (target:t-1) was disabled: "
        "disabled after 3 consecutive failed runs."
    }
    assert second["text"] == "[cronmgr] The daemon (pid 42) died: killed; restarting it."


async def test_the_events_filter_picks_what_a_webhook_gets(
    receiver: Receiver, notifiers: list[Notifier]
) -> None:
    """A webhook with events = ["daemon_died"] gets only that; one without gets all."""
    notifier = await started(
        notifiers,
        hook(receiver.url("/deaths"), events=["daemon_died"]),
        hook(receiver.url("/all")),
    )
    notifier.publish("schedule_disabled", {"schedule_id": "s-1"})
    notifier.publish("daemon_died", {"pid": 7})
    everything = await receiver.wait("/all", 2)
    (death,) = await receiver.wait("/deaths")  # queued in order: a first one would be here
    assert [hit.json()["event"] for hit in everything] == ["schedule_disabled", "daemon_died"]
    assert death.json()["event"] == "daemon_died"


async def test_a_hanging_webhook_blocks_neither_publish_nor_the_others(
    receiver: Receiver, notifiers: list[Notifier]
) -> None:
    """publish() returns at once while a webhook hangs; a second webhook gets every event
    while the first is still waiting; the hanging one gives up after its timeout."""
    notifier = await started(
        notifiers,
        hook(receiver.url("/hang"), timeout_seconds=2.0, max_attempts=1),
        hook(receiver.url("/fast")),
    )
    with capture_logs() as logs:
        began = time.monotonic()
        for number in range(50):
            notifier.publish("incident_opened", {"number": number})
        assert time.monotonic() - began < 0.1
        await receiver.wait("/hang")
        await receiver.wait("/fast", 50)
        hang_url = receiver.url("/hang")
        assert not [e for e in logs if e["event"] == "notification_failed"], "hang gave up first"
        assert len(receiver.at("/hang")) == 1  # the first request is still held
        entry = await logged(logs, "notification_failed", url=hang_url)
    assert "no answer within 2 s" in entry["error"] and entry["attempts"] == 1
    assert 1.9 < entry["duration_ms"] / 1000 < 5.0


async def test_a_full_queue_drops_the_oldest_and_says_so(
    receiver: Receiver, notifiers: list[Notifier]
) -> None:
    """Published before the start into a queue of 2: the first of 3 events is dropped and
    logged; the other two are delivered once the notifier runs."""
    notifier = Notifier([hook(receiver.url("/small"))], queue_size=2)
    notifiers.append(notifier)
    with capture_logs() as logs:
        for number in range(3):
            notifier.publish("incident_opened", {"number": number})
    dropped = [entry for entry in logs if entry["event"] == "notification_dropped"]
    assert len(dropped) == 1 and dropped[0]["reason"] == "queue full"
    await notifier.start()
    hits = await receiver.wait("/small", 2)
    assert [hit.json()["data"]["number"] for hit in hits] == [1, 2]


async def test_publish_never_raises(receiver: Receiver, notifiers: list[Notifier]) -> None:
    """An unknown kind is dropped with a log line; an unserialisable value goes out as text;
    after close, events are dropped."""
    notifier = await started(notifiers, hook(receiver.url("/odd")))
    with capture_logs() as logs:
        notifier.publish("no_such_event", {})
        notifier.publish("incident_opened", {"thing": object()})
        (hit,) = await receiver.wait("/odd")
        await notifier.aclose()
        notifier.publish("incident_opened", {})
    assert hit.json()["data"]["thing"].startswith("<object object")
    reasons = [entry["reason"] for entry in logs if entry["event"] == "notification_dropped"]
    assert reasons == ["unknown event kind", "notifier closed"]


async def test_closing_delivers_what_is_queued(
    receiver: Receiver, notifiers: list[Notifier]
) -> None:
    """An event published just before close still goes out (within the drain grace)."""
    notifier = await started(notifiers, hook(receiver.url("/last")))
    notifier.publish("incident_resolved", {"incident_id": "i-9"})
    await notifier.aclose()
    assert [hit.json()["event"] for hit in receiver.at("/last")] == ["incident_resolved"]


async def test_send_now_waits_for_the_outcomes_within_bounds(
    receiver: Receiver, notifiers: list[Notifier]
) -> None:
    """The test endpoint's path: every selected webhook at once, the events filter
    ignored, outcomes returned; a hanging one is given up at the wait limit."""
    notifier = await started(
        notifiers,
        hook(receiver.url("/ok"), events=["daemon_died"], name="ok"),
        hook(receiver.url("/hang"), timeout_seconds=5.0),
    )
    began = time.monotonic()
    ok, hung = await notifier.send_now("test", {"message": "hi"}, notifier.webhooks, 0.5)
    assert time.monotonic() - began < 2.0
    assert ok.delivered and ok.status == 200 and ok.attempts == 1 and ok.name == "ok"
    assert not hung.delivered and hung.status is None and "no answer" in (hung.error or "")
    assert receiver.at("/ok")[0].json()["event"] == "test"
    assert notifier.find("ok") is notifier.webhooks[0]
    assert notifier.find("1") is notifier.webhooks[1]
    assert notifier.find("2") is None and notifier.find("nope") is None


def test_shown_urls_hide_what_could_be_a_secret() -> None:
    """Passwords and query strings are masked, a Slack URL's path too; references stay."""
    assert shown_url(hook("https://u:pw@hooks.example/in?key=abc&x=1")) == (
        "https://u:***@hooks.example/in?***"
    )
    assert shown_url(hook("https://hooks.slack.com/services/T0/B0/xyz", format="slack")) == (
        "https://hooks.slack.com/***"
    )
    assert shown_url(hook("https://hooks.example/${env:HOOK_PATH}")) == (
        "https://hooks.example/${env:HOOK_PATH}"
    )
