"""Request bodies and query strings, declared once: they validate and they document."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from cronmgr.core import templating
from cronmgr.core.bounds import (
    LAST_MOMENT,
    MAX_COUNT,
    MAX_SPAN_SECONDS,
    MIN_SCHEDULE_INTERVAL_SECONDS,
    FilterText,
    Identifier,
    Moment,
    Offset,
    Seconds,
    Text,
)
from cronmgr.core.errors import BadRequest, InvalidInput
from cronmgr.core.models import (
    Assertion,
    FailurePolicy,
    MisfirePolicy,
    OverlapPolicy,
    RetryPolicy,
    RunStatus,
    Schedule,
    ScheduleStatus,
    ScheduleType,
    Target,
    utcnow,
)
from cronmgr.core.triggers import validate_cron, validate_timezone

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MIN_INTERVAL_SECONDS = 10

M = TypeVar("M", bound=BaseModel)


class StartRequest(BaseModel):
    """Body of `POST /api/cron/start` and `/api/cron/restart` (every field optional)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    interval_seconds: int | None = Field(
        None,
        ge=MIN_INTERVAL_SECONDS,
        le=MAX_SPAN_SECONDS,
        description="Run the pipeline every N seconds (10 to ten years; default 120).",
        examples=[60],
    )
    pipeline: str | None = Field(
        None, pattern=NAME_PATTERN, description="Pipeline to run (default: `default`)."
    )


class LinesQuery(BaseModel):
    """Query of the log endpoints: how many lines from the end."""

    model_config = ConfigDict(extra="ignore")

    lines: int | None = Field(
        None, ge=1, le=10_000_000, description="Number of lines from the end."
    )


LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LOG_CURSOR_PATTERN = r"^(\d{1,20}):(\d{1,20})(?::([0-9a-f]{8}))?$"
"""`<inode>:<offset>:<check>`, or the older `<inode>:<offset>`."""


class FollowQuery(BaseModel):
    """Query of `GET /api/v1/logs`: where to continue, how much to start with, which lines.

    Unknown parameters are refused: a misspelt filter must not quietly pass every line.
    """

    model_config = ConfigDict(extra="forbid")

    cursor: str | None = Field(
        None,
        pattern=LOG_CURSOR_PATTERN,
        description=(
            "The `cursor` of the previous answer (`<inode>:<offset>:<check>`; the older "
            "`<inode>:<offset>` is read too); omit it to start at the end."
        ),
    )
    lines: int = Field(10, ge=0, le=10_000, description="Lines to start with (no cursor).")
    level: LogLevel | None = Field(
        None,
        description="Only lines of this level or a more severe one (`warning`: warning, error "
        "and critical).",
    )
    run_id: str | None = Field(None, min_length=1, max_length=200, description="Only this run.")
    schedule_id: str | None = Field(
        None, min_length=1, max_length=200, description="Only this schedule's lines."
    )
    event: str | None = Field(
        None,
        min_length=1,
        max_length=2000,
        description="Only these events: a name, or several separated by commas.",
    )
    since: Moment | None = Field(
        None, description="Only lines stamped at or after this time (no offset: UTC)."
    )

    @field_validator("level", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("since")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors as `{"field", "message", "type"}` items."""
    return [
        {
            "field": ".".join(str(p) for p in err["loc"]) or "body",
            "message": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors(include_url=False)
    ]


def validate(model: type[M], data: Any, where: str) -> M:
    """`data` as `model`, or InvalidInput naming each bad field in words."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = field_errors(exc)
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise InvalidInput(f"invalid {where}: {summary}", errors=errors) from exc


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object; an empty body is an empty object."""
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, not {type(data).__name__}")
    return data


def validate_query(model: type[M], query: Mapping[str, str]) -> M:
    """Query parameters as `model` (lax: "20" is 20)."""
    return validate(model, dict(query), "query parameters")


# --- /api/v1 resources --------------------------------------------------------------------
#
# One model per resource definition. POST validates the body as the spec; PATCH applies the
# body to the stored definition as a JSON merge patch and validates the merged whole again,
# so a PATCH can never leave a definition that a POST would have refused.

REDACTION_PLACEHOLDER = "***"
_HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
_HEADER_NAME = re.compile(_HEADER_NAME_PATTERN)
_HEADER_VALUE_PATTERN = r"^[^\x00-\x08\x0a-\x1f\x7f]*$"
_HEADER_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
MAX_HEADERS = 100
MAX_HEADER_VALUE_CHARS = 65536
TIMING_FIELDS = {
    ScheduleType.INTERVAL: "interval_seconds",
    ScheduleType.CRON: "cron_expression",
    ScheduleType.ONCE: "run_at",
}
# Defaults come from the domain records, so the API and the engine never disagree on them.
_TARGET = Target(id="", name="", url="")
_RETRY = RetryPolicy()
_SCHEDULE = Schedule(id="", name="", schedule_type=ScheduleType.ONCE)


def problem(message: str, kind: str = "invalid") -> PydanticCustomError:
    """A validation error whose message is `message` as written (no "Value error, ")."""
    return PydanticCustomError(kind, "{message}", {"message": message})


def raise_problems(model: BaseModel, problems: list[tuple[str, str]]) -> None:
    """Raise cross-field `(field, message)` problems as errors located at their fields."""
    if not problems:
        return
    # A ValueError would land at the model's own location, as "Value error, …"; pydantic
    # passes a ValidationError raised in a validator through with its locations (prefixed
    # by where the model sits, e.g. `assertions.0.value`), so each problem names its field.
    details = [
        InitErrorDetails(type=problem(message), loc=(name,), input=getattr(model, name, None))
        for name, message in problems
    ]
    raise ValidationError.from_exception_data(type(model).__name__, details)


def merge_patch(target: Any, patch: Any) -> Any:
    """`patch` applied to `target` as an RFC 7396 JSON merge patch (null deletes a key)."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


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


def check_http_url(value: str) -> str:
    """`value` if it is an absolute http(s) URL with a host; PydanticCustomError if not."""
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise problem("must not contain spaces or control characters")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https"):
        shown = f"{parts.scheme!r}" if parts.scheme else "none"
        raise problem(f"scheme must be http or https, not {shown}", "url_scheme")
    if not parts.netloc or not parts.netloc.rsplit("@", 1)[-1]:
        raise problem("must name a host, as in https://example.com/path", "url_host")
    return value


def check_headers(headers: dict[str, str]) -> dict[str, str]:
    """`headers` if every name is an HTTP token and every value a single line."""
    seen: set[str] = set()
    for name, value in headers.items():
        if not _HEADER_NAME.match(name):
            raise problem(f"{name!r} is not a valid header name")
        if name.lower() in seen:
            raise problem(f"{name!r} is given twice (header names ignore case)")
        seen.add(name.lower())
        if _HEADER_CONTROL.search(value):
            raise problem(f"{name}: value must be a single line without control characters")
        if value == REDACTION_PLACEHOLDER:
            raise problem(
                f"{name}: {REDACTION_PLACEHOLDER!r} is how responses hide a secret; send the "
                "value or a ${env:NAME} reference"
            )
    return headers


def check_template(text: str) -> None:
    """PydanticCustomError unless `text` can be saved as a body template."""
    try:
        templating.check_template(text)
    except templating.TemplateProblem as exc:
        raise problem(str(exc), "template") from exc


# Names are checked by check_headers, which says what is wrong in words; the schema states
# the same rule for clients and fuzzers. Field rules live in the types, not in the model,
# so that a stored target can be read back field by field through them (`field_problems`).
Headers = Annotated[
    dict[str, Annotated[str, Field(max_length=MAX_HEADER_VALUE_CHARS)]],
    Field(max_length=MAX_HEADERS),
    AfterValidator(check_headers),
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": MAX_HEADERS,
            "propertyNames": {"pattern": _HEADER_NAME_PATTERN},
            "additionalProperties": {
                "type": "string",
                "maxLength": MAX_HEADER_VALUE_CHARS,
                "pattern": _HEADER_VALUE_PATTERN,
            },
        }
    ),
]


HttpUrl = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(check_http_url)]


def _template_ok(text: str) -> str:
    check_template(text)
    return text


BodyTemplate = Annotated[
    str, Field(max_length=templating.MAX_TEMPLATE_CHARS), AfterValidator(_template_ok)
]


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
        return _with_unknown(cls, merge_patch(cls.fields_of(target), patch), patch)


def _often_enough(value: float) -> float:
    if value < MIN_SCHEDULE_INTERVAL_SECONDS:
        raise problem(f"must be at least {MIN_SCHEDULE_INTERVAL_SECONDS} s", "greater_than_equal")
    return value


def _cron_ok(value: str) -> str:
    _check(validate_cron, value)
    return value


def _zone_ok(value: str) -> str:
    _check(validate_timezone, value)
    return value


# Field rules live in the types, not in the model, so that a stored schedule can be read
# back field by field through them (`field_problems`) without the rules on how a request
# combines fields.
IntervalSeconds = Annotated[
    float,
    Field(
        gt=0,
        le=MAX_SPAN_SECONDS,
        allow_inf_nan=False,
        json_schema_extra={"minimum": MIN_SCHEDULE_INTERVAL_SECONDS},
    ),
    AfterValidator(_often_enough),
]
CronExpression = Annotated[str, Field(max_length=200), AfterValidator(_cron_ok)]
TimezoneName = Annotated[str, Field(max_length=200), AfterValidator(_zone_ok)]


class ScheduleSpec(BaseModel):
    """What runs (a target or a pipeline) and when.

    `schedule_type` picks the timing field that is required: `interval_seconds`
    (interval, slots anchored at start_at or the creation time), `cron_expression` (cron:
    5 fields, or 6 with seconds first) or `run_at` (once). Times are ISO 8601; a time
    without an offset is read in the schedule's `timezone`. The window (start_at, end_at,
    duration_seconds counted from start_at or creation, max_runs) ends the schedule: it
    becomes `completed`.
    """

    model_config = ConfigDict(extra="forbid")

    name: Text = Field(description="Unique; printable, 1-200 characters.", examples=["Every 5 min"])
    target_id: Identifier | None = Field(None, description="The target to call (or `pipeline`).")
    pipeline: str | None = Field(
        None, pattern=NAME_PATTERN, description="The pipeline to run (or `target_id`)."
    )
    schedule_type: ScheduleType = Field(description="interval, cron or once.")
    interval_seconds: IntervalSeconds | None = Field(
        None, description="Interval: seconds, from 0.1 to ten years."
    )
    cron_expression: CronExpression | None = Field(
        None, description="Cron: 5 fields, or 6 with seconds first."
    )
    run_at: Moment | None = Field(None, description="Once: when.")
    timezone: TimezoneName = Field(_SCHEDULE.timezone, description="IANA zone, e.g. Europe/Berlin.")
    jitter_seconds: float = Field(
        _SCHEDULE.jitter_seconds,
        ge=0,
        le=86400,
        allow_inf_nan=False,
        description="Random delay up to this.",
    )
    start_at: Moment | None = Field(None, description="No slot before; anchors intervals.")
    end_at: Moment | None = Field(None, description="No slot after (after start_at).")
    duration_seconds: float | None = Field(
        None,
        gt=0,
        le=MAX_SPAN_SECONDS,
        allow_inf_nan=False,
        description="Window length from start_at (or creation), up to ten years.",
    )
    max_runs: int | None = Field(
        None, ge=1, le=MAX_COUNT, description="Complete after this many runs."
    )
    misfire_policy: MisfirePolicy = Field(
        _SCHEDULE.misfire_policy, description="Slots missed while down: skip, run_once, catch_up."
    )
    misfire_grace_seconds: Seconds = Field(
        _SCHEDULE.misfire_grace_seconds, description="Lateness that is not a misfire."
    )
    catch_up_max: int = Field(
        _SCHEDULE.catch_up_max, ge=1, le=10_000, description="Most slots catch_up runs."
    )
    overlap_policy: OverlapPolicy = Field(
        _SCHEDULE.overlap_policy, description="A slot while a run is going: skip, queue, …"
    )
    failure_policy: FailurePolicy = Field(
        _SCHEDULE.failure_policy, description="After failure_threshold failures in a row."
    )
    failure_threshold: int = Field(
        _SCHEDULE.failure_threshold,
        ge=1,
        le=MAX_COUNT,
        description="Consecutive failed runs that count.",
    )
    cooldown_seconds: Seconds = Field(
        _SCHEDULE.cooldown_seconds, description="Circuit breaker: open this long."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ScheduleSpec:
        raise_problems(self, self._localize())
        raise_problems(
            self, [*self._what_problems(), *self._timing_problems(), *self._window_problems()]
        )
        return self

    def _localize(self) -> list[tuple[str, str]]:
        # A wall time that happens twice (fall back) means its first occurrence, as the
        # triggers read a time of day; one the clocks skip (spring forward) is refused
        # rather than silently moved.
        zone = ZoneInfo(self.timezone)
        problems = []
        for name in ("run_at", "start_at", "end_at"):
            moment: datetime | None = getattr(self, name)
            if moment is None or moment.tzinfo is not None:
                continue
            local = moment.replace(tzinfo=zone)
            if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != moment:
                problems.append(
                    (
                        name,
                        f"{moment.isoformat()} does not exist in "
                        f"{self.timezone} (the clocks skip it); give a UTC offset",
                    )
                )
            setattr(self, name, local)
        return problems

    def _what_problems(self) -> list[tuple[str, str]]:
        if self.target_id and self.pipeline:
            return [("target_id", "give target_id or pipeline, not both")]
        if not self.target_id and not self.pipeline:
            return [("target_id", "required: give target_id (a target) or pipeline (a name)")]
        return []

    def _timing_problems(self) -> list[tuple[str, str]]:
        wanted = TIMING_FIELDS[self.schedule_type]
        problems = []
        if getattr(self, wanted) is None:
            problems.append((wanted, f"required when schedule_type is {self.schedule_type}"))
        for kind, name in TIMING_FIELDS.items():
            if kind is not self.schedule_type and getattr(self, name) is not None:
                problems.append((name, f"only used when schedule_type is {kind}"))
        return problems

    def _window_problems(self) -> list[tuple[str, str]]:
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            return [("end_at", "must be after start_at")]
        if self.duration_seconds is not None:
            begin = self.start_at or utcnow()
            if (LAST_MOMENT - begin).total_seconds() < self.duration_seconds:
                return [("duration_seconds", f"the window would end after {LAST_MOMENT.date()}")]
        return []

    @classmethod
    def field_problems(cls, schedule: Schedule) -> list[tuple[str, str]]:
        """What breaks the field rules in a stored schedule's definition (each field alone)."""
        return field_problems(cls, cls.fields_of(schedule))

    def to_schedule(self, schedule_id: str) -> Schedule:
        """A new schedule with this definition."""
        return Schedule(id=schedule_id, **self.model_dump())

    def applied_to(self, schedule: Schedule) -> Schedule:
        """`schedule` with this definition, its status and progress kept."""
        return dataclasses.replace(schedule, **self.model_dump(), updated_at=utcnow())

    @classmethod
    def fields_of(cls, schedule: Schedule) -> dict[str, Any]:
        """A stored schedule's definition as this model's fields."""
        return {name: getattr(schedule, name) for name in cls.model_fields}

    @classmethod
    def patched(cls, schedule: Schedule, patch: dict[str, Any]) -> dict[str, Any]:
        """The stored definition with `patch` merged in, to be validated as a whole.

        A patch that switches kind replaces what belonged to the old kind: a new
        schedule_type drops the old timing field, target_id drops pipeline and vice versa.
        """
        base = cls.fields_of(schedule)
        kind = patch.get("schedule_type")
        if kind is not None and kind != schedule.schedule_type:
            for name in TIMING_FIELDS.values():
                base.pop(name)
        for given, dropped in (("target_id", "pipeline"), ("pipeline", "target_id")):
            if patch.get(given) is not None:
                base.pop(dropped)
        return _with_unknown(cls, merge_patch(base, patch), patch)


def _with_unknown(
    model: type[BaseModel], merged: dict[str, Any], patch: dict[str, Any]
) -> dict[str, Any]:
    """`merged` with the patch's unknown fields put back, so that validation refuses them:
    a merge patch's `null` for a field that doesn't exist would otherwise vanish unseen."""
    unknown = {name: value for name, value in patch.items() if name not in model.model_fields}
    return {**merged, **unknown}


def field_problems(model: type[BaseModel], values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """`(field, message)` for each of `values` that breaks its field's rules in `model`.

    The rules of one field alone: those between fields concern how a request was written,
    not whether the engine can compute with what was stored.
    """
    try:
        _fields_only(model).model_validate(values)
    except ValidationError as exc:
        return [(str(e["loc"][0]), e["msg"]) for e in exc.errors(include_url=False)]
    return []


@functools.cache
def _fields_only(model: type[BaseModel]) -> type[BaseModel]:
    # The model's fields with their own rules, without its validators across fields: one
    # validation call for a whole stored row (the engine reads 100,000 at a start).
    fields: dict[str, Any] = {
        name: (info.annotation, info) for name, info in model.model_fields.items()
    }
    return create_model(f"{model.__name__}Fields", **fields)


def _check(validator: Callable[[str], object], value: str) -> None:
    try:
        validator(value)
    except ValueError as exc:
        raise problem(str(exc)) from exc


class PageQuery(BaseModel):
    """`limit` and `offset` of a list endpoint."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(100, ge=1, le=500, description="Items per page (at most 500).")
    offset: Offset = Field(0, description="Items to skip (at most 1,000,000,000).")


class ScheduleListQuery(PageQuery):
    """Filters of `GET /api/v1/schedules`."""

    status: ScheduleStatus | None = Field(None, description="Only schedules in this status.")
    target_id: FilterText | None = Field(None, description="Only schedules of this target.")


class RunListQuery(PageQuery):
    """Filters of `GET /api/v1/runs` (newest first)."""

    limit: int = Field(50, ge=1, le=500, description="Items per page (at most 500).")
    schedule_id: FilterText | None = Field(None, description="Only runs of this schedule.")
    status: RunStatus | None = Field(None, description="Only runs in this status.")
    since: Moment | None = Field(
        None, description="Only runs recorded at or after this time (no offset: UTC)."
    )
    target_id: FilterText | None = Field(None, description="Only runs of this target.")

    @field_validator("since")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class NextQuery(BaseModel):
    """Query of `GET /api/v1/schedules/{id}/next`."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(5, ge=1, le=100, description="How many fire times (1-100).")


class DeleteTargetQuery(BaseModel):
    """Query of `DELETE /api/v1/targets/{id}`."""

    model_config = ConfigDict(extra="forbid")

    cascade: bool = Field(False, description="Delete the target's schedules too.")


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


class LogStreamQuery(FollowQuery):
    """Query of `GET /api/v1/logs/stream`: as for `GET /api/v1/logs`, and the keep-alive."""

    keepalive_seconds: float = Field(
        15.0,
        ge=0.1,
        le=300,
        description="Longest silence before a keep-alive comment; keep it below your read timeout.",
    )


# --- metrics and incidents ----------------------------------------------------------------


class MetricsQuery(BaseModel):
    """Query of `GET /api/v1/metrics`."""

    model_config = ConfigDict(extra="forbid")

    window_hours: int = Field(
        24,
        ge=1,
        le=168,
        description="Hour buckets the run figures cover, the current (partial) hour included.",
    )


class IncidentListQuery(PageQuery):
    """Filters of `GET /api/v1/incidents` (newest first)."""

    limit: int = Field(50, ge=1, le=500, description="Items per page (at most 500).")
    status: Literal["open", "resolved"] | None = Field(None, description="Only these.")
    job: FilterText | None = Field(
        None, description="Only of this job (`target:<id>`, `pipeline:<name>`)."
    )
    target_id: FilterText | None = Field(None, description="Only of this target.")
    pipeline: FilterText | None = Field(None, description="Only of this pipeline.")
    since: Moment | None = Field(
        None, description="Only those open at some moment at or after this time (no offset: UTC)."
    )

    @field_validator("since")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class IncidentBody(BaseModel):
    """A downtime window of a target or pipeline: from the start of its first failed run in
    a row to its next successful run."""

    id: str
    job: str = Field(description="`target:<id>` or `pipeline:<name>`.")
    kind: Literal["target", "pipeline"]
    target_id: str | None
    pipeline: str | None
    status: Literal["open", "resolved"]
    started_at: datetime = Field(description="When the first failed run of the streak started.")
    opened_at: datetime = Field(description="When the threshold was reached.")
    resolved_at: datetime | None = Field(description="When a run succeeded again.")
    duration_seconds: float = Field(description="Until resolved_at, or until now while open.")
    failed_runs: int = Field(description="Failed runs in a row (so far, while open).")
    error_class: str | None = Field(description="Of the failure that opened it (http_5xx, …).")
    cause: str | None = Field(description="That failure's error message.")
    first_failed_run_id: str | None
    last_failed_run_id: str | None = Field(description="The run that reached the threshold.")
    resolved_by_run_id: str | None


class RunCounts(BaseModel):
    """Finished runs by status."""

    succeeded: int
    failed: int
    cancelled: int
    skipped: int
    total: int


class DurationSummary(BaseModel):
    """Run durations: percentiles interpolated within the histogram's buckets."""

    p50: float | None
    p95: float | None
    p99: float | None
    mean: float | None
    count: int = Field(description="Runs with a duration (skipped slots have none).")


class OpenIncidentBrief(BaseModel):
    """The incident a job is in now (the whole of it: `GET /api/v1/incidents`)."""

    id: str
    started_at: datetime
    error_class: str | None
    cause: str | None


class JobMetrics(BaseModel):
    """Figures of one schedule, target or pipeline over the window."""

    job: str
    runs: RunCounts
    success_rate: float | None = Field(description="succeeded / (succeeded + failed).")
    duration_seconds: DurationSummary
    errors: dict[str, int] = Field(description="Failed runs by error class.")
    last_status: str | None = Field(description="Of the last run that executed (not skipped).")
    last_run_at: datetime | None = Field(description="When that run finished.")
    last_run_id: str | None
    consecutive_failures: int
    availability_24h: float | None = Field(description="Share of the last 24 h not in incidents.")
    availability_7d: float | None = Field(description="Share of the last 7 days not in incidents.")
    open_incident: OpenIncidentBrief | None
    incidents_7d: int = Field(description="Incidents open at some moment of the last 7 days.")


class ScheduleMetrics(JobMetrics):
    """A schedule's figures; availability and incidents are its job's."""

    schedule_id: str
    name: str | None = Field(description="None once the schedule is deleted.")


class TargetMetrics(JobMetrics):
    """A target's figures: all its schedules together."""

    target_id: str
    name: str | None = Field(description="None once the target is deleted.")


class PipelineMetrics(JobMetrics):
    """A pipeline's figures: its schedules and its manual runs together."""

    pipeline: str


class LagSummary(BaseModel):
    """Schedule lag (fired minus planned) over the engine's last 1024 firings."""

    last: float
    p50: float
    p99: float
    samples: int


class DaemonMetrics(BaseModel):
    """The daemon's own figures, from its state file."""

    running: bool
    heartbeat_at: datetime | None
    runs_per_second: float | None = Field(description="Slots fired per second, last minute.")
    schedule_lag_seconds: LagSummary | None
    queue_depth: int | None = Field(
        description="Runs waiting for a free slot, and slots queued behind a running run."
    )
    active_runs: int | None


class MetricsWindow(BaseModel):
    """What the run figures cover."""

    hours: int
    since: datetime


class MetricsTotals(BaseModel):
    """All jobs together over the window."""

    runs: RunCounts
    success_rate: float | None
    errors: dict[str, int]
    open_incidents: int


class MetricsReport(BaseModel):
    """The answer of `GET /api/v1/metrics`."""

    generated_at: datetime
    window: MetricsWindow
    daemon: DaemonMetrics
    totals: MetricsTotals
    schedules: list[ScheduleMetrics]
    targets: list[TargetMetrics]
    pipelines: list[PipelineMetrics]
