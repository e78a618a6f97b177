"""The log contract: JSON lines written by one process, tailed and cleared by another."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog

from cronmgr.core.config import Settings, load_settings
from cronmgr.observability.log_cursor import NOWHERE, Cursor, LogFilter
from cronmgr.observability.log_pages import PAGE_MAX_BYTES, read_page
from cronmgr.observability.logs import (
    BLOCK_SIZE,
    bound_fields,
    clear_log,
    configure_logging,
    reopen_log_file,
    tail_lines,
)


def make_settings(home: Path, **overrides: Any) -> Settings:
    """Settings under `home`, untouched by the environment the tests run in."""
    return load_settings(env={}, home=home, **overrides)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture(autouse=True)
def restore_logging(settings: Settings) -> Iterator[None]:
    """Leave structlog, the root logger and the context as they were, and the file closed."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    configure_logging(settings, to_file=False)  # closes the file sink, if any
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every line of `path` as JSON; fails on a line that is not a whole object."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll `condition` until it holds, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


# --- tail_lines -----------------------------------------------------------------------------


def reference_tail(content: bytes, count: int) -> list[str]:
    """The naive tail: split the whole content, a final newline ends the last line."""
    lines = content.split(b"\n")
    if content.endswith(b"\n") or not content:
        lines.pop()
    if count <= 0:
        return []
    return [line.decode("utf-8", "replace") for line in lines[-count:]]


def random_line(rng: random.Random) -> bytes:
    """A line without its newline: often empty or short, sometimes longer than a block."""
    kind = rng.random()
    if kind < 0.2:
        return b""
    if kind < 0.75:
        length = rng.randint(1, 200)
    elif kind < 0.95:
        length = rng.randint(1_000, 20_000)
    else:
        length = rng.randint(BLOCK_SIZE - 10, 2 * BLOCK_SIZE + 10)
    if rng.random() < 0.2:  # arbitrary bytes: invalid UTF-8, split multi-byte sequences
        return rng.randbytes(length).replace(b"\n", b"\xff")
    return ("é" * (length // 2) + "x" * (length % 2)).encode()


def random_content(rng: random.Random) -> bytes:
    lines = [random_line(rng) for _ in range(rng.randint(0, 40))]
    content = b"\n".join(lines)
    if lines and rng.random() < 0.7:
        content += b"\n"
    return content


@pytest.mark.parametrize("seed", range(40))
def test_tail_matches_the_naive_reference_on_generated_files(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "generated.log"
    for _ in range(5):
        content = random_content(rng)
        path.write_bytes(content)
        total = len(reference_tail(content, sys.maxsize))
        for count in {0, 1, 2, rng.randint(0, total + 3), total, total + 1, total + 50}:
            assert tail_lines(path, count) == reference_tail(content, count), (count, total)


def test_tail_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert tail_lines(tmp_path / "nowhere" / "cronmgr.log", 10) == []


def test_tail_of_an_empty_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.log"
    path.touch()
    assert tail_lines(path, 10) == []


def test_tail_counts_a_last_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "partial.log"
    path.write_bytes(b'{"n":1}\n{"n":2}\n{"n":')
    assert tail_lines(path, 2) == ['{"n":2}', '{"n":']


def test_tail_keeps_empty_lines_and_asks_for_no_more_than_exist(tmp_path: Path) -> None:
    path = tmp_path / "blank.log"
    path.write_bytes(b"a\n\n\nb\n")
    assert tail_lines(path, 3) == ["", "", "b"]
    assert tail_lines(path, 100) == ["a", "", "", "b"]
    assert tail_lines(path, 0) == []


def test_tail_replaces_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "binary.log"
    path.write_bytes(b"ok\n\xff\xfebad\ncaf\xc3\xa9\n")
    assert tail_lines(path, 2) == ["\ufffd\ufffdbad", "café"]


def test_tail_returns_a_line_longer_than_a_block_whole(tmp_path: Path) -> None:
    path = tmp_path / "long.log"
    long_line = "x" * (3 * BLOCK_SIZE + 7)
    path.write_text(f"first\n{long_line}\nlast\n")
    assert tail_lines(path, 2) == [long_line, "last"]


def bytes_read_by_this_process() -> int | None:
    """The kernel's count of bytes this process has read (`rchar`), where Linux tells."""
    try:
        fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    except OSError:
        return None
    return int(fields["rchar"])


def test_tail_of_a_sparse_1_gib_log_reads_only_its_end(tmp_path: Path) -> None:
    """1 GiB of NULs, then five lines: the tail is exactly those lines, read from the end.

    The kernel's read counter shows the bytes read stay a few blocks, not the gigabyte a
    scan from the start would read; the file is sparse, so it costs no disk.
    """
    path = tmp_path / "huge.log"
    lines = [f'{{"event": "line", "n": {n}}}' for n in range(5)]
    with path.open("wb") as fh:
        fh.truncate(1 << 30)
        fh.seek(1 << 30)
        fh.write(b"\n" + "".join(line + "\n" for line in lines).encode())
    before = bytes_read_by_this_process()
    assert tail_lines(path, 3) == lines[-3:]
    assert tail_lines(path, 5) == lines
    after = bytes_read_by_this_process()
    if before is not None and after is not None:
        assert after - before < 4 * BLOCK_SIZE, "tail read far more than the end of the file"


# --- the JSON sink ---------------------------------------------------------------------------


def test_file_sink_writes_json_lines_with_standard_and_bound_fields(settings: Settings) -> None:
    configure_logging(settings, to_file=True)
    structlog.contextvars.bind_contextvars(run_id="r-1", pipeline="default")
    log = structlog.get_logger()
    log.info("run_started", trigger="schedule")
    log.debug("too_detailed_for_info")
    log.bind(step="fetch").warning("step_slow", seconds=3.5, where=Path("/tmp/x"))
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.exception("step_crashed")

    events = read_events(settings.log_file)
    assert [e["event"] for e in events] == ["run_started", "step_slow", "step_crashed"]
    assert [e["level"] for e in events] == ["info", "warning", "error"]
    for event in events:
        assert event["timestamp"].endswith("Z")
        assert datetime.fromisoformat(event["timestamp"]).utcoffset() == timedelta(0)
        assert event["pid"] == os.getpid()
        assert (event["run_id"], event["pipeline"]) == ("r-1", "default")
    assert events[0]["trigger"] == "schedule"
    assert (events[1]["step"], events[1]["seconds"], events[1]["where"]) == ("fetch", 3.5, "/tmp/x")
    assert "ZeroDivisionError" in events[2]["exception"]


def test_bound_fields_hold_inside_the_block_and_restore_what_was_bound(
    settings: Settings,
) -> None:
    configure_logging(settings, to_file=True)
    log = structlog.get_logger()
    structlog.contextvars.bind_contextvars(run_id="outer")
    with bound_fields(run_id="inner", target="t"):
        log.info("inside")
        with bound_fields(target="u"):
            log.info("nested")
        log.info("inside_again")
    log.info("after")
    events = {e["event"]: e for e in read_events(settings.log_file)}
    assert (events["inside"]["run_id"], events["inside"]["target"]) == ("inner", "t")
    assert events["nested"]["target"] == "u"
    assert events["inside_again"]["target"] == "t"
    assert events["after"]["run_id"] == "outer" and "target" not in events["after"]


def test_a_process_forked_after_configuring_logs_its_own_pid(settings: Settings) -> None:
    configure_logging(settings, to_file=True)
    log = structlog.get_logger()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child only logs and leaves
        try:
            log.warn("from_child")
        finally:
            os._exit(0)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    log.info("from_parent")
    events = {e["event"]: e for e in read_events(settings.log_file)}
    assert events["from_child"]["pid"] == child
    assert events["from_child"]["level"] == "warning"
    assert events["from_parent"]["pid"] == os.getpid()


@pytest.mark.parametrize(
    ("log_level", "expected"),
    [("debug", ["d", "i", "w", "e"]), ("warning", ["w", "e"]), ("error", ["e"])],
)
def test_log_level_setting_filters_events(
    tmp_path: Path, log_level: str, expected: list[str]
) -> None:
    settings = make_settings(tmp_path, log_level=log_level)
    configure_logging(settings, to_file=True)
    log = structlog.get_logger()
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [e["event"] for e in read_events(settings.log_file)] == expected


def test_stdlib_records_from_warning_up_become_json_lines_in_the_same_file(
    settings: Settings,
) -> None:
    configure_logging(settings, to_file=True)
    logging.getLogger("asyncio").info("too chatty")
    logging.getLogger("aiohttp.server").warning("bad request from %s", "127.0.0.1")
    try:
        raise ConnectionResetError("peer went away")
    except ConnectionResetError:
        logging.getLogger("aiohttp.access").exception("handler failed")

    events = read_events(settings.log_file)
    assert [(e["event"], e["level"], e["logger"]) for e in events] == [
        ("bad request from 127.0.0.1", "warning", "aiohttp.server"),
        ("handler failed", "error", "aiohttp.access"),
    ]
    assert "ConnectionResetError: peer went away" in events[1]["exception"]
    assert all(e["pid"] == os.getpid() and "timestamp" in e for e in events)


def test_stderr_sink_writes_the_same_json_lines(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(settings, to_file=False)
    structlog.get_logger().info("controller_started", port=8000)
    logging.getLogger("aiohttp.web").error("boom")

    lines = capsys.readouterr().err.splitlines()
    events = [orjson.loads(line) for line in lines]
    assert [(e["event"], e["level"]) for e in events] == [
        ("controller_started", "info"),
        ("boom", "error"),
    ]
    assert not settings.log_file.exists()


def open_descriptors() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


def test_configuring_twice_neither_duplicates_lines_nor_leaks_descriptors(
    settings: Settings,
) -> None:
    before = open_descriptors()
    configure_logging(settings, to_file=True)
    configure_logging(settings, to_file=True)
    assert open_descriptors() == before + 1
    structlog.get_logger().info("once")
    logging.getLogger("aiohttp").warning("also once")

    assert [e["event"] for e in read_events(settings.log_file)] == ["once", "also once"]
    configure_logging(settings, to_file=False)
    assert open_descriptors() == before


def test_reopen_follows_the_path_after_the_file_was_moved(settings: Settings) -> None:
    configure_logging(settings, to_file=True)
    log = structlog.get_logger()
    log.info("before_move")
    moved = settings.log_file.with_name("cronmgr.log-20240101")
    settings.log_file.rename(moved)
    log.info("into_the_moved_file")
    reopen_log_file()
    log.info("after_reopen")

    assert [e["event"] for e in read_events(moved)] == ["before_move", "into_the_moved_file"]
    assert [e["event"] for e in read_events(settings.log_file)] == ["after_reopen"]


# --- rotation -------------------------------------------------------------------------------


def log_files(settings: Settings) -> list[Path]:
    """The live log and its backups, oldest first."""
    path = settings.log_file
    backups = sorted(path.parent.glob(path.name + ".*"), key=lambda p: -int(p.suffix[1:]))
    return [*backups, path]


def test_rotation_keeps_backup_count_files_and_every_line_whole(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, log_max_bytes=4096, log_backup_count=3)
    configure_logging(settings, to_file=True)
    log = structlog.get_logger()
    rng = random.Random(7)
    total = 400
    for n in range(total):
        log.info("numbered", n=n, padding="p" * rng.randint(0, 300))

    files = log_files(settings)
    names = [p.name for p in files]
    assert names == ["cronmgr.log.3", "cronmgr.log.2", "cronmgr.log.1", "cronmgr.log"]
    numbers = []
    for path in files:
        assert path.stat().st_size <= 4096
        numbers += [e["n"] for e in read_events(path)]  # every line parses: none split
    assert numbers == list(range(total - len(numbers), total))  # none lost between files


def test_threads_writing_at_once_lose_no_line_across_rotations(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, log_max_bytes=4096, log_backup_count=100)
    configure_logging(settings, to_file=True)

    def write(thread: int) -> None:
        log = structlog.get_logger().bind(thread=thread)
        for n in range(250):
            log.info("numbered", n=n)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    events = [e for path in log_files(settings) for e in read_events(path)]
    assert sorted((e["thread"], e["n"]) for e in events) == [
        (t, n) for t in range(4) for n in range(250)
    ]
    assert len(log_files(settings)) > 10


def test_a_line_larger_than_max_bytes_is_written_whole(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, log_max_bytes=4096, log_backup_count=2)
    configure_logging(settings, to_file=True)
    log = structlog.get_logger()
    log.info("small")
    log.info("huge", payload="h" * 10_000)
    log.info("after")

    events = [[e["event"] for e in read_events(p)] for p in log_files(settings)]
    assert events == [["small"], ["huge"], ["after"]]


def test_rotation_without_backups_empties_the_file_in_place(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, log_max_bytes=4096, log_backup_count=0)
    configure_logging(settings, to_file=True)
    inode = None
    for n in range(200):
        structlog.get_logger().info("numbered", n=n)
        inode = inode or settings.log_file.stat().st_ino
    assert log_files(settings) == [settings.log_file]
    assert settings.log_file.stat().st_size <= 4096
    assert settings.log_file.stat().st_ino == inode
    assert read_events(settings.log_file)[-1]["n"] == 199


def test_writer_does_not_rotate_early_after_the_file_was_cleared(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, log_max_bytes=4096, log_backup_count=2)
    configure_logging(settings, to_file=True)
    log = structlog.get_logger()
    log.info("filling", padding="f" * 3000)
    clear_log(settings.log_file)
    log.info("after_clear", padding="a" * 3000)

    assert log_files(settings) == [settings.log_file]
    assert [e["event"] for e in read_events(settings.log_file)] == ["after_clear"]


# --- clear_log ------------------------------------------------------------------------------


def test_clear_of_a_missing_log_is_fine(tmp_path: Path) -> None:
    clear_log(tmp_path / "nowhere" / "cronmgr.log")
    clear_log(tmp_path / "cronmgr.log")


def test_clear_empties_the_file_in_place_and_removes_numbered_backups(tmp_path: Path) -> None:
    path = tmp_path / "cronmgr.log"
    path.write_text("live\n")
    inode = path.stat().st_ino
    for name in ("cronmgr.log.1", "cronmgr.log.2", "cronmgr.log.12", "cronmgr.log.old", "other.1"):
        (tmp_path / name).write_text("kept?\n")

    clear_log(path)

    assert (path.stat().st_size, path.stat().st_ino) == (0, inode)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cronmgr.log",
        "cronmgr.log.old",
        "other.1",
    ]


WRITER = """
import sys, time
from pathlib import Path
import structlog
from cronmgr.core.config import load_settings
from cronmgr.observability.logs import configure_logging

home, stop = Path(sys.argv[1]), Path(sys.argv[2])
configure_logging(load_settings(env={}, home=home, log_max_bytes=1 << 26), to_file=True)
log = structlog.get_logger().bind(writer="test")
deadline = time.monotonic() + 60
n = 0
while not stop.exists() and time.monotonic() < deadline:
    log.info("tick", n=n)
    n += 1
    time.sleep(0.0005)
log.info("writer_stopped", last=n - 1)
"""


def holds_open(pid: int, path: Path) -> bool:
    """Whether process `pid` has a descriptor on the very file (inode) now at `path`."""
    target = path.stat()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):
            found = fd.stat()
            if (found.st_dev, found.st_ino) == (target.st_dev, target.st_ino):
                return True
    return False


def stop_writer(proc: subprocess.Popen[bytes], stop: Path) -> bytes:
    """Ask the writer to stop and reap it; its stderr."""
    stop.touch()
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return err


def test_clear_while_a_writer_process_keeps_writing(tmp_path: Path) -> None:
    path, stop = tmp_path / "logs" / "cronmgr.log", tmp_path / "stop"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path), str(stop)], stderr=subprocess.PIPE
    )
    try:
        wait_for(lambda: len(tail_lines(path, 50)) == 50, "the writer's first 50 lines")
        inode = path.stat().st_ino
        # The second-to-last line: the last may be caught half-written.
        seen_before_clear = orjson.loads(tail_lines(path, 2)[0])["n"]
        clear_log(path)
        wait_for(lambda: len(tail_lines(path, 20)) == 20, "20 lines written after the clear")
        assert holds_open(proc.pid, path)
    finally:
        err = stop_writer(proc, stop)
    assert proc.returncode == 0, err.decode()

    content = path.read_bytes()
    assert b"\0" not in content
    assert content.startswith(b"{")  # the first line after the clear sits at offset 0
    assert path.stat().st_ino == inode
    events = [orjson.loads(line) for line in content.splitlines()]
    ticks = [e["n"] for e in events[:-1]]
    assert ticks[0] > seen_before_clear
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))
    assert (events[-1]["event"], events[-1]["last"]) == ("writer_stopped", ticks[-1])


# --- following: read_page -----------------------------------------------------------------


def test_a_follower_that_starts_before_the_log_exists_gets_its_first_lines(tmp_path: Path) -> None:
    path = tmp_path / "cronmgr.log"
    first = read_page(path, None)
    assert (first.lines, first.cursor) == ([], NOWHERE)
    path.write_bytes(b"a\nb\n")
    page = read_page(path, first.cursor)
    assert [line.text for line in page.lines] == ["a", "b"]
    assert not (page.rotated or page.cleared or page.reset)


def test_a_half_written_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "cronmgr.log"
    path.write_bytes(b"a\nb\nhal")
    first = read_page(path, None, initial_lines=5)
    assert [line.text for line in first.lines] == ["a", "b"]
    assert first.cursor.offset == 4
    with path.open("ab") as fh:
        fh.write(b"f\n")
    assert [line.text for line in read_page(path, first.cursor).lines] == ["half"]


def test_each_lines_cursor_goes_on_right_after_that_line(tmp_path: Path) -> None:
    path = tmp_path / "cronmgr.log"
    path.write_bytes(b"".join(b"line %d\n" % n for n in range(20)))
    lines = read_page(path, None, initial_lines=20).lines
    for index, line in enumerate(lines):
        after = read_page(path, line.cursor)
        assert [ln.text for ln in after.lines] == [ln.text for ln in lines[index + 1 :]]
        assert str(Cursor.parse(str(line.cursor))) == str(line.cursor)


def test_a_backups_last_piece_without_a_newline_is_a_line(tmp_path: Path) -> None:
    path = tmp_path / "cronmgr.log"
    path.write_bytes(b"a\n")
    cursor = read_page(path, None).cursor
    with path.open("ab") as fh:
        fh.write(b"torn")  # the writer died mid-line, then the file was rotated
    path.rename(tmp_path / "cronmgr.log.1")
    path.write_bytes(b"b\n")
    page = read_page(path, cursor)
    assert [line.text for line in page.lines] == ["torn", "b"]
    assert (page.rotated, page.reset, page.turn) == (True, False, 1)


def test_a_line_longer_than_a_page_is_cut_rather_than_stalling_the_follower(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cronmgr.log"
    path.write_bytes(b"a\n")
    cursor = read_page(path, None).cursor
    with path.open("ab") as fh:
        fh.write(b"x" * (PAGE_MAX_BYTES + 10) + b"\nnext\n")
    first = read_page(path, cursor)
    assert [len(line.text) for line in first.lines] == [PAGE_MAX_BYTES]
    assert first.more is True
    rest = read_page(path, first.cursor)
    assert [line.text for line in rest.lines] == ["x" * 10, "next"]


def test_a_filter_that_drops_everything_still_moves_the_cursor(tmp_path: Path) -> None:
    path = tmp_path / "cronmgr.log"
    path.write_bytes(b'{"level": "info"}\n')
    cursor = read_page(path, None).cursor
    with path.open("ab") as fh:
        fh.write(b'{"level": "info"}\nnot json\n[1]\n{"level": "debug"}\n')
    page = read_page(path, cursor, LogFilter(level="warning"))
    assert page.lines == [] and page.more is False
    assert page.cursor.offset == path.stat().st_size


@pytest.mark.parametrize("seed", range(8))
def test_following_the_real_rotating_writer_loses_no_line(tmp_path: Path, seed: int) -> None:
    """Random line sizes (some larger than a file) and random reads: every line, once, in order."""
    settings = make_settings(tmp_path, log_max_bytes=4096, log_backup_count=3)
    configure_logging(settings, to_file=True)
    log = structlog.get_logger()
    rng = random.Random(seed)
    cursor, got, written = read_page(settings.log_file, None).cursor, [], 0
    while written < 300:
        for _ in range(rng.randint(0, 3)):  # so at most 3 rotations between two reads
            log.info("numbered", n=written, pad="p" * rng.choice([0, 50, 300, 1000, 5000]))
            written += 1
        page = read_page(settings.log_file, cursor)
        assert not page.reset
        got += [orjson.loads(line.text)["n"] for line in page.lines]
        cursor = page.cursor
    page = read_page(settings.log_file, cursor)
    got += [orjson.loads(line.text)["n"] for line in page.lines]
    assert got == list(range(written))
