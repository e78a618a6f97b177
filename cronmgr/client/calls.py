"""The request description both clients share: a `Call` (method, path, query, JSON body)
and the builders of the calls that more than one endpoint sends (paged lists, `/api/v1`
paths, query strings with datetimes as ISO 8601)."""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import time as clock_time
from typing import Any

import orjson

Item = dict[str, Any]
Moment = datetime | str  # a datetime, or an ISO 8601 string sent as it is


@dataclass(frozen=True, slots=True)
class Call:
    """One request to the controller: method, path, query parameters and JSON body."""

    method: str
    path: str
    query: Mapping[str, str | int] = field(default_factory=dict)
    body: Mapping[str, Any] | None = None

    def url(self, base_url: str) -> str:
        """The full URL under `base_url`."""
        query = urllib.parse.urlencode(self.query)
        return base_url + self.path + (f"?{query}" if query else "")

    def content(self) -> bytes | None:
        """The encoded body, or None when the call sends none."""
        if self.body is None:
            return None
        # orjson would write datetimes itself; passing them through keeps one documented
        # rule (isoformat) for bodies and query strings alike.
        return orjson.dumps(self.body, default=_isoformat, option=orjson.OPT_PASSTHROUGH_DATETIME)

    def at_offset(self, offset: int) -> Call:
        """The same call asking for the page that starts at `offset`."""
        return dataclasses.replace(self, query={**self.query, "offset": offset})


def _launch_body(interval_seconds: int | None, pipeline: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if interval_seconds is not None:
        body["interval_seconds"] = interval_seconds
    if pipeline is not None:
        body["pipeline"] = pipeline
    return body


# --- building calls -----------------------------------------------------------------------


def _path(*segments: str) -> str:
    """`/api/v1/` and the segments, each percent-encoded so that no id can change the route."""
    return "/api/v1/" + "/".join(urllib.parse.quote(s, safe="") for s in segments)


def _query(**params: str | int | datetime | None) -> dict[str, str | int]:
    """The given query parameters, None left out, datetimes as ISO 8601."""
    return {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in params.items()
        if value is not None
    }


def _targets(limit: int | None, offset: int | None) -> Call:
    return Call("GET", _path("targets"), query=_query(limit=limit, offset=offset))


def _schedules(
    status: str | None, target_id: str | None, limit: int | None, offset: int | None
) -> Call:
    query = _query(status=status, target_id=target_id, limit=limit, offset=offset)
    return Call("GET", _path("schedules"), query=query)


def _runs(
    schedule_id: str | None,
    status: str | None,
    since: Moment | None,
    target_id: str | None,
    limit: int | None,
    offset: int | None,
) -> Call:
    query = _query(
        schedule_id=schedule_id,
        status=status,
        since=since,
        target_id=target_id,
        limit=limit,
        offset=offset,
    )
    return Call("GET", _path("runs"), query=query)


def _isoformat(value: object) -> str:
    """orjson's `default`: datetimes, dates and times as ISO 8601."""
    if isinstance(value, datetime | date | clock_time):
        return value.isoformat()
    raise TypeError(f"cannot send a {type(value).__name__} as JSON")
