"""The HTTP target of the engine bench, in a process of its own.

`python -m bench.target_server` listens on a free port of 127.0.0.1, prints
`READY <port>` on stdout and answers every request with `200 ok`, noting the path and the
wall-clock moment it arrived. `GET /_bench/take` returns the notes so far as JSON
(`[[path, unix_seconds], ...]`) and forgets them. Its own process keeps it off the CPU of
the scheduler under test, whose lag it judges; the clock it reads (time.time) is the
one the schedulers' slots are expressed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time

import orjson
from aiohttp import web

TAKE_PATH = "/_bench/take"
BACKLOG = 4096
"""Listen backlog: 2,000 connections opened in one burst must not overflow it."""


class Arrivals:
    """Paths and arrival moments, in the order the requests came."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.times: list[float] = []

    def note(self, path: str) -> None:
        """Remember that a request for `path` arrived now."""
        self.times.append(time.time())
        self.paths.append(path)

    def take(self) -> bytes:
        """Everything noted so far, as JSON; the notes start afresh."""
        body = orjson.dumps(list(zip(self.paths, self.times, strict=True)))
        self.paths, self.times = [], []
        return body


def handler(arrivals: Arrivals) -> web.Server:
    """A low-level aiohttp server: no router, no middleware, nothing between us and the clock."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        if request.path == TAKE_PATH:
            return web.Response(body=arrivals.take(), content_type="application/json")
        arrivals.note(request.path)
        return web.Response(text="ok")

    return web.Server(handle, access_log=None)


async def serve() -> None:
    """Listen until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        handler(Arrivals()), "127.0.0.1", 0, backlog=BACKLOG, reuse_address=True
    )
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()
    await stop.wait()
    server.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.wait_closed(), 2.0)


if __name__ == "__main__":
    asyncio.run(serve())
