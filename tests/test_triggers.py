"""Triggers: interval anchoring, cron fields, DST transitions, once, validation and jitter."""

from __future__ import annotations

import bisect
import collections
import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter  # type: ignore[import-untyped]

from cronmgr.core.models import Schedule, ScheduleType
from cronmgr.core.triggers.parsing import validate_cron, validate_timezone
from cronmgr.core.triggers.rules import CronTrigger, IntervalTrigger, OnceTrigger, Trigger
from cronmgr.core.triggers.schedules import build_trigger, jitter_offset

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


def slots(trigger: Trigger, start: datetime, end: datetime) -> Iterator[datetime]:
    """Every slot in (start, end), by iterating after()."""
    slot = trigger.after(start)
    while slot is not None and slot < end:
        yield slot
        slot = trigger.after(slot)


def local_times(trigger: Trigger, zone: ZoneInfo, start: datetime, days: float) -> list[str]:
    end = start.astimezone(UTC) + timedelta(days=days)  # elapsed time, not wall time
    return [f"{s.astimezone(zone):%m-%d %H:%M:%S%z}" for s in slots(trigger, start, end)]


def fires_per_local_date(expression: str, zone: ZoneInfo, first_day: date) -> dict[date, int]:
    start = datetime.combine(first_day, datetime.min.time(), zone)
    end = datetime.combine(first_day + timedelta(days=5), datetime.min.time(), zone)
    found = slots(CronTrigger(expression, zone.key), start - timedelta(microseconds=1), end)
    return collections.Counter(s.astimezone(zone).date() for s in found)


# --- interval --------------------------------------------------------------------------


def test_interval_before_the_anchor_gives_the_anchor() -> None:
    trigger = IntervalTrigger(60, T0)
    assert trigger.after(T0 - timedelta(hours=5)) == T0
    assert trigger.at_or_after(T0 - timedelta(seconds=1)) == T0
    assert trigger.at_or_after(T0) == T0


def test_interval_on_a_slot_after_moves_on_and_at_or_after_stays() -> None:
    trigger = IntervalTrigger(60, T0)
    on_slot = T0 + timedelta(minutes=3)
    assert trigger.after(on_slot) == T0 + timedelta(minutes=4)
    assert trigger.at_or_after(on_slot) == on_slot
    assert trigger.after(T0) == T0 + timedelta(minutes=1)


def test_interval_between_slots_rounds_up_to_the_anchored_grid() -> None:
    trigger = IntervalTrigger(60, T0)
    moment = T0 + timedelta(minutes=3, seconds=1)
    assert trigger.after(moment) == T0 + timedelta(minutes=4)
    assert trigger.at_or_after(moment) == T0 + timedelta(minutes=4)


def test_interval_fractional_seconds_are_exact_and_never_drift() -> None:
    """0.1 s slots: floats would put slot 3 at 0.30000000000000004; integer µs do not."""
    trigger = IntervalTrigger(0.1, T0)
    assert trigger.after(T0 + timedelta(seconds=0.3)) == T0 + timedelta(seconds=0.4)
    assert trigger.at_or_after(T0 + timedelta(seconds=0.3)) == T0 + timedelta(seconds=0.3)
    far = T0 + timedelta(days=365, microseconds=1)
    assert trigger.at_or_after(far) == T0 + timedelta(days=365, milliseconds=100)
    walk = list(slots(trigger, T0, T0 + timedelta(seconds=100)))
    assert len(walk) == 999
    assert walk[-1] == T0 + timedelta(seconds=99.9)


def test_interval_slots_are_utc_even_for_a_non_utc_anchor() -> None:
    anchor = datetime(2026, 3, 29, 1, 30, tzinfo=BERLIN)
    trigger = IntervalTrigger(3600, anchor)
    assert trigger.anchor == anchor and trigger.anchor.tzinfo is UTC
    # Elapsed time, not wall time: the DST jump changes nothing for an interval.
    assert trigger.after(anchor) == utc(2026, 3, 29, 1, 30)


@pytest.mark.parametrize("seconds", [0, -5, float("nan"), float("inf"), 1e-9])
def test_interval_refuses_a_non_positive_or_unusable_length(seconds: float) -> None:
    with pytest.raises(ValueError, match="interval must be"):
        IntervalTrigger(seconds, T0)


def test_interval_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="anchor must be timezone-aware"):
        IntervalTrigger(10, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="moment must be timezone-aware"):
        IntervalTrigger(10, T0).after(datetime(2026, 1, 1))


# --- cron: fields ----------------------------------------------------------------------


def test_cron_five_fields_every_five_minutes() -> None:
    trigger = CronTrigger("*/5 * * * *")
    assert trigger.after(utc(2026, 5, 3, 10, 7, 12)) == utc(2026, 5, 3, 10, 10)
    assert trigger.after(utc(2026, 5, 3, 10, 10)) == utc(2026, 5, 3, 10, 15)
    assert trigger.at_or_after(utc(2026, 5, 3, 10, 10)) == utc(2026, 5, 3, 10, 10)


def test_cron_six_fields_take_seconds_first_like_quartz() -> None:
    trigger = CronTrigger("*/10 * * * * *")
    start = utc(2026, 5, 3, 10, 7, 12)
    assert trigger.upcoming(start, 4) == [
        utc(2026, 5, 3, 10, 7, 20),
        utc(2026, 5, 3, 10, 7, 30),
        utc(2026, 5, 3, 10, 7, 40),
        utc(2026, 5, 3, 10, 7, 50),
    ]
    assert trigger.after(start + timedelta(microseconds=345)) == utc(2026, 5, 3, 10, 7, 20)
    assert trigger.after(utc(2026, 5, 3, 10, 7, 19)) == utc(2026, 5, 3, 10, 7, 20)
    # "15 30 9 * * *" is 09:30:15, not minute 15 of hour 30.
    assert CronTrigger("15 30 9 * * *").after(start) == utc(2026, 5, 4, 9, 30, 15)


def test_cron_steps_ranges_and_lists() -> None:
    trigger = CronTrigger("0,30 9-11/2 * * *")
    assert trigger.upcoming(utc(2026, 5, 4, 0, 0), 5) == [
        utc(2026, 5, 4, 9, 0),
        utc(2026, 5, 4, 9, 30),
        utc(2026, 5, 4, 11, 0),
        utc(2026, 5, 4, 11, 30),
        utc(2026, 5, 5, 9, 0),
    ]


def test_cron_day_and_month_names() -> None:
    """2026-05-01 is a Friday; MON-FRI skips the weekend, JAN,JUL names months."""
    weekdays = CronTrigger("0 9 * * MON-FRI")
    assert weekdays.after(utc(2026, 5, 1, 10, 0)) == utc(2026, 5, 4, 9, 0)
    sunday = CronTrigger("0 9 * * sun")
    assert sunday.after(utc(2026, 5, 1)) == utc(2026, 5, 3, 9, 0)
    assert CronTrigger("0 9 * * 7").after(utc(2026, 5, 1)) == utc(2026, 5, 3, 9, 0)
    months = CronTrigger("0 0 1 JAN,JUL *")
    assert months.upcoming(utc(2026, 5, 1), 2) == [utc(2026, 7, 1), utc(2027, 1, 1)]


def test_cron_day_of_month_and_day_of_week_are_or_ed_as_in_cron() -> None:
    """`0 0 13 * fri` fires on every 13th and on every Friday."""
    trigger = CronTrigger("0 0 13 * fri")
    assert trigger.upcoming(utc(2026, 5, 9), 3) == [
        utc(2026, 5, 13),
        utc(2026, 5, 15),
        utc(2026, 5, 22),
    ]


def test_cron_shortcuts_and_last_day_of_month() -> None:
    assert CronTrigger("@daily").after(utc(2026, 5, 3, 10)) == utc(2026, 5, 4)
    assert CronTrigger("@hourly").after(utc(2026, 5, 3, 10, 1)) == utc(2026, 5, 3, 11)
    assert CronTrigger("0 0 L * *").after(utc(2026, 2, 3)) == utc(2026, 2, 28)


def test_cron_leap_day_waits_for_the_next_leap_year() -> None:
    assert CronTrigger("0 0 29 2 *").after(utc(2026, 3, 1)) == utc(2028, 2, 29)


def test_cron_in_a_zone_returns_utc_instants() -> None:
    trigger = CronTrigger("0 9 * * *", "Asia/Tokyo")
    slot = trigger.after(utc(2026, 5, 3, 12, 0))
    assert slot == utc(2026, 5, 4, 0, 0)
    assert slot is not None and slot.tzinfo is UTC


def test_cron_kolkata_has_no_dst_and_keeps_its_half_hour_offset() -> None:
    """Asia/Kolkata is +05:30 all year: 02:30 local is 21:00 UTC, every day."""
    trigger = CronTrigger("30 2 * * *", "Asia/Kolkata")
    for month in (1, 3, 7, 10, 11):
        found = trigger.upcoming(utc(2026, month, 1), 40)
        assert all((s.hour, s.minute) == (21, 0) for s in found)
        days = [s.date() for s in found]
        assert days == [days[0] + timedelta(days=i) for i in range(40)]


def test_triggers_sharing_an_expression_keep_their_own_zone() -> None:
    """The parsed expression (and its memo of wall times) is shared; zones never mix."""
    berlin = CronTrigger("0 9 * * *", "Europe/Berlin")
    tokyo = CronTrigger("0 9 * * *", "Asia/Tokyo")
    moment = utc(2026, 5, 3, 12)
    for _ in range(3):
        assert berlin.after(moment) == utc(2026, 5, 4, 7)
        assert tokyo.after(moment) == utc(2026, 5, 4, 0)


def test_cron_expression_that_never_fires_gives_none() -> None:
    """Accepted by the constructor (the API rejects it through validate_cron)."""
    trigger = CronTrigger("0 0 30 2 *")
    assert trigger.after(T0) is None
    assert trigger.upcoming(T0, 3) == []


def test_cron_moment_must_be_aware() -> None:
    with pytest.raises(ValueError, match="moment must be timezone-aware"):
        CronTrigger("* * * * *").after(datetime(2026, 1, 1))


# --- cron: daylight saving time ----------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "first_day", "transition"),
    [
        (BERLIN, date(2026, 3, 27), date(2026, 3, 29)),
        (BERLIN, date(2026, 10, 23), date(2026, 10, 25)),
        (NEW_YORK, date(2026, 3, 6), date(2026, 3, 8)),
        (NEW_YORK, date(2026, 10, 30), date(2026, 11, 1)),
    ],
)
@pytest.mark.parametrize("expression", ["30 2 * * *", "30 1 * * *", "0 2 * * *"])
def test_daily_job_runs_exactly_once_on_every_day_around_a_transition(
    zone: ZoneInfo, first_day: date, transition: date, expression: str
) -> None:
    counts = fires_per_local_date(expression, zone, first_day)
    assert transition in counts
    assert sorted(counts) == [first_day + timedelta(days=i) for i in range(5)]
    assert set(counts.values()) == {1}


def test_berlin_spring_forward_runs_0230_once_at_0300() -> None:
    trigger = CronTrigger("30 2 * * *", "Europe/Berlin")
    start = datetime(2026, 3, 28, tzinfo=BERLIN)
    assert local_times(trigger, BERLIN, start, 3) == [
        "03-28 02:30:00+0100",
        "03-29 03:00:00+0200",
        "03-30 02:30:00+0200",
    ]


def test_berlin_fall_back_runs_0230_once_at_the_first_occurrence() -> None:
    trigger = CronTrigger("30 2 * * *", "Europe/Berlin")
    start = datetime(2026, 10, 24, tzinfo=BERLIN)
    assert local_times(trigger, BERLIN, start, 3) == [
        "10-24 02:30:00+0200",
        "10-25 02:30:00+0200",
        "10-26 02:30:00+0100",
    ]
    assert trigger.after(utc(2026, 10, 25, 0, 30)) == utc(2026, 10, 26, 1, 30)


def test_new_york_spring_forward_runs_0230_once_at_0300() -> None:
    trigger = CronTrigger("30 2 * * *", "America/New_York")
    start = datetime(2026, 3, 7, tzinfo=NEW_YORK)
    assert local_times(trigger, NEW_YORK, start, 3) == [
        "03-07 02:30:00-0500",
        "03-08 03:00:00-0400",
        "03-09 02:30:00-0400",
    ]


def test_new_york_fall_back_repeats_0100_to_0200_and_0130_runs_once() -> None:
    """New York repeats 01:00-01:59; 02:30 is not ambiguous there but 01:30 is."""
    start = datetime(2026, 10, 31, tzinfo=NEW_YORK)
    at_0130 = CronTrigger("30 1 * * *", "America/New_York")
    assert local_times(at_0130, NEW_YORK, start, 3) == [
        "10-31 01:30:00-0400",
        "11-01 01:30:00-0400",
        "11-02 01:30:00-0500",
    ]
    at_0230 = CronTrigger("30 2 * * *", "America/New_York")
    assert local_times(at_0230, NEW_YORK, start, 3) == [
        "10-31 02:30:00-0400",
        "11-01 02:30:00-0500",
        "11-02 02:30:00-0500",
    ]


def test_slots_inside_the_gap_coalesce_into_one_run_after_it() -> None:
    """`0,30 2` has two slots in the gap; `0 2,3` has one in it and one right after it."""
    start = datetime(2026, 3, 29, tzinfo=BERLIN)
    both_in_gap = CronTrigger("0,30 2 * * *", "Europe/Berlin")
    assert local_times(both_in_gap, BERLIN, start, 1) == ["03-29 03:00:00+0200"]
    gap_and_after = CronTrigger("0 2,3 * * *", "Europe/Berlin")
    assert local_times(gap_and_after, BERLIN, start, 1) == ["03-29 03:00:00+0200"]


def test_hourly_job_follows_the_real_clock_through_both_transitions() -> None:
    """Every real hour fires once: 23 runs on spring-forward day, 25 on fall-back day."""
    hourly = CronTrigger("0 * * * *", "Europe/Berlin")
    spring, next_day = datetime(2026, 3, 29, tzinfo=BERLIN), datetime(2026, 3, 30, tzinfo=BERLIN)
    fired = list(slots(hourly, spring - timedelta(microseconds=1), next_day))
    assert len(fired) == 23
    assert {b - a for a, b in itertools.pairwise(fired)} == {timedelta(hours=1)}
    autumn, next_day = datetime(2026, 10, 25, tzinfo=BERLIN), datetime(2026, 10, 26, tzinfo=BERLIN)
    fired = list(slots(hourly, autumn - timedelta(microseconds=1), next_day))
    assert len(fired) == 25
    assert {b - a for a, b in itertools.pairwise(fired)} == {timedelta(hours=1)}
    assert local_times(hourly, BERLIN, utc(2026, 10, 24, 23, 30), 3 / 24) == [
        "10-25 02:00:00+0200",
        "10-25 02:00:00+0100",
        "10-25 03:00:00+0100",
    ]


def test_sub_hourly_job_keeps_its_pace_through_the_repeated_hour() -> None:
    every_20 = CronTrigger("*/20 * * * *", "America/New_York")
    start = utc(2026, 11, 1, 4, 50)  # 00:50 EDT
    fired = list(slots(every_20, start, start + timedelta(hours=3)))
    assert {b - a for a, b in itertools.pairwise(fired)} == {timedelta(minutes=20)}
    assert len(fired) == 9


def test_every_ten_seconds_crosses_the_spring_gap_without_a_hole_or_a_burst() -> None:
    trigger = CronTrigger("*/10 * * * * *", "Europe/Berlin")
    start = utc(2026, 3, 29, 0, 59, 30)
    fired = trigger.upcoming(start, 6)
    assert fired == [start + timedelta(seconds=10 * i) for i in range(6)]


def test_time_of_day_job_inside_fixed_hours_runs_the_repeated_hour_once() -> None:
    """`*/30 2 * * *` names hour 2: it runs 02:00 and 02:30 once each on fall-back day."""
    trigger = CronTrigger("*/30 2 * * *", "Europe/Berlin")
    start = datetime(2026, 10, 25, tzinfo=BERLIN)
    assert local_times(trigger, BERLIN, start, 1) == [
        "10-25 02:00:00+0200",
        "10-25 02:30:00+0200",
    ]


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        # first pass of 02:xx (CEST): the second 02:00 (CET) comes before 03:00 CET
        (utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 0)),
        # second pass of 02:xx (CET): next is 03:00 CET
        (utc(2026, 10, 25, 1, 0), utc(2026, 10, 25, 2, 0)),
        (utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 2, 0)),
        # the instant before the clock goes back
        (utc(2026, 10, 25, 0, 59, 59), utc(2026, 10, 25, 1, 0)),
    ],
)
def test_after_from_inside_the_repeated_hour(moment: datetime, expected: datetime) -> None:
    assert CronTrigger("0 * * * *", "Europe/Berlin").after(moment) == expected


def test_time_of_day_job_from_inside_the_second_pass_waits_for_tomorrow() -> None:
    trigger = CronTrigger("15,45 2 * * *", "Europe/Berlin")
    second_pass = utc(2026, 10, 25, 1, 10)  # 02:10 CET, after the first 02:xx
    assert trigger.after(second_pass) == utc(2026, 10, 26, 1, 15)


def test_at_or_after_includes_a_slot_moved_to_the_end_of_the_gap() -> None:
    trigger = CronTrigger("30 2 * * *", "Europe/Berlin")
    gap_end = utc(2026, 3, 29, 1, 0)  # 03:00 CEST
    assert trigger.at_or_after(gap_end) == gap_end
    assert trigger.after(gap_end) == utc(2026, 3, 30, 0, 30)


def reference_slots(
    expression: str, zone: ZoneInfo, start: datetime, end: datetime
) -> list[datetime]:
    """The DST rule of the module docstring, applied by brute force minute by minute."""
    periodic = croniter.expand(expression)[0][1] == ["*"]
    wall_start = start.astimezone(zone).replace(tzinfo=None) - timedelta(hours=3)
    cron = croniter(expression, wall_start)
    walls = set()
    while (wall := cron.get_next(datetime)) < end.astimezone(zone).replace(tzinfo=None):
        walls.add(wall)
    found = []
    instant, previous_wall = start, None
    while instant < end:
        local = instant.astimezone(zone)
        wall = local.replace(tzinfo=None)
        if previous_wall is not None and wall - previous_wall > timedelta(minutes=1):
            # The clock jumped: time-of-day slots in the skipped wall times fire now.
            skipped = {w for w in walls if previous_wall < w < wall}
            if skipped and not periodic:
                found.append(instant)
        if wall in walls and (periodic or local.fold == 0):
            found.append(instant)
        previous_wall = wall
        instant += timedelta(minutes=1)
    return sorted(set(found))


@pytest.mark.parametrize(
    "expression",
    ["30 2 * * *", "0 * * * *", "*/20 * * * *", "15,45 1-3 * * *", "0 */2 * * *", "59 0-3 * * *"],
)
@pytest.mark.parametrize(
    ("zone", "transition"),
    [
        (BERLIN, utc(2026, 3, 29, 1)),
        (BERLIN, utc(2026, 10, 25, 1)),
        (NEW_YORK, utc(2026, 3, 8, 7)),
        (NEW_YORK, utc(2026, 11, 1, 6)),
        (ZoneInfo("Australia/Lord_Howe"), utc(2026, 4, 4, 15)),  # a 30-minute shift
    ],
)
def test_after_matches_a_brute_force_reading_of_the_rule(
    expression: str, zone: ZoneInfo, transition: datetime
) -> None:
    start, end = transition - timedelta(hours=6), transition + timedelta(hours=6)
    expected = reference_slots(expression, zone, start - timedelta(days=1), end + timedelta(days=1))
    trigger = CronTrigger(expression, zone.key)
    moment = start
    while moment < end:
        for probe in (moment, moment + timedelta(seconds=30)):
            want = expected[bisect.bisect_right(expected, probe)]
            assert trigger.after(probe) == want, f"after({probe.astimezone(zone)})"
        moment += timedelta(minutes=1)


# --- once --------------------------------------------------------------------------------


def test_once_fires_once_then_never() -> None:
    run_at = utc(2026, 6, 1, 8, 0)
    trigger = OnceTrigger(run_at)
    assert trigger.after(run_at - timedelta(seconds=1)) == run_at
    assert trigger.after(run_at) is None
    assert trigger.at_or_after(run_at) == run_at
    assert trigger.at_or_after(run_at + timedelta(microseconds=1)) is None
    assert trigger.upcoming(run_at - timedelta(days=1), 5) == [run_at]
    assert trigger.upcoming(run_at + timedelta(days=1), 5) == []


def test_once_normalises_to_utc() -> None:
    trigger = OnceTrigger(datetime(2026, 6, 1, 10, 0, tzinfo=BERLIN))
    assert trigger.run_at == utc(2026, 6, 1, 8, 0) and trigger.run_at.tzinfo is UTC


# --- upcoming ------------------------------------------------------------------------------


def test_upcoming_counts() -> None:
    trigger = IntervalTrigger(30, T0)
    assert trigger.upcoming(T0, 0) == []
    assert trigger.upcoming(T0, 1) == [T0]
    assert len(CronTrigger("* * * * *").upcoming(T0, 100)) == 100
    with pytest.raises(ValueError, match="count must not be negative"):
        trigger.upcoming(T0, -1)


def test_upcoming_includes_a_slot_at_the_moment_itself() -> None:
    assert CronTrigger("0 * * * *").upcoming(utc(2026, 1, 1, 5), 2) == [
        utc(2026, 1, 1, 5),
        utc(2026, 1, 1, 6),
    ]


# --- build_trigger -------------------------------------------------------------------------


def schedule(**fields: object) -> Schedule:
    return Schedule(id="s1", name="s", created_at=T0, **fields)  # type: ignore[arg-type]


def test_build_interval_anchors_at_start_at_else_created_at() -> None:
    start_at = T0 + timedelta(seconds=7)
    anchored = build_trigger(
        schedule(schedule_type=ScheduleType.INTERVAL, interval_seconds=60, start_at=start_at)
    )
    assert anchored.at_or_after(T0) == start_at
    created = build_trigger(schedule(schedule_type=ScheduleType.INTERVAL, interval_seconds=60))
    assert created.after(T0 + timedelta(seconds=1)) == T0 + timedelta(minutes=1)


def test_build_cron_uses_the_schedule_timezone() -> None:
    trigger = build_trigger(
        schedule(
            schedule_type=ScheduleType.CRON, cron_expression="30 2 * * *", timezone="Europe/Berlin"
        )
    )
    assert isinstance(trigger, CronTrigger) and isinstance(trigger, Trigger)
    assert trigger.after(utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 1, 0)


def test_build_once_reads_a_naive_run_at_in_the_schedule_timezone() -> None:
    aware = build_trigger(schedule(schedule_type=ScheduleType.ONCE, run_at=utc(2026, 6, 1, 8)))
    assert aware.at_or_after(T0) == utc(2026, 6, 1, 8)
    naive = build_trigger(
        schedule(
            schedule_type=ScheduleType.ONCE,
            run_at=datetime(2026, 3, 29, 2, 30),
            timezone="Europe/Berlin",
        )
    )
    assert naive.at_or_after(T0) == utc(2026, 3, 29, 1, 0)  # in the gap: at its end


@pytest.mark.parametrize(
    ("schedule_type", "needed"),
    [
        (ScheduleType.INTERVAL, "interval_seconds"),
        (ScheduleType.CRON, "cron_expression"),
        (ScheduleType.ONCE, "run_at"),
    ],
)
def test_build_names_the_missing_field(schedule_type: ScheduleType, needed: str) -> None:
    with pytest.raises(ValueError, match=needed):
        build_trigger(schedule(schedule_type=schedule_type))


def test_build_rejects_an_unknown_timezone() -> None:
    with pytest.raises(ValueError, match="unknown timezone 'Mars/Olympus'"):
        build_trigger(
            schedule(
                schedule_type=ScheduleType.CRON,
                cron_expression="* * * * *",
                timezone="Mars/Olympus",
            )
        )


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    ["* * * * *", "*/10 * * * * *", "0 9 * * mon-fri", "0 0 L * *", "@weekly", " 5 4 * * * "],
)
def test_validate_cron_accepts(expression: str) -> None:
    validate_cron(expression)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "cron expression is empty"),
        ("* * * *", "has 4 fields; it needs 5 .* or 6 with seconds first"),
        ("* * * * * * *", "has 7 fields"),
        ("61 * * * *", "cron field minute is '61', which is not valid: allowed are 0-59"),
        ("* 24 * * *", "cron field hour is '24'.* allowed are 0-23"),
        ("* * 0 * *", "cron field day-of-month is '0'.* allowed are 1-31 or L"),
        ("* * 32 * *", "cron field day-of-month is '32'"),
        ("* * * 13 *", "cron field month is '13'.* allowed are 1-12 or JAN-DEC"),
        ("* * * foo *", "cron field month is 'foo'"),
        ("* * * * 8", "cron field day-of-week is '8'.* allowed are 0-7"),
        ("* * * * funday", "cron field day-of-week is 'funday'"),
        ("60 * * * * *", "cron field second is '60'.* allowed are 0-59"),
        ("0 60 * * * *", "cron field minute is '60'"),
        ("*/0 * * * *", "cron field minute is '\\*/0'"),
        ("-1 * * * *", "cron field minute is '-1'"),
        ("R * * * *", "cron field minute is 'R': hashed \\(H\\) and random \\(R\\)"),
        ("0 H * * *", "cron field hour is 'H'"),
        ("@reboot", "unknown cron shortcut '@reboot'"),
        ("0 0 31 2 *", "is not valid: Day\\(s\\) \\[31\\] can never occur in month\\(s\\) \\[2\\]"),
    ],
)
def test_validate_cron_says_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_cron(expression)


def test_cron_trigger_constructor_gives_the_same_messages() -> None:
    with pytest.raises(ValueError, match="cron field hour is '25'"):
        CronTrigger("0 25 * * *")
    with pytest.raises(ValueError, match="unknown timezone"):
        CronTrigger("0 1 * * *", "Nowhere")


def test_validate_timezone() -> None:
    validate_timezone("Europe/Berlin")
    validate_timezone("UTC")
    with pytest.raises(ValueError, match="unknown timezone 'Mars/Olympus': use an IANA name"):
        validate_timezone("Mars/Olympus")
    with pytest.raises(ValueError, match="did you mean 'Europe/Berlin'"):
        validate_timezone("europe/berlin")
    for bad in ("", "../../etc/passwd"):
        with pytest.raises(ValueError, match="unknown timezone"):
            validate_timezone(bad)


# --- jitter --------------------------------------------------------------------------------


def test_jitter_is_deterministic_per_schedule_and_slot() -> None:
    slot = utc(2026, 5, 1, 12)
    first = jitter_offset("sched-a", slot, 30)
    assert first == jitter_offset("sched-a", slot, 30)
    # The same instant written in another zone is the same slot.
    assert first == jitter_offset("sched-a", slot.astimezone(BERLIN), 30)
    assert first != jitter_offset("sched-b", slot, 30)
    assert first != jitter_offset("sched-a", slot + timedelta(minutes=1), 30)


def test_jitter_stays_in_range_and_spreads() -> None:
    slot = utc(2026, 5, 1, 12)
    offsets = [jitter_offset(f"s{i}", slot, 10.0) for i in range(2000)]
    assert all(0 <= o < 10.0 for o in offsets)
    buckets = collections.Counter(int(o) for o in offsets)
    assert set(buckets) == set(range(10))
    assert min(buckets.values()) > 120  # about 200 each when spread evenly


def test_jitter_zero_and_invalid() -> None:
    assert jitter_offset("s", T0, 0) == 0.0
    with pytest.raises(ValueError, match="jitter must be zero or a positive number"):
        jitter_offset("s", T0, -1)
    with pytest.raises(ValueError, match="slot must be timezone-aware"):
        jitter_offset("s", datetime(2026, 1, 1), 5)
