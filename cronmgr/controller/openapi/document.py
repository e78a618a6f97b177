"""The OpenAPI 3.1 document of the route table: each `Endpoint` becomes an operation with
its path and query parameters, request body, reply and the error answers it can give;
only the component schemas something refers to are published.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from cronmgr.controller.openapi.components import Components, patch, resource_schemas
from cronmgr.controller.openapi.endpoints import REF_PREFIX, REF_TEMPLATE, Endpoint, Schema, ref
from cronmgr.controller.openapi.shapes import ERROR_RESPONSES, FIXED_SCHEMAS, PAGE_HEADERS
from cronmgr.core.bounds import MAX_FILTER_CHARS

OPENAPI_VERSION = "3.1.0"
SECURITY_SCHEME = "bearerAuth"
_PATH_PARAM = re.compile(r"\{(\w+)\}")

DESCRIPTION = """\
cronmgr's controller: daemon control (`/api/cron/*`, as the Pipeline Cron Manager API \
documents it) and the scheduling resources (`/api/v1/*`, with the API Scheduler's field \
names).

**Auth**: `Authorization: Bearer <token>` on every endpoint but `/`, `/health`, \
`/api/v1/health`, `/openapi.json`, `/docs` and `/redoc` (they hold no secrets). The token \
is in the state directory's `api-token` file unless configured (`CRONMGR_API_TOKEN`).

**Errors** always have the body `{"error": true, "detail", "errors": [{"field", "message", \
"type"}], "timestamp"}`: 400 unreadable body (and, as the Pipeline Cron Manager API \
documents it, an `interval_seconds` below 10 on `/api/cron/start`), 401 no or bad token, \
404 unknown id or path, 409 conflict (duplicate name, target in use, daemon running), \
413 body too large, 422 invalid field (named in `detail` and `errors`).

**Lists** are bare JSON arrays, as the API Scheduler's clients expect, paged with `limit` \
and `offset`. When more items may follow, the answer carries `X-Next-Offset` and a \
`Link: <…>; rel="next"` header; the last page has neither.

**Times** are ISO 8601. A time without an offset is read in the schedule's `timezone` \
(schedule fields) or in UTC (query parameters).

**PATCH** bodies are JSON merge patches (RFC 7396): fields given replace the stored ones, \
`null` resets a field to its default, and the merged definition is validated as a whole, \
as a POST would be. Changing `schedule_type` drops the old timing field; setting \
`target_id` drops `pipeline` and the other way round.
"""


# --- building the document ------------------------------------------------------------------


def _parameters(components: Components, endpoint: Endpoint) -> list[Schema]:
    params: list[Schema] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "maxLength": MAX_FILTER_CHARS},
        }
        for name in _PATH_PARAM.findall(endpoint.path)
    ]
    if endpoint.query is None:
        return params
    schema = components.hoist(endpoint.query.model_json_schema(ref_template=REF_TEMPLATE))
    required = set(schema.get("required", ()))
    for name, prop in schema["properties"].items():
        param = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": _query_schema(prop),
        }
        if "description" in prop:
            param["description"] = prop["description"]
        params.append(param)
    return params


def _query_schema(prop: Schema) -> Schema:
    """A query parameter's schema: absent is how a query says null, so `T | None` is `T`."""
    prop = {k: v for k, v in prop.items() if k not in ("title", "description")}
    branches = [b for b in prop.get("anyOf", ()) if b != {"type": "null"}]
    if len(branches) != 1:
        return prop
    rest = {k: v for k, v in prop.items() if k != "anyOf"}
    if rest.get("default", 0) is None:
        del rest["default"]
    return {**branches[0], **rest}


def _request_body(components: Components, endpoint: Endpoint) -> Schema | None:
    if endpoint.body is None:
        return None
    if endpoint.partial_body:
        name = endpoint.body.__name__.removesuffix("Spec") + "Patch"
        components.add(name, patch(components, endpoint.body))
        schema = ref(name)
    else:
        schema = components.model(endpoint.body)
    return {"required": endpoint.body_required, "content": {"application/json": {"schema": schema}}}


def _error_statuses(endpoint: Endpoint, open_paths: frozenset[str]) -> list[int]:
    statuses = set(endpoint.errors)
    if endpoint.path not in open_paths:
        statuses.update((401, 429))
    if endpoint.body is not None:
        statuses.update((400, 413, 422))
    if endpoint.query is not None:
        statuses.add(422)
    if _PATH_PARAM.search(endpoint.path):
        statuses.add(404)
    if endpoint.method != "GET" and endpoint.path.startswith("/api/v1/"):
        statuses.add(507)  # the resource API writes to the store
    return sorted(statuses)


def _responses(endpoint: Endpoint, open_paths: frozenset[str]) -> Schema:
    reply = endpoint.reply
    ok: Schema = {"description": reply.description}
    if reply.schema is not None:
        ok["content"] = {reply.media_type: {"schema": reply.schema}}
    if reply.paginated:
        ok["headers"] = {name: {"$ref": f"#/components/headers/{name}"} for name in PAGE_HEADERS}
    responses: Schema = {str(reply.status): ok}
    for status in _error_statuses(endpoint, open_paths):
        responses[str(status)] = {"$ref": f"#/components/responses/E{status}"}
    return responses


def _operation(components: Components, endpoint: Endpoint, open_paths: frozenset[str]) -> Schema:
    operation: Schema = {
        "operationId": endpoint.operation_id or endpoint.handler.__name__,
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "parameters": _parameters(components, endpoint),
        "responses": _responses(endpoint, open_paths),
    }
    if endpoint.description:
        operation["description"] = endpoint.description
    body = _request_body(components, endpoint)
    if body is not None:
        operation["requestBody"] = body
    if endpoint.path in open_paths:
        operation["security"] = []
    return operation


def build_document(
    endpoints: Iterable[Endpoint], *, version: str, open_paths: frozenset[str]
) -> Schema:
    """The OpenAPI 3.1 document of `endpoints`."""
    components = Components()
    for name, schema in FIXED_SCHEMAS.items():
        components.add(name, schema)
    resource_schemas(components)
    paths: dict[str, Schema] = {}
    for endpoint in endpoints:
        item = paths.setdefault(endpoint.path, {})
        item[endpoint.method.lower()] = _operation(components, endpoint, open_paths)
    responses = _error_components()
    used = _reachable(components.schemas, [paths, responses])
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "cronmgr", "version": version, "description": DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": {n: s for n, s in sorted(components.schemas.items()) if n in used},
            "responses": responses,
            "headers": PAGE_HEADERS,
            "securitySchemes": {SECURITY_SCHEME: {"type": "http", "scheme": "bearer"}},
        },
        "security": [{SECURITY_SCHEME: []}],
    }


def _reachable(schemas: dict[str, Schema], roots: list[Any]) -> set[str]:
    """Names of the schemas that `roots` refer to, directly or through other schemas."""
    # Helper definitions of the domain records (their own Assertion, RetryPolicy) come
    # along when their fields are borrowed; only what is referred to is published.
    found: set[str] = set()
    pending = [name for root in roots for name in _refs(root)]
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending.extend(_refs(schemas[name]))
    return found


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        target = node.get("$ref")
        if isinstance(target, str) and target.startswith(REF_PREFIX):
            yield target.removeprefix(REF_PREFIX)
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _error_components() -> Schema:
    components: Schema = {
        f"E{status}": {
            "description": text,
            "content": {"application/json": {"schema": ref("Error")}},
        }
        for status, text in ERROR_RESPONSES.items()
    }
    components["E429"]["headers"] = {
        "Retry-After": {
            "description": "Seconds until the address may try again.",
            "schema": {"type": "integer"},
        }
    }
    return components


def operations(document: Schema) -> Iterator[tuple[str, str, Schema]]:
    """(path, METHOD, operation) of every operation of `document`, in document order."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method.upper(), operation
