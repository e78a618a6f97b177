"""Validation helpers: a body or a query as a model, pydantic's errors in the API's words.

`validate` and `validate_query` raise InvalidInput naming each bad field; `problem` and
`raise_problems` let a model state a rule in words at the field it concerns; `merge_patch`
and `with_unknown` build what a PATCH is validated as; `field_problems` checks a stored
definition field by field, without the rules on how a request combines fields.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError, create_model
from pydantic_core import InitErrorDetails, PydanticCustomError

from cronmgr.core.errors import BadRequest, InvalidInput

M = TypeVar("M", bound=BaseModel)


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


def with_unknown(
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
