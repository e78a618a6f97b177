"""The route table's vocabulary: an `Endpoint` is one route of the API (method, path,
handler, summary, query and body models) with its `Reply`, and `ref` and `array_of` are
the schema fragments the tables describe their replies with, as references into the
document's `components/schemas`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Schema = dict[str, Any]

REF_PREFIX = "#/components/schemas/"
REF_TEMPLATE = REF_PREFIX + "{model}"


@dataclass(frozen=True, slots=True)
class Reply:
    """The successful answer of an endpoint."""

    status: int
    description: str
    schema: Schema | None = None
    media_type: str = "application/json"
    paginated: bool = False


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One route: what aiohttp serves and what the document says about it."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    reply: Reply
    description: str = ""
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_required: bool = True
    partial_body: bool = False
    errors: tuple[int, ...] = ()
    operation_id: str | None = None


def ref(name: str | type[BaseModel]) -> Schema:
    """A reference to a component schema."""
    return {"$ref": REF_PREFIX + (name if isinstance(name, str) else name.__name__)}


def array_of(item: Schema) -> Schema:
    """An array of `item`."""
    return {"type": "array", "items": item}
