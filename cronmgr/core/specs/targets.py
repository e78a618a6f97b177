"""The target spec: an HTTP request, what counts as success, and how failures are retried.

`TargetSpec` is what POST /api/v1/targets validates and what a pipeline's inline request
is checked against, with its parts `RetrySpec` and `AssertionSpec`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
    model_validator,
)

from cronmgr.core.bounds import Text
from cronmgr.core.models import Assertion, RetryPolicy, Target, utcnow
from cronmgr.core.specs.fields import BodyTemplate, Headers, HttpUrl
from cronmgr.core.specs.validation import field_problems, merge_patch, raise_problems, with_unknown

# Defaults come from the domain records, so the API and the engine never disagree on them.
_TARGET = Target(id="", name="", url="")
_RETRY = RetryPolicy()


class RetrySpec(BaseModel):
    """How a failed HTTP attempt is retried: exponential backoff with jitter.

    4xx answers are not retried, except 408 and 429; `Retry-After` is honoured up to
    `retry_after_max_seconds`.
    """

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(
        default=_RETRY.max_attempts, ge=1, le=10, description="Attempts in all, the first included."
    )
    backoff_base_seconds: float = Field(
        default=_RETRY.backoff_base_seconds,
        ge=0,
        le=3600,
        description="Delay before the 2nd attempt.",
    )
    backoff_max_seconds: float = Field(
        default=_RETRY.backoff_max_seconds,
        ge=0,
        le=86400,
        description="Longest delay between attempts.",
    )
    retry_after_max_seconds: float = Field(
        default=_RETRY.retry_after_max_seconds,
        ge=0,
        le=86400,
        description="Longest `Retry-After` honoured; a longer one ends the retries.",
    )
    jitter: bool = Field(default=_RETRY.jitter, description="Randomise each delay (full jitter).")

    @model_validator(mode="after")
    def _ordered(self) -> RetrySpec:
        if self.backoff_max_seconds < self.backoff_base_seconds:
            raise_problems(self, [("backoff_max_seconds", "must be ≥ backoff_base_seconds")])
        return self

    def to_policy(self) -> RetryPolicy:
        """The domain record."""
        return RetryPolicy(**self.model_dump())


AssertionType = Literal["body_contains", "body_regex", "json_field", "max_latency_ms"]


class AssertionSpec(BaseModel):
    """One check of a response beyond its status code.

    `body_contains`: value is a text the body must contain; `body_regex`: value is a
    regular expression (Python syntax) the body must match; `json_field`: the JSON value at
    `path` (dotted, list indexes as numbers: `data.items.0.id`) must equal value;
    `max_latency_ms`: value is the longest acceptable response time in milliseconds.
    """

    model_config = ConfigDict(extra="forbid")

    type: AssertionType = Field(description="What to check.")
    value: JsonValue = Field(None, description="Text, pattern, expected value or milliseconds.")
    path: str | None = Field(
        None, min_length=1, max_length=500, description="Dotted JSON path (json_field only)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> AssertionSpec:
        raise_problems(self, _assertion_problems(self))
        return self

    def to_assertion(self) -> Assertion:
        """The domain record."""
        return Assertion(kind=self.type, value=self.value, path=self.path)


def _assertion_problems(spec: AssertionSpec) -> list[tuple[str, str]]:
    if spec.path is not None and spec.type != "json_field":
        return [("path", f"only used by json_field assertions, not {spec.type}")]
    if spec.type == "json_field":
        return [] if spec.path else [("path", "required for json_field (e.g. data.items.0.id)")]
    if spec.type == "max_latency_ms":
        value = spec.value
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            return [("value", "milliseconds: a number > 0")]
        return []
    if not isinstance(spec.value, str) or not spec.value:
        return [("value", f"{spec.type} needs a non-empty text value")]
    if spec.type == "body_regex":
        return _regex_problems(spec.value)
    return []


def _regex_problems(pattern: str) -> list[tuple[str, str]]:
    try:
        re.compile(pattern)
    except re.error as exc:
        return [("value", f"not a valid regular expression: {exc}")]
    return []


class TargetSpec(BaseModel):
    """An HTTP target: the request to send and what counts as success.

    Header values may reference secrets as `${env:NAME}`, resolved from the daemon's
    environment at run time and never stored resolved. Responses show `${env:…}` references
    as written and the values of credential headers (Authorization, Cookie, X-Api-Key,
    Proxy-Authorization) as `***`; sending `***` back in a PATCH keeps the stored value.
    """

    model_config = ConfigDict(extra="forbid")
    ECHOED_READ_ONLY: ClassVar[tuple[str, ...]] = ("status", "status_reason")
    """Fields a GET shows that a PATCH ignores, so that a GET body can be sent back."""

    name: Text = Field(description="Unique; printable, 1-200 characters.", examples=["Example API"])
    url: HttpUrl = Field(
        description="Absolute http:// or https:// URL; may hold `${env:NAME}` references.",
        examples=["https://httpbin.org/post"],
    )
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = Field(
        "GET", description="HTTP method; accepted in any case, stored upper case."
    )
    headers: Headers = Field(
        default_factory=dict,
        description="Request headers (at most 100); values may use `${env:NAME}`.",
    )
    body_template: BodyTemplate | None = Field(
        None,
        description=(
            "Request body, a sandboxed Jinja2 template rendered per attempt with run_id, "
            "scheduled_for, attempt and now."
        ),
    )
    timeout_seconds: float = Field(
        _TARGET.timeout_seconds,
        gt=0,
        le=300,
        allow_inf_nan=False,
        description="Per attempt, the whole exchange (up to 300).",
    )
    expected_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(
        default_factory=list,
        max_length=100,
        description="Statuses that count as success; empty: any 2xx.",
    )
    assertions: list[AssertionSpec] = Field(default_factory=list, max_length=50)
    follow_redirects: bool = Field(_TARGET.follow_redirects, description="Follow 3xx answers.")
    verify_tls: bool = Field(_TARGET.verify_tls, description="Check the server certificate.")
    retry: RetrySpec = Field(default_factory=lambda: RetrySpec())

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def field_problems(cls, target: Target) -> list[tuple[str, str]]:
        """What breaks the field rules in a stored target's definition (each field alone)."""
        return field_problems(cls, cls.fields_of(target))

    def to_target(self, target_id: str, created_at: datetime | None = None) -> Target:
        """The domain record with `target_id` (created now unless `created_at`)."""
        now = utcnow()
        return Target(
            id=target_id,
            **self.model_dump(exclude={"assertions", "retry", "expected_status"}),
            expected_status=tuple(self.expected_status),
            assertions=tuple(a.to_assertion() for a in self.assertions),
            retry=self.retry.to_policy(),
            created_at=created_at or now,
            updated_at=now,
        )

    @classmethod
    def fields_of(cls, target: Target) -> dict[str, Any]:
        """A stored target's definition as this model's fields."""
        fields = {name: getattr(target, name) for name in cls.model_fields}
        fields.update(
            headers=dict(target.headers),
            expected_status=list(target.expected_status),
            assertions=[a.as_dict() for a in target.assertions],
            retry=target.retry.as_dict(),
        )
        return fields

    @classmethod
    def patched(cls, target: Target, patch: dict[str, Any]) -> dict[str, Any]:
        """The stored definition with `patch` merged in, to be validated as a whole."""
        return with_unknown(cls, merge_patch(cls.fields_of(target), patch), patch)
