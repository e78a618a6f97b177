"""Running HTTP targets: one pooled client, bounded reads, assertions, classified retries.

Conventions a caller relies on:

- `run_target` returns one `StepResult` per attempt (attempt 1..n, step = target name)
  and hands each to `on_attempt` as soon as it is known; on cancellation the interrupted
  attempt is reported as `cancelled` before CancelledError propagates. A cancellation
  during the wait between attempts reports nothing more: no attempt was in flight.
- The body is read in chunks: the first `KEEP_BYTES` are kept for the assertions, the
  rest only counted, and reading stops once `max_response_bytes` have arrived (the
  connection is then dropped). `response_size` is the number of body bytes read, after
  content decoding (gzip, deflate), so it is what a compression bomb would have inflated
  to, and never more than the cap plus one chunk.
- `output_tail` holds one string: the first `EXCERPT_BYTES` of the body as UTF-8 (bad
  bytes become U+FFFD), secrets scrubbed; when the read was cut at the cap a second
  string says so. Empty body, empty tuple.
- `duration_ms` runs on the monotonic clock from just before the request to the end of
  the body, and is the latency `max_latency_ms` checks.
- A status the target does not expect is `http_4xx` or `http_5xx` in those ranges; any
  other unexpected status (a 3xx not followed, a 204 when 200 was listed, a 1xx or a
  non-standard 6xx) is `assertion`: the server answered, just not as the target says
  it should, and retrying would not change that.
- Nothing logged or returned contains a resolved secret: URLs are logged as defined
  (with their `${env:NAME}` references), redacted; messages and excerpts are scrubbed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self

import structlog

from cronmgr.core.models import ErrorType, RunStatus, StepResult, Target, utcnow
from cronmgr.core.retry import retry_delay, should_retry
from cronmgr.core.secret_refs import MissingSecret, SecretResolver
from cronmgr.core.version import __version__
from cronmgr.observability.logs import bound_fields
from cronmgr.runners.http import wire as wire
from cronmgr.runners.http.attempt import Exchange, log_finished, shown_url
from cronmgr.runners.http.errors import classify_error
from cronmgr.runners.http.request import (
    CONNECT_TIMEOUT_SECONDS,
    MAX_REDIRECTS,
    Prepared,
    RequestContext,
    TemplateCache,
    Unsendable,
)
from cronmgr.runners.http.wire import Request as WireRequest
from cronmgr.runners.http.wire import WireClient
from cronmgr.runners.step_reports import report

# One module-level logger, bound per run: binding a fresh get_logger() each time would
# resolve the configuration anew for every run.
_log = structlog.get_logger("cronmgr.http_runner")

#: Body bytes read at most; beyond this the response is dropped and marked truncated.
MAX_RESPONSE_BYTES = 100 * 1024 * 1024

_TEMPLATE_CACHE_SIZE = 256
_STATIC_CACHE_SIZE = 4096
"""Static targets whose prepared request is kept; past it the cache starts over."""

AttemptCallback = Callable[[StepResult], Awaitable[None] | None]


class Resolver(Protocol):
    """Looks up a host's addresses, as aiohttp's `AbstractResolver` does (one fits)."""

    async def resolve(
        self, host: str, port: int = ..., family: socket.AddressFamily = ...
    ) -> Sequence[Mapping[str, Any]]:
        """The addresses of `host`, each a mapping with at least "host" and "port"."""
        ...


class HttpRunner:
    """Runs HTTP targets over one pooled lean client (`wire`); use as
    `async with HttpRunner() as r`."""

    def __init__(
        self,
        *,
        resolver: Resolver | None = None,
        limit: int = 1000,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        environ: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """`resolver` looks up host names (the system's resolver by default); `limit`
        bounds the connections held at once, to all hosts together.

        `environ` is where `${env:NAME}` is looked up, the live `os.environ` by default.
        """
        self._resolver = resolver
        self._limit = limit
        self._max_response_bytes = max_response_bytes
        self._environ = environ
        self._rng = rng
        self._wire: WireClient | None = None
        self._templates = TemplateCache(_TEMPLATE_CACHE_SIZE)
        # Requests of static targets by id(target), with the target kept alive beside
        # its request so that its id cannot be reused while the entry stands.
        self._static: dict[int, tuple[Target, Prepared]] = {}

    async def __aenter__(self) -> Self:
        # No cookies, no proxy variables, no .netrc: the lean client knows none of them,
        # so no target's request can pick up what another target or the daemon holds.
        self._wire = WireClient(
            limit=self._limit,
            user_agent=f"cronmgr/{__version__}",
            resolve=_resolve_with(self._resolver) if self._resolver else None,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._wire is not None:
            await self._wire.close()
            self._wire = None

    def _client(self) -> WireClient:
        """The pooled client; only inside `async with`."""
        if self._wire is None:
            raise RuntimeError("HttpRunner is not open: use `async with HttpRunner() as runner`")
        return self._wire

    def prewarm(self, due: Sequence[tuple[Target, datetime]]) -> int:
        """Open connections ahead for targets due at the same moments (slots claimed
        ahead), so a burst does not wait for handshakes; how many are being opened. URLs
        with secrets in them are left alone."""
        if self._wire is None:
            return 0
        return self._wire.prewarm(
            (target.url, target.verify_tls, slot) for target, slot in due if "${" not in target.url
        )

    async def run_target(
        self,
        target: Target,
        *,
        context: RequestContext,
        on_attempt: AttemptCallback | None = None,
        defer_last: bool = False,
    ) -> list[StepResult]:
        """Send `target`'s request, retrying per its policy; one result per attempt.

        With `defer_last`, the last attempt (the one no retry follows) is only returned,
        not handed to `on_attempt`: the caller records it with the run's end, in one write,
        and says how it went in its own log line (its `http_attempt_finished` is debug).
        An attempt cut short by cancellation is always handed over and logged.
        """
        client = self._client()  # not open: fail here, not as a recorded attempt
        results: list[StepResult] = []
        with bound_fields(run_id=context.run_id, target=target.name):
            for attempt in range(1, max(target.retry.max_attempts, 1) + 1):
                this = RequestContext(  # not replace(), several times dearer, per attempt
                    run_id=context.run_id,
                    schedule_id=context.schedule_id,
                    scheduled_for=context.scheduled_for,
                    attempt=attempt,
                    now=utcnow(),
                )
                result, retry_after = await self._attempt(client, target, this, on_attempt)
                results.append(result)
                delay = self._delay_before_next(target, result, retry_after)
                handed_over = delay is not None or not defer_last
                if handed_over:
                    log_finished(_log.info, result, target)
                elif _log.is_enabled_for(logging.DEBUG):  # not even its fields otherwise
                    log_finished(_log.debug, result, target)
                if handed_over:
                    await report(on_attempt, result)
                if delay is None:
                    break
                _log.info(
                    "http_retry_scheduled",
                    attempt=attempt,
                    delay_seconds=round(delay, 3),
                    retry_after=retry_after,
                )
                await asyncio.sleep(delay)
        return results

    def _delay_before_next(
        self, target: Target, result: StepResult, retry_after: float | None
    ) -> float | None:
        if result.status is RunStatus.SUCCEEDED or result.attempt >= target.retry.max_attempts:
            return None
        if not should_retry(result.status_code, result.error_type):
            return None
        return retry_delay(target.retry, result.attempt, retry_after, self._rng)

    async def _attempt(
        self,
        client: WireClient,
        target: Target,
        context: RequestContext,
        on_attempt: AttemptCallback | None,
    ) -> tuple[StepResult, float | None]:
        secrets = SecretResolver(self._environ)
        exchange = Exchange(target, context.attempt, secrets, self._max_response_bytes)
        # Debug: the finished line says all of it, and a target can run a thousand times a
        # second; at info level a started line would double the log and its cost.
        if _log.is_enabled_for(logging.DEBUG):
            _log.debug(
                "http_attempt_started",
                attempt=context.attempt,
                method=target.method.upper(),
                url=shown_url(target),
            )
        try:
            result = await self._exchange(client, exchange, context, secrets)
        except asyncio.CancelledError:
            result = exchange.cancelled()
            log_finished(_log.info, result, target)
            await report(on_attempt, result)
            raise
        return result, exchange.retry_after()

    async def _exchange(
        self,
        client: WireClient,
        exchange: Exchange,
        context: RequestContext,
        secrets: SecretResolver,
    ) -> StepResult:
        target = exchange.target
        try:
            if target.status_reason is not None:  # a stored row that breaks the rules
                raise Unsendable(f"the target can't be used: {target.status_reason}")
            prepared = self._prepared(target, context, secrets)
            async with asyncio.timeout(prepared.timeout):
                await client.send(prepared.request, exchange.body.take, exchange.head)
            exchange.stop_clock()
        except Unsendable as exc:
            return exchange.failed(ErrorType.UNKNOWN, str(exc))
        except Exception as exc:  # every failure becomes a recorded attempt, classified
            return exchange.failed(*classify_error(exc, target))
        return exchange.judged()

    def _prepared(
        self, target: Target, context: RequestContext, secrets: SecretResolver
    ) -> Prepared:
        """This attempt's request. A target with no body template and no secret reference
        sends the same request every time: it is built once per definition (an edit makes
        a new Target) instead of once per run."""
        cached = self._static.get(id(target))
        if cached is not None and cached[0] is target:  # the same object, not a reused id
            return cached[1]
        prepared = self._prepare(target, context, secrets)
        if _static(target):
            if len(self._static) >= _STATIC_CACHE_SIZE:
                self._static.clear()
            self._static[id(target)] = (target, prepared)
        return prepared

    def _prepare(
        self, target: Target, context: RequestContext, secrets: SecretResolver
    ) -> Prepared:
        body = None
        if target.body_template is not None:
            body = self._templates.render(target.body_template, context.template_variables())
        try:
            url = secrets.resolve(target.url, "the URL")
            headers = {
                name: secrets.resolve(value, f"header {name!r}")
                for name, value in target.headers.items()
            }
            if body is not None:
                body = secrets.resolve(body, "the body")
        except MissingSecret as exc:
            raise Unsendable(str(exc)) from exc
        if body is not None and not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "text/plain; charset=utf-8"  # a rendered body is text
        total = target.timeout_seconds
        request = WireRequest(
            method=target.method.upper(),
            url=url,
            headers=headers,
            body=body.encode() if body is not None else None,
            follow_redirects=target.follow_redirects,
            max_redirects=MAX_REDIRECTS,
            # A zero total (never saved, but read rows are not checked) keeps the default.
            connect_timeout=min(total, CONNECT_TIMEOUT_SECONDS) or CONNECT_TIMEOUT_SECONDS,
            verify_tls=target.verify_tls,
        )
        return Prepared(request, total)


def _static(target: Target) -> bool:
    """Whether every attempt of `target` sends the same request: no template to render,
    no `${...}` reference to resolve (secrets are read at each run, never kept)."""
    return (
        target.body_template is None
        and "${" not in target.url
        and not any("${" in value for value in target.headers.values())
    )


def _resolve_with(resolver: Resolver) -> wire.Resolve:
    """A resolver as the lean client asks for addresses."""

    async def resolve(host: str, port: int) -> list[tuple[str, int]]:
        found = await resolver.resolve(host, port, socket.AF_UNSPEC)
        return [(str(entry["host"]), int(entry["port"])) for entry in found]

    return resolve
