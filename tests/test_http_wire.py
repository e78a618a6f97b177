"""The lean HTTP client against real sockets on 127.0.0.1: framing, decoding, pooling.

The target-level behaviour (statuses, retries, timeouts, TLS, DNS, redirects, caps) is in
test_http_runner.py, which runs through this client; here is what only a raw server can
show: bodies that end with the connection, compressed bodies and bombs, stale pooled
connections, the connection limit, malformed responses.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from cronmgr.core.models import ErrorType, RetryPolicy, RunStatus, Target, utcnow
from cronmgr.runners.http.errors import classify_error
from cronmgr.runners.http.request import RequestContext
from cronmgr.runners.http.runner import HttpRunner
from cronmgr.runners.http.wire import (
    BodyBroken,
    ConnectFailed,
    Disconnected,
    Request,
    TooManyRedirects,
    WireClient,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Raw"], Awaitable[None]]


@dataclass
class Raw:
    """A server speaking whatever its handler writes; it counts connections."""

    port: int = 0
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    heads: list[bytes] = field(default_factory=list)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[Raw]:
    raw = Raw()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raw.connections += 1
        raw.open_now += 1
        raw.most_open = max(raw.most_open, raw.open_now)
        try:
            await handler(reader, writer, raw)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            raw.open_now -= 1
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    raw.port = server.sockets[0].getsockname()[1]
    async with server:
        yield raw


async def read_head(reader: asyncio.StreamReader, raw: Raw) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    raw.heads.append(head)
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":")[1]))
    return head


async def answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: Raw) -> None:
    """Answer every request on the connection with a 200 "ok"."""
    while True:
        await read_head(reader, raw)
        writer.write(reply(b"ok", "Content-Length: 2"))
        await writer.drain()


def reply(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Collect:
    """A sink keeping everything, or stopping after `cap` bytes."""

    def __init__(self, cap: int | None = None) -> None:
        self.data = bytearray()
        self.size = 0
        self.largest_piece = 0
        self._cap = cap

    def __call__(self, chunk: bytes) -> bool:
        self.size += len(chunk)
        self.largest_piece = max(self.largest_piece, len(chunk))
        if self._cap is None:
            self.data += chunk
        return self._cap is None or self.size < self._cap


@pytest.fixture
async def client() -> AsyncIterator[WireClient]:
    wire = WireClient()
    yield wire
    await wire.close()


async def test_a_body_that_ends_with_the_connection_is_read_whole(client: WireClient) -> None:
    """No Content-Length, no chunking: the body is whatever came before the close."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: Raw) -> None:
        await read_head(reader, raw)
        writer.write(reply(b"until the end", "Connection: close"))
        await writer.drain()

    async with raw_server(handler) as raw:
        sink = Collect()
        answer = await client.send(Request("GET", raw.url("/eof"), {}), sink)
    assert (answer.status, bytes(sink.data)) == (200, b"until the end")


async def test_chunked_and_compressed_bodies_are_decoded(client: WireClient) -> None:
    """gzip, zlib deflate and raw deflate (as some servers send it) come out as the text."""
    text = b"hello " * 1000
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    bodies = {
        "/gzip": ("gzip", gzip.compress(text)),
        "/deflate": ("deflate", zlib.compress(text)),
        "/raw-deflate": ("deflate", raw_deflate.compress(text) + raw_deflate.flush()),
    }

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: Raw) -> None:
        while True:
            head = await read_head(reader, raw)
            path = head.split(b" ")[1].decode()
            encoding, body = bodies[path]
            # Chunked, in two pieces, to show the framing and the decoding work together.
            half = len(body) // 2
            chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:half], body[half:]))
            writer.write(
                reply(
                    chunks + b"0\r\n\r\n",
                    "Transfer-Encoding: chunked",
                    f"Content-Encoding: {encoding}",
                )
            )
            await writer.drain()

    async with raw_server(handler) as raw:
        for path in bodies:
            sink = Collect()
            await client.send(Request("GET", raw.url(path), {}), sink)
            assert bytes(sink.data) == text, path
        assert b"accept-encoding: gzip, deflate" in raw.heads[0].lower()
        assert raw.connections == 1  # one keep-alive connection for all three


async def test_a_compression_bomb_is_inflated_piece_by_piece_and_stopped(
    client: WireClient,
) -> None:
    """200 MB of zeros in a small gzip body: the sink sees bounded pieces and stops the
    read at its cap, long before the whole bomb is inflated."""
    bomb = gzip.compress(b"\0" * (200 * 1024 * 1024), compresslevel=9)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: Raw) -> None:
        await read_head(reader, raw)
        writer.write(reply(bomb, f"Content-Length: {len(bomb)}", "Content-Encoding: gzip"))
        await writer.drain()
        await asyncio.sleep(5)

    async with raw_server(handler) as raw:
        sink = Collect(cap=1024 * 1024)
        answer = await client.send(Request("GET", raw.url(), {}), sink)
    assert answer.status == 200
    assert 1024 * 1024 <= sink.size < 2 * 1024 * 1024
    assert sink.largest_piece <= 64 * 1024


async def test_a_stale_pooled_connection_is_replaced_for_an_idempotent_request(
    client: WireClient,
) -> None:
    """The server closes each connection after one answer (without saying so): the next GET
    finds its pooled connection dead and goes again on a new one."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: Raw) -> None:
        await read_head(reader, raw)
        writer.write(reply(b"ok", "Content-Length: 2"))
        await writer.drain()

    async with raw_server(handler) as raw:
        for _ in range(3):
            sink = Collect()
            answer = await client.send(Request("GET", raw.url(), {}), sink)
            assert (answer.status, bytes(sink.data)) == (200, b"ok")
            await asyncio.sleep(0.05)  # let the close arrive
        assert raw.connections == 3


async def test_the_connection_limit_holds_requests_until_a_connection_is_free() -> None:
    """With a limit of 2, five slow requests at once never open more than two sockets."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: Raw) -> None:
        while True:
            await read_head(reader, raw)
            await asyncio.sleep(0.05)
            writer.write(reply(b"ok", "Content-Length: 2"))
            await writer.drain()

    wire = WireClient(limit=2)
    try:
        async with raw_server(handler) as raw:
            answers = await asyncio.gather(
                *(wire.send(Request("GET", raw.url(), {}), Collect()) for _ in range(5))
            )
            assert [a.status for a in answers] == [200] * 5
            assert raw.most_open == 2
            assert raw.connections == 2  # the waiting requests took the freed ones
    finally:
        await wire.close()


async def test_redirects_turn_a_post_into_a_get_and_keep_credentials_home(
    client: WireClient,
) -> None:
    """303 after a POST: a GET without the body; Authorization does not follow to another
    origin; an endless loop of redirects stops at the limit."""

    async def home(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: Raw) -> None:
        while True:
            head = await read_head(reader, raw)
            if head.startswith(b"POST /form"):
                writer.write(
                    reply(
                        b"",
                        "Content-Length: 0",
                        f"Location: {elsewhere.url('/done')}",
                        status="303 See Other",
                    )
                )
            else:
                writer.write(reply(b"", "Content-Length: 0", "Location: /loop", status="302 Found"))
            await writer.drain()

    async def away(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: Raw) -> None:
        await read_head(reader, raw)
        writer.write(reply(b"done", "Content-Length: 4"))
        await writer.drain()

    async with raw_server(away) as elsewhere, raw_server(home) as raw:
        sink = Collect()
        post = Request("POST", raw.url("/form"), {"Authorization": "Bearer x"}, body=b"a=1")
        answer = await client.send(post, sink)
        assert (answer.status, bytes(sink.data), answer.url) == (
            200,
            b"done",
            elsewhere.url("/done"),
        )
        (followed,) = elsewhere.heads
        assert followed.startswith(b"GET /done ")
        assert (
            b"authorization" not in followed.lower() and b"content-length" not in followed.lower()
        )
        with pytest.raises(TooManyRedirects):
            await client.send(Request("GET", raw.url("/loop"), {}, max_redirects=3), Collect())


async def test_broken_responses_and_refusals_are_their_own_errors(client: WireClient) -> None:
    """A malformed status line, a close before any answer, and a closed port."""

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: Raw) -> None:
        await read_head(reader, raw)
        writer.write(b"NONSENSE\r\n\r\n")
        await writer.drain()

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: Raw) -> None:
        await read_head(reader, raw)

    async with raw_server(garbage) as raw:
        with pytest.raises(BodyBroken):
            await client.send(Request("GET", raw.url(), {}), Collect())
    async with raw_server(hang_up) as raw:
        with pytest.raises(Disconnected) as caught:
            await client.send(Request("POST", raw.url(), {}, body=b"x"), Collect())
        probe = Target(id="t", name="t", url=raw.url())
        assert classify_error(caught.value, probe) == (
            ErrorType.CONNECTION,
            "the server closed the connection before a complete response",
        )
        port = raw.port
    with pytest.raises(ConnectFailed):
        await client.send(Request("GET", f"http://127.0.0.1:{port}/", {}), Collect())


async def test_a_target_body_goes_as_text_with_the_headers_it_sets() -> None:
    """Through HttpRunner: a templated body is sent as text/plain UTF-8 unless the target
    names a Content-Type; the target's User-Agent wins over cronmgr's."""

    context = RequestContext(run_id="r", schedule_id=None, scheduled_for=utcnow())
    async with raw_server(answer_ok) as raw, HttpRunner() as runner:
        plain = Target(
            id="a",
            name="a",
            url=raw.url("/a"),
            method="POST",
            body_template="é {{ attempt }}",
            retry=RetryPolicy(max_attempts=1),
        )
        typed = Target(
            id="b",
            name="b",
            url=raw.url("/b"),
            method="POST",
            body_template="{}",
            headers={"Content-Type": "application/json", "User-Agent": "probe/1"},
            retry=RetryPolicy(max_attempts=1),
        )
        for probe in (plain, typed):
            (result,) = await runner.run_target(probe, context=context)
            assert result.status is RunStatus.SUCCEEDED
    first, second = (head.lower() for head in raw.heads)
    assert b"content-type: text/plain; charset=utf-8" in first
    assert b"content-length: 4" in first  # "é 1" is four bytes in UTF-8
    assert b"content-type: application/json" in second and b"text/plain" not in second
    assert b"user-agent: probe/1" in second and b"cronmgr" not in second


async def test_each_request_sends_its_own_head_though_heads_are_built_once(
    client: WireClient,
) -> None:
    """Heads are kept built per method, URL, headers and body length: a changed header
    value (a secret rotated) or body length is a new head, the same request the same."""
    async with raw_server(answer_ok) as raw:
        sent = [
            ({"X-Token": "one"}, None),
            ({"X-Token": "one"}, None),
            ({"X-Token": "two"}, None),
            ({"X-Token": "two"}, b"abc"),
            ({"X-Token": "two"}, b"abcd"),
        ]
        for headers, body in sent:
            method = "GET" if body is None else "POST"
            request = Request(method=method, url=raw.url("/h"), headers=headers, body=body)
            reply_ = await client.send(request, Collect())
            assert reply_.status == 200
    heads = [head.lower() for head in raw.heads]
    assert heads[0] == heads[1] and b"x-token: one" in heads[0]
    assert b"x-token: two" in heads[2] and b"content-length" not in heads[2]
    assert b"content-length: 3" in heads[3] and b"content-length: 4" in heads[4]


async def test_prewarm_opens_what_the_largest_burst_needs_and_sends_reuse_it() -> None:
    """Three requests due together at one origin and two at another moment: three
    connections are opened ahead, idle until the requests come, which take them."""

    wire = WireClient(limit=10)
    try:
        async with raw_server(answer_ok) as raw:
            due = [(raw.url(f"/{i}"), True, "at 0") for i in range(3)]
            due += [(raw.url("/x"), True, "at 1")] * 2
            assert wire.prewarm(due) == 3
            assert wire.prewarm(due) == 0  # already on their way
            for _ in range(500):
                if raw.connections == 3:
                    break
                await asyncio.sleep(0.01)
            assert (raw.connections, raw.heads) == (3, [])
            await asyncio.gather(
                *(wire.send(Request("GET", raw.url(f"/{i}"), {}), Collect()) for i in range(3))
            )
            assert raw.connections == 3 and len(raw.heads) == 3
            assert wire.prewarm([("ftp://nowhere/", True, 0)]) == 0
    finally:
        await wire.close()


async def test_a_head_answer_ends_with_its_headers_and_keeps_its_connection(
    client: WireClient,
) -> None:
    """HEAD is answered with the GET's Content-Length and no body: the exchange ends at
    the headers, and the same connection carries the next requests, HEAD or GET. An answer
    without a length (a GET's would end with the connection) is not kept."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: Raw) -> None:
        while True:
            head = await read_head(reader, raw)
            if head.startswith(b"HEAD /unframed"):
                writer.write(reply(b"", "X-Kind: unframed"))
                await writer.drain()
                await reader.read()  # holds the connection until the client lets go
                return
            if head.startswith(b"HEAD"):
                writer.write(reply(b"", "Content-Length: 1234", "X-Kind: head"))
            else:
                writer.write(reply(b"ok", "Content-Length: 2"))
            await writer.drain()

    async with raw_server(handler) as raw:
        seen: list[tuple[int, str]] = []
        for method in ("HEAD", "HEAD", "GET", "HEAD"):
            sink = Collect()

            def on_head(status: int, reason: str, headers: Mapping[str, str]) -> None:
                seen.append((status, headers.get("x-kind", "")))

            answer = await asyncio.wait_for(
                client.send(Request(method, raw.url("/x"), {}), sink, on_head), 5.0
            )
            assert answer.status == 200
            assert bytes(sink.data) == (b"ok" if method == "GET" else b"")
        assert raw.connections == 1
        assert seen == [(200, "head"), (200, "head"), (200, ""), (200, "head")]
        answer = await asyncio.wait_for(
            client.send(Request("HEAD", raw.url("/unframed"), {}), Collect()), 5.0
        )
        assert answer.status == 200 and answer.headers["x-kind"] == "unframed"
        answer = await asyncio.wait_for(
            client.send(Request("GET", raw.url("/x"), {}), Collect()), 5.0
        )
        assert answer.status == 200 and raw.connections == 2
