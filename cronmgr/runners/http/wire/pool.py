"""The pool behind the client: idle connections by origin, the limit, and connecting.

A request takes an idle connection of its origin if one is still fit, else opens one if
the limit allows (closing the least recently used idle one to make room), else waits for
one to come back. Connecting resolves the host (cached for `DNS_TTL_SECONDS`), tries its
addresses in order within the connect timeout and sets up TLS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections import deque

from cronmgr.runners.http.wire.connection import Connection
from cronmgr.runners.http.wire.errors import ConnectFailed, ConnectTimeout, ResolveFailed, TLSFailed
from cronmgr.runners.http.wire.messages import Origin, Resolve

DNS_TTL_SECONDS = 300.0


class ConnectionPool:
    """The connections of a `WireClient` (a part of it)."""

    # The client's state, set up by `WireClient`.
    _limit: int
    _resolve: Resolve
    _keepalive: float
    _idle: dict[Origin, list[Connection]]
    _open: int
    _waiters: deque[asyncio.Future[None]]
    _dns: dict[tuple[str, int], tuple[float, list[tuple[str, int]]]]
    _tls: dict[bool, ssl.SSLContext]

    async def _acquire(self, origin: Origin, connect_timeout: float, fresh: bool) -> Connection:
        while True:
            connection = None if fresh else self._take_idle(origin)
            if connection is not None:
                return connection
            if self._open < self._limit or self._drop_idle():
                break
            # At the limit with nothing idle: wait for a connection to come back (maybe
            # one of this origin, taken above on the next turn).
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, then cancelled: the turn goes to the next one
                raise
        self._open += 1
        try:
            return await self._connect(origin, connect_timeout)
        except BaseException:
            self._open -= 1
            self._wake()
            raise

    def _take_idle(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.usable(now, self._keepalive):
                connection.reused = True
                return connection
            self._forget(connection)
        return None

    def _release(self, connection: Connection) -> None:
        if connection.reusable():
            connection.idle_since = time.monotonic()
            self._idle.setdefault(connection.origin, []).append(connection)
        else:
            connection.drop()
            self._open -= 1
        self._wake()

    def _forget(self, connection: Connection) -> None:
        connection.drop()
        self._open -= 1

    def _drop_idle(self) -> bool:
        """Close the least recently used idle connection, to make room; False if none."""
        oldest: Connection | None = None
        for connections in self._idle.values():
            if connections and (oldest is None or connections[0].idle_since < oldest.idle_since):
                oldest = connections[0]
        if oldest is None:
            return False
        self._idle[oldest.origin].remove(oldest)
        self._forget(oldest)
        return True

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _connect(self, origin: Origin, connect_seconds: float) -> Connection:
        addresses = await self._addresses(origin.host, origin.port)
        context = self._context(origin.verify) if origin.scheme == "https" else None
        loop = asyncio.get_running_loop()
        error: OSError | None = None
        for host, port in addresses:
            try:
                async with asyncio.timeout(connect_seconds):
                    _, connection = await loop.create_connection(
                        lambda: Connection(origin, self._release),
                        host,
                        port,
                        ssl=context,
                        server_hostname=origin.host if context else None,
                    )
                return connection
            except TimeoutError as exc:
                raise ConnectTimeout(f"connecting to {origin.host}:{origin.port}") from exc
            except ssl.SSLError as exc:
                raise TLSFailed(origin.host, exc) from exc
            except OSError as exc:
                error = exc
        assert error is not None
        raise ConnectFailed(origin.host, origin.port, error) from error

    async def _addresses(self, host: str, port: int) -> list[tuple[str, int]]:
        if _is_ip(host):
            return [(host, port)]
        key, now = (host, port), time.monotonic()
        cached = self._dns.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            addresses = await self._resolve(host, port)
        except OSError as exc:
            raise ResolveFailed(host, exc) from exc
        self._dns[key] = (now + DNS_TTL_SECONDS, addresses)
        return addresses

    @staticmethod
    async def _getaddrinfo(host: str, port: int) -> list[tuple[str, int]]:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return [(str(info[4][0]), int(info[4][1])) for info in infos]

    def _context(self, verify: bool) -> ssl.SSLContext:
        context = self._tls.get(verify)
        if context is None:
            context = ssl.create_default_context()
            if not verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._tls[verify] = context
        return context


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
