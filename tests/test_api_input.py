"""Auth and bad input on the controller's API: clear 4xx answers, nothing crashes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from cronmgr.controller.app import create_app
from cronmgr.core.config import Settings, load_settings

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A controller home of its own; no daemon is ever started here."""
    return load_settings(env={}, home=tmp_path, max_body_bytes=4096)


@pytest.fixture
async def client(aiohttp_client: ClientFactory, settings: Settings) -> TestClient[Any, Any]:
    """The real app on a real socket, with the generated token sent on every call."""
    app = create_app(settings)
    token = settings.token_file.read_text().strip()
    return await aiohttp_client(app, headers={"Authorization": f"Bearer {token}"})


async def error_body(resp: Any, status: int) -> dict[str, Any]:
    """Assert the uniform error body with `status` and return it."""
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = dict(await resp.json())
    assert body["error"] is True and body["detail"] and "timestamp" in body
    assert isinstance(body["errors"], list)
    return body


async def test_generated_token_file_is_private(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    """The controller writes its token with mode 0600."""
    assert settings.token_file.stat().st_mode & 0o777 == 0o600


async def test_requests_without_a_token_get_401_with_a_reason(
    aiohttp_client: ClientFactory, settings: Settings
) -> None:
    """Every endpoint but /health demands the bearer token."""
    raw = await aiohttp_client(create_app(settings))
    for method, path in [
        ("GET", "/api/cron/status"),
        ("POST", "/api/cron/start"),
        ("POST", "/api/cron/stop"),
        ("GET", "/api/cron/logs"),
        ("GET", "/api/cron/logs/tail"),
        ("DELETE", "/api/cron/logs"),
    ]:
        async with raw.request(method, path) as resp:
            body = await error_body(resp, 401)
            assert "Bearer" in body["detail"]
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    async with raw.get("/api/cron/status", headers={"Authorization": "Bearer nope"}) as resp:
        assert (await error_body(resp, 401))["detail"] == "invalid bearer token"
    async with raw.get("/health") as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "healthy"


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"interval_seconds": "60"}, "valid integer"),
        ({"interval_seconds": 60.5}, "valid integer"),
        ({"interval_seconds": True}, "valid integer"),
        ({"interval_seconds": 60, "bogus": 1}, "bogus"),
        ({"pipeline": "../etc/passwd"}, "pipeline"),
    ],
)
async def test_bad_start_bodies_get_422_naming_the_field(
    client: TestClient[Any, Any], payload: dict[str, Any], needle: str
) -> None:
    """Each bad field is named in the detail and in the errors list."""
    async with client.post("/api/cron/start", json=payload) as resp:
        body = await error_body(resp, 422)
    assert needle in body["detail"]
    field = next(iter(payload)) if needle != "bogus" else "bogus"
    assert any(e["field"] == field for e in body["errors"])


@pytest.mark.parametrize("interval", [9, 5, 0, -1])
@pytest.mark.parametrize("path", ["/api/cron/start", "/api/cron/restart"])
async def test_an_interval_below_10_is_400_as_the_seed_documents(
    client: TestClient[Any, Any], path: str, interval: int
) -> None:
    """The Pipeline Cron Manager API answers 400 for an interval under 10 seconds; the body
    is the uniform one, naming the field."""
    async with client.post(path, json={"interval_seconds": interval}) as resp:
        body = await error_body(resp, 400)
    assert "greater than or equal to 10" in body["detail"]
    assert [e["field"] for e in body["errors"]] == ["interval_seconds"]
    assert body["errors"][0]["type"] == "greater_than_equal"


async def test_an_interval_below_10_beside_another_bad_field_is_still_400(
    client: TestClient[Any, Any],
) -> None:
    """The seed's 400 wins; both fields are named."""
    payload = {"interval_seconds": 5, "pipeline": "../x"}
    async with client.post("/api/cron/start", json=payload) as resp:
        body = await error_body(resp, 400)
    assert {e["field"] for e in body["errors"]} == {"interval_seconds", "pipeline"}


async def test_malformed_json_is_400(client: TestClient[Any, Any]) -> None:
    """A body that is not JSON at all is a 400 saying so."""
    async with client.post(
        "/api/cron/start", data=b"{interval", headers={"Content-Type": "application/json"}
    ) as resp:
        assert "not valid JSON" in (await error_body(resp, 400))["detail"]
    async with client.post("/api/cron/start", data=b"[1, 2]") as resp:
        assert "JSON object" in (await error_body(resp, 400))["detail"]


async def test_oversized_body_is_413(client: TestClient[Any, Any]) -> None:
    """A body over max_body_bytes is refused with 413, not read into memory."""
    async with client.post("/api/cron/start", data=b"x" * 10_000) as resp:
        assert "limit of 4096 bytes" in (await error_body(resp, 413))["detail"]


async def test_unknown_path_and_method_are_json(client: TestClient[Any, Any]) -> None:
    """404 and 405 use the same error body."""
    async with client.get("/api/cron/nope") as resp:
        assert "/api/cron/nope" in (await error_body(resp, 404))["detail"]
    async with client.put("/api/cron/status") as resp:
        assert "GET" in (await error_body(resp, 405))["detail"]


@pytest.mark.parametrize("lines", ["abc", "0", "-5", "1.5"])
async def test_bad_lines_parameter_is_422(client: TestClient[Any, Any], lines: str) -> None:
    """`lines` must be a positive integer, on both log endpoints."""
    for path in ("/api/cron/logs", "/api/cron/logs/tail"):
        async with client.get(path, params={"lines": lines}) as resp:
            body = await error_body(resp, 422)
            assert body["errors"][0]["field"] == "lines"


async def test_stop_and_status_without_a_daemon(client: TestClient[Any, Any]) -> None:
    """Stop with nothing running succeeds; status says not running; logs are empty."""
    async with client.post("/api/cron/stop") as resp:
        assert resp.status == 200 and (await resp.json())["message"] == "Daemon is not running"
    async with client.get("/api/cron/status") as resp:
        body = await resp.json()
        assert body["is_running"] is False and body["pid"] is None
        assert body["message"] == "Daemon is not running"
    async with client.get("/api/cron/logs") as resp:
        assert await resp.json() == {"logs": "", "line_count": 0}
    async with client.post("/api/cron/reload") as resp:
        await error_body(resp, 404)


def test_loopback_is_required_without_a_configured_token(tmp_path: Path) -> None:
    """Settings refuse a public address with auth off or with only a generated token."""
    from cronmgr.core.errors import ConfigError

    for extra in ({"auth": False}, {}):
        with pytest.raises(ConfigError, match="non-loopback"):
            load_settings(env={}, home=tmp_path, host="0.0.0.0", **extra)
    ok = load_settings(env={}, home=tmp_path, host="0.0.0.0", api_token="x" * 32)
    assert ok.host == "0.0.0.0"


async def test_auth_off_on_loopback_serves_without_a_token(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """With auth = false (loopback only) the seed's token-less clients work unchanged."""
    settings = load_settings(env={}, home=tmp_path, auth=False)
    raw = await aiohttp_client(create_app(settings))
    async with raw.get("/api/cron/status") as resp:
        assert resp.status == 200
    assert not settings.token_file.exists()


async def test_index_page_is_rendered_from_the_templates(client: TestClient[Any, Any]) -> None:
    """GET / renders templates/index.html with aiohttp-jinja2, without needing the token."""
    async with client.get("/", headers={"Authorization": ""}) as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        page = await resp.text()
    assert "/api/cron/start" in page and "&lt;token&gt;" in page
