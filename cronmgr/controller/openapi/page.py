"""The docs page: `docs_context` turns the document into plain rows for
`templates/docs.html`, which renders it on the server (the page needs no script and no
network), with descriptions as escaped HTML and types as short, linked labels.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from markupsafe import Markup, escape

from cronmgr.controller.openapi.document import operations
from cronmgr.controller.openapi.endpoints import REF_PREFIX, Schema


def docs_context(document: Schema) -> dict[str, Any]:
    """What templates/docs.html renders: operations by tag and schemas as rows."""
    schemas = document["components"]["schemas"]
    tags: dict[str, list[dict[str, Any]]] = {}
    errors = document["components"]["responses"]
    for path, method, operation in operations(document):
        row = _operation_row(path, method, operation, errors)
        tags.setdefault(operation["tags"][0], []).append(row)
    return {
        "info": document["info"],
        "intro": [prose(p) for p in document["info"]["description"].split("\n\n")],
        "tags": tags,
        "schemas": [_schema_row(name, schema) for name, schema in schemas.items()],
    }


def _operation_row(path: str, method: str, operation: Schema, errors: Schema) -> dict[str, Any]:
    body = operation.get("requestBody")
    return {
        "anchor": operation["operationId"],
        "method": method,
        "path": path,
        "summary": operation["summary"],
        "description": prose(operation.get("description", "")),
        "open": operation.get("security") == [],
        "parameters": [
            {
                "name": p["name"],
                "in": p["in"],
                "required": p.get("required", False),
                "type": type_label(p["schema"]),
                "notes": constraints(p["schema"]),
                "description": prose(p.get("description", "")),
            }
            for p in operation["parameters"]
        ],
        "body": type_label(_body_schema(body)) if body else None,
        "body_required": bool(body and body.get("required")),
        "responses": [_response_row(s, r, errors) for s, r in operation["responses"].items()],
    }


def _body_schema(body: Schema) -> Schema:
    schema: Schema = body["content"]["application/json"]["schema"]
    return schema


def _response_row(status: str, response: Schema, errors: Schema) -> dict[str, Any]:
    if "$ref" in response:
        shared = errors[response["$ref"].rsplit("/", 1)[-1]]
        return {
            "status": status,
            "description": prose(shared["description"]),
            "type": ref_label("Error"),
        }
    media = next(iter(response.get("content", {}).items()), None)
    label = type_label(media[1]["schema"]) if media else Markup("no body")
    if media and media[0] != "application/json":
        label = Markup("{} ({})").format(label, media[0])
    headers = ", ".join(response.get("headers", {}))
    return {
        "status": status,
        "description": response["description"],
        "type": label,
        "headers": headers,
    }


def _schema_row(name: str, schema: Schema) -> dict[str, Any]:
    required = set(schema.get("required", ()))
    return {
        "name": name,
        "description": prose(schema.get("description", "")),
        "type": type_label({k: v for k, v in schema.items() if k != "properties"}),
        "properties": [
            {
                "name": prop_name,
                "type": type_label(prop),
                "required": prop_name in required,
                "notes": constraints(prop),
                "description": prose(prop.get("description", "")),
            }
            for prop_name, prop in schema.get("properties", {}).items()
        ],
    }


_CODE = re.compile(r"`([^`]+)`")
_STRONG = re.compile(r"\*\*(.+?)\*\*")


def prose(text: str) -> Markup:
    """Description text as HTML: escaped, with `code` and **bold** marked up."""
    html = _CODE.sub(r"<code>\1</code>", str(escape(text)))
    return Markup(_STRONG.sub(r"<strong>\1</strong>", html))


def ref_label(name: str) -> Markup:
    """A link to a schema on the docs page."""
    return Markup('<a href="#schema-{0}">{0}</a>').format(name)


def type_label(schema: Schema) -> Markup:
    """A short, linked description of a schema's type (`array of Target`, `string | null`)."""
    if "$ref" in schema:
        return ref_label(schema["$ref"].removeprefix(REF_PREFIX))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return Markup(" | ").join(type_label(s) for s in schema[key])
    if "enum" in schema:
        return Markup("one of: {}").format(", ".join(str(v) for v in schema["enum"]))
    if "const" in schema:
        return Markup("{}").format(_json_literal(schema["const"]))
    return _typed_label(schema)


def _typed_label(schema: Schema) -> Markup:
    kind = schema.get("type")
    if isinstance(kind, list):
        return Markup(" | ").join(_typed_label({**schema, "type": k}) for k in kind)
    if kind == "array":
        return Markup("array of {}").format(type_label(schema.get("items", {})))
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return Markup("map of {}").format(type_label(schema["additionalProperties"]))
    if kind is None:
        return Markup("any")
    fmt = schema.get("format")
    return escape(f"{kind} ({fmt})" if fmt and kind == "string" else str(kind))


def _json_literal(value: Any) -> str:
    return orjson.dumps(value).decode()


_CONSTRAINTS = (
    ("minimum", "≥ {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "≤ {}"),
    ("exclusiveMaximum", "< {}"),
    ("minLength", "length ≥ {}"),
    ("maxLength", "length ≤ {}"),
    ("maxItems", "at most {} items"),
    ("pattern", "matches {}"),
)


def constraints(schema: Schema) -> str:
    """The limits and the default of a schema, in words (`> 0, ≤ 300, default 30`)."""
    parts: list[str] = []
    for branch in [schema, *schema.get("anyOf", ())]:
        parts.extend(
            template.format(branch[key]) for key, template in _CONSTRAINTS if key in branch
        )
    if "default" in schema:
        parts.append(f"default {_json_literal(schema['default'])}")
    return ", ".join(parts)
