"""Notifications end to end: a real controller and daemon, webhooks from the config file.

The webhook is a recording aiohttp server on 127.0.0.1; the controller reads its
`[[webhooks]]` from a TOML file (CRONMGR_CONFIG) and the secret from `${env:HOOK_SECRET}`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from support import Controller, controller_settings, kill_daemon

from cronmgr.controller.app import create_app
from cronmgr.core.config import load_settings

ServerFactory = Callable[..., Awaitable[TestServer]]
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]

SECRET = "hook-secret-for-the-daemon-test"


@dataclass
class Receiver:
    """Records every POST; `/fail` always answers 500."""

    base: str = ""
    hits: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, request: web.Request) -> web.Response:
        """Record, then answer."""
        async with self.arrived:
            self.hits.append((request.path, dict(request.headers), await request.read()))
            self.arrived.notify_all()
        return web.Response(status=500 if request.path == "/fail" else 200)

    def events(self, kind: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
        """(headers, body) of the webhook requests carrying events of `kind`."""
        found = []
        for path, headers, body in self.hits:
            if path == "/hook" and headers.get("X-Cronmgr-Event") == kind:
                found.append((headers, orjson.loads(body)))
        return found

    async def wait(self, kind: str, timeout: float) -> tuple[dict[str, str], dict[str, Any]]:
        """The first `kind` event, waited for (bounded)."""
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: self.events(kind)), timeout)
        return self.events(kind)[0]


@pytest.fixture
async def receiver(aiohttp_server: ServerFactory) -> AsyncIterator[Receiver]:
    """The recording webhook on 127.0.0.1."""
    recorder = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", recorder.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    recorder.base = str(server.make_url("")).rstrip("/")
    yield recorder


@dataclass
class ConfiguredController(Controller):
    """A controller that reads a config file and has HOOK_SECRET in its environment."""

    config_file: Path | None = None

    def env(self) -> dict[str, str]:
        """The usual environment plus the config file and the secret it references."""
        env = super().env()
        env["CRONMGR_CONFIG"] = str(self.config_file)
        env["HOOK_SECRET"] = SECRET
        return env


def webhooks_toml(receiver: Receiver) -> str:
    """A signed JSON webhook and one that always fails."""
    return f"""
[[webhooks]]
name = "recorder"
url = "{receiver.base}/hook"
secret = "${{env:HOOK_SECRET}}"
timeout_seconds = 5
backoff_seconds = 0.05

[[webhooks]]
name = "broken"
url = "{receiver.base}/fail?token=abc123"
events = ["incident_opened"]
max_attempts = 2
backoff_seconds = 0.05
"""


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[Callable[..., ConfiguredController]]:
    """Start controllers with webhooks in their config file; all torn down afterwards."""
    made: list[ConfiguredController] = []

    def factory(config_text: str, **overrides: Any) -> ConfiguredController:
        root = tmp_path / f"n{len(made)}"
        root.mkdir()
        config = root / "cronmgr.toml"
        config.write_text(config_text)
        controller = ConfiguredController(
            controller_settings(root, **overrides), config_file=config
        )
        made.append(controller)
        controller.start()
        return controller

    yield factory
    for controller in made:
        controller.shutdown()
        kill_daemon(controller.settings)


ENV_DUMP_PIPELINE = """
description = "writes the names of its environment variables to state_dir/env.txt"

[[steps]]
name = "dump"
shell = 'cd "$CRONMGR_STATE_DIR" && env > env.tmp && mv env.tmp env.txt'
"""
"""A pipeline that shows what its steps inherit: never the webhooks (their secrets)."""


def signed(headers: dict[str, str], body: bytes) -> bool:
    """Whether the signature header is HMAC-SHA256 of "<t>.<body>" with a fresh t."""
    fields = dict(part.split("=", 1) for part in headers["X-Cronmgr-Signature"].split(","))
    mac = hmac.new(SECRET.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256)
    fresh = abs(time.time() - int(fields["t"])) < 300
    return fresh and hmac.compare_digest(mac.hexdigest(), fields["v1"])


async def api(controller: Controller, method: str, path: str, **kwargs: Any) -> Any:
    """One authenticated request; the JSON answer (2xx expected)."""
    async with (
        aiohttp.ClientSession(controller.url, headers=controller.headers) as http,
        http.request(method, path, **kwargs) as resp,
    ):
        assert resp.status < 300, await resp.text()
        return await resp.json()


async def test_the_test_endpoint_delivers_a_signed_event(
    receiver: Receiver, configured: Callable[..., ConfiguredController]
) -> None:
    """POST /api/v1/notifications/test: every webhook gets a `test` event (the events
    filter notwithstanding), signed with the secret from the environment; the answer
    reports each delivery with its URL masked and never the secret."""
    controller = configured(webhooks_toml(receiver))
    report = await api(controller, "POST", "/api/v1/notifications/test")
    headers, body = receiver.events("test")[0]
    raw = next(raw for path, _, raw in receiver.hits if path == "/hook")
    assert signed(headers, raw) and body["event"] == "test" and body["data"]["message"]
    ok, broken = report["results"]
    assert report["success"] is False and "1 of 2" in report["message"]
    assert (ok["name"], ok["delivered"], ok["status"], ok["attempts"]) == (
        "recorder",
        True,
        200,
        1,
    )
    assert ok["url"] == f"{receiver.base}/hook" and ok["event_id"] == body["id"]
    assert (broken["delivered"], broken["status"], broken["attempts"]) == (False, 500, 2)
    assert broken["url"] == f"{receiver.base}/fail?***" and "HTTP 500" in broken["error"]
    assert SECRET not in orjson.dumps(report).decode()
    document = await api(controller, "GET", "/openapi.json")
    reply = document["paths"]["/api/v1/notifications/test"]["post"]["responses"]["200"]
    schema = reply["content"]["application/json"]["schema"]
    assert set(report) == set(schema["properties"])
    assert set(ok) == set(schema["properties"]["results"]["items"]["properties"])
    only = await api(controller, "POST", "/api/v1/notifications/test?webhook=recorder")
    assert [r["name"] for r in only["results"]] == ["recorder"] and only["success"] is True
    async with (
        aiohttp.ClientSession(controller.url, headers=controller.headers) as http,
        http.post("/api/v1/notifications/test?webhook=7") as resp,
    ):
        assert resp.status == 422 and "webhook" in (await resp.json())["detail"]


async def test_without_webhooks_the_test_endpoint_answers_409(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """Nothing configured: 409 saying where webhooks are configured."""
    settings = load_settings(env={}, home=tmp_path)
    app = create_app(settings)
    token = settings.token_file.read_text().strip()
    client = await aiohttp_client(app, headers={"Authorization": f"Bearer {token}"})
    async with client.post("/api/v1/notifications/test") as resp:
        assert resp.status == 409
        assert "[[webhooks]]" in (await resp.json())["detail"]


async def test_an_auto_disabled_schedule_is_notified_by_the_daemon(
    receiver: Receiver, configured: Callable[..., ConfiguredController]
) -> None:
    """A target that always answers 500, failure_policy disable, threshold 2: the daemon
    sends a signed `schedule_disabled` with the schedule, its job and the failure count.
    The daemon's steps never see the webhooks it was given."""
    controller = configured(webhooks_toml(receiver))
    (controller.settings.pipelines_path / "envdump.toml").write_text(ENV_DUMP_PIPELINE)
    await api(
        controller, "POST", "/api/cron/start", json={"interval_seconds": 600, "pipeline": "envdump"}
    )
    target = await api(
        controller,
        "POST",
        "/api/v1/targets",
        json={"name": "always 500", "url": f"{receiver.base}/fail", "retry": {"max_attempts": 1}},
    )
    schedule = await api(
        controller,
        "POST",
        "/api/v1/schedules",
        json={
            "name": "doomed",
            "target_id": target["id"],
            "schedule_type": "interval",
            "interval_seconds": 0.5,
            "failure_policy": "disable",
            "failure_threshold": 2,
        },
    )
    headers, body = await receiver.wait("schedule_disabled", timeout=20)
    assert body["data"] == {
        "schedule_id": schedule["id"],
        "name": "doomed",
        "job": f"target:{target['id']}",
        "reason": "disabled after 2 consecutive failed runs",
        "consecutive_failures": 2,
    }
    raw = next(r for p, h, r in receiver.hits if h.get("X-Cronmgr-Event") == "schedule_disabled")
    assert signed(headers, raw)
    dump = controller.settings.state_path / "env.txt"
    deadline = time.monotonic() + 10
    while not dump.exists():  # the start schedule ran the pipeline at once; it may lag
        assert time.monotonic() < deadline, "the envdump pipeline never ran"
        await asyncio.sleep(0.05)
    names = [line.split("=", 1)[0] for line in dump.read_text().splitlines()]
    assert "CRONMGR_STATE_DIR" in names and "CRONMGR_WEBHOOKS" not in names


async def test_a_killed_daemon_is_notified_by_the_controller(
    receiver: Receiver, configured: Callable[..., ConfiguredController]
) -> None:
    """kill -9 of the daemon: the supervising controller sends `daemon_died` with the pid,
    the reason and that it restarts it; then it does."""
    controller = configured(
        webhooks_toml(receiver),
        supervise=True,
        supervise_poll_seconds=0.2,
        restart_backoff_seconds=0.2,
    )
    started = await api(
        controller, "POST", "/api/cron/start", json={"interval_seconds": 600, "pipeline": "quick"}
    )
    os.kill(started["pid"], signal.SIGKILL)
    headers, body = await receiver.wait("daemon_died", timeout=15)
    data = body["data"]
    assert data["pid"] == started["pid"] and data["will_restart"] is True
    assert data["reason"] and data["fatal"] is False and data["pipeline"] == "quick"
    assert "X-Cronmgr-Signature" in headers
    deadline = time.monotonic() + 20
    while True:  # let the restart finish, so teardown finds the new daemon to kill
        status = await api(controller, "GET", "/api/cron/status")
        if status["is_running"] and status["pid"] != started["pid"]:
            break
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.1)
