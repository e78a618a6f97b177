"""Every endpoint of the controller's API, described once in `_Endpoints`: each method
builds a `Call` and hands it to the transport a subclass supplies (`Client`'s blocking
one, `AsyncClient`'s asyncio one), asking for a JSON object, a JSON array, text, or every
item of a paged list back."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from cronmgr.client.calls import (
    Call,
    Moment,
    _launch_body,
    _path,
    _query,
    _runs,
    _schedules,
    _targets,
)
from cronmgr.client.follow import _log_filters

J = TypeVar("J")  # what a JSON object call returns: a dict, or an awaitable of one
A = TypeVar("A")  # what a JSON array call returns: a list, or an awaitable of one
T = TypeVar("T")  # what a text call returns: a str, or an awaitable of one
P = TypeVar("P")  # what a paged list gives: a generator of its items, or an async one


class _Endpoints(ABC, Generic[J, A, T, P]):
    """Every endpoint, once; subclasses supply the transport.

    Resource ids are positional-only, so that `**changes` may hold any field name
    (`update_schedule(sid, target_id=...)`).
    """

    base_url: str

    def start(self, interval_seconds: int | None = None, pipeline: str | None = None) -> J:
        """Start the daemon (every `interval_seconds`, running `pipeline`); 409 if running.

        With no pipeline asked for and none loaded, it runs the schedules only: the answer's
        `schedules_only` is true, and its `warnings` says when `interval_seconds` went unused."""
        body = _launch_body(interval_seconds, pipeline)
        return self._json(Call("POST", "/api/cron/start", body=body))

    def stop(self) -> J:
        """Stop the daemon; fine when it is not running."""
        return self._json(Call("POST", "/api/cron/stop"))

    def restart(self, interval_seconds: int | None = None, pipeline: str | None = None) -> J:
        """Stop, then start with the given settings or the last ones."""
        body = _launch_body(interval_seconds, pipeline)
        return self._json(Call("POST", "/api/cron/restart", body=body))

    def reload(self) -> J:
        """Make the daemon re-read its pipeline and reopen its log (NotFound if stopped)."""
        return self._json(Call("POST", "/api/cron/reload"))

    def status(self) -> J:
        """The daemon's state: is_running, pid, message, process and supervision details."""
        return self._json(Call("GET", "/api/cron/status"))

    def get_logs(self, lines: int | None = None) -> J:
        """The last `lines` log lines (a bounded default) as `{"logs", "line_count"}`."""
        # Like the seed's client, 0 asks for the default amount rather than for nothing.
        query: dict[str, str | int] = {"lines": lines} if lines else {}
        return self._json(Call("GET", "/api/cron/logs", query=query))

    def tail_logs(self, lines: int = 50) -> T:
        """The last `lines` log lines as plain text."""
        return self._text(Call("GET", "/api/cron/logs/tail", query={"lines": lines}))

    def clear_logs(self) -> J:
        """Empty the daemon's log file."""
        return self._json(Call("DELETE", "/api/cron/logs"))

    def health(self) -> J:
        """Whether the controller answers (no token needed)."""
        return self._json(Call("GET", "/health"))

    def log_page(
        self,
        cursor: str | None = None,
        lines: int | None = None,
        *,
        level: str | None = None,
        run_id: str | None = None,
        schedule_id: str | None = None,
        event: str | Iterable[str] | None = None,
        since: Moment | None = None,
    ) -> J:
        """Log lines after `cursor` (without one, the last `lines`) that pass the filters.

        `level` is a minimum (`"warning"`: warning, error, critical); `event` one name or
        several. The answer: `{lines, cursor, rotated, cleared, reset, more}`; pass its
        `cursor` back for the next page, at once while `more` is true.
        """
        filters = _log_filters(level, run_id, schedule_id, event, since)
        query = {**_query(cursor=cursor, lines=lines), **filters}
        return self._json(Call("GET", "/api/v1/logs", query=query))

    # --- /api/v1 targets ------------------------------------------------------------------

    def create_target(self, name: str, url: str, **fields: Any) -> J:
        """Create an HTTP target; `fields` as in the API (method, headers, retry, ...)."""
        return self._json(Call("POST", _path("targets"), body={"name": name, "url": url, **fields}))

    def list_targets(self, limit: int | None = None, offset: int | None = None) -> A:
        """One page of targets, by name; `iter_targets` follows every page."""
        return self._array(_targets(limit, offset))

    def iter_targets(self, page_size: int | None = None) -> P:
        """Every target, fetching `page_size` per request."""
        return self._pages(_targets(page_size, None))

    def get_target(self, target_id: str, /) -> J:
        """One target (credential headers and URL secrets shown as `***`)."""
        return self._json(Call("GET", _path("targets", target_id)))

    def update_target(self, target_id: str, /, **changes: Any) -> J:
        """Change the given fields (JSON merge patch: None resets a field to its default)."""
        return self._json(Call("PATCH", _path("targets", target_id), body=changes))

    def delete_target(self, target_id: str, /, cascade: bool | None = None) -> J:
        """Delete a target; Conflict while schedules use it, unless `cascade` deletes them.
        Without `cascade`, the controller's `cascade_deletes` setting decides (off: 409)."""
        query: dict[str, str | int] = {}
        if cascade is not None:
            query["cascade"] = "true" if cascade else "false"
        return self._json(Call("DELETE", _path("targets", target_id), query=query))

    # --- /api/v1 schedules ----------------------------------------------------------------

    def create_schedule(self, name: str, schedule_type: str, **fields: Any) -> J:
        """Create a schedule; `fields` as in the API (target_id or pipeline, timing, ...).

        The answer's `warnings` (a list of sentences) is empty, or says that no daemon runs
        to fire the schedule yet."""
        body = {"name": name, "schedule_type": schedule_type, **fields}
        return self._json(Call("POST", _path("schedules"), body=body))

    def list_schedules(
        self,
        status: str | None = None,
        target_id: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> A:
        """One page of schedules, by name, filtered; `iter_schedules` follows every page."""
        return self._array(_schedules(status, target_id, limit, offset))

    def iter_schedules(
        self, status: str | None = None, target_id: str | None = None, page_size: int | None = None
    ) -> P:
        """Every schedule that passes the filters, fetching `page_size` per request."""
        return self._pages(_schedules(status, target_id, page_size, None))

    def get_schedule(self, schedule_id: str, /) -> J:
        """One schedule: definition, status and the engine's bookkeeping."""
        return self._json(Call("GET", _path("schedules", schedule_id)))

    def update_schedule(self, schedule_id: str, /, **changes: Any) -> J:
        """Change the given fields (JSON merge patch); the status is kept."""
        return self._json(Call("PATCH", _path("schedules", schedule_id), body=changes))

    def delete_schedule(self, schedule_id: str, /) -> J:
        """Delete a schedule; its runs stay."""
        return self._json(Call("DELETE", _path("schedules", schedule_id)))

    def pause_schedule(self, schedule_id: str, /) -> J:
        """Stop a schedule firing; Conflict when it is completed."""
        return self._json(Call("POST", _path("schedules", schedule_id, "pause")))

    def resume_schedule(self, schedule_id: str, /) -> J:
        """Make a schedule fire again, its failure count and circuit breaker reset; the
        answer's `warnings` as `create_schedule`'s."""
        return self._json(Call("POST", _path("schedules", schedule_id, "resume")))

    def next_runs(self, schedule_id: str, /, count: int = 5) -> A:
        """The next `count` fire times (ISO 8601 strings in the schedule's timezone)."""
        query = {"count": count}
        return self._array(Call("GET", _path("schedules", schedule_id, "next"), query=query))

    # --- /api/v1 runs ---------------------------------------------------------------------

    def list_runs(
        self,
        schedule_id: str | None = None,
        status: str | None = None,
        since: Moment | None = None,
        target_id: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> A:
        """One page of runs (without steps), newest first; `iter_runs` follows every page."""
        return self._array(_runs(schedule_id, status, since, target_id, limit, offset))

    def iter_runs(
        self,
        schedule_id: str | None = None,
        status: str | None = None,
        since: Moment | None = None,
        target_id: str | None = None,
        page_size: int | None = None,
    ) -> P:
        """Every run that passes the filters, newest first, fetching `page_size` per request.

        Offset paging: a run recorded while you iterate shifts the later pages by one, so
        the run at a page boundary can come twice.
        """
        return self._pages(_runs(schedule_id, status, since, target_id, page_size, None))

    def get_run(self, run_id: str, /) -> J:
        """One run with its steps and every attempt of each."""
        return self._json(Call("GET", _path("runs", run_id)))

    # --- /api/v1 pipelines, the OpenAPI document ------------------------------------------

    def list_pipelines(self) -> A:
        """Every pipeline that loaded: name, description, step_count, file."""
        return self._array(Call("GET", _path("pipelines")))

    def get_pipeline(self, name: str, /) -> J:
        """One pipeline with its steps (of each step's environment only the names)."""
        return self._json(Call("GET", _path("pipelines", name)))

    def run_pipeline(self, name: str, /) -> J:
        """Ask the daemon to run a pipeline now: the pending run (202); Conflict (409)
        when its overlap policy forbids a second run or the daemon is not running."""
        return self._json(Call("POST", _path("pipelines", name, "run")))

    # --- /api/v1 nodes --------------------------------------------------------------------

    def nodes(self) -> A:
        """Every node (daemon) of the store, by id: its row, `lease_expires_in_seconds`,
        `pipelines_differing` and `this_host` (not paged)."""
        return self._array(Call("GET", _path("nodes")))

    # --- observability ----------------------------------------------------------------

    def metrics(self, window_hours: int | None = None) -> J:
        """Per schedule, target and pipeline: runs, success rate, percentiles, availability;
        the daemon's rate, lag and queue depth (`GET /api/v1/metrics`)."""
        return self._json(Call("GET", "/api/v1/metrics", query=_query(window_hours=window_hours)))

    def prometheus_metrics(self) -> T:
        """The same figures in Prometheus text exposition."""
        return self._text(Call("GET", "/api/v1/metrics/prometheus"))

    def list_incidents(
        self,
        status: str | None = None,
        *,
        job: str | None = None,
        target_id: str | None = None,
        pipeline: str | None = None,
        since: Moment | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> A:
        """One page of incidents (downtime windows), newest first, filtered."""
        query = _query(
            status=status,
            job=job,
            target_id=target_id,
            pipeline=pipeline,
            since=since,
            limit=limit,
            offset=offset,
        )
        return self._array(Call("GET", _path("incidents"), query=query))

    def test_notifications(self, webhook: str | None = None) -> J:
        """Send a `test` event to every webhook (or the one named); the delivery results."""
        query = _query(webhook=webhook)
        return self._json(Call("POST", "/api/v1/notifications/test", query=query))

    def openapi(self) -> J:
        """The controller's OpenAPI 3.1 document."""
        return self._json(Call("GET", "/openapi.json"))

    # --- what the transports supply -------------------------------------------------------

    @abstractmethod
    def _json(self, call: Call) -> J:
        """Send `call`; its decoded JSON object."""

    @abstractmethod
    def _array(self, call: Call) -> A:
        """Send `call`; its decoded JSON array."""

    @abstractmethod
    def _text(self, call: Call) -> T:
        """Send `call`; its body as text."""

    @abstractmethod
    def _pages(self, call: Call) -> P:
        """Send `call`, then the call of each next page; the items of every page."""
