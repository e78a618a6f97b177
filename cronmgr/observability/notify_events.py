"""What a webhook notification says and how it is signed: the `Event`, the `Delivery`
that records what became of it, the request body and the signature header.

The body is the JSON envelope `{"event", "id", "sent_at", "data"}`, or for
`format = "slack"` a Slack-compatible `{"text": "..."}`. With a `secret`, every attempt
carries `X-Cronmgr-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`:
the receiver recomputes it and rejects stale timestamps, so a captured request cannot be
replayed later. Secrets and resolved `${env:NAME}` values never reach a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from cronmgr.core.config import EVENT_KINDS, WebhookConfig
from cronmgr.core.models import utcnow
from cronmgr.core.secret_refs import REDACTED, redact

TEST_EVENT = "test"
"""The kind `POST /api/v1/notifications/test` sends; it ignores the `events` filters."""
KINDS = frozenset((*EVENT_KINDS, TEST_EVENT))
EVENT_HEADER = "X-Cronmgr-Event"
SIGNATURE_HEADER = "X-Cronmgr-Signature"


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
