"""One attempt of an HTTP target while it runs, and the result and log line it ends with.

An `Exchange` holds the attempt's clock, the status and headers of the response and the
body read so far; it judges a complete response (status, then assertions), words a
failure with its secrets scrubbed, and says how long the server asked to wait before the
next attempt. `attempt_fields` are the log fields that say how an attempt went.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from typing import Any

from cronmgr.core.models import ErrorType, RunStatus, StepResult, Target, utcnow
from cronmgr.core.retry import retry_after_seconds
from cronmgr.core.secret_refs import SecretResolver, redact
from cronmgr.runners.http.assertions import check_assertions
from cronmgr.runners.http.body import Body
from cronmgr.runners.step_reports import elapsed_ms

TRUNCATED_NOTE = "[body cut after {size} bytes; the rest was not read]"


class Exchange:
    """One attempt while it runs: its clock, the response status, the body read so far."""

    def __init__(
        self, target: Target, attempt: int, secrets: SecretResolver, max_bytes: int
    ) -> None:
        self.target = target
        self.attempt = attempt
        self.secrets = secrets
        self.body = Body(max_bytes)
        self.status_code: int | None = None
        self.reason: str | None = None
        self.retry_after_header: str | None = None
        self.started_at = utcnow()
        self._started = time.monotonic()
        self._duration_ms: int | None = None

    def head(self, status: int, reason: str, headers: Mapping[str, str]) -> None:
        """Take the status line and the headers that matter (they arrive before the body)."""
        self.status_code, self.reason = status, reason or None
        self.retry_after_header = headers.get("Retry-After") or headers.get("retry-after")

    def stop_clock(self) -> None:
        """The response is complete: its duration is fixed now."""
        self._duration_ms = elapsed_ms(self._started)

    def retry_after(self) -> float | None:
        """Seconds the server asked us to wait, if it did."""
        return retry_after_seconds(self.retry_after_header, utcnow())

    def judged(self) -> StepResult:
        """The result of a complete response: status, then assertions."""
        status = self.status_code
        assert status is not None  # only called once the response is in
        if not self.target.status_ok(status):
            return self.failed(_status_error_type(status), self._status_message(status))
        duration_ms = self._elapsed()
        failures = check_assertions(self.target.assertions, self.body, duration_ms)
        if failures:
            return self.failed(ErrorType.ASSERTION, "; ".join(failures))
        return self._result(RunStatus.SUCCEEDED)

    def failed(self, error_type: ErrorType, message: str) -> StepResult:
        """A failed result, its message scrubbed of secrets."""
        return self._result(RunStatus.FAILED, error_type, redact(message, self.secrets))

    def cancelled(self) -> StepResult:
        """The result of an attempt abandoned because the run was cancelled."""
        return self._result(
            RunStatus.CANCELLED, ErrorType.CANCELLED, "cancelled while the request was in flight"
        )

    def _status_message(self, status: int) -> str:
        expected = self.target.expected_status
        wanted = ", ".join(map(str, expected)) if expected else "2xx"
        reason = f" {self.reason}" if self.reason else ""
        return f"HTTP {status}{reason} (expected {wanted})"

    def _elapsed(self) -> int:
        if self._duration_ms is None:
            return elapsed_ms(self._started)
        return self._duration_ms

    def _result(
        self, status: RunStatus, error_type: ErrorType | None = None, error: str | None = None
    ) -> StepResult:
        return StepResult(
            step=self.target.name,
            status=status,
            started_at=self.started_at,
            duration_ms=self._elapsed(),
            attempt=self.attempt,
            status_code=self.status_code,
            response_size=self.body.size if self.status_code is not None else None,
            error_type=error_type,
            error=error,
            output_tail=self._tail(),
        )

    def _tail(self) -> tuple[str, ...]:
        excerpt = self.body.excerpt()
        tail: tuple[str, ...] = (redact(excerpt, self.secrets),) if excerpt else ()
        if self.body.truncated:
            tail += (TRUNCATED_NOTE.format(size=self.body.size),)
        return tail


def shown_url(target: Target) -> str:
    """A target's URL as logs show it (redacted, references as written)."""
    return _redacted_url(target.url)


@functools.lru_cache(maxsize=4096)
def _redacted_url(url: str) -> str:
    # The same for every attempt of every run of a target: worked out once.
    return redact(url)


def attempt_fields(result: StepResult, target: Target) -> dict[str, Any]:
    """How an attempt went, as log fields: `http_attempt_finished`'s, and a target run's
    `run_finished` line carries its last attempt's."""
    return {
        "attempt": result.attempt,
        "method": target.method.upper(),
        "url": shown_url(target),
        "status_code": result.status_code,
        "response_size": result.response_size,
        "error_type": result.error_type.value if result.error_type else None,
    }


def _status_error_type(status: int) -> ErrorType:
    if 400 <= status < 500:
        return ErrorType.HTTP_4XX
    if 500 <= status < 600:
        return ErrorType.HTTP_5XX
    return ErrorType.ASSERTION


def log_finished(emit: Callable[..., Any], result: StepResult, target: Target) -> None:
    emit(
        "http_attempt_finished",
        status=result.status.value,
        duration_ms=result.duration_ms,
        error=result.error,
        **attempt_fields(result, target),
    )
