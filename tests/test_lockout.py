"""Token guessing is refused: after too many wrong tokens from one address, 429 for a while.

The counting itself with a clock the test turns; then the real app on a real socket: wrong
bearer tokens and wrong login-form tokens count together, and once refused, the right
token is refused too, with Retry-After, while open paths still answer.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from support import make_home

from cronmgr.client import AsyncClient
from cronmgr.controller.app import create_app
from cronmgr.controller.auth import new_token
from cronmgr.controller.lockout import FAILURE_LIMIT, WINDOW_SECONDS, Lockout
from cronmgr.core.config import Settings, load_settings
from cronmgr.core.errors import TooManyRequests

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
Client = TestClient[Any, Any]
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_refused_past_the_limit_until_its_failures_age_out() -> None:
    clock = Clock()
    lockout = Lockout(limit=3, window_seconds=60.0, clock=clock)
    for _ in range(2):
        lockout.check("10.0.0.1")
        lockout.failed("10.0.0.1")
        clock.now += 10
    lockout.check("10.0.0.1")  # two failures: still allowed
    lockout.failed("10.0.0.1")  # the third, at 1020
    with pytest.raises(TooManyRequests, match="3 in the last 60 seconds") as refused:
        lockout.check("10.0.0.1")
    assert refused.value.status == 429
    assert refused.value.retry_after == 40  # the first failure (1000) ages out at 1060
    lockout.check("10.0.0.2")  # another address is not concerned
    clock.now = 1060.5  # the first failure is out of the window: two left
    lockout.check("10.0.0.1")
    lockout.failed("10.0.0.1")
    with pytest.raises(TooManyRequests):
        lockout.check("10.0.0.1")
    clock.now += 61
    lockout.check("10.0.0.1")  # all aged out


def test_the_addresses_remembered_are_bounded() -> None:
    clock = Clock()
    lockout = Lockout(limit=1, window_seconds=60.0, max_addresses=2, clock=clock)
    for address in ("a", "b", "c"):  # a, the least recently failing, is forgotten
        lockout.failed(address)
    lockout.check("a")
    for address in ("b", "c"):
        with pytest.raises(TooManyRequests):
            lockout.check(address)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A home of its own, with auth on (the default)."""
    return load_settings(env={}, home=make_home(tmp_path))


@pytest.fixture
async def client(aiohttp_client: ClientFactory, settings: Settings) -> Client:
    """The real app on a real socket."""
    return await aiohttp_client(create_app(settings))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(client: Client, token: str) -> tuple[int, str, str | None]:
    """Send `token` through the login form: status, page, Retry-After."""
    async with client.get("/ui/login") as resp:
        found = CSRF.search(await resp.text())
        assert found
    form = {"csrf_token": found.group(1), "token": token, "next": "/ui/"}
    async with client.post("/ui/login", data=form, allow_redirects=False) as resp:
        return resp.status, await resp.text(), resp.headers.get("Retry-After")


async def test_wrong_tokens_lock_the_address_out_of_api_and_form(
    client: Client, settings: Settings
) -> None:
    token = settings.token_file.read_text().strip()
    async with client.get("/api/cron/status", headers=bearer(token)) as resp:
        assert resp.status == 200
    # No token at all is not a guess: it never counts.
    for _ in range(FAILURE_LIMIT + 1):
        async with client.get("/api/cron/status") as resp:
            assert resp.status == 401
    # Wrong tokens count, through the header and through the form alike.
    for n in range(FAILURE_LIMIT - 1):
        async with client.get("/api/cron/status", headers=bearer(f"guess-{n}")) as resp:
            assert resp.status == 401
    status, page, _ = await login(client, "one more guess")
    assert status == 401 and "not the API token" in page

    # Now even the right token is refused, with how long to wait.
    async with client.get("/api/v1/schedules", headers=bearer(token)) as resp:
        body = await resp.json()
        assert resp.status == 429, body
        wait = int(resp.headers["Retry-After"])
        assert 1 <= wait <= WINDOW_SECONDS
        assert body["error"] is True
        assert f"{FAILURE_LIMIT} in the last 60 seconds" in body["detail"]
    status, page, retry_after = await login(client, token)
    assert status == 429 and retry_after is not None
    assert "too many wrong tokens" in page
    async with client.get("/health") as resp:  # open paths stay open
        assert resp.status == 200

    async with AsyncClient(str(client.make_url("/")), token=token) as api:
        with pytest.raises(TooManyRequests) as refused:
            await api.status()
    assert refused.value.status == 429
    assert refused.value.retry_after is not None and refused.value.retry_after <= WINDOW_SECONDS


async def test_the_openapi_document_names_the_refusal(client: Client) -> None:
    async with client.get("/openapi.json") as resp:
        document = await resp.json()
    responses = document["paths"]["/api/v1/schedules"]["get"]["responses"]
    assert responses["429"] == {"$ref": "#/components/responses/E429"}
    refusal = document["components"]["responses"]["E429"]
    assert "Retry-After" in refusal["description"]
    assert refusal["headers"]["Retry-After"]["schema"] == {"type": "integer"}
    assert "429" not in document["paths"]["/health"]["get"]["responses"]


def test_a_generated_token_never_starts_with_a_dash_a_command_line_would_misread() -> None:
    """`cronmgr status --token -x…` would take the token for an option."""
    tokens = [new_token() for _ in range(2000)]
    assert not any(token.startswith("-") for token in tokens)
    assert len(set(tokens)) == 2000 and {len(t) for t in tokens} == {43}
