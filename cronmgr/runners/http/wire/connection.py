"""One keep-alive connection: handed out by the pool, carrying one exchange at a time.

A `Connection` writes a request's head and body and waits for the response, which its
head and body parts read; the moment the response is complete (or failed) it goes back
to the pool, before the task waiting for the response resumes. An exchange that is
interrupted drops the connection.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import cast

import httptools

from cronmgr.runners.http.wire.body import BodyReading
from cronmgr.runners.http.wire.errors import Disconnected
from cronmgr.runners.http.wire.head import HeadParsing
from cronmgr.runners.http.wire.messages import Origin, Reply, Response


class Connection(HeadParsing, BodyReading, asyncio.Protocol):
    """One keep-alive connection, reading one response at a time."""

    def __init__(self, origin: Origin, hand_back: Callable[[Connection], None]) -> None:
        self.origin = origin
        # Back to the pool the moment its response is complete, before the task that
        # waits for the response resumes: a request waiting for a connection goes first.
        self._hand_back = hand_back
        self._held = False
        self.transport: asyncio.Transport | None = None
        self.reused = False
        self.answered = False  # a byte of the current response arrived
        self.idle_since = 0.0
        self._closed = False
        self._keep_alive = False
        self._response: Response | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._quiet = 0  # bytes fed since the head ended or a body byte last arrived

    # --- what the pool asks

    def usable(self, now: float, keepalive: float) -> bool:
        """Whether an idle connection may carry another request."""
        return not self._closed and now - self.idle_since < keepalive

    def reusable(self) -> bool:
        """Whether the last exchange left the connection fit for another."""
        return not self._closed and self._keep_alive and self._response is None

    def drop(self) -> None:
        """Close the connection now."""
        self._closed = True
        if self.transport is not None:
            self.transport.abort()

    def done(self) -> asyncio.Future[Reply]:
        """A future for the next response."""
        return asyncio.get_running_loop().create_future()

    async def exchange(self, head: bytes, body: bytes | None, response: Response) -> Reply:
        """Write the request and wait for its response; the connection is dropped when
        the exchange is interrupted (timeout, cancellation)."""
        self._held = True
        if self._closed or self.transport is None:
            self._give_back()
            raise Disconnected("the server closed the connection")
        done = response.done
        self._response = response
        self._parser = httptools.HttpResponseParser(self)
        self._keep_alive, self.answered, self._quiet = False, False, 0
        self.transport.write(head + body if body else head)
        try:
            return await done
        except BaseException:
            self._response = None
            self.drop()
            self._give_back()
            raise

    def _give_back(self) -> None:
        if self._held:
            self._held = False
            self._hand_back(self)

    # --- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # A request is one write: send it now, not when the last segment is acked.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def eof_received(self) -> bool | None:
        self._ended()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._ended()

    def _ended(self) -> None:
        response = self._response
        if response is None:
            return
        if response.headers_complete and response.until_eof:
            self._keep_alive = False
            self.on_message_complete()
        else:
            self._fail(Disconnected("the server closed the connection"))

    # --- the end of an exchange

    def _complete(self) -> None:
        response, self._response = self._response, None
        self._give_back()
        if response is not None and not response.done.done():
            reason = response.reason.decode("latin-1", errors="replace")
            response.done.set_result(Reply(response.status, reason, response.headers, response.url))

    def _fail(self, exc: Exception) -> None:
        response, self._response = self._response, None
        self._keep_alive = False
        self._give_back()
        if response is not None and not response.done.done():
            response.done.set_exception(exc)
