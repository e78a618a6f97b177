"""/openapi.json and /docs: the whole controller described, from the models that validate.

No OpenAPI validator is installed, so the structural checks are spelled out here: paths,
methods, parameters, responses, operation ids and every `$ref`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import BaseModel

from cronmgr.controller.app import create_app
from cronmgr.controller.keys import DASHBOARD_PREFIX, OPEN_PATHS, STORE
from cronmgr.controller.openapi.endpoints import REF_TEMPLATE
from cronmgr.core.config import Settings, load_settings
from cronmgr.core.models import Node, Run, RunStatus, StepResult, Trigger, new_id, utcnow
from cronmgr.core.specs.schedules import ScheduleSpec
from cronmgr.core.specs.targets import TargetSpec

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
Client = TestClient[Any, Any]
Doc = dict[str, Any]

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
JSON_TYPES = {"string", "number", "integer", "boolean", "array", "object", "null"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A home of its own."""
    return load_settings(env={}, home=tmp_path)


@pytest.fixture
async def client(aiohttp_client: ClientFactory, settings: Settings) -> Client:
    """The real app on a real socket, with the token."""
    app = create_app(settings)
    token = settings.token_file.read_text().strip()
    return await aiohttp_client(app, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
async def document(client: Client) -> Doc:
    """The document as a client downloads it, without a token."""
    async with client.get("/openapi.json", headers={"Authorization": ""}) as resp:
        assert resp.status == 200 and resp.content_type == "application/json"
        body: Doc = await resp.json()
        return body


def resolve(document: Doc, pointer: str) -> Any:
    """The node a local `$ref` points at; KeyError when it dangles."""
    assert pointer.startswith("#/"), pointer
    node: Any = document
    for part in pointer[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def walk(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every mapping inside `node`, with where it is."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from walk(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{where}/{index}")


def operations(document: Doc) -> Iterator[tuple[str, str, Doc]]:
    """(path, method, operation) of the document."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


async def test_every_route_is_documented_and_nothing_else(client: Client, document: Doc) -> None:
    """The router and the document list the same (method, path) pairs.

    The dashboard's HTML pages and forms under /ui are not API: they are left out of both.
    """
    routed = {
        (route.method.lower(), route.resource.canonical)
        for route in client.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
        if not route.resource.canonical.startswith(DASHBOARD_PREFIX)
    }
    described = {(method, path) for path, method, _ in operations(document)}
    assert routed == described
    for expected in [
        ("post", "/api/cron/start"),
        ("get", "/health"),
        ("get", "/api/v1/schedules/{id}/next"),
        ("get", "/openapi.json"),
        ("get", "/docs"),
        ("get", "/redoc"),
    ]:
        assert expected in described


def test_document_is_structurally_valid(document: Doc) -> None:
    """OpenAPI 3.1 shape: operations, parameters, responses, unique ids, no dangling $ref."""
    assert re.fullmatch(r"3\.1\.\d+", document["openapi"])
    assert document["info"]["title"] and document["info"]["version"]
    schemes = document["components"]["securitySchemes"]
    assert schemes == {"bearerAuth": {"type": "http", "scheme": "bearer"}}
    assert document["security"] == [{"bearerAuth": []}]
    ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(ids) == len(set(ids))
    for path, method, operation in operations(document):
        assert path.startswith("/") and method in METHODS
        assert operation["summary"] and operation["tags"]
        check_parameters(path, operation["parameters"])
        check_responses(document, operation["responses"])
        if "requestBody" in operation:
            assert "application/json" in operation["requestBody"]["content"]
    for where, node in walk(document):
        if isinstance(node.get("$ref"), str):
            assert resolve(document, node["$ref"]) is not None, where


def check_parameters(path: str, parameters: list[Doc]) -> None:
    """Path parameters match the template; names are unique per location."""
    templated = set(re.findall(r"\{(\w+)\}", path))
    in_path = {p["name"] for p in parameters if p["in"] == "path"}
    assert templated == in_path, path
    assert all(p["required"] is True for p in parameters if p["in"] == "path")
    keys = [(p["in"], p["name"]) for p in parameters]
    assert len(keys) == len(set(keys)), path
    for parameter in parameters:
        assert parameter["in"] in {"path", "query", "header", "cookie"}
        assert isinstance(parameter["schema"], dict), (path, parameter)


def check_responses(document: Doc, responses: Doc) -> None:
    """Status keys are three digits, each response (or what it refers to) has a description."""
    assert any(status.startswith("2") for status in responses)
    for status, response in responses.items():
        assert re.fullmatch(r"[1-5]\d\d", status)
        target = resolve(document, response["$ref"]) if "$ref" in response else response
        assert target["description"]


def test_schemas_use_json_schema_types_only(document: Doc) -> None:
    """Every `type` in every schema is a JSON Schema type (3.1: a list of them is fine)."""
    for where, node in walk(document["components"]["schemas"]):
        kind = node.get("type")
        if isinstance(kind, str):
            assert kind in JSON_TYPES, where
        elif isinstance(kind, list):
            assert set(kind) <= JSON_TYPES, where


def test_request_bodies_are_the_validating_models(document: Doc) -> None:
    """POST bodies are the pydantic models' own schemas; PATCH bodies take any of their fields."""
    schemas = document["components"]["schemas"]
    cases: list[tuple[type[BaseModel], str]] = [
        (TargetSpec, "/api/v1/targets"),
        (ScheduleSpec, "/api/v1/schedules"),
    ]
    for spec, path in cases:
        generated = spec.model_json_schema(ref_template=REF_TEMPLATE)
        generated.pop("$defs", None)
        assert schemas[spec.__name__] == generated
        post = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert post["schema"] == {"$ref": f"#/components/schemas/{spec.__name__}"}
        patch = document["paths"][path + "/{id}"]["patch"]["requestBody"]
        patch_schema = resolve(document, patch["content"]["application/json"]["schema"]["$ref"])
        assert set(patch_schema["properties"]) == set(spec.model_fields)
        assert "required" not in patch_schema


def test_query_parameters_come_from_the_query_models(document: Doc) -> None:
    """Filters, limits and their bounds are documented as the models declare them."""
    runs = {p["name"]: p for p in document["paths"]["/api/v1/runs"]["get"]["parameters"]}
    assert set(runs) == {"limit", "offset", "schedule_id", "status", "since", "target_id"}
    assert runs["limit"]["schema"]["maximum"] == 500
    assert runs["status"]["schema"] == {"$ref": "#/components/schemas/RunStatus"}
    next_count = document["paths"]["/api/v1/schedules/{id}/next"]["get"]["parameters"][1]
    assert next_count["schema"]["minimum"] == 1 and next_count["schema"]["maximum"] == 100


def test_open_endpoints_are_marked_open_and_only_they(document: Doc) -> None:
    """`security: []` exactly on the paths the auth middleware lets through."""
    marked = {path for path, _, op in operations(document) if op.get("security") == []}
    assert marked == set(OPEN_PATHS)
    for path, _, operation in operations(document):
        assert ("401" in operation["responses"]) == (path not in OPEN_PATHS)


def assert_shape(document: Doc, name: str, answer: dict[str, Any]) -> None:
    """`answer` has exactly the properties the named schema lists, the required ones included."""
    schema = document["components"]["schemas"][name]
    assert set(answer) == set(schema["properties"]), name
    assert set(schema.get("required", ())) <= set(answer), name


async def test_answers_have_the_documented_shapes(client: Client, document: Doc) -> None:
    """Target, Schedule (with its warnings when written), Run, RunDetail and StepAttempt
    match what the API really sends."""
    target_body = {"name": "t", "url": "https://example.com/"}
    async with client.post("/api/v1/targets", json=target_body) as resp:
        target = await resp.json()
    assert_shape(document, "Target", target)
    schedule_body = {
        "name": "s",
        "target_id": target["id"],
        "schedule_type": "interval",
        "interval_seconds": 60,
    }
    async with client.post("/api/v1/schedules", json=schedule_body) as resp:
        schedule = await resp.json()
    assert_shape(document, "ScheduleWritten", schedule)
    async with client.get(f"/api/v1/schedules/{schedule['id']}") as resp:
        assert_shape(document, "Schedule", await resp.json())
    async with client.post(f"/api/v1/schedules/{schedule['id']}/resume") as resp:
        assert_shape(document, "ScheduleWritten", await resp.json())

    store = client.app[STORE]
    now = utcnow()
    run = Run(new_id(), f"target:{target['id']}", now, Trigger.SCHEDULE, schedule_id=schedule["id"])
    await store.insert_run(run)
    await store.insert_step_result(run.id, 0, StepResult("request", RunStatus.SUCCEEDED, now, 3))
    async with client.get("/api/v1/runs") as resp:
        assert_shape(document, "Run", (await resp.json())[0])
    async with client.get(f"/api/v1/runs/{run.id}") as resp:
        detail = await resp.json()
    assert_shape(document, "RunDetail", detail)
    assert_shape(document, "StepGroup", detail["steps"][0])
    assert_shape(document, "StepAttempt", detail["steps"][0]["attempts"][0])


async def test_a_node_has_the_documented_shape(client: Client, document: Doc) -> None:
    """`GET /api/v1/nodes` lists `Node`s: the row's fields and what the controller adds."""
    now = utcnow()
    node = Node("n1", "h1", 42, "1.0", now, now, now, pipelines={"quick": "0" * 16})
    await client.app[STORE].join_node(node)
    async with client.get("/api/v1/nodes") as resp:
        (answer,) = await resp.json()
    assert_shape(document, "Node", answer)
    reply = document["paths"]["/api/v1/nodes"]["get"]["responses"]["200"]
    items = reply["content"]["application/json"]["schema"]["items"]
    assert items == {"$ref": "#/components/schemas/Node"}
    properties = document["components"]["schemas"]["Node"]["properties"]
    assert properties["state"]["$ref"] == "#/components/schemas/NodeState"
    added = {"lease_expires_in_seconds", "pipelines_differing", "this_host"}
    assert set(properties) == {f.name for f in fields(Node)} | added


async def test_docs_page_renders_the_document_without_network(
    client: Client, document: Doc
) -> None:
    """Every path is on the page, in-page links resolve, and nothing is fetched from outside."""
    async with client.get("/docs", headers={"Authorization": ""}) as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        page = await resp.text()
    for path in document["paths"]:
        assert f">{path}<" in page.replace("&#39;", "'"), path
    anchors = set(re.findall(r'id="([^"]+)"', page))
    links = set(re.findall(r'href="#([^"]+)"', page))
    assert links and links <= anchors, links - anchors
    assert not re.search(r"<script[^>]*\bsrc=|<link[^>]*\bhref=|\bsrc=\"https?:", page)
    assert "TargetSpec" in page and "cron_expression" in page


@pytest.mark.parametrize("path", ["/redoc", "/docs"])
async def test_redoc_renders_the_document_offline_under_its_policy(
    client: Client, document: Doc, path: str
) -> None:
    """/redoc, where the seeds send readers, is open and carries the whole document, rendered
    on the server: no script at all, nothing from another origin, and a policy saying so."""
    async with client.get(path, headers={"Authorization": ""}) as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        policy = resp.headers["Content-Security-Policy"]
        page = await resp.text()
    assert "default-src 'none'" in policy and "script-src" not in policy
    for item in document["paths"].values():
        for operation in item.values():
            assert f">{operation['summary']}" in page.replace("&#39;", "'"), operation
    assert "<script" not in page
    assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", page)
    assert not re.search(r"@import|url\(", page)


async def test_index_lists_the_same_endpoints(client: Client, document: Doc) -> None:
    """The landing page is built from the document too."""
    async with client.get("/", headers={"Authorization": ""}) as resp:
        page = await resp.text()
    for path in document["paths"]:
        assert path in page
