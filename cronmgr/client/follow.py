"""Following the log from a client: the filter parameters of the log endpoints, and
`_LogStream`, which reads the server-sent events of `GET /api/v1/logs/stream` and keeps
the last event id, so that a dropped connection resumes where the last line left off."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cronmgr.client.calls import Call, Moment, _query

FOLLOW_LINES = 10
FOLLOW_POLL_SECONDS = 0.5
FOLLOW_KEEPALIVE_SECONDS = 15.0


def _log_filters(
    level: str | None,
    run_id: str | None,
    schedule_id: str | None,
    event: str | Iterable[str] | None,
    since: Moment | None,
) -> dict[str, str | int]:
    """The log endpoints' filter parameters; several events go as one comma list."""
    events = event if event is None or isinstance(event, str) else ",".join(event)
    return _query(level=level, run_id=run_id, schedule_id=schedule_id, event=events, since=since)


def _keepalive(timeout: float) -> float:
    """The keep-alive period to ask a stream for: well within the client's read timeout."""
    return min(FOLLOW_KEEPALIVE_SECONDS, max(0.1, timeout / 3))


class _LogStream:
    """A `follow_logs()` loop's state across connections: its query and the last event id.

    Reads the server-sent events of `GET /api/v1/logs/stream` line by line: the lines of
    the log are the `data` of the unnamed events; named ones (`rotated`, `cleared`) and
    comments only inform. Every event's `id` is the cursor after it, so a new connection
    starts exactly after the last event received, never after half of one.
    """

    def __init__(
        self, lines: int, cursor: str | None, filters: Mapping[str, str | int], keepalive: float
    ) -> None:
        self.last_id = cursor
        self._lines = lines
        self._query = {**filters, "keepalive_seconds": f"{keepalive:g}"}
        self._id: str | None = None
        self._kind = ""
        self._data: list[str] = []

    def call(self) -> Call:
        """The request that starts (or resumes) the stream."""
        start = {"lines": self._lines} if self.last_id is None else {"cursor": self.last_id}
        return Call("GET", "/api/v1/logs/stream", query={**self._query, **start})

    def feed(self, raw: bytes) -> str | None:
        """One line of the stream; the log line when it completes an event that carries one."""
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not text:
            return self._dispatch()
        name, _, value = text.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        elif name == "event":
            self._kind = value
        return None  # a comment (keep-alive), `retry`, or a field still being gathered

    def broken(self) -> None:
        """The connection ended: what it sent of an unfinished event is dropped."""
        self._id, self._kind, self._data = None, "", []

    def _dispatch(self) -> str | None:
        data, kind = self._data, self._kind
        if self._id is not None:
            self.last_id = self._id
        self.broken()
        return "\n".join(data) if data and kind in ("", "message") else None
