"""Properties that hold for every input, checked with hypothesis.

Triggers: any schedule the API accepts yields fire times that are strictly increasing,
inside its window, from the moment asked on, or none at all; never an exception.
Log cursors: a cursor reads back as written, and a follower that reads pages while the log
grows and rotates gets every line exactly once, in order.
"""

from __future__ import annotations

import contextlib
import itertools
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cronmgr.core.bounds import FIRST_MOMENT, LAST_MOMENT, MAX_SPAN_SECONDS
from cronmgr.core.specs.schedules import ScheduleSpec
from cronmgr.core.triggers.schedules import upcoming
from cronmgr.observability.log_cursor import Cursor
from cronmgr.observability.log_pages import read_page

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Pacific/Kiritimati",
    "Pacific/Niue",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/St_Johns",
]
CRON_FIELDS = [
    ["*", "0", "*/7", "5,35", "59"],
    ["*", "0", "2", "23", "*/5"],
    ["*", "1", "29", "31", "1-15"],
    ["*", "2", "12", "1-6"],
    ["*", "0", "1-5", "6", "mon-fri"],
]
PROPERTY = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

moments = st.datetimes(
    min_value=FIRST_MOMENT.replace(tzinfo=None),
    max_value=LAST_MOMENT.replace(tzinfo=None),
    timezones=st.sampled_from([UTC]),
)
# Most of the interesting arithmetic is near the ends of the range and around now.
edge_moments = st.one_of(
    moments,
    st.sampled_from([FIRST_MOMENT, LAST_MOMENT, LAST_MOMENT - timedelta(days=3650)]),
    st.datetimes(
        min_value=datetime(2025, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
    ),
)
spans = st.one_of(
    st.floats(min_value=0.1, max_value=MAX_SPAN_SECONDS, allow_nan=False),
    st.sampled_from([0.1, 1.0, 60.0, 86400.0, float(MAX_SPAN_SECONDS)]),
)


@st.composite
def schedule_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A schedule body of any type, with window fields drawn from the whole range."""
    kind = draw(st.sampled_from(["interval", "cron", "once"]))
    body: dict[str, Any] = {"name": "p", "pipeline": "default", "schedule_type": kind}
    if kind == "interval":
        body["interval_seconds"] = draw(spans)
    elif kind == "cron":
        body["cron_expression"] = " ".join(draw(st.sampled_from(f)) for f in CRON_FIELDS)
    else:
        body["run_at"] = draw(edge_moments).isoformat()
    body["timezone"] = draw(st.sampled_from(ZONES))
    for name in ("start_at", "end_at"):
        if draw(st.booleans()):
            body[name] = draw(edge_moments).isoformat()
    if draw(st.booleans()):
        body["duration_seconds"] = draw(spans)
    if draw(st.booleans()):
        body["max_runs"] = draw(st.integers(min_value=1, max_value=1_000_000_000))
    return body


@PROPERTY
@given(body=schedule_bodies(), now=edge_moments, count=st.integers(min_value=1, max_value=20))
def test_any_valid_schedule_gives_increasing_times_within_its_window_or_none(
    body: dict[str, Any], now: datetime, count: int
) -> None:
    """No exception, strictly increasing, none before `now` or the start, none after the end."""
    try:
        spec = ScheduleSpec.model_validate(body)
    except ValidationError:
        assume(False)
        return
    schedule = spec.to_schedule("s")
    times = upcoming(schedule, count, now)
    assert len(times) <= count
    assert all(a < b for a, b in itertools.pairwise(times)), times
    begin = max(now, schedule.start_at or schedule.created_at)
    assert all(t >= begin for t in times), (begin, times)
    end = schedule.window_end
    assert end is None or all(t <= end for t in times), (end, times)
    assert schedule.as_dict()["id"] == "s"


@given(
    inode=st.integers(min_value=0, max_value=2**64 - 1),
    offset=st.integers(min_value=0, max_value=2**63 - 1),
    check=st.none() | st.integers(min_value=0, max_value=2**32 - 1),
)
def test_a_cursor_reads_back_as_written(inode: int, offset: int, check: int | None) -> None:
    """`Cursor.parse(str(cursor))` is the cursor, for every inode, offset and check."""
    cursor = Cursor(inode, offset, check)
    assert Cursor.parse(str(cursor)) == cursor


@given(text=st.text(max_size=60))
def test_any_text_is_a_cursor_or_a_value_error(text: str) -> None:
    """Parsing never fails with anything but ValueError (which the API turns into 422)."""
    with contextlib.suppress(ValueError):
        Cursor.parse(text)


# A follower's view of a log that grows and rotates: ("append", lines) or ("rotate",), and a
# read of every page that is there now after each step.
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("append"),
            st.lists(st.text(alphabet='abcxyz{}":, ', min_size=0, max_size=300), max_size=8),
        ),
        st.tuples(st.just("rotate")),
    ),
    max_size=25,
)
BACKUPS = 3


def _rotate(path: Path) -> None:
    for index in range(BACKUPS - 1, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{index + 1}"))
    if path.exists():
        path.replace(path.with_name(f"{path.name}.1"))
    path.touch()


def _follow(path: Path, cursor: Cursor) -> tuple[list[str], Cursor, bool]:
    got: list[str] = []
    reset = False
    while True:
        page = read_page(path, cursor)
        got += [line.text for line in page.lines]
        reset = reset or page.reset
        cursor = page.cursor
        if not page.more:
            return got, cursor, reset


@settings(max_examples=150, deadline=None)
@given(script=steps)
def test_a_follower_gets_every_line_once_in_order_across_rotations(
    script: list[tuple[Any, ...]],
) -> None:
    """Lines appended between reads, rotations between them: nothing lost, nothing twice."""
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "cronmgr.log"
        path.touch()
        cursor = read_page(path, None).cursor
        written: list[str] = []
        received: list[str] = []
        for step in script:
            if step[0] == "rotate":
                _rotate(path)
            else:
                with path.open("a") as log:
                    for line in step[1]:
                        log.write(line + "\n")
                written += step[1]
            got, cursor, reset = _follow(path, cursor)
            assert not reset
            received += got
        assert received == written
