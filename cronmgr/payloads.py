"""Request bodies and query strings, declared once: they validate and they document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cronmgr.errors import BadRequest, InvalidInput

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MIN_INTERVAL_SECONDS = 10

M = TypeVar("M", bound=BaseModel)


class StartRequest(BaseModel):
    """Body of `POST /api/cron/start` and `/api/cron/restart` (every field optional)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    interval_seconds: int | None = Field(
        None,
        ge=MIN_INTERVAL_SECONDS,
        description="Run the pipeline every N seconds (at least 10; default 120).",
        examples=[60],
    )
    pipeline: str | None = Field(
        None, pattern=NAME_PATTERN, description="Pipeline to run (default: `default`)."
    )


class LinesQuery(BaseModel):
    """Query of the log endpoints: how many lines from the end."""

    model_config = ConfigDict(extra="ignore")

    lines: int | None = Field(None, ge=1, description="Number of lines from the end.")


class FollowQuery(BaseModel):
    """Query of `GET /api/v1/logs`: where to continue, or how much to start with."""

    model_config = ConfigDict(extra="ignore")

    cursor: str | None = Field(
        None,
        pattern=r"^\d+:\d+$",
        description="The `cursor` of the previous answer; omit it to start at the end.",
    )
    lines: int = Field(10, ge=0, le=10_000, description="Lines to start with (no cursor).")


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
