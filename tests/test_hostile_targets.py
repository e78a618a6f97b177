"""Targets that misbehave on purpose, against the lean client through HttpRunner: endless
heads, too many or too long headers, endless trailers, a gigabyte body, garbage, a hang,
a close mid-body. Each is a classified attempt, the sender is cut off early, and the
memory of the process reading it stays flat.

The gigabytes are generated lazily, 64 KiB at a time, and only as fast as the client
reads them: a test that passes never produces more than the client took.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
import psutil
import pytest
from support import Controller, add_target_schedule, until

from cronmgr.core import pidfile
from cronmgr.core.models import (
    ErrorType,
    FailurePolicy,
    RetryPolicy,
    Run,
    RunStatus,
    StepResult,
    Target,
    utcnow,
)
from cronmgr.runners.http.attempt import TRUNCATED_NOTE
from cronmgr.runners.http.request import RequestContext
from cronmgr.runners.http.runner import HttpRunner
from cronmgr.runners.http.wire.head import MAX_HEAD_BYTES, MAX_HEADERS, MAX_LINE_BYTES
from cronmgr.store import open_store

GIB = 1 << 30
PIECE = 64 * 1024
FLAT_BYTES = 32 * 1024 * 1024
"""Most the RSS may grow while a hostile answer is read: flat, give or take the allocator."""
CUT_OFF_BYTES = 16 * 1024 * 1024
"""Most a hostile header sender gets written before the client drops it (socket buffers)."""
OK_HEAD = b"HTTP/1.1 200 OK\r\n"
CHUNKED = OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"

Script = Callable[[], Iterable[bytes]]
"""What a hostile server writes after reading the request head, piece by piece."""


@dataclass
class Hostile:
    """A server writing its script to every connection, then closing (or hanging)."""

    port: int = 0
    sent: list[int] = field(default_factory=list)
    """Bytes written, per connection that ended."""

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def endless(prefix: bytes, filler: bytes = b"a", total: int = GIB) -> Iterator[bytes]:
    """`prefix`, then `filler` repeated up to `total` bytes, made a piece at a time."""
    yield prefix
    piece = (filler * (PIECE // len(filler) + 1))[:PIECE]
    for _ in range((total - len(prefix)) // PIECE):
        yield piece


@asynccontextmanager
async def hostile_server(script: Script, *, hang: bool = False) -> AsyncIterator[Hostile]:
    hostile = Hostile()
    handlers: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        sent = 0
        try:
            await reader.readuntil(b"\r\n\r\n")
            for piece in script():
                writer.write(piece)
                sent += len(piece)
                await writer.drain()  # no faster than the client reads
            if hang:
                await reader.read()  # until the client gives up and closes
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            hostile.sent.append(sent)
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    hostile.port = server.sockets[0].getsockname()[1]
    async with server:
        yield hostile
        # The client dropped the connection; the sender notices at its next write.
        await asyncio.wait(handlers, timeout=10.0)


@dataclass
class Peak:
    """The RSS of a process when measuring began, and the most seen since."""

    base: int
    most: int = 0

    @property
    def growth(self) -> int:
        return self.most - self.base


@asynccontextmanager
async def peak_rss(pid: int | None = None, limit_seconds: float = 60.0) -> AsyncIterator[Peak]:
    """Sample the RSS of `pid` (this process by default) every 10 ms while inside."""
    process = psutil.Process(pid)
    peak = Peak(base=process.memory_info().rss)
    peak.most = peak.base

    async def sample() -> None:
        for _ in range(int(limit_seconds * 100)):
            peak.most = max(peak.most, process.memory_info().rss)
            await asyncio.sleep(0.01)

    sampler = asyncio.ensure_future(sample())
    try:
        yield peak
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        peak.most = max(peak.most, process.memory_info().rss)


async def attempt(url: str, timeout: float = 5.0) -> StepResult:
    """One attempt at `url`, through a fresh HttpRunner (the lean client)."""
    target = Target(
        id="t", name="t", url=url, timeout_seconds=timeout, retry=RetryPolicy(max_attempts=1)
    )
    context = RequestContext(run_id="r", schedule_id=None, scheduled_for=utcnow())
    async with HttpRunner() as runner:
        (result,) = await runner.run_target(target, context=context)
    return result


def many(line: bytes, count: int) -> bytes:
    return b"".join(line.replace(b"N", str(n).encode()) for n in range(count))


REFUSED = "response refused, connection dropped: "
HEADS: dict[str, tuple[Script, str]] = {
    "a header without end": (
        lambda: endless(OK_HEAD + b"X-Big: "),
        f"response head longer than {MAX_HEAD_BYTES} bytes",
    ),
    "a status line without end": (
        lambda: endless(b"HTTP/1.1 200 ", b"O"),
        f"status line longer than {MAX_LINE_BYTES} bytes",
    ),
    "a long header line": (
        lambda: [OK_HEAD + b"X-Long: " + b"a" * MAX_LINE_BYTES + b"\r\n\r\n"],
        f"a header line longer than {MAX_LINE_BYTES} bytes",
    ),
    "too many headers": (
        lambda: [OK_HEAD + many(b"X-N: n\r\n", MAX_HEADERS + 1) + b"\r\n"],
        f"more than {MAX_HEADERS} header lines",
    ),
    "too large a head": (
        lambda: [OK_HEAD + many(b"X-N: " + b"a" * 1000 + b"\r\n", 80) + b"\r\n"],
        f"response head longer than {MAX_HEAD_BYTES} bytes",
    ),
    "endless blank lines": (
        lambda: endless(b"\r\n", b"\r\n"),
        f"response head longer than {MAX_HEAD_BYTES} bytes",
    ),
    "endless trailers": (
        lambda: endless(CHUNKED + b"2\r\nok\r\n0\r\nX-Trailer: "),
        f"more than {MAX_HEAD_BYTES} bytes of chunk framing or trailers",
    ),
}


@pytest.mark.parametrize("case", HEADS)
async def test_a_head_over_a_limit_is_a_connection_failure_read_in_flat_memory(
    case: str,
) -> None:
    """A head (or trailers) over a limit fails the attempt as `connection`, names the
    limit, and drops the connection: the sender is cut off long before its gigabyte."""
    script, reason = HEADS[case]
    async with hostile_server(script) as hostile, peak_rss() as peak:
        result = await attempt(hostile.url())
    assert (result.status, result.error_type) == (RunStatus.FAILED, ErrorType.CONNECTION)
    assert result.error == REFUSED + reason
    assert peak.growth < FLAT_BYTES, f"RSS grew {peak.growth >> 20} MiB"
    assert max(hostile.sent) < CUT_OFF_BYTES


async def test_a_head_at_every_limit_is_read() -> None:
    """The limits are inclusive: a status line and a header line of MAX_LINE_BYTES each,
    MAX_HEADERS headers in all, the head just under MAX_HEAD_BYTES."""
    status = b"HTTP/1.1 200 " + b"O" * (MAX_LINE_BYTES - 13) + b"\r\n"
    longest = b"X-L: " + b"a" * (MAX_LINE_BYTES - 5) + b"\r\n"
    filler = b"X-N: " + b"a" * 400 + b"\r\n"
    rest = many(filler, MAX_HEADERS - 2)
    head = status + longest + b"Content-Length: 2\r\n" + rest + b"\r\n"
    assert len(head) < MAX_HEAD_BYTES
    async with hostile_server(lambda: [head + b"ok"]) as hostile:
        result = await attempt(hostile.url())
    assert (result.status, result.status_code, result.output_tail) == (
        RunStatus.SUCCEEDED,
        200,
        ("ok",),
    )


async def test_a_gigabyte_body_is_cut_at_the_response_cap_in_flat_memory() -> None:
    """The body is counted, its first bytes kept, and reading stops at the cap (100 MiB):
    the attempt is judged on what was kept and says the rest was not read."""
    size = GIB
    async with (
        hostile_server(
            lambda: endless(OK_HEAD + f"Content-Length: {size}\r\n\r\n".encode())
        ) as hostile,
        peak_rss() as peak,
    ):
        result = await attempt(hostile.url(), timeout=30.0)
    assert (result.status, result.status_code) == (RunStatus.SUCCEEDED, 200)
    assert result.output_tail[-1] == TRUNCATED_NOTE.format(size=result.response_size)
    assert peak.growth < FLAT_BYTES, f"RSS grew {peak.growth >> 20} MiB"
    assert max(hostile.sent) < size // 4


BROKEN: dict[str, tuple[Script, bool, ErrorType, str]] = {
    "garbage instead of HTTP": (
        lambda: endless(b"\x00\xff\x13garbage", b"\x00\xff\x13"),
        False,
        ErrorType.CONNECTION,
        "the answer is not HTTP: Expected HTTP/",
    ),
    "no answer": (lambda: [], True, ErrorType.TIMEOUT, "timed out after 0.5 s"),
    "half a head, then nothing": (
        lambda: [OK_HEAD + b"X-Half: b"],
        True,
        ErrorType.TIMEOUT,
        "timed out after 0.5 s",
    ),
    "a close mid-body": (
        lambda: [OK_HEAD + b"Content-Length: 1000\r\n\r\n" + b"a" * 10],
        False,
        ErrorType.CONNECTION,
        "the server closed the connection before a complete response",
    ),
    "a close mid-chunk": (
        lambda: [CHUNKED + b"100\r\n" + b"a" * 10],
        False,
        ErrorType.CONNECTION,
        "the server closed the connection before a complete response",
    ),
}


@pytest.mark.parametrize("case", BROKEN)
async def test_a_broken_answer_is_classified_in_flat_memory(case: str) -> None:
    """Garbage, silence and a close mid-body each fail the attempt with their class."""
    script, hang, error_type, message = BROKEN[case]
    async with hostile_server(script, hang=hang) as hostile, peak_rss() as peak:
        result = await attempt(hostile.url(), timeout=0.5)
    assert (result.status, result.error_type) == (RunStatus.FAILED, error_type)
    assert (result.error or "").startswith(message), result.error
    assert peak.growth < FLAT_BYTES, f"RSS grew {peak.growth >> 20} MiB"


# --- through a real daemon ------------------------------------------------------------------


async def start_daemon(controller: Controller) -> int:
    """Start the daemon through the API; its pid."""
    async with (
        aiohttp.ClientSession(controller.url, headers=controller.headers) as http,
        http.post("/api/cron/start", json={"interval_seconds": 600, "pipeline": "quick"}) as r,
    ):
        assert r.status == 200, await r.text()
    found = pidfile.inspect(controller.settings.pid_file)
    assert found.record is not None
    return found.record.pid


async def every_second(controller: Controller, url: str) -> str:
    """Store a target and a 1 s interval schedule for it, tell the daemon; the schedule id."""
    # failure_policy none: the hostile one keeps failing, and running.
    schedule = await add_target_schedule(
        controller, url, "", target={"timeout_seconds": 2.0}, failure_policy=FailurePolicy.NONE
    )
    return schedule.id


async def finished_runs(controller: Controller, schedule_id: str) -> list[Run]:
    """The schedule's finished runs with their steps, oldest first."""
    async with open_store(controller.settings.store_url) as store:
        runs = await store.list_runs(schedule_id=schedule_id, limit=500)
        found = [await store.get_run(r.id) for r in reversed(runs)]
    return [run for run in found if run.status.finished]


async def test_a_hostile_target_leaves_a_1_s_schedule_its_slots_and_the_daemon_its_memory(
    controller: Controller,
) -> None:
    """A target answering with a gigabyte header every second, beside a 1 s schedule of a
    plain target: the plain one runs every slot on time, the hostile one fails each run
    as `connection`, and the daemon's RSS stays flat."""
    plain = [OK_HEAD + b"Content-Length: 2\r\nConnection: close\r\n\r\nok"]
    async with (
        hostile_server(lambda: endless(OK_HEAD + b"X-Big: ")) as hostile,
        hostile_server(lambda: plain) as ok,
    ):
        pid = await start_daemon(controller)
        bad_id = await every_second(controller, hostile.url())
        await until(lambda: finished_runs(controller, bad_id), what="a first hostile run")
        ok_id = await every_second(controller, ok.url())
        async with peak_rss(pid) as peak:
            await until(lambda: _at_least(finished_runs(controller, ok_id), 5), what="5 plain runs")
        bad = await finished_runs(controller, bad_id)
        good = await finished_runs(controller, ok_id)
    assert [run.status for run in good] == [RunStatus.SUCCEEDED] * len(good)
    slots = [run.scheduled_for for run in good]
    assert {(b - a).total_seconds() for a, b in itertools.pairwise(slots)} == {1.0}
    assert all(run.started_at and run.started_at - run.scheduled_for < ON_TIME for run in good)
    assert len(bad) >= len(good)
    for run in bad:
        (step,) = run.steps
        assert (step.error_type, step.error) == (
            ErrorType.CONNECTION,
            f"{REFUSED}response head longer than {MAX_HEAD_BYTES} bytes",
        )
    assert peak.growth < FLAT_BYTES, f"the daemon's RSS grew {peak.growth >> 20} MiB"
    assert max(hostile.sent) < CUT_OFF_BYTES


ON_TIME = timedelta(seconds=0.5)


async def _at_least(runs: Awaitable[list[Run]], count: int) -> bool:
    return len(await runs) >= count
