"""What the controller bounds for a client: the time to send a request head (against
slowloris), the request line and header sizes, and the 405 answer that names the allowed
methods. The bounds of the serve path are tested against a real `cronmgr serve`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from support import Controller

from cronmgr.controller.app import create_app
from cronmgr.core.config import load_settings

HEAD_TIMEOUT = 1.0
"""The controller's request_head_timeout_seconds in these tests."""
CLOSED_WITHIN = HEAD_TIMEOUT + 2.0
"""How long after the bound the connection must be closed by (a busy machine's slack)."""

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def controller(controller_factory: Callable[..., Controller]) -> Controller:
    """A controller whose connections must send a whole request head within 1 s."""
    return controller_factory(request_head_timeout_seconds=HEAD_TIMEOUT)


async def seconds_until_closed(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, trickle: bytes = b""
) -> float:
    """Send `trickle` a byte every 0.1 s (a slow client) and read until the server closes;
    how long that took. Fails when the server keeps the connection past CLOSED_WITHIN."""
    started = time.monotonic()

    async def dribble() -> None:
        for byte in trickle:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.1)

    dribbling = asyncio.ensure_future(dribble())
    try:
        async with asyncio.timeout(CLOSED_WITHIN):
            while await reader.read(65536):  # the server may answer 408 or say nothing
                pass
    except TimeoutError:
        pytest.fail(f"the connection was still open after {CLOSED_WITHIN} s")
    finally:
        dribbling.cancel()
        writer.close()
    return time.monotonic() - started


async def test_a_request_head_that_never_ends_is_cut_off(controller: Controller) -> None:
    """A partial request line and then nothing, a head sent a byte at a time, and a kept
    connection that starts a second head and stops: each closed at the bound, while a
    whole request is answered."""
    port = controller.settings.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /hea")
    assert await seconds_until_closed(reader, writer) > HEAD_TIMEOUT - 0.2

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    slow = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    assert await seconds_until_closed(reader, writer, trickle=slow) < CLOSED_WITHIN

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    writer.write(b"GET /health HTTP/1.1\r\nHo")
    assert await seconds_until_closed(reader, writer) < CLOSED_WITHIN


async def test_an_oversized_request_line_or_head_is_refused(controller: Controller) -> None:
    """What a client may push before the body is bounded: a request line over 64 KiB, a
    header over 8190 bytes, or more than 128 headers, is a 400 and the connection ends."""
    heads = [
        b"GET /health?" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-N: n\r\n" * 200 + b"\r\n",
    ]
    for head in heads:
        reader, writer = await asyncio.open_connection("127.0.0.1", controller.settings.port)
        writer.write(head)
        async with asyncio.timeout(CLOSED_WITHIN):
            answer = await reader.read()  # to the end: the server closes
        writer.close()
        assert answer.split(b" ", 2)[1] == b"400", answer[:200]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/cron/status", "GET, HEAD"),
        ("DELETE", "/api/v1/health", "GET, HEAD"),
        ("PUT", "/ui/logs", "GET, HEAD"),
        ("GET", "/ui/daemon/start", "POST"),
    ],
)
async def test_a_method_not_allowed_is_405_with_allow_and_the_json_error(
    aiohttp_client: ClientFactory, tmp_path: Path, method: str, path: str, allowed: str
) -> None:
    """RFC 9110: the 405 lists the path's methods in Allow; the body is the usual error."""
    settings = load_settings(env={}, home=tmp_path)
    client = await aiohttp_client(create_app(settings))
    token = settings.token_file.read_text().strip()
    headers = {"Authorization": f"Bearer {token}"}
    async with client.request(method, path, headers=headers) as resp:
        assert resp.status == 405, await resp.text()
        assert resp.headers["Allow"] == allowed
        assert resp.content_type == "application/json"
        body = await resp.json()
    assert body["error"] is True
    assert body["detail"] == f"{method} is not allowed on {path}; use {allowed}"
