"""One exception hierarchy for the whole project, each class carrying its HTTP status.

The web layer turns these into the uniform JSON error body in one place; the client turns
status codes back into the same classes.
"""

from __future__ import annotations

from typing import Any


class CronmgrError(Exception):
    """Base of every error cronmgr raises on purpose."""

    status = 500

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class BadRequest(CronmgrError):
    """The request cannot be read at all (malformed JSON, wrong content)."""

    status = 400


class Unauthorized(CronmgrError):
    """No valid credentials were given."""

    status = 401


class Forbidden(CronmgrError):
    """Credentials were given but do not allow this."""

    status = 403


class NotFound(CronmgrError):
    """The addressed resource does not exist."""

    status = 404


class MethodNotAllowed(CronmgrError):
    """The path exists but not with this method."""

    status = 405


class Conflict(CronmgrError):
    """The request clashes with the current state (already running, duplicate name)."""

    status = 409


class PayloadTooLarge(CronmgrError):
    """The request body is larger than the configured limit."""

    status = 413


class TooManyRequests(CronmgrError):
    """Refused for now (too many wrong tokens from one address); try again later."""

    status = 429

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(detail, errors=errors)
        self.retry_after = retry_after
        """Seconds to wait before trying again, when known (the Retry-After header)."""


class InvalidInput(CronmgrError):
    """The request was read but its fields are not acceptable."""

    status = 422


class DaemonError(CronmgrError):
    """The daemon could not be started or stopped; `detail` carries its own words."""

    status = 503


class ConfigError(CronmgrError):
    """The configuration file or environment holds an unusable value."""

    status = 500


class StoreError(CronmgrError):
    """The store failed; raised from the driver's own error."""

    status = 500


class StoreFull(StoreError):
    """The store has no room to write: its disk is full (or its size limit reached)."""

    status = 507


class StoreUnavailable(StoreError):
    """The store cannot be reached for now (its server is down or the network cut); the
    daemon holds its run writes until it is back, and the API answers 503 meanwhile."""

    status = 503


class ControllerUnreachable(CronmgrError):
    """No answer from the controller at all (refused, timed out); raised by the client only."""

    # Never sent by the controller, so absent from the table below; 503 is what a proxy
    # would answer for a backend it cannot reach.
    status = 503


ERRORS_BY_STATUS: dict[int, type[CronmgrError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        PayloadTooLarge,
        InvalidInput,
        TooManyRequests,
        DaemonError,
        StoreFull,
    )
}


def error_for_status(status: int) -> type[CronmgrError]:
    """The exception class a client raises for an HTTP error status."""
    return ERRORS_BY_STATUS.get(status, CronmgrError)
