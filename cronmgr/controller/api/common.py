"""What the `/api/v1` handlers share: the store and the path's id of a request, the signal
that definitions changed, the 422 naming a field, the paged answer and the answer of a DELETE,
and the schema helpers of their route tables.

Lists are bare JSON arrays (the API Scheduler's clients read arrays), paged with `limit`
and `offset`; a page that may not be the last carries `X-Next-Offset` and a `Link: rel=
"next"` header. Every successful definition write signals a running daemon, so the change
takes effect at once. Target headers and URLs are redacted on the way out, always.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from cronmgr.controller.keys import CONTROL, STORE
from cronmgr.controller.openapi import Schema
from cronmgr.controller.responses import json_response, timestamp
from cronmgr.core.errors import InvalidInput
from cronmgr.core.specs.queries import PageQuery
from cronmgr.store import Store

BODY = "request body"


def _store(request: web.Request) -> Store:
    return request.app[STORE]


def _id(request: web.Request) -> str:
    return request.match_info["id"]


def _changed(request: web.Request) -> None:
    # The daemon re-reads only what changed since its last revision; without a daemon
    # running this is a no-op.
    request.app[CONTROL].definitions_changed()


def invalid(field: str, message: str, kind: str) -> InvalidInput:
    """A 422 naming `field`, shaped like the model validation errors."""
    return InvalidInput(
        f"invalid {BODY}: {field}: {message}",
        errors=[{"field": field, "message": message, "type": kind}],
    )


def page(request: web.Request, query: PageQuery, items: list[dict[str, Any]]) -> web.Response:
    """A bare array of at most `limit` items; `items` holds one more when a next page exists."""
    response = json_response(items[: query.limit])
    if len(items) > query.limit:
        following = query.offset + query.limit
        response.headers["X-Next-Offset"] = str(following)
        link = request.rel_url.update_query(offset=following)
        response.headers["Link"] = f'<{link}>; rel="next"'
    return response


def deleted(what: str, item_id: str, **extra: Any) -> web.Response:
    """The answer of a successful DELETE: 200 with what went."""
    body = {"success": True, "message": f"{what} deleted", "id": item_id, **extra}
    return json_response({**body, "timestamp": timestamp()})


_PAGED = "Pages with `limit`/`offset`; see `X-Next-Offset` and `Link`."


def inline_schema(model: type[BaseModel]) -> Schema:
    """A reply model's JSON schema with its definitions written in place, no `$ref` left."""
    schema = model.model_json_schema(mode="serialization")
    definitions = schema.pop("$defs", {})

    def expand(node: Any) -> Any:
        if isinstance(node, list):
            return [expand(item) for item in node]
        if not isinstance(node, dict):
            return node
        target = node.get("$ref", "")
        if target.startswith("#/$defs/"):
            return expand(definitions[target.removeprefix("#/$defs/")])
        return {key: expand(value) for key, value in node.items()}

    expanded: Schema = expand(schema)
    return expanded
