"""The webhook test: which webhooks `POST /api/v1/notifications/test` sends its event to,
and what became of it at each.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from cronmgr.core.bounds import FilterText


class NotificationTestQuery(BaseModel):
    """Query of `POST /api/v1/notifications/test`."""

    model_config = ConfigDict(extra="forbid")

    webhook: FilterText | None = Field(
        None, description="Only this webhook: its `name`, or its index (from 0) in the file."
    )


class WebhookDelivery(BaseModel):
    """What became of the test event at one webhook."""

    webhook: int = Field(description="Index of the webhook in the config file, from 0.")
    name: str | None = Field(description="The webhook's `name`, if it has one.")
    url: str = Field(description="Its URL with passwords, query and Slack paths masked.")
    event: str = Field(description="The event kind sent.")
    event_id: str = Field(description="The event's `id` (the same on every attempt).")
    delivered: bool = Field(description="A 2xx answer came back.")
    status: int | None = Field(description="HTTP status of the last attempt, if any answered.")
    attempts: int = Field(description="Attempts made (0: not sendable, e.g. a missing secret).")
    error: str | None = Field(description="Why the last attempt failed.")
    duration_ms: float = Field(description="From the first attempt to the outcome.")


class NotificationTestReport(BaseModel):
    """The answer of `POST /api/v1/notifications/test`."""

    success: bool = Field(description="Every selected webhook got the event.")
    message: str
    results: list[WebhookDelivery]
    timestamp: datetime
