"""The client a runner sends with: requests, redirects followed, heads built once.

`WireClient.send` sends a request on a pooled connection, once more on a fresh one when
a reused connection turns out closed (for a request that may be sent twice), and follows
redirects as asked: a 303 (or a 301/302 after a POST) turns into a GET without the body,
and credentials do not follow to another origin. `prewarm` opens connections ahead.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import Counter, deque
from collections.abc import Hashable, Iterable, Mapping

from yarl import URL

from cronmgr.runners.http.wire.connection import Connection
from cronmgr.runners.http.wire.errors import (
    Disconnected,
    TooManyRedirects,
    UnsupportedURL,
    WireError,
)
from cronmgr.runners.http.wire.messages import (
    REDIRECTS,
    OnHead,
    Origin,
    Reply,
    Request,
    Resolve,
    Response,
    Sink,
)
from cronmgr.runners.http.wire.pool import ConnectionPool

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
KEEPALIVE_SECONDS = 30.0
CONNECT_SECONDS = 10.0
"""Connecting ahead (prewarm) gives up after this long."""
HEAD_CACHE_SIZE = 4096
"""Request heads kept built (one per target, as a rule); all dropped when it fills."""


class WireClient(ConnectionPool):
    """Pooled HTTP/1.1 connections; `close()` when done."""

    def __init__(
        self,
        *,
        limit: int = 1000,
        user_agent: str = "cronmgr",
        resolve: Resolve | None = None,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
    ) -> None:
        self._limit = limit
        self._user_agent = user_agent
        self._resolve = resolve or self._getaddrinfo
        self._keepalive = keepalive_seconds
        self._idle: dict[Origin, list[Connection]] = {}
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._dns: dict[tuple[str, int], tuple[float, list[tuple[str, int]]]] = {}
        self._tls: dict[bool, ssl.SSLContext] = {}
        self._urls: dict[str, URL] = {}
        self._heads: dict[tuple[str, URL, tuple[tuple[str, str], ...], int | None], bytes] = {}
        self._warming: dict[Origin, int] = {}
        self._warmers: set[asyncio.Task[None]] = set()

    def prewarm(self, requests: Iterable[tuple[str, bool, Hashable]]) -> int:
        """Open connections ahead for requests that will be sent together: (url,
        verify_tls, moment) each, grouped by origin and moment. An origin gets as many
        idle connections as its largest group needs (within the limit), so a burst does not
        wait for handshakes; how many connections are being opened."""
        groups: Counter[tuple[Origin, Hashable]] = Counter()
        for url, verify_tls, moment in requests:
            with contextlib.suppress(UnsupportedURL):
                groups[self._origin(self._url(url), verify_tls), moment] += 1
        needs: dict[Origin, int] = {}
        for (origin, _), count in groups.items():
            needs[origin] = max(needs.get(origin, 0), count)
        opened = 0
        for origin, need in needs.items():
            have = len(self._idle.get(origin, ())) + self._warming.get(origin, 0)
            for _ in range(min(need - have, self._limit - self._open)):
                self._open += 1
                self._warming[origin] = self._warming.get(origin, 0) + 1
                task = asyncio.ensure_future(self._warm(origin))
                self._warmers.add(task)
                task.add_done_callback(self._warmers.discard)
                opened += 1
        return opened

    async def _warm(self, origin: Origin) -> None:
        try:
            connection = await self._connect(origin, CONNECT_SECONDS)
        except (WireError, OSError):  # the request itself will say what is wrong
            self._open -= 1
            self._wake()
            return
        finally:
            self._warming[origin] -= 1
        connection.idle_since = time.monotonic()
        self._idle.setdefault(origin, []).append(connection)
        self._wake()

    async def send(self, request: Request, sink: Sink, on_head: OnHead | None = None) -> Reply:
        """Send `request`, following redirects if asked; the final body goes to `sink`."""
        method, url, body = request.method, self._url(request.url), request.body
        headers = dict(request.headers)
        for _ in range(request.max_redirects + 1):
            reply = await self._exchange(method, url, headers, body, request, (sink, on_head))
            location = reply.headers.get("location")
            if not (request.follow_redirects and reply.status in REDIRECTS and location):
                return reply
            method, body, url, headers = _redirected(method, body, url, headers, reply, location)
        raise TooManyRedirects(f"more than {request.max_redirects} redirects")

    async def close(self) -> None:
        """Close every pooled connection."""
        for task in list(self._warmers):
            task.cancel()
        await asyncio.gather(*self._warmers, return_exceptions=True)
        for connections in self._idle.values():
            for connection in connections:
                connection.drop()
        self._idle.clear()

    @staticmethod
    def _origin(url: URL, verify_tls: bool) -> Origin:
        return Origin(
            url.scheme, url.host or "", url.port or 0, verify_tls or url.scheme != "https"
        )

    def _url(self, text: str) -> URL:
        url = self._urls.get(text)
        if url is None:
            url = URL(text)
            if url.scheme not in ("http", "https") or not url.host:
                raise UnsupportedURL(f"not an absolute http or https URL: {text}")
            if len(self._urls) > 4096:
                self._urls.clear()
            self._urls[text] = url
        return url

    async def _exchange(
        self,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        body: bytes | None,
        request: Request,
        into: tuple[Sink, OnHead | None],
    ) -> Reply:
        origin = self._origin(url, request.verify_tls)
        head = self._head(method, url, headers, body)
        for fresh in (False, True):
            connection = await self._acquire(origin, request.connect_timeout, fresh)
            try:
                reading = Response(
                    method, str(url), into[0], into[1], request.follow_redirects, connection.done()
                )
                reply = await connection.exchange(head, body, reading)
            except Disconnected:
                # A pooled connection the server had closed meanwhile: once more on a new
                # one, for a request that may be sent twice.
                if connection.reused and not connection.answered and method in IDEMPOTENT:
                    continue
                raise
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    def _head(self, method: str, url: URL, headers: Mapping[str, str], body: bytes | None) -> bytes:
        # A target sends the same head every time: built once, then looked up.
        key = (method, url, tuple(headers.items()), None if body is None else len(body))
        head = self._heads.get(key)
        if head is None:
            if len(self._heads) >= HEAD_CACHE_SIZE:
                self._heads.clear()
            head = self._heads[key] = self._build_head(method, url, headers, body)
        return head

    def _build_head(
        self, method: str, url: URL, headers: Mapping[str, str], body: bytes | None
    ) -> bytes:
        names = {name.lower() for name in headers}
        lines = [f"{method} {url.raw_path_qs or '/'} HTTP/1.1"]
        if "host" not in names:
            lines.append(f"Host: {_host_header(url)}")
        if "user-agent" not in names:
            lines.append(f"User-Agent: {self._user_agent}")
        if "accept" not in names:
            lines.append("Accept: */*")
        if "accept-encoding" not in names:
            lines.append("Accept-Encoding: gzip, deflate")
        if body is not None and "content-length" not in names:
            lines.append(f"Content-Length: {len(body)}")
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _redirected(
    method: str, body: bytes | None, url: URL, headers: dict[str, str], reply: Reply, location: str
) -> tuple[str, bytes | None, URL, dict[str, str]]:
    """The request a redirect asks for: 303 (and 301/302 after a POST) become a GET without
    the body; credentials do not follow to another origin."""
    target = url.join(URL(location))
    if target.scheme not in ("http", "https") or not target.host:
        raise UnsupportedURL(f"redirected to a URL that is not http or https: {location}")
    if reply.status == 303 or (reply.status in (301, 302) and method == "POST"):
        method, body = "GET", None
        headers = {k: v for k, v in headers.items() if k.lower() not in _BODY_HEADERS}
    if target.origin() != url.origin():
        headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIALS}
    return method, body, target, headers


_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding"})
_CREDENTIALS = frozenset({"authorization", "cookie", "proxy-authorization"})


def _host_header(url: URL) -> str:
    host = url.raw_host or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    if url.explicit_port and url.port != {"http": 80, "https": 443}.get(url.scheme):
        return f"{host}:{url.port}"
    return host
