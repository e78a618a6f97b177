"""Following the log through the API: filters, cursors across rotation and clear, SSE.

A real controller process serves `GET /api/v1/logs` and `/api/v1/logs/stream`; the log it
reads is written by this test process through the daemon's own logging set-up
(`configure_logging(..., to_file=True)`), so rotation is the real one, at 4 KiB.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import aiohttp
import orjson
import pytest
import structlog
from support import Controller

from cronmgr import AsyncClient, Client
from cronmgr.core.errors import ControllerUnreachable
from cronmgr.observability.log_cursor import Cursor
from cronmgr.observability.log_pages import PAGE_MAX_BYTES
from cronmgr.observability.logs import configure_logging

BACKUPS = 5
PAD = "p" * 100  # about 190 bytes a line: some 20 lines fill a 4 KiB file
Page = dict[str, Any]


@pytest.fixture
def controller(controller_factory: Callable[..., Controller]) -> Controller:
    """A controller whose log rotates at 4 KiB and keeps five backups."""
    return controller_factory(log_max_bytes=4096, log_backup_count=BACKUPS, log_level="debug")


@pytest.fixture
def log(controller: Controller) -> Iterator[Any]:
    """The daemon's file logging, set up in this process on the controller's log file."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging(controller.settings, to_file=True)
    yield structlog.get_logger()
    configure_logging(controller.settings, to_file=False)  # closes the file
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
async def http(controller: Controller) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP session with the controller's token."""
    async with aiohttp.ClientSession(controller.url, headers=controller.headers) as session:
        yield session


def write_numbered(log: Any, numbers: range) -> None:
    """One `numbered` line per number, through the rotating file sink."""
    for n in numbers:
        log.info("numbered", n=n, pad=PAD)


def append_raw(controller: Controller, *records: dict[str, Any]) -> None:
    """Append JSON lines to the log directly, as a writer that never rotates would."""
    path = controller.settings.log_file
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as fh:
        fh.writelines(orjson.dumps(record) + b"\n" for record in records)


def numbers_of(lines: list[str]) -> list[int]:
    return [orjson.loads(line)["n"] for line in lines]


def log_files(controller: Controller) -> list[Path]:
    """The backups, oldest first, then the live log."""
    path = controller.settings.log_file
    backups = sorted(path.parent.glob(path.name + ".*"), key=lambda p: -int(p.suffix[1:]))
    return [*backups, path]


async def get_page(http: aiohttp.ClientSession, **params: Any) -> Page:
    async with http.get("/api/v1/logs", params=params) as resp:
        assert resp.status == 200, await resp.text()
        body: Page = await resp.json()
        return body


async def start_cursor(http: aiohttp.ClientSession) -> str:
    """The cursor at the log's end now."""
    cursor: str = (await get_page(http, lines=0))["cursor"]
    return cursor


async def read_all(
    http: aiohttp.ClientSession, cursor: str, **filters: Any
) -> tuple[list[str], list[Page]]:
    """Every line after `cursor`, page after page while `more` says so; and the pages."""
    pages: list[Page] = []
    lines: list[str] = []
    while True:
        page = await get_page(http, cursor=cursor, **filters)
        pages.append(page)
        lines += page["lines"]
        cursor = page["cursor"]
        if not page["more"]:
            return lines, pages


# --- pages ------------------------------------------------------------------------------


async def test_first_page_is_the_tail_and_its_cursor_names_the_file_and_offset(
    controller: Controller, http: aiohttp.ClientSession, log: Any
) -> None:
    write_numbered(log, range(10))
    page = await get_page(http, lines=3)
    assert numbers_of(page["lines"]) == [7, 8, 9]
    stat = controller.settings.log_file.stat()
    cursor = Cursor.parse(page["cursor"])
    assert (cursor.inode, cursor.offset) == (stat.st_ino, stat.st_size)
    assert cursor.check is not None
    assert not (page["rotated"] or page["cleared"] or page["reset"] or page["more"])

    write_numbered(log, range(10, 12))
    following = await get_page(http, cursor=page["cursor"])
    assert numbers_of(following["lines"]) == [10, 11]


async def test_each_filter_and_their_combination(
    controller: Controller, http: aiohttp.ClientSession, log: Any
) -> None:
    """level is a minimum; run_id, schedule_id, event (one or a comma list) and since."""
    cursor = await start_cursor(http)
    log.debug("probe", n=0)
    log.info("run_started", n=1, run_id="r-1", schedule_id="s-1")
    log.warning("step_slow", n=2, run_id="r-1")
    log.error("run_finished", n=3, run_id="r-1", schedule_id="s-1")
    middle = datetime.now(UTC)
    log.info("run_started", n=4, run_id="r-2", schedule_id="s-2")
    log.critical("run_finished", n=5, run_id="r-2")
    since = middle.isoformat().replace("+00:00", "Z")
    expected = {
        (): [0, 1, 2, 3, 4, 5],
        (("level", "warning"),): [2, 3, 5],
        (("level", "ERROR"),): [3, 5],
        (("run_id", "r-1"),): [1, 2, 3],
        (("schedule_id", "s-1"),): [1, 3],
        (("event", "run_finished"),): [3, 5],
        (("event", "run_started,run_finished"),): [1, 3, 4, 5],
        (("since", since),): [4, 5],
        (("run_id", "r-1"), ("level", "error")): [3],
        (("event", "run_started"), ("since", since)): [4],
    }
    for filters, numbers in expected.items():
        lines, _ = await read_all(http, cursor, **dict(filters))
        assert numbers_of(lines) == numbers, filters
        tail = await get_page(http, lines=2, **dict(filters))  # the first page filters too
        assert numbers_of(tail["lines"]) == numbers[-2:], filters


async def test_a_filtered_request_reads_a_bounded_amount_and_moves_past_what_it_dropped(
    controller: Controller, http: aiohttp.ClientSession
) -> None:
    append_raw(controller, {"event": "first", "level": "info"})
    cursor = await start_cursor(http)
    filler = {"event": "filler", "level": "info", "pad": "f" * 1000}
    append_raw(controller, *[filler] * (PAGE_MAX_BYTES // 1000 + 200))
    append_raw(controller, {"event": "wanted", "level": "error"})

    first = await get_page(http, cursor=cursor, level="error")
    assert first["lines"] == [] and first["more"] is True
    moved = Cursor.parse(first["cursor"]).offset - Cursor.parse(cursor).offset
    assert 0 < moved <= PAGE_MAX_BYTES
    lines, pages = await read_all(http, first["cursor"], level="error")
    assert [orjson.loads(line)["event"] for line in lines] == ["wanted"]
    assert pages[-1]["more"] is False


async def test_following_pages_across_rotations_loses_no_line_and_says_rotated(
    controller: Controller, http: aiohttp.ClientSession, log: Any
) -> None:
    """Between two requests the log rotates once, then three times: every line comes."""
    cursor = await start_cursor(http)
    got: list[int] = []
    pages: list[Page] = []
    written = 0
    for batch in (30, 30, 70, 10):  # ~190 B a line, 4 KiB a file: 1-4 rotations each
        write_numbered(log, range(written, written + batch))
        written += batch
        lines, answered = await read_all(http, cursor)
        cursor = answered[-1]["cursor"]
        got += numbers_of(lines)
        pages += answered
    assert got == list(range(written))
    assert len(log_files(controller)) == BACKUPS + 1
    assert any(p["rotated"] for p in pages)
    assert not any(p["reset"] or p["cleared"] for p in pages)
    assert Cursor.parse(cursor).inode == controller.settings.log_file.stat().st_ino


async def test_a_cursor_rotated_out_of_the_backups_says_reset_and_goes_on_at_the_oldest_kept(
    controller: Controller, http: aiohttp.ClientSession, log: Any
) -> None:
    # Not at offset 0: a cursor at the start of an empty file has nothing to tell that
    # file from a later one that gets the same inode.
    log.info("first", n=-1)
    cursor = await start_cursor(http)
    write_numbered(log, range(300))  # far more rotations than backups
    lines, pages = await read_all(http, cursor)
    assert pages[0]["rotated"] is True and pages[0]["reset"] is True
    kept = [n for path in log_files(controller) for n in numbers_of(path.read_text().splitlines())]
    assert numbers_of(lines) == kept
    assert kept[-1] == 299 and kept[0] > 0


async def test_clear_says_cleared_and_goes_on_at_the_first_line_after_it(
    controller: Controller, http: aiohttp.ClientSession, log: Any
) -> None:
    """Even when the file has grown past the cursor's offset again before the next read."""
    write_numbered(log, range(5))
    cursor = await start_cursor(http)
    async with http.delete("/api/cron/logs") as resp:
        assert resp.status == 200
    log.info("after_clear", n=100, pad="q" * 2000)  # longer than all that was there before
    page = await get_page(http, cursor=cursor)
    assert Cursor.parse(cursor).offset < controller.settings.log_file.stat().st_size
    assert (page["cleared"], page["reset"], page["rotated"]) == (True, True, False)
    assert numbers_of(page["lines"]) == [100]
    again = await get_page(http, cursor=page["cursor"])
    assert again["lines"] == [] and not again["cleared"]


async def test_the_older_cursor_form_without_a_check_is_still_read(
    http: aiohttp.ClientSession, log: Any
) -> None:
    write_numbered(log, range(3))
    cursor = Cursor.parse(await start_cursor(http))
    write_numbered(log, range(3, 5))
    page = await get_page(http, cursor=f"{cursor.inode}:{cursor.offset}")
    assert numbers_of(page["lines"]) == [3, 4]
    assert Cursor.parse(page["cursor"]).check is not None


BAD_QUERIES = [
    ({"level": "loud"}, "level"),
    ({"since": "yesterday"}, "since"),
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"lines": "-1"}, "lines"),
    ({"event": ""}, "event"),
    ({"levle": "error"}, "levle"),  # misspelt: refused, not quietly ignored
]


async def test_a_bad_filter_is_refused_with_422_naming_the_field(
    http: aiohttp.ClientSession,
) -> None:
    for params, name in BAD_QUERIES:
        for path in ("/api/v1/logs", "/api/v1/logs/stream"):
            async with http.get(path, params=params) as resp:
                assert resp.status == 422, (path, params)
                body = await resp.json()
            assert [e["field"] for e in body["errors"]] == [name], (path, params)
            assert name in body["detail"]
    async with http.get("/api/v1/logs/stream", params={"keepalive_seconds": "0"}) as resp:
        assert resp.status == 422


async def test_a_bad_last_event_id_is_refused_with_422(http: aiohttp.ClientSession) -> None:
    headers = {"Last-Event-ID": "garbage"}
    async with http.get("/api/v1/logs/stream", headers=headers) as resp:
        assert resp.status == 422
        body = await resp.json()
    assert body["errors"][0]["field"] == "Last-Event-ID"


# --- server-sent events ---------------------------------------------------------------------


@dataclass
class Event:
    """One server-sent event (or comment) as read off the wire."""

    id: str | None = None
    event: str = ""
    data: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: str | None = None


async def next_event(resp: aiohttp.ClientResponse, timeout: float = 15.0) -> Event:
    """The next event, comment or field block of the stream; EOFError at its end."""
    event = Event()
    async with asyncio.timeout(timeout):
        while True:
            raw = await resp.content.readline()
            if not raw:
                raise EOFError
            line = raw.decode().rstrip("\n")
            if not line:
                return event
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                event.comments.append(value)
            elif name == "data":
                event.data.append(value)
            elif name in ("id", "event", "retry"):
                setattr(event, name, value)


async def collect(
    resp: aiohttp.ClientResponse, count: int
) -> tuple[list[dict[str, Any]], list[Event]]:
    """Events until `count` log lines came: those lines as JSON, and every event read."""
    lines: list[dict[str, Any]] = []
    events: list[Event] = []
    while len(lines) < count:
        event = await next_event(resp)
        events.append(event)
        if event.data and not event.event:
            lines.append(orjson.loads("\n".join(event.data)))
    return lines, events


def open_stream(http: aiohttp.ClientSession, **params: Any) -> Any:
    return http.get("/api/v1/logs/stream", params={"lines": 0, **params})


async def test_the_stream_follows_across_rotations_without_losing_a_line(
    controller: Controller, http: aiohttp.ClientSession, log: Any
) -> None:
    async with open_stream(http) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        assert (await next_event(resp)).retry == "1000"
        got: list[int] = []
        events: list[Event] = []
        written = 0
        for batch in (30, 50, 30):  # each batch rotates the log once or twice
            write_numbered(log, range(written, written + batch))
            written += batch
            lines, seen = await collect(resp, batch)
            got += [line["n"] for line in lines]
            events += seen
    assert got == list(range(written))
    assert len(log_files(controller)) >= 4
    notices = [e for e in events if e.event]
    assert notices and {e.event for e in notices} == {"rotated"}
    assert orjson.loads(notices[0].data[0]) == {"rotated": True, "cleared": False, "reset": False}
    for event in events:
        if event.data and not event.event:
            assert event.id is not None
            Cursor.parse(event.id)


async def test_the_stream_resumes_after_last_event_id_without_loss_or_repeat(
    http: aiohttp.ClientSession, log: Any
) -> None:
    write_numbered(log, range(10))
    async with open_stream(http, lines=10) as resp:
        lines, events = await collect(resp, 10)
    assert [line["n"] for line in lines] == list(range(10))
    resume_at = [e for e in events if e.data][3].id  # as if the fourth were the last one got
    assert resume_at is not None
    write_numbered(log, range(10, 40))  # across a rotation, while nobody listens
    async with http.get("/api/v1/logs/stream", headers={"Last-Event-ID": resume_at}) as resp:
        lines, _ = await collect(resp, 36)
    assert [line["n"] for line in lines] == list(range(4, 40))


async def test_the_stream_keeps_alive_and_says_cleared(
    http: aiohttp.ClientSession, log: Any
) -> None:
    write_numbered(log, range(5))
    async with open_stream(http, keepalive_seconds=0.2) as resp:
        deadline = time.monotonic() + 15
        while "keep-alive" not in (await next_event(resp)).comments:
            assert time.monotonic() < deadline, "no keep-alive comment"
        async with http.delete("/api/cron/logs") as cleared:
            assert cleared.status == 200
        write_numbered(log, range(100, 102))
        lines, events = await collect(resp, 2)
    assert [line["n"] for line in lines] == [100, 101]
    notices = [e for e in events if e.event]
    assert [e.event for e in notices] == ["cleared"]
    assert orjson.loads(notices[0].data[0]) == {"rotated": False, "cleared": True, "reset": True}


async def test_the_stream_filters_and_moves_its_id_past_what_it_dropped(
    controller: Controller, http: aiohttp.ClientSession, log: Any
) -> None:
    async with open_stream(http, level="error", event="numbered,boom") as resp:
        log.info("numbered", n=1)
        log.error("numbered", n=2)
        log.error("other", n=3)
        log.critical("boom", n=4)
        log.info("numbered", n=5)
        lines, _ = await collect(resp, 2)
        assert [line["n"] for line in lines] == [2, 4]
        # The dropped last line still moves the client's position: an event with only an id.
        size = controller.settings.log_file.stat().st_size
        while True:
            event = await next_event(resp)
            if event.id and not event.data and Cursor.parse(event.id).offset == size:
                break


async def test_the_stream_ends_cleanly_when_the_controller_stops(
    controller: Controller, http: aiohttp.ClientSession, log: Any
) -> None:
    """Its chunked body is finished properly, not cut off by the shutdown timeout."""
    async with open_stream(http) as resp:
        await next_event(resp)
        stopped = asyncio.create_task(asyncio.to_thread(controller.shutdown))
        rest = await asyncio.wait_for(resp.content.read(), timeout=15)  # no ClientPayloadError
        await stopped
    assert b"data:" not in rest
    assert controller.process is not None and controller.process.returncode == 0


# --- the clients ------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_client_follow_logs_goes_on_across_rotations_and_a_clear(
    controller: Controller, log: Any
) -> None:
    client = Client(controller.url, token=controller.token)
    follower = client.follow_logs(lines=2, event="numbered", poll_seconds=0.05)
    try:
        write_numbered(log, range(3))
        assert numbers_of([next(follower), next(follower)]) == [1, 2]
        got: list[int] = []
        for start in (3, 33, 63):
            write_numbered(log, range(start, start + 30))
            got += numbers_of([next(follower) for _ in range(30)])
        assert got == list(range(3, 93))
        client.clear_logs()
        log.info("not_wanted")
        write_numbered(log, range(1000, 1003))
        assert numbers_of([next(follower) for _ in range(3)]) == [1000, 1001, 1002]
    finally:
        follower.close()


@pytest.mark.timeout(60)
def test_client_follow_logs_from_a_cursor_and_to_the_controllers_end(
    controller: Controller, log: Any
) -> None:
    """It starts exactly after a page's cursor; a stopped controller ends it with an error."""
    client = Client(controller.url, token=controller.token)
    write_numbered(log, range(3))
    cursor = client.log_page(lines=1)["cursor"]
    write_numbered(log, range(3, 5))
    follower = client.follow_logs(cursor=cursor, poll_seconds=0.05)
    try:
        assert numbers_of([next(follower), next(follower)]) == [3, 4]
        controller.shutdown()
        with pytest.raises(ControllerUnreachable):
            next(follower)
    finally:
        follower.close()


async def test_async_client_follow_logs_with_filters_across_rotations(
    controller: Controller, log: Any
) -> None:
    async with AsyncClient(controller.url, token=controller.token) as client:
        # From a cursor: an async generator starts at its first anext(), after the writes.
        cursor = (await client.log_page(lines=0))["cursor"]
        follower = client.follow_logs(
            cursor=cursor, level="warning", run_id="r-7", poll_seconds=0.05
        )
        try:
            got: list[int] = []
            for start in (0, 40):
                for n in range(start, start + 40):  # ~2 rotations a batch
                    log.info("numbered", n=n, run_id="r-7", pad=PAD)
                    if n % 10 == 0:
                        log.warning("numbered", n=n, run_id="r-7", pad=PAD)
                        log.warning("numbered", n=-1, run_id="r-8", pad=PAD)
                async with asyncio.timeout(15):
                    got += [orjson.loads(await anext(follower))["n"] for _ in range(4)]
            assert got == [0, 10, 20, 30, 40, 50, 60, 70]
        finally:
            await follower.aclose()


# --- the CLI --------------------------------------------------------------------------------


def cronmgr(controller: Controller, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cronmgr", *args],
        env=controller.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


class LineReader:
    """A child's stdout, read by a thread, so that each wait can have a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))

    def next(self, timeout: float = 15.0) -> str:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout} s") from None


@pytest.mark.timeout(90)
def test_cli_logs_follow_picks_up_lines_across_rotations(controller: Controller, log: Any) -> None:
    write_numbered(log, range(2))
    follower = subprocess.Popen(
        [sys.executable, "-m", "cronmgr", "logs", "-f", "-n", "1", "--event", "numbered"],
        env=controller.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        reader = LineReader(follower.stdout)
        assert numbers_of([reader.next(timeout=30)]) == [1]
        got: list[int] = []
        for start in (2, 32, 62):  # every batch rotates the log at least once
            write_numbered(log, range(start, start + 30))
            log.info("ignored")
            got += numbers_of([reader.next() for _ in range(30)])
        assert got == list(range(2, 92))
        assert len(log_files(controller)) >= 4
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=15) == 0
    finally:
        if follower.poll() is None:
            follower.kill()
        follower.communicate()


def test_cli_logs_filters_without_follow(controller: Controller, log: Any) -> None:
    log.info("run_started", run_id="r-1")
    log.error("run_finished", run_id="r-1")
    log.error("run_finished", run_id="r-2")
    result = cronmgr(controller, "logs", "-n", "5", "--level", "error", "--run", "r-1")
    assert result.returncode == 0, result.stderr
    assert [orjson.loads(line)["event"] for line in result.stdout.splitlines()] == ["run_finished"]
    result = cronmgr(controller, "logs", "--since", "1h", "--event", "run_started")
    assert [orjson.loads(line)["run_id"] for line in result.stdout.splitlines()] == ["r-1"]
    assert cronmgr(controller, "logs", "--since", "soon").returncode == 2


# --- the description ------------------------------------------------------------------------


async def test_the_log_endpoints_are_described_by_the_models_that_validate_them(
    http: aiohttp.ClientSession, log: Any
) -> None:
    async with http.get("/openapi.json") as resp:
        document = await resp.json()
    filters = {"cursor", "lines", "level", "run_id", "schedule_id", "event", "since"}
    page_op = document["paths"]["/api/v1/logs"]["get"]
    assert {p["name"] for p in page_op["parameters"]} == filters
    level = next(p for p in page_op["parameters"] if p["name"] == "level")
    assert level["schema"]["enum"] == ["debug", "info", "warning", "error", "critical"]
    stream_op = document["paths"]["/api/v1/logs/stream"]["get"]
    assert {p["name"] for p in stream_op["parameters"]} == filters | {"keepalive_seconds"}
    assert "text/event-stream" in stream_op["responses"]["200"]["content"]
    assert "422" in page_op["responses"] and "422" in stream_op["responses"]

    schema = document["components"]["schemas"]["LogChunk"]
    answer = await get_page(http, lines=1)
    assert set(answer) == set(schema["properties"]) == set(schema["required"])


async def test_the_stream_says_when_the_log_cant_be_read_and_goes_on_once_it_can(
    controller: Controller, http: aiohttp.ClientSession
) -> None:
    """A log file turned into a directory (reads fail with EISDIR): one `unreadable` event
    naming the error, the stream stays open, and lines written once the file is back come.
    A one-shot read meanwhile answers with what failed, not "internal error"."""
    path = controller.settings.log_file
    append_raw(controller, {"event": "numbered", "n": 0})
    async with open_stream(http, keepalive_seconds=30) as resp:
        assert (await next_event(resp)).retry == "1000"
        path.unlink()
        path.mkdir()
        event = await next_event(resp)
        while event.event != "unreadable":
            event = await next_event(resp)
        assert "IsADirectoryError" in orjson.loads(event.data[0])["error"]
        async with http.get("/api/v1/logs") as page:  # a one-shot read says it in words
            body = await page.json()
            assert page.status == 500
            assert body["detail"].startswith("the log file can't be read: IsADirectoryError")
        path.rmdir()
        append_raw(controller, {"event": "numbered", "n": 1})
        lines, events = await collect(resp, 1)
    assert [line["n"] for line in lines] == [1]
    assert [e.event for e in events if e.event == "unreadable"] == []
