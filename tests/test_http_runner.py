"""HTTP targets against real servers on 127.0.0.1: statuses, assertions, retries, limits, secrets.

Every test talks to an aiohttp server in the same event loop (or to nothing at all: a
closed port, a resolver that fails); the retry waits are the real ones, kept tiny.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import socket
import ssl
import subprocess
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs
from structlog.typing import EventDict

from cronmgr.core.models import Assertion, ErrorType, RetryPolicy, RunStatus, StepResult, Target
from cronmgr.core.secret_refs import SecretResolver, redact
from cronmgr.runners.http.attempt import TRUNCATED_NOTE
from cronmgr.runners.http.body import EXCERPT_BYTES
from cronmgr.runners.http.request import RequestContext
from cronmgr.runners.http.runner import MAX_RESPONSE_BYTES, HttpRunner

SCHEDULED_FOR = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
DOCUMENT = {"status": "ok", "data": {"items": [{"id": 7, "name": "x"}], "flag": True, "n": 1}}
MIB = 1024 * 1024
TOKEN = "s3cr3t-token-value"
TRACE = "trace-secret-4711"

ServerFactory = Callable[..., Awaitable[TestServer]]


# --- the target server ---------------------------------------------------------------------


@dataclass
class Seen:
    """What the server saw: every arrival (path, monotonic time) and every request body."""

    arrivals: list[tuple[str, float]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    peers: list[tuple[str, int]] = field(default_factory=list)  # client address per request
    hang_started: asyncio.Event = field(default_factory=asyncio.Event)
    hang_dropped: asyncio.Event = field(default_factory=asyncio.Event)

    def hits(self, path: str) -> list[float]:
        return [at for seen_path, at in self.arrivals if seen_path == path]


SEEN = web.AppKey("seen", Seen)


@web.middleware
async def record_arrival(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    request.app[SEEN].arrivals.append((request.path, time.monotonic()))
    return await handler(request)


def nth_hit(request: web.Request) -> int:
    return len(request.app[SEEN].hits(request.path))


async def json_document(request: web.Request) -> web.Response:
    return web.json_response(DOCUMENT)


async def status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]), text="status page")


async def fail_first(request: web.Request) -> web.Response:
    """The status in the path the first time, 200 afterwards."""
    if nth_hit(request) == 1:
        return web.Response(status=int(request.match_info["code"]), text="not yet")
    return web.Response(text="recovered")


async def retry_after(request: web.Request) -> web.Response:
    """429 with a Retry-After (`?seconds=` as given, or `?date_in=` seconds ahead), then 200."""
    if nth_hit(request) > 1:
        return web.Response(text="welcome back")
    if "date_in" in request.query:
        when = datetime.now(UTC) + timedelta(seconds=float(request.query["date_in"]))
        header = format_datetime(when, usegmt=True)
    else:
        header = request.query["seconds"]
    return web.Response(status=429, headers={"Retry-After": header}, text="slow down")


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query["seconds"]))
    return web.Response(text="finally")


async def slow_body(request: web.Request) -> web.StreamResponse:
    """Headers at once, then a byte every 50 ms, for ever."""
    response = web.StreamResponse()
    await response.prepare(request)
    while True:
        await response.write(b".")
        await asyncio.sleep(0.05)


async def hang(request: web.Request) -> web.Response:
    seen = request.app[SEEN]
    seen.hang_started.set()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        # The test server cancels a handler when its client drops the connection.
        seen.hang_dropped.set()
        raise
    raise AssertionError("unreachable")


async def huge(request: web.Request) -> web.StreamResponse:
    """`?size=` bytes generated on the fly (endless without it), 1 MiB per write."""
    size = int(request.query.get("size", "-1"))
    response = web.StreamResponse()
    if size >= 0:
        response.content_length = size
    await response.prepare(request)
    chunk = memoryview(b"x" * MIB)
    sent = 0
    while size < 0 or sent < size:
        piece = chunk if size < 0 else chunk[: size - sent]
        await response.write(piece)
        sent += len(piece)
    await response.write_eof()
    return response


async def echo(request: web.Request) -> web.Response:
    """What arrived, as JSON; 500 the first time with `?fail_first=1`."""
    received = {
        "method": request.method,
        "path_qs": request.path_qs,
        "headers": dict(request.headers),
        "body": await request.text(),
    }
    request.app[SEEN].requests.append(received)
    if request.query.get("fail_first") and nth_hit(request) == 1:
        return web.json_response(received, status=500)
    return web.json_response(received)


async def peer(request: web.Request) -> web.Response:
    """Remember which client socket the request came over."""
    assert request.transport is not None
    host, port = request.transport.get_extra_info("peername")[:2]
    request.app[SEEN].peers.append((host, port))
    return web.Response(text="seen")


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/json")


def target_app() -> web.Application:
    app = web.Application(middlewares=[record_arrival])
    app[SEEN] = Seen()
    app.router.add_get("/json", json_document)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/fail-first/{code}", fail_first)
    app.router.add_get("/retry-after", retry_after)
    app.router.add_get("/slow", slow)
    app.router.add_get("/slow-body", slow_body)
    app.router.add_get("/hang", hang)
    app.router.add_get("/huge", huge)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/peer", peer)
    return app


@pytest.fixture
async def server(aiohttp_server: ServerFactory) -> TestServer:
    return await aiohttp_server(target_app())


def seen(server: TestServer) -> Seen:
    assert isinstance(server.app, web.Application)
    return server.app[SEEN]


# --- the runner ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def logs() -> Iterator[list[EventDict]]:
    # With the bound fields (run_id, target), as the daemon's own processors add them.
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as captured:
        yield captured


@pytest.fixture
async def runner() -> AsyncIterator[HttpRunner]:
    async with HttpRunner() as opened:
        yield opened


@pytest.fixture
def context() -> RequestContext:
    return RequestContext(run_id="run-1", schedule_id="sched-1", scheduled_for=SCHEDULED_FOR)


FAST_RETRIES = RetryPolicy(
    max_attempts=3,
    backoff_base_seconds=0.01,
    backoff_max_seconds=0.02,
    retry_after_max_seconds=5.0,
    jitter=False,
)


def target(url: Any, *, retry: RetryPolicy = FAST_RETRIES, **kwargs: Any) -> Target:
    return Target(id="target-1", name="probe", url=str(url), retry=retry, **kwargs)


async def run(
    runner: HttpRunner, probe: Target, context: RequestContext
) -> tuple[list[StepResult], list[StepResult]]:
    """The returned results and those `on_attempt` got (through an async callback)."""
    reported: list[StepResult] = []

    async def on_attempt(result: StepResult) -> None:
        reported.append(result)

    results = await runner.run_target(probe, context=context, on_attempt=on_attempt)
    return results, reported


def events(logs: list[EventDict], name: str) -> list[EventDict]:
    return [e for e in logs if e["event"] == name]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- success and assertions ----------------------------------------------------------------


async def test_a_200_passing_every_assertion_succeeds_in_one_attempt(
    runner: HttpRunner, server: TestServer, context: RequestContext, logs: list[EventDict]
) -> None:
    probe = target(
        server.make_url("/json"),
        assertions=(
            Assertion("body_contains", '"status": "ok"'),
            Assertion("body_regex", r'"id":\s*\d+'),
            Assertion("json_field", 7, path="data.items.0.id"),
            Assertion("json_field", "x", path="data.items[0].name"),
            Assertion("json_field", True, path="data.flag"),
            Assertion("json_field", 1.0, path="data.n"),
            Assertion("json_field", {"id": 7, "name": "x"}, path="data.items.0"),
            Assertion("max_latency_ms", 5000),
        ),
    )
    results, reported = await run(runner, probe, context)

    (result,) = results
    assert reported == results
    body = json.dumps(DOCUMENT)
    assert (result.status, result.status_code, result.error_type) == (
        RunStatus.SUCCEEDED,
        200,
        None,
    )
    assert (result.step, result.attempt, result.response_size) == ("probe", 1, len(body))
    assert result.output_tail == (body,)
    assert 0 <= result.duration_ms < 5000
    (finished,) = events(logs, "http_attempt_finished")
    assert finished["status_code"] == 200 and finished["error_type"] is None


async def test_failing_assertions_are_named_with_what_was_found_and_not_retried(
    runner: HttpRunner, server: TestServer, context: RequestContext
) -> None:
    probe = target(
        server.make_url("/json"),
        assertions=(
            Assertion("body_contains", "healthy"),
            Assertion("body_regex", r"\d{5}"),
            Assertion("json_field", 1, path="data.flag"),  # true is not 1 in JSON
            Assertion("json_field", 7, path="data.items.3.id"),
            Assertion("json_field", 7, path="data.missing"),
            Assertion("body_contains", "ok"),  # passes: not in the message
        ),
    )
    (result,) = (await run(runner, probe, context))[0]

    assert (result.status, result.error_type) == (RunStatus.FAILED, ErrorType.ASSERTION)
    assert result.status_code == 200
    message = result.error or ""
    assert "body_contains 'healthy': not in the body, which starts '{\"status\"" in message
    assert "body_regex '\\\\d{5}': no match" in message
    assert "json_field data.flag: expected 1, found true" in message
    assert "json_field data.items.3.id: no such field (data.items.3: the list has 1 items)" in (
        message
    )
    assert "json_field data.missing: no such field (data.missing is missing)" in message
    assert "'ok'" not in message


async def test_json_field_on_a_body_that_is_not_json_says_so(
    runner: HttpRunner, server: TestServer, context: RequestContext
) -> None:
    probe = target(
        server.make_url("/fail-first/200"), assertions=(Assertion("json_field", 1, path="a"),)
    )
    (result,) = (await run(runner, probe, context))[0]
    assert result.error_type is ErrorType.ASSERTION
    assert result.error == "json_field a: the body is not JSON; it starts 'not yet'"


async def test_a_response_slower_than_max_latency_fails_the_assertion(
    runner: HttpRunner, server: TestServer, context: RequestContext
) -> None:
    probe = target(
        server.make_url("/slow?seconds=0.15"), assertions=(Assertion("max_latency_ms", 50),)
    )
    (result,) = (await run(runner, probe, context))[0]
    assert result.error_type is ErrorType.ASSERTION
    assert result.duration_ms >= 150
    assert result.error == f"max_latency_ms 50: the response took {result.duration_ms} ms"


# --- statuses and retries ------------------------------------------------------------------


async def test_404_is_http_4xx_after_one_attempt(
    runner: HttpRunner, server: TestServer, context: RequestContext
) -> None:
    results, reported = await run(runner, target(server.make_url("/status/404")), context)

    (result,) = results
    assert reported == results
    assert (result.status, result.error_type, result.status_code) == (
        RunStatus.FAILED,
        ErrorType.HTTP_4XX,
        404,
    )
    assert result.error == "HTTP 404 Not Found (expected 2xx)"
    assert result.output_tail == ("status page",)
    assert len(seen(server).hits("/status/404")) == 1


async def test_an_expected_status_outside_2xx_counts_as_success(
    runner: HttpRunner, server: TestServer, context: RequestContext
) -> None:
    probe = target(server.make_url("/status/404"), expected_status=(404, 410))
    (result,) = (await run(runner, probe, context))[0]
    assert result.status is RunStatus.SUCCEEDED

    probe = target(server.make_url("/json"), expected_status=(201,))
    (result,) = (await run(runner, probe, context))[0]
    assert (result.error_type, result.error) == (
        ErrorType.ASSERTION,
        "HTTP 200 OK (expected 201)",
    )


async def test_500_then_200_takes_two_attempts_and_the_second_succeeds(
    runner: HttpRunner, server: TestServer, context: RequestContext, logs: list[EventDict]
) -> None:
    results, reported = await run(runner, target(server.make_url("/fail-first/500")), context)

    assert reported == results
    assert [(r.attempt, r.status, r.status_code, r.error_type) for r in results] == [
        (1, RunStatus.FAILED, 500, ErrorType.HTTP_5XX),
        (2, RunStatus.SUCCEEDED, 200, None),
    ]
    assert results[1].output_tail == ("recovered",)
    assert len(seen(server).hits("/fail-first/500")) == 2
    (scheduled,) = events(logs, "http_retry_scheduled")
    assert scheduled["attempt"] == 1 and scheduled["delay_seconds"] == 0.01


async def test_defer_last_hands_over_only_the_attempts_a_retry_followed(
    runner: HttpRunner, server: TestServer, context: RequestContext, logs: list[EventDict]
) -> None:
    """The caller records the last attempt with the run's end, and says how it went in its
    own line: that attempt's line is debug; the earlier ones are info, as they happen."""
    reported: list[StepResult] = []
    results = await runner.run_target(
        target(server.make_url("/status/503")),
        context=context,
        on_attempt=reported.append,
        defer_last=True,
    )
    assert [r.attempt for r in results] == [1, 2, 3]
    assert reported == results[:2]
    lines = events(logs, "http_attempt_finished")
    assert [(e["attempt"], e["log_level"]) for e in lines] == [
        (1, "info"),
        (2, "info"),
        (3, "debug"),
    ]
    assert lines[2]["status_code"] == 503 and lines[2]["error_type"] == "http_5xx"


async def test_without_defer_last_every_attempt_is_logged_at_info(
    runner: HttpRunner, server: TestServer, context: RequestContext, logs: list[EventDict]
) -> None:
    await run(runner, target(server.make_url("/status/503")), context)
    levels = [e["log_level"] for e in events(logs, "http_attempt_finished")]
    assert levels == ["info"] * 3


async def test_408_is_retried(
    runner: HttpRunner, server: TestServer, context: RequestContext
) -> None:
    results, _ = await run(runner, target(server.make_url("/fail-first/408")), context)
    assert [(r.status_code, r.status) for r in results] == [
        (408, RunStatus.FAILED),
        (200, RunStatus.SUCCEEDED),
    ]


async def test_a_failure_on_every_attempt_stops_at_max_attempts(
    runner: HttpRunner, server: TestServer, context: RequestContext
) -> None:
    results, _ = await run(runner, target(server.make_url("/status/503")), context)
    assert [(r.attempt, r.error_type) for r in results] == [
        (1, ErrorType.HTTP_5XX),
        (2, ErrorType.HTTP_5XX),
        (3, ErrorType.HTTP_5XX),
    ]


def gap(server: TestServer, path: str) -> float:
    first, second = seen(server).hits(path)
    return second - first


async def test_429_retry_after_in_seconds_is_honoured(
    runner: HttpRunner, server: TestServer, context: RequestContext, logs: list[EventDict]
) -> None:
    results, _ = await run(runner, target(server.make_url("/retry-after?seconds=1")), context)

    assert [(r.status_code, r.error_type) for r in results] == [
        (429, ErrorType.HTTP_4XX),
        (200, None),
    ]
    assert 0.9 <= gap(server, "/retry-after") < 3.0  # the backoff alone would be 0.01 s
    (scheduled,) = events(logs, "http_retry_scheduled")
    assert scheduled["retry_after"] == 1.0


async def test_429_retry_after_as_an_http_date_is_honoured(
    runner: HttpRunner, server: TestServer, context: RequestContext
) -> None:
    # An HTTP date has whole seconds: "2 s from now" is between 1 and 2 s away.
    results, _ = await run(runner, target(server.make_url("/retry-after?date_in=2")), context)

    assert [r.status_code for r in results] == [429, 200]
    assert 0.9 <= gap(server, "/retry-after") < 3.0


async def test_retry_after_is_capped_by_retry_after_max_seconds(
    runner: HttpRunner, server: TestServer, context: RequestContext
) -> None:
    capped = RetryPolicy(
        max_attempts=2, backoff_base_seconds=0.01, retry_after_max_seconds=0.3, jitter=False
    )
    probe = target(server.make_url("/retry-after?seconds=60"), retry=capped)
    results, _ = await run(runner, probe, context)

    assert [r.status_code for r in results] == [429, 200]
    assert 0.28 <= gap(server, "/retry-after") < 2.0


# --- timeouts and limits -------------------------------------------------------------------


async def test_a_slow_endpoint_beyond_the_timeout_times_out_on_every_attempt(
    runner: HttpRunner, server: TestServer, context: RequestContext
) -> None:
    probe = target(
        server.make_url("/slow?seconds=5"),
        timeout_seconds=0.2,
        retry=RetryPolicy(max_attempts=2, backoff_base_seconds=0.01, jitter=False),
    )
    results, _ = await run(runner, probe, context)

    assert [(r.status, r.error_type, r.status_code) for r in results] == [
        (RunStatus.FAILED, ErrorType.TIMEOUT, None),
        (RunStatus.FAILED, ErrorType.TIMEOUT, None),
    ]
    assert all(180 <= r.duration_ms < 1000 for r in results)
    assert results[0].error == "timed out after 0.2 s"


async def test_a_body_that_trickles_past_the_timeout_times_out_with_its_status_kept(
    runner: HttpRunner, server: TestServer, context: RequestContext
) -> None:
    probe = target(
        server.make_url("/slow-body"), timeout_seconds=0.3, retry=RetryPolicy(max_attempts=1)
    )
    (result,) = (await run(runner, probe, context))[0]
    assert (result.error_type, result.status_code) == (ErrorType.TIMEOUT, 200)
    assert result.response_size is not None and result.response_size >= 1
    assert result.output_tail and set(result.output_tail[0]) == {"."}


async def test_a_hanging_endpoint_times_out_and_its_connection_is_dropped(
    runner: HttpRunner, server: TestServer, context: RequestContext
) -> None:
    probe = target(server.make_url("/hang"), timeout_seconds=0.2, retry=RetryPolicy(max_attempts=1))
    (result,) = (await run(runner, probe, context))[0]

    assert result.error_type is ErrorType.TIMEOUT
    # The server sees its client go away: the connection was closed, not pooled or leaked.
    await asyncio.wait_for(seen(server).hang_dropped.wait(), 5)


async def test_a_large_body_is_counted_without_being_held_in_memory(
    runner: HttpRunner, server: TestServer, context: RequestContext
) -> None:
    size = 64 * MIB
    probe = target(
        server.make_url(f"/huge?size={size}"), assertions=(Assertion("body_contains", "xxx"),)
    )
    tracemalloc.start()
    try:
        (result,) = (await run(runner, probe, context))[0]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert (result.status, result.response_size) == (RunStatus.SUCCEEDED, size)
    assert result.output_tail == ("x" * EXCERPT_BYTES,)
    assert peak < 8 * MIB, f"reading a {size}-byte body peaked at {peak} bytes"


async def test_an_endless_body_is_cut_at_the_cap_and_marked_truncated(
    server: TestServer, context: RequestContext
) -> None:
    cap = 2 * MIB
    async with HttpRunner(max_response_bytes=cap) as capped:
        (result,) = (await run(capped, target(server.make_url("/huge")), context))[0]

    assert result.status is RunStatus.SUCCEEDED
    assert result.response_size is not None and cap <= result.response_size < cap + MIB
    assert result.output_tail == (
        "x" * EXCERPT_BYTES,
        TRUNCATED_NOTE.format(size=result.response_size),
    )


async def test_a_200_mb_body_stops_at_the_default_cap_in_bounded_memory(
    runner: HttpRunner, server: TestServer, context: RequestContext
) -> None:
    probe = target(server.make_url(f"/huge?size={200 * MIB}"))
    tracemalloc.start()
    try:
        (result,) = (await run(runner, probe, context))[0]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.status is RunStatus.SUCCEEDED
    size = result.response_size
    assert size is not None and MAX_RESPONSE_BYTES <= size < MAX_RESPONSE_BYTES + MIB
    assert result.output_tail[1] == TRUNCATED_NOTE.format(size=size)
    assert peak < 8 * MIB, f"reading {size} bytes peaked at {peak} bytes"


# --- transport errors ----------------------------------------------------------------------


async def test_connection_refused_is_a_connection_error_and_is_retried(
    runner: HttpRunner, context: RequestContext
) -> None:
    port = closed_port()
    probe = target(
        f"http://127.0.0.1:{port}/", retry=RetryPolicy(max_attempts=2, backoff_base_seconds=0.01)
    )
    results, _ = await run(runner, probe, context)

    assert [(r.error_type, r.status_code, r.response_size) for r in results] == [
        (ErrorType.CONNECTION, None, None),
        (ErrorType.CONNECTION, None, None),
    ]
    assert results[0].error == f"cannot connect to 127.0.0.1:{port}: Connection refused"


class FailingResolver(AbstractResolver):
    """A resolver that knows no name: DNS failures without a packet leaving the machine."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def close(self) -> None:
        pass


async def test_a_name_that_does_not_resolve_is_a_dns_error(context: RequestContext) -> None:
    resolver = FailingResolver()
    probe = target(
        "http://status.example.invalid/health",
        retry=RetryPolicy(max_attempts=2, backoff_base_seconds=0.01),
    )
    async with HttpRunner(resolver=resolver) as resolving:
        results, _ = await run(resolving, probe, context)

    assert [r.error_type for r in results] == [ErrorType.DNS, ErrorType.DNS]  # retried
    assert results[0].error == (
        "cannot resolve host 'status.example.invalid': Name or service not known"
    )
    assert resolver.asked == ["status.example.invalid"] * 2


# --- TLS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no authority signed (made with `openssl req`)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("neither the cryptography package nor the openssl command is available")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def tls_server(aiohttp_server: ServerFactory, self_signed: tuple[Path, Path]) -> TestServer:
    cert, key = self_signed
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return await aiohttp_server(target_app(), ssl=context)


async def test_a_self_signed_certificate_is_an_ssl_error_and_not_retried(
    runner: HttpRunner, tls_server: TestServer, context: RequestContext
) -> None:
    url = tls_server.make_url("/json")
    assert url.scheme == "https"
    results, _ = await run(runner, target(url), context)

    (result,) = results
    assert result.error_type is ErrorType.SSL
    assert (result.error or "").startswith("TLS certificate of 127.0.0.1 rejected: ")
    assert "self-signed" in (result.error or "") or "self signed" in (result.error or "")


async def test_verify_tls_off_accepts_a_self_signed_certificate(
    runner: HttpRunner, tls_server: TestServer, context: RequestContext
) -> None:
    probe = target(tls_server.make_url("/json"), verify_tls=False)
    (result,) = (await run(runner, probe, context))[0]
    assert (result.status, result.status_code) == (RunStatus.SUCCEEDED, 200)


# --- request building: templates and secrets -----------------------------------------------


async def test_the_body_template_sees_the_run_context_and_the_attempt(
    runner: HttpRunner, server: TestServer, context: RequestContext
) -> None:
    template = (
        '{"run": "{{ run_id }}", "schedule": "{{ schedule_id }}", "for": "{{ scheduled_for }}",'
        ' "attempt": {{ attempt }}, "now": "{{ now }}"}'
    )
    probe = target(
        server.make_url("/echo?fail_first=1"),
        method="POST",
        headers={"Content-Type": "application/json"},
        body_template=template,
    )
    before = datetime.now(UTC)
    results, _ = await run(runner, probe, context)

    assert [r.status for r in results] == [RunStatus.FAILED, RunStatus.SUCCEEDED]
    bodies = [json.loads(r["body"]) for r in seen(server).requests]
    assert [b["attempt"] for b in bodies] == [1, 2]
    for body in bodies:
        assert (body["run"], body["schedule"]) == ("run-1", "sched-1")
        assert body["for"] == "2024-05-06T07:08:09+00:00"
        assert before <= datetime.fromisoformat(body["now"]) <= datetime.now(UTC)
    assert seen(server).requests[0]["headers"]["Content-Type"] == "application/json"
    assert seen(server).requests[0]["method"] == "POST"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ run_id ", "body template, line 1: unexpected end of template"),
        ("{{ no_such_variable }}", "body template: 'no_such_variable' is undefined"),
        ("{{ run_id.__class__.__mro__ }}", "body template: access to attribute '__class__'"),
        ("{% set l = [1] %}{{ l.append(2) }}", "body template: access to attribute 'append'"),
        ("{{ 1 / 0 }}", "body template: ZeroDivisionError: division by zero"),
        ("{{ 'x' * 10**9 }}", "body template: a repeated value of more than 1048576 items"),
        ("{{ 7 ** 100000 }}", "body template: a power of more than 4096 bits is refused"),
    ],
)
async def test_a_broken_or_unsafe_template_fails_without_sending_or_retrying(
    runner: HttpRunner,
    server: TestServer,
    context: RequestContext,
    template: str,
    message: str,
) -> None:
    probe = target(server.make_url("/echo"), method="POST", body_template=template)
    results, reported = await run(runner, probe, context)

    (result,) = results
    assert reported == results
    assert (result.status, result.error_type) == (RunStatus.FAILED, ErrorType.UNKNOWN)
    assert (result.error or "").startswith(message), result.error
    assert seen(server).arrivals == []


async def test_a_target_the_store_set_aside_fails_without_sending_or_retrying(
    runner: HttpRunner, server: TestServer, context: RequestContext
) -> None:
    """A target read back with a status_reason (its row breaks the rules) is never sent."""
    probe = dataclasses.replace(
        target(server.make_url("/echo")), status_reason="timeout_seconds: too big"
    )
    results, _ = await run(runner, probe, context)
    (result,) = results
    assert (result.status, result.error_type) == (RunStatus.FAILED, ErrorType.UNKNOWN)
    assert result.error == "the target can't be used: timeout_seconds: too big"
    assert seen(server).arrivals == []


async def test_env_secrets_reach_the_server_but_never_the_logs_the_results_or_redact(
    runner: HttpRunner,
    server: TestServer,
    context: RequestContext,
    logs: list[EventDict],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRONMGR_TEST_TOKEN", TOKEN)
    monkeypatch.setenv("CRONMGR_TEST_TRACE", TRACE)
    headers = {
        "Authorization": "Bearer ${env:CRONMGR_TEST_TOKEN}",
        "X-Trace": "t-${env:CRONMGR_TEST_TRACE}",
    }
    probe = target(
        str(server.make_url("/echo")) + "?token=${env:CRONMGR_TEST_TOKEN}&plain=1",
        method="POST",
        headers=headers,
        body_template='{"secret": "${env:CRONMGR_TEST_TOKEN}", "run": "{{ run_id }}"}',
    )
    (result,) = (await run(runner, probe, context))[0]

    (received,) = seen(server).requests
    assert received["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert received["headers"]["X-Trace"] == f"t-{TRACE}"
    assert received["path_qs"] == f"/echo?token={TOKEN}&plain=1"
    assert json.loads(received["body"]) == {"secret": TOKEN, "run": "run-1"}

    assert result.status is RunStatus.SUCCEEDED
    # The server echoed everything back; the stored excerpt shows references instead.
    excerpt = result.output_tail[0]
    assert TOKEN not in excerpt and TRACE not in excerpt
    assert "Bearer ${env:CRONMGR_TEST_TOKEN}" in excerpt
    assert TOKEN not in repr(logs) and TRACE not in repr(logs)
    started, finished = (
        events(logs, "http_attempt_started")[0],
        events(logs, "http_attempt_finished")[0],
    )
    assert started["url"] == probe.url
    assert {k: finished[k] for k in ("run_id", "target", "attempt", "method", "status_code")} == {
        "run_id": "run-1",
        "target": "probe",
        "attempt": 1,
        "method": "POST",
        "status_code": 200,
    }
    assert {"duration_ms", "error_type", "url"} <= finished.keys()
    assert redact(headers) == {"Authorization": "***", "X-Trace": "t-${env:CRONMGR_TEST_TRACE}"}


async def test_each_run_reads_secrets_anew_and_an_edited_target_sends_its_new_request(
    runner: HttpRunner,
    server: TestServer,
    context: RequestContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A static target's request is built once per definition: the same Target object
    # twice, then its edit; a target with a reference is built at every run.
    static = target(server.make_url("/echo"), headers={"X-Version": "1"})
    edited = dataclasses.replace(static, headers={"X-Version": "2"}, method="PUT")
    secret = target(server.make_url("/echo"), headers={"X-Token": "${env:CRONMGR_TEST_TOKEN}"})
    monkeypatch.setenv("CRONMGR_TEST_TOKEN", "first")
    for probe in (static, static, edited, secret):
        await run(runner, probe, context)
    monkeypatch.setenv("CRONMGR_TEST_TOKEN", "second")
    await run(runner, secret, context)

    requests = seen(server).requests
    assert [(r["method"], r["headers"].get("X-Version")) for r in requests[:3]] == [
        ("GET", "1"),
        ("GET", "1"),
        ("PUT", "2"),
    ]
    assert [r["headers"]["X-Token"] for r in requests[3:]] == ["first", "second"]


async def test_a_missing_env_variable_fails_clearly_without_sending(
    runner: HttpRunner,
    server: TestServer,
    context: RequestContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CRONMGR_TEST_ABSENT", raising=False)
    probe = target(
        server.make_url("/echo"), headers={"Authorization": "Bearer ${env:CRONMGR_TEST_ABSENT}"}
    )
    results, _ = await run(runner, probe, context)

    (result,) = results
    assert (result.status, result.error_type) == (RunStatus.FAILED, ErrorType.UNKNOWN)
    assert result.error == (
        "header 'Authorization' references environment variable CRONMGR_TEST_ABSENT,"
        " which is not set in the daemon's environment"
    )
    assert seen(server).arrivals == []


def test_redact_masks_credential_headers_url_passwords_and_token_parameters() -> None:
    assert redact(
        {
            "authorization": "Basic abc",
            "Cookie": "a=b",
            "X-API-Key": "k",
            "Proxy-Authorization": "p",
        }
    ) == {"authorization": "***", "Cookie": "***", "X-API-Key": "***", "Proxy-Authorization": "***"}
    assert redact("https://user:hunter2@example.com/x?api_key=abc&page=2") == (
        "https://user:***@example.com/x?api_key=***&page=2"
    )
    assert (
        redact("https://example.com/?token=${env:TOKEN}")
        == "https://example.com/?token=${env:TOKEN}"
    )


def test_a_resolver_scrubs_what_it_resolved_from_any_text() -> None:
    secrets = SecretResolver({"API_TOKEN": TOKEN, "SHORT": "ab"})
    assert secrets.resolve("Bearer ${env:API_TOKEN} ${env:SHORT}", "x") == f"Bearer {TOKEN} ab"
    assert redact(f"echo: {TOKEN}!", secrets) == "echo: ${env:API_TOKEN}!"
    assert redact({"X-Echo": TOKEN}, secrets) == {"X-Echo": "${env:API_TOKEN}"}
    assert secrets.scrub("about") == "about"  # values under 4 characters are left alone


# --- connection pooling -------------------------------------------------------------------


async def test_sequential_requests_to_one_target_reuse_one_pooled_connection(
    runner: HttpRunner, server: TestServer, context: RequestContext
) -> None:
    """The runner's one connection pool keeps the connection alive: the server sees the second
    request arrive from the same client port as the first."""
    probe = target(server.make_url("/peer"))
    for _ in range(2):
        (result,) = (await run(runner, probe, context))[0]
        assert (result.status, result.status_code) == (RunStatus.SUCCEEDED, 200)
    first, second = seen(server).peers
    assert first == second


# --- redirects and cancellation ------------------------------------------------------------


async def test_redirects_are_followed_when_asked(
    runner: HttpRunner, server: TestServer, context: RequestContext
) -> None:
    (result,) = (await run(runner, target(server.make_url("/redirect")), context))[0]
    assert (result.status, result.status_code) == (RunStatus.SUCCEEDED, 200)
    assert seen(server).hits("/json")


async def test_a_redirect_not_followed_is_an_unexpected_status_unless_listed(
    runner: HttpRunner, server: TestServer, context: RequestContext
) -> None:
    probe = target(server.make_url("/redirect"), follow_redirects=False)
    results, _ = await run(runner, probe, context)
    (result,) = results  # not retried
    assert (result.status_code, result.error_type) == (302, ErrorType.ASSERTION)
    assert result.error == "HTTP 302 Found (expected 2xx)"

    listed = target(server.make_url("/redirect"), follow_redirects=False, expected_status=(302,))
    (result,) = (await run(runner, listed, context))[0]
    assert (result.status, result.status_code) == (RunStatus.SUCCEEDED, 302)
    assert not seen(server).hits("/json")


async def test_cancelling_a_run_mid_request_records_the_attempt_as_cancelled(
    runner: HttpRunner, server: TestServer, context: RequestContext, logs: list[EventDict]
) -> None:
    reported: list[StepResult] = []
    probe = target(server.make_url("/hang"), timeout_seconds=30)
    task = asyncio.create_task(
        runner.run_target(probe, context=context, on_attempt=reported.append)
    )
    await asyncio.wait_for(seen(server).hang_started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    (result,) = reported
    assert (result.status, result.error_type, result.attempt) == (
        RunStatus.CANCELLED,
        ErrorType.CANCELLED,
        1,
    )
    assert result.error == "cancelled while the request was in flight"
    assert events(logs, "http_attempt_finished")[0]["status"] == "cancelled"
    await asyncio.wait_for(seen(server).hang_dropped.wait(), 5)


async def test_cancelling_during_the_wait_between_attempts_stops_the_retries(
    runner: HttpRunner, server: TestServer, context: RequestContext
) -> None:
    reported: list[StepResult] = []
    patient = RetryPolicy(max_attempts=3, backoff_base_seconds=30, jitter=False)
    probe = target(server.make_url("/status/503"), retry=patient)
    task = asyncio.create_task(
        runner.run_target(probe, context=context, on_attempt=reported.append)
    )
    while not reported:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [r.status_code for r in reported] == [503]
    assert len(seen(server).hits("/status/503")) == 1


async def test_the_runner_must_be_opened_before_use(context: RequestContext) -> None:
    idle = HttpRunner()
    with pytest.raises(RuntimeError, match="async with"):
        await idle.run_target(target("http://127.0.0.1:9/"), context=context)
