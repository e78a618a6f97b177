"""A lean HTTP/1.1 client for the requests targets send: pooled keep-alive connections,
responses parsed by httptools, bodies handed over chunk by chunk.

aiohttp's client costs most of a target run's CPU time, and a scheduler sending a thousand
plain requests a second needs little of what it offers. This client does what a target
needs and nothing else: http and https (verified or not), a body of bytes, gzip and
deflate decoding with bounded inflation, chunked and length-delimited bodies and bodies
that end with the connection, redirects, connect timeouts, a DNS cache, a connection
limit. No proxies, cookies, HTTP/2 or `Expect: 100-continue`. A response to HEAD ends
with its headers: httptools cannot be told that it has no body (its Content-Length is the
GET's), so the exchange completes there and the next one gets a parser of its own.

Failures are raised as the exceptions below, which `http_runner.classify_error` sorts into
error classes and words for the attempt's record.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import time
import zlib
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import httptools
from yarl import URL

Sink = Callable[[bytes], bool]
"""Takes each decoded body chunk; False stops the read (the connection is then dropped)."""
OnHead = Callable[[int, str, Mapping[str, str]], None]
"""Told the status, reason and headers of the final response as soon as they are in."""
Resolve = Callable[[str, int], Awaitable[list[tuple[str, int]]]]
"""(host, port) to the addresses to try, in order."""

REDIRECTS = frozenset({301, 302, 303, 307, 308})
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
DNS_TTL_SECONDS = 300.0
KEEPALIVE_SECONDS = 30.0
CONNECT_SECONDS = 10.0
"""Connecting ahead (prewarm) gives up after this long."""
INFLATE_CHUNK = 64 * 1024
"""Most bytes inflated from compressed data at a time: a bomb is counted as it grows."""
REDIRECT_BODY_BYTES = 64 * 1024
"""Body of a redirect read at most (to keep its connection); beyond it, it is dropped."""
HEAD_CACHE_SIZE = 4096
"""Request heads kept built (one per target, as a rule); all dropped when it fills."""

# What a target may send before its body. httptools keeps a header's value in memory
# until its line ends and this client keeps every header, so without these a target
# sending `X-Big: ` and then a gigabyte with no line end would be held whole. The figures
# are what servers themselves accept (nginx and aiohttp take 8 KiB a line, Apache 100
# headers of 8 KiB), so no sane answer is refused; one over a limit is a failed attempt
# and its connection is dropped.
MAX_LINE_BYTES = 8 * 1024
"""Longest status line or header line (name, colon and value)."""
MAX_HEADERS = 100
"""Most header lines in a response (its trailers counted too)."""
MAX_HEAD_BYTES = 64 * 1024
"""Most bytes of a response's head, and most bytes in a row without a byte of body after
it (chunk framing, trailers): what the parser may hold of a line not yet ended."""


# --- errors ---------------------------------------------------------------------------------


class WireError(Exception):
    """A request that failed before a complete response."""


class ResolveFailed(WireError):
    """The host name did not resolve."""

    def __init__(self, host: str, error: OSError) -> None:
        super().__init__(f"cannot resolve {host!r}: {error}")
        self.host, self.os_error = host, error


class ConnectFailed(WireError):
    """No connection could be opened (refused, unreachable)."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        super().__init__(f"cannot connect to {host}:{port}: {error}")
        self.host, self.port, self.os_error = host, port, error


class TLSFailed(WireError):
    """The TLS handshake failed; `certificate` when it was the certificate."""

    def __init__(self, host: str, error: ssl.SSLError) -> None:
        super().__init__(f"TLS with {host} failed: {error}")
        self.host, self.os_error = host, error
        self.certificate = isinstance(error, ssl.SSLCertVerificationError)


class ConnectTimeout(TimeoutError):
    """Connecting took longer than the connect timeout."""


class Disconnected(WireError):
    """The server closed the connection before a complete response."""


class BodyBroken(WireError):
    """The response could not be read to its end (bad framing, bad encoding)."""


class Malformed(BodyBroken):
    """The status line or headers could not be parsed: whatever answered is not HTTP."""


class HeadTooLarge(WireError):
    """The response's status line or headers went over a limit (`MAX_LINE_BYTES`,
    `MAX_HEADERS`, `MAX_HEAD_BYTES`)."""


class TooManyRedirects(WireError):
    """More redirects than allowed."""


class UnsupportedURL(WireError):
    """Not an absolute http or https URL."""


# --- the client -----------------------------------------------------------------------------


class Origin(NamedTuple):
    """Where a connection goes; connections are pooled per origin."""

    scheme: str
    host: str
    port: int
    verify: bool


@dataclass(slots=True)
class Reply:
    """What came back, the body aside (it went to the sink)."""

    status: int
    reason: str
    headers: dict[str, str]
    """Response headers by lower-case name (a repeated header keeps its last value)."""
    url: str
    """The URL that answered, after any redirects."""


@dataclass(slots=True)
class Request:
    """One request to send."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None = None
    follow_redirects: bool = True
    max_redirects: int = 10
    connect_timeout: float = 10.0
    verify_tls: bool = True


class WireClient:
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
        self._idle: dict[Origin, list[_Connection]] = {}
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
                reading = _Response(
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

    # --- the pool ---------------------------------------------------------------------------

    async def _acquire(self, origin: Origin, connect_timeout: float, fresh: bool) -> _Connection:
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

    def _take_idle(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.usable(now, self._keepalive):
                connection.reused = True
                return connection
            self._forget(connection)
        return None

    def _release(self, connection: _Connection) -> None:
        if connection.reusable():
            connection.idle_since = time.monotonic()
            self._idle.setdefault(connection.origin, []).append(connection)
        else:
            connection.drop()
            self._open -= 1
        self._wake()

    def _forget(self, connection: _Connection) -> None:
        connection.drop()
        self._open -= 1

    def _drop_idle(self) -> bool:
        """Close the least recently used idle connection, to make room; False if none."""
        oldest: _Connection | None = None
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

    async def _connect(self, origin: Origin, connect_seconds: float) -> _Connection:
        addresses = await self._addresses(origin.host, origin.port)
        context = self._context(origin.verify) if origin.scheme == "https" else None
        loop = asyncio.get_running_loop()
        error: OSError | None = None
        for host, port in addresses:
            try:
                async with asyncio.timeout(connect_seconds):
                    _, connection = await loop.create_connection(
                        lambda: _Connection(origin, self._release),
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


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# --- one connection -------------------------------------------------------------------------


@dataclass(slots=True)
class _Response:
    """The response being read on a connection."""

    method: str
    url: str
    sink: Sink
    on_head: OnHead | None
    follow_redirects: bool
    done: asyncio.Future[Reply]
    status: int = 0
    reason: bytearray = field(default_factory=bytearray)
    headers: dict[str, str] = field(default_factory=dict)
    decoder: Any = None
    until_eof: bool = False
    headers_complete: bool = False
    stopped: bool = False
    header_lines: int = 0
    progress: bool = False
    """Whether the head ended or a body byte arrived in the bytes fed last."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection, reading one response at a time."""

    def __init__(self, origin: Origin, hand_back: Callable[[_Connection], None]) -> None:
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
        self._response: _Response | None = None
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

    async def exchange(self, head: bytes, body: bytes | None, response: _Response) -> Reply:
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

    def data_received(self, data: bytes) -> None:
        if self._response is None or self._parser is None:
            self.drop()  # bytes nobody asked for: the connection cannot be trusted
            return
        self.answered = True
        view = memoryview(data)
        # Fed at most what is left of MAX_HEAD_BYTES at a time, so that a head (or a run
        # of framing) that never ends is refused once it has that much, whatever the
        # size of the reads. Each turn feeds a byte at least: the loop ends.
        while view and self._response is not None:
            room = MAX_HEAD_BYTES - self._quiet
            if room <= 0:
                self._refuse(self._quiet_error())
                return
            piece, view = view[:room], view[room:]
            self._feed(piece)

    def _feed(self, piece: memoryview) -> None:
        response, parser = self._response, self._parser
        assert response is not None and parser is not None
        response.progress = False
        try:
            parser.feed_data(piece)
        except httptools.HttpParserError as exc:
            if self._response is not None and not response.stopped:
                if response.headers_complete:
                    self._fail(BodyBroken(f"malformed response: {exc}"))
                else:
                    self._fail(Malformed(str(exc)))
        self._quiet = 0 if response.progress else self._quiet + len(piece)

    def _quiet_error(self) -> HeadTooLarge:
        response = self._response
        if response is None or not response.headers_complete:
            return HeadTooLarge(f"response head longer than {MAX_HEAD_BYTES} bytes")
        return HeadTooLarge(f"more than {MAX_HEAD_BYTES} bytes of chunk framing or trailers")

    def _refuse(self, exc: HeadTooLarge) -> None:
        """Fail the response with `exc` and drop the connection: nothing more is read."""
        self.drop()
        self._fail(exc)

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

    # --- httptools callbacks

    def on_status(self, status: bytes) -> None:
        response = self._response
        if response is not None:
            response.reason += status
            if len(response.reason) + len(b"HTTP/1.1 200 ") > MAX_LINE_BYTES:
                self._refuse(HeadTooLarge(f"status line longer than {MAX_LINE_BYTES} bytes"))

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self._response
        if response is None:
            return
        response.header_lines += 1
        if len(name) + len(value) + 1 > MAX_LINE_BYTES:
            self._refuse(HeadTooLarge(f"a header line longer than {MAX_LINE_BYTES} bytes"))
        elif response.header_lines > MAX_HEADERS:
            self._refuse(HeadTooLarge(f"more than {MAX_HEADERS} header lines"))
        else:
            response.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        response, parser = self._response, self._parser
        if response is None or parser is None:
            return
        response.status = parser.get_status_code()
        response.headers_complete = response.progress = True
        self._keep_alive = parser.should_keep_alive()
        headers = response.headers
        response.until_eof = (
            "content-length" not in headers
            and "chunked" not in headers.get("transfer-encoding", "")
            and response.status not in (204, 304)
            and response.status >= 200
        )
        response.decoder = _decoder(headers.get("content-encoding", ""))
        if response.follow_redirects and response.status in REDIRECTS and "location" in headers:
            response.sink = _Bounded(REDIRECT_BODY_BYTES)  # not the body anyone asked for
        elif response.on_head is not None:
            reason = response.reason.decode("latin-1", errors="replace")
            response.on_head(response.status, reason, headers)
        if response.method == "HEAD" and response.status >= 200:
            # No body follows, whatever Content-Length says; a response ending with the
            # connection would have had one, so that connection is not kept.
            self._keep_alive = self._keep_alive and not response.until_eof
            self._complete()

    def on_body(self, body: bytes) -> None:
        response = self._response
        if response is None or response.stopped:
            return
        response.progress = True
        try:
            chunks = response.decoder(body) if response.decoder else (body,)
            for chunk in chunks:
                if chunk and not response.sink(chunk):
                    response.stopped = True
                    self._keep_alive = False
                    self._complete()
                    self.drop()
                    return
        except zlib.error as exc:
            self._fail(BodyBroken(f"cannot decode the body: {exc}"))

    def on_message_complete(self) -> None:
        response = self._response
        if response is not None and response.decoder is not None:
            tail = response.decoder(None)
            for chunk in tail:
                if chunk and not response.sink(chunk):
                    break
        self._complete()

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


class _Bounded:
    """A sink that swallows a redirect's body up to a limit."""

    def __init__(self, limit: int) -> None:
        self._left = limit

    def __call__(self, chunk: bytes) -> bool:
        self._left -= len(chunk)
        return self._left > 0


def _decoder(encoding: str) -> Callable[[bytes | None], Iterator[bytes]] | None:
    """Inflates gzip or deflate bodies a bounded piece at a time; None: no decoding."""
    encoding = encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return _Inflater(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return _Inflater(zlib.MAX_WBITS, raw_fallback=True)
    return None


class _Inflater:
    """zlib decompression yielding at most INFLATE_CHUNK bytes per piece, lazily: a sink
    that stops the read stops the inflating too."""

    def __init__(self, wbits: int, raw_fallback: bool = False) -> None:
        self._inflate = zlib.decompressobj(wbits)
        self._raw_fallback = raw_fallback

    def __call__(self, data: bytes | None) -> Iterator[bytes]:
        if data is None:
            return iter((self._inflate.flush(),))
        if self._raw_fallback:
            self._raw_fallback = False
            try:
                first = self._inflate.decompress(data, INFLATE_CHUNK)
            except zlib.error:
                # "deflate" sent as a raw stream, without the zlib header, as some servers do.
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                first = self._inflate.decompress(data, INFLATE_CHUNK)
            return self._rest(first)
        return self._rest(self._inflate.decompress(data, INFLATE_CHUNK))

    def _rest(self, first: bytes) -> Iterator[bytes]:
        yield first
        while self._inflate.unconsumed_tail:
            yield self._inflate.decompress(self._inflate.unconsumed_tail, INFLATE_CHUNK)
