"""Retry decisions and delays: exponential backoff with equal jitter, Retry-After, what retries."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from cronmgr.core.models import ErrorType, RetryPolicy
from cronmgr.core.retry import backoff_delay, retry_after_seconds, retry_delay, should_retry

NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def policy(**kwargs: float | bool) -> RetryPolicy:
    return RetryPolicy(**kwargs)  # type: ignore[arg-type]


# --- backoff -------------------------------------------------------------------------------


def test_backoff_doubles_from_the_base_and_stops_at_the_cap() -> None:
    steady = policy(backoff_base_seconds=0.5, backoff_max_seconds=3.0, jitter=False)
    delays = [backoff_delay(steady, attempt) for attempt in range(1, 7)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_backoff_of_an_absurd_attempt_number_is_the_cap_not_an_overflow() -> None:
    steady = policy(backoff_base_seconds=1.0, backoff_max_seconds=30.0, jitter=False)
    assert backoff_delay(steady, 10_000) == 30.0
    assert backoff_delay(steady, 0) == 1.0  # attempts count from 1; less is the first


def test_equal_jitter_waits_at_least_half_the_backoff_and_at_most_all_of_it() -> None:
    jittered = policy(backoff_base_seconds=1.0, backoff_max_seconds=30.0, jitter=True)
    rng = random.Random(42)
    for attempt, full in ((1, 1.0), (2, 2.0), (3, 4.0), (9, 30.0)):
        delays = [backoff_delay(jittered, attempt, rng) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays)
        assert len(set(delays)) > 100  # really drawn, not a constant


def test_jitter_is_reproducible_with_a_seeded_rng() -> None:
    jittered = policy(backoff_base_seconds=1.0)
    first = [backoff_delay(jittered, 3, random.Random(7)) for _ in range(3)]
    assert len(set(first)) == 1


def test_zero_base_means_no_wait() -> None:
    assert backoff_delay(policy(backoff_base_seconds=0.0), 5) == 0.0


# --- what is retried -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type", "expected"),
    [
        (None, ErrorType.TIMEOUT, True),
        (200, ErrorType.TIMEOUT, True),  # headers came, the body did not
        (None, ErrorType.DNS, True),
        (None, ErrorType.CONNECTION, True),
        (500, ErrorType.HTTP_5XX, True),
        (503, ErrorType.HTTP_5XX, True),
        (408, ErrorType.HTTP_4XX, True),
        (429, ErrorType.HTTP_4XX, True),
        (400, ErrorType.HTTP_4XX, False),
        (401, ErrorType.HTTP_4XX, False),
        (404, ErrorType.HTTP_4XX, False),
        (None, ErrorType.SSL, False),
        (200, ErrorType.ASSERTION, False),
        (500, ErrorType.ASSERTION, False),  # 500 was expected; the body was wrong
        (302, ErrorType.ASSERTION, False),
        (None, ErrorType.UNKNOWN, False),
        (None, ErrorType.CANCELLED, False),
        (502, None, True),
        (429, None, True),
        (418, None, False),
        (None, None, False),
    ],
)
def test_should_retry(status: int | None, error_type: ErrorType | None, expected: bool) -> None:
    assert should_retry(status, error_type) is expected


# --- Retry-After ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("5", 5.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("5 seconds", None),
        ("Mon, 99 Foo 2024 99:99:99 GMT", None),
    ],
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert retry_after_seconds(header, NOW) == expected


def test_retry_after_http_date_is_seconds_from_now() -> None:
    header = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert retry_after_seconds(header, NOW) == 90.0


def test_retry_after_date_in_the_past_means_now() -> None:
    header = format_datetime(NOW - timedelta(hours=1), usegmt=True)
    assert retry_after_seconds(header, NOW) == 0.0


def test_retry_after_rfc850_and_asctime_dates_are_read_too() -> None:
    assert retry_after_seconds("Monday, 06-May-24 07:08:19 GMT", NOW) == 10.0
    assert retry_after_seconds("Mon May  6 07:08:29 2024", NOW) == 20.0


# --- the delay used ------------------------------------------------------------------------


def test_retry_after_replaces_the_backoff_up_to_its_cap() -> None:
    capped = policy(backoff_base_seconds=10.0, retry_after_max_seconds=60.0, jitter=False)
    assert retry_delay(capped, 1, retry_after=2.0) == 2.0
    assert retry_delay(capped, 1, retry_after=3600.0) == 60.0
    assert retry_delay(capped, 1, retry_after=0.0) == 0.0


def test_without_retry_after_the_backoff_is_used() -> None:
    steady = policy(backoff_base_seconds=0.25, jitter=False)
    assert retry_delay(steady, 3) == 1.0
    assert retry_delay(steady, 3, retry_after=None) == 1.0
