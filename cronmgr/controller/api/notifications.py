"""`/api/v1/notifications/test`: a `test` event sent to the configured webhooks (or one of
them), answered with what became of it at each.
"""

from __future__ import annotations

import socket

from aiohttp import web

from cronmgr.controller.api.common import inline_schema
from cronmgr.controller.keys import CONTROL
from cronmgr.controller.openapi import Endpoint, Reply
from cronmgr.controller.responses import json_response
from cronmgr.core.errors import Conflict, InvalidInput
from cronmgr.core.models import utcnow
from cronmgr.core.specs.notifications import (
    NotificationTestQuery,
    NotificationTestReport,
    WebhookDelivery,
)
from cronmgr.core.specs.validation import validate_query
from cronmgr.observability.notify_events import TEST_EVENT
from cronmgr.observability.webhook import Webhook

TEST_WAIT_SECONDS = 30.0
"""Longest `POST /api/v1/notifications/test` waits for the deliveries (retries included)."""


def _chosen_webhooks(request: web.Request) -> list[Webhook]:
    notifier = request.app[CONTROL].notifier
    if not notifier.webhooks:
        raise Conflict(
            "no webhook is configured: add a [[webhooks]] table to the config file "
            "and restart the controller"
        )
    query = validate_query(NotificationTestQuery, request.query)
    if query.webhook is None:
        return list(notifier.webhooks)
    found = notifier.find(query.webhook)
    if found is None:
        known = ", ".join(str(h.config.name or h.index) for h in notifier.webhooks)
        message = f"no webhook is called or numbered {query.webhook!r}; configured: {known}"
        raise InvalidInput(
            f"invalid query: webhook: {message}",
            errors=[{"field": "webhook", "message": message, "type": "not_found"}],
        )
    return [found]


async def test_notifications(request: web.Request) -> web.Response:
    """POST /api/v1/notifications/test: send a `test` event, answer what became of it."""
    hooks = _chosen_webhooks(request)
    data = {"message": "This is a test notification from cronmgr.", "host": socket.gethostname()}
    notifier = request.app[CONTROL].notifier
    results = await notifier.send_now(TEST_EVENT, data, hooks, TEST_WAIT_SECONDS)
    delivered = sum(result.delivered for result in results)
    report = NotificationTestReport(
        success=delivered == len(results),
        message=f"test event delivered to {delivered} of {len(results)} webhooks",
        results=[WebhookDelivery(**result.as_dict()) for result in results],
        timestamp=utcnow(),
    )
    return json_response(report.model_dump(mode="json"))


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/api/v1/notifications/test",
        test_notifications,
        "Send a test event to the webhooks",
        "notifications",
        Reply(
            200, "What became of the event at each webhook.", inline_schema(NotificationTestReport)
        ),
        description=(
            "Sends a `test` event to every configured webhook (or to `?webhook=`), signed "
            "and retried as any event, and waits for the outcomes (30 s at most). 200 even "
            "when a delivery failed: `success` and `results` tell. 409 when no webhook is "
            "configured."
        ),
        query=NotificationTestQuery,
        errors=(409,),
    ),
)
