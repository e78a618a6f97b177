"""When a failed HTTP attempt is tried again, and how long to wait before it.

Pure functions, no I/O: the HTTP runner asks `should_retry` after a failed attempt and
sleeps `retry_delay` seconds before the next one.

- Backoff is exponential, `base * 2 ** (attempt - 1)`, capped at `backoff_max_seconds`.
  With `jitter` on it is *equal jitter*: half the backoff for sure, the other half drawn
  at random. Full jitter (anything in `[0, backoff]`) spreads a crowd of clients best, but
  a scheduler retries one target a few times, and a retry drawn near 0 s after a failure
  gives a struggling server no time at all and wastes one of those few attempts; equal
  jitter keeps a floor and still de-synchronises schedules that failed together.
- A `Retry-After` header, when the response carries one, replaces the backoff: the server
  knows best when it will answer again. It is capped at `retry_after_max_seconds`, so a
  server cannot park a run for an hour.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from cronmgr.core.models import ErrorType, RetryPolicy

#: Statuses below 500 that mean "try again later" rather than "your request is wrong".
RETRYABLE_4XX = frozenset({408, 429})

# Transport failures that say nothing about the request itself: the next try may work.
_TRANSIENT = frozenset({ErrorType.TIMEOUT, ErrorType.DNS, ErrorType.CONNECTION})
# Failures a retry cannot fix:
# - ssl: an untrusted or mismatched certificate stays so until someone changes it; a
#   retry only hammers the server with the same doomed handshake;
# - assertion: the server answered as it meant to (status expected, body wrong); asking
#   again within seconds gets the same answer, and the run reports the real problem;
# - unknown: template errors, missing secrets, bad URLs: the request itself is broken;
# - cancelled: the daemon is stopping.
_FINAL = frozenset(
    {
        ErrorType.SSL,
        ErrorType.ASSERTION,
        ErrorType.UNKNOWN,
        ErrorType.CANCELLED,
        ErrorType.EXIT_CODE,
    }
)
# 2 ** 62 times any sane base already exceeds every cap; larger exponents only overflow.
_MAX_EXPONENT = 62
_DELTA_SECONDS = re.compile(r"-?\d+(?:\.\d+)?")


def backoff_delay(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based), before the next one."""
    exponent = min(max(attempt, 1) - 1, _MAX_EXPONENT)
    delay = min(max(policy.backoff_base_seconds, 0.0) * 2.0**exponent, policy.backoff_max_seconds)
    delay = max(delay, 0.0)
    if not policy.jitter:
        return delay
    uniform = rng.uniform if rng is not None else random.uniform
    return delay / 2 + uniform(0.0, delay / 2)


def should_retry(status: int | None, error_type: ErrorType | None) -> bool:
    """Whether an attempt that failed this way is worth another try.

    The error class decides when given; without one (a caller judging a bare status)
    the status does: 5xx, 408 and 429 are retried, everything else is not.
    """
    if error_type in _TRANSIENT:
        return True
    if error_type in _FINAL:
        return False
    if status is None:
        return False
    return status >= 500 or status in RETRYABLE_4XX


def retry_after_seconds(header: str | None, now: datetime) -> float | None:
    """A `Retry-After` value (delta-seconds or an HTTP date) as seconds from `now`.

    A negative delay or a date in the past means "now" (0.0); an unreadable header, like
    a missing one, gives None.
    """
    if header is None:
        return None
    text = header.strip()
    if _DELTA_SECONDS.fullmatch(text):
        return max(float(text), 0.0)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" dates parse naive; HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def retry_delay(
    policy: RetryPolicy,
    attempt: int,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """The wait actually used after failed `attempt`: Retry-After (capped) if any, else backoff."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), max(policy.retry_after_max_seconds, 0.0))
    return backoff_delay(policy, attempt, rng)
