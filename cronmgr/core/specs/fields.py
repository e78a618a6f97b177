"""Field types shared by the specs: each carries its own rule, so a stored definition can
be read back field by field through them.

Names, HTTP URLs, header maps, body templates, interval lengths, cron expressions and
timezone names, and the checks behind them, which say what is wrong in words.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, WithJsonSchema

from cronmgr.core import templating
from cronmgr.core.bounds import MAX_SPAN_SECONDS, MIN_SCHEDULE_INTERVAL_SECONDS
from cronmgr.core.specs.validation import problem
from cronmgr.core.triggers.parsing import validate_cron, validate_timezone

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
REDACTION_PLACEHOLDER = "***"
_HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
_HEADER_NAME = re.compile(_HEADER_NAME_PATTERN)
_HEADER_VALUE_PATTERN = r"^[^\x00-\x08\x0a-\x1f\x7f]*$"
_HEADER_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
MAX_HEADERS = 100
MAX_HEADER_VALUE_CHARS = 65536


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


def _check(validator: Callable[[str], object], value: str) -> None:
    try:
        validator(value)
    except ValueError as exc:
        raise problem(str(exc)) from exc
