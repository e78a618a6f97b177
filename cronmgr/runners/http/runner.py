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
import codecs
import functools
import logging
import os
import random
import re
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, NamedTuple, Protocol, Self

import jinja2
import orjson
import structlog

from cronmgr.core import templating
from cronmgr.core.models import Assertion, ErrorType, RunStatus, StepResult, Target, utcnow
from cronmgr.core.retry import retry_after_seconds, retry_delay, should_retry
from cronmgr.core.secret_refs import MissingSecret, SecretResolver, redact
from cronmgr.core.version import __version__
from cronmgr.observability.logs import bound_fields
from cronmgr.runners.http import wire as wire
from cronmgr.runners.http.wire import Request as WireRequest
from cronmgr.runners.http.wire import WireClient
from cronmgr.runners.step_reports import elapsed_ms, report

# One module-level logger, bound per run: binding a fresh get_logger() each time would
# resolve the configuration anew for every run.
_log = structlog.get_logger("cronmgr.http_runner")

#: Body bytes kept in memory for the assertions (contains, regex, JSON field).
KEEP_BYTES = 64 * 1024
#: Body bytes shown in a result's `output_tail`.
EXCERPT_BYTES = 2 * 1024
#: Body bytes read at most; beyond this the response is dropped and marked truncated.
MAX_RESPONSE_BYTES = 100 * 1024 * 1024
MAX_REDIRECTS = 10
#: Connecting (DNS excluded) never gets longer than this, even under a long total timeout.
CONNECT_TIMEOUT_SECONDS = 10.0
TRUNCATED_NOTE = "[body cut after {size} bytes; the rest was not read]"

_TEMPLATE_CACHE_SIZE = 256
_STATIC_CACHE_SIZE = 4096
"""Static targets whose prepared request is kept; past it the cache starts over."""
_SHOWN_CHARS = 120  # of a found value or body start, in an assertion message

AttemptCallback = Callable[[StepResult], Awaitable[None] | None]
_Describe = Callable[[BaseException, Target], str]


class Resolver(Protocol):
    """Looks up a host's addresses, as aiohttp's `AbstractResolver` does (one fits)."""

    async def resolve(
        self, host: str, port: int = ..., family: socket.AddressFamily = ...
    ) -> Sequence[Mapping[str, Any]]:
        """The addresses of `host`, each a mapping with at least "host" and "port"."""
        ...


@dataclass(frozen=True, slots=True)
class RequestContext:
    """The run a request belongs to; `attempt` and `now` are set afresh for each attempt."""

    run_id: str
    schedule_id: str | None
    scheduled_for: datetime
    attempt: int = 1
    now: datetime | None = None

    def template_variables(self) -> dict[str, Any]:
        """What a body template sees: ids, ISO times, the attempt number."""
        now = self.now or utcnow()
        return {
            "run_id": self.run_id,
            # An empty string rather than None, which would render as "None".
            "schedule_id": self.schedule_id or "",
            "scheduled_for": self.scheduled_for.isoformat(),
            "attempt": self.attempt,
            "now": now.isoformat(),
        }


class HttpRunner:
    """Runs HTTP targets over one pooled lean client (`http_wire.py`); use as
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
        self._templates = _TemplateCache(_TEMPLATE_CACHE_SIZE)
        # Requests of static targets by id(target), with the target kept alive beside
        # its request so that its id cannot be reused while the entry stands.
        self._static: dict[int, tuple[Target, _Prepared]] = {}

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
                    _log_finished(_log.info, result, target)
                elif _log.is_enabled_for(logging.DEBUG):  # not even its fields otherwise
                    _log_finished(_log.debug, result, target)
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
        exchange = _Exchange(target, context.attempt, secrets, self._max_response_bytes)
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
            _log_finished(_log.info, result, target)
            await report(on_attempt, result)
            raise
        return result, exchange.retry_after()

    async def _exchange(
        self,
        client: WireClient,
        exchange: _Exchange,
        context: RequestContext,
        secrets: SecretResolver,
    ) -> StepResult:
        target = exchange.target
        try:
            if target.status_reason is not None:  # a stored row that breaks the rules
                raise _Unsendable(f"the target can't be used: {target.status_reason}")
            prepared = self._prepared(target, context, secrets)
            async with asyncio.timeout(prepared.timeout):
                await client.send(prepared.request, exchange.body.take, exchange.head)
            exchange.stop_clock()
        except _Unsendable as exc:
            return exchange.failed(ErrorType.UNKNOWN, str(exc))
        except Exception as exc:  # every failure becomes a recorded attempt, classified
            return exchange.failed(*classify_error(exc, target))
        return exchange.judged()

    def _prepared(
        self, target: Target, context: RequestContext, secrets: SecretResolver
    ) -> _Prepared:
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
    ) -> _Prepared:
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
            raise _Unsendable(str(exc)) from exc
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
        return _Prepared(request, total)


class _Prepared(NamedTuple):
    """An attempt's request for the lean client and its total timeout in seconds."""

    request: WireRequest
    timeout: float


def _static(target: Target) -> bool:
    """Whether every attempt of `target` sends the same request: no template to render,
    no `${...}` reference to resolve (secrets are read at each run, never kept)."""
    return (
        target.body_template is None
        and "${" not in target.url
        and not any("${" in value for value in target.headers.values())
    )


class _Unsendable(Exception):
    """The request cannot be built (template error, missing secret): no point retrying."""


class _TemplateCache:
    """Compiled body templates by source, least recently used dropped first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._compiled: OrderedDict[str, jinja2.Template] = OrderedDict()
        # The environment templates were checked in when saved: sandboxed (no __class__, no
        # mutating methods), StrictUndefined, and `*`/`**` bounded.
        self._env = templating.environment()

    def render(self, source: str, variables: Mapping[str, Any]) -> str:
        """`source` rendered with `variables`; _Unsendable says what went wrong."""
        try:
            return self._template(source).render(variables)
        except jinja2.TemplateSyntaxError as exc:
            raise _Unsendable(f"body template, line {exc.lineno}: {exc.message}") from exc
        except jinja2.TemplateError as exc:
            raise _Unsendable(f"body template: {exc}") from exc
        except Exception as exc:  # a template can raise anything: 1/0, int("x"), ...
            raise _Unsendable(f"body template: {type(exc).__name__}: {exc}") from exc

    def _template(self, source: str) -> jinja2.Template:
        template = self._compiled.get(source)
        if template is None:
            template = self._env.from_string(source)
            self._compiled[source] = template
            if len(self._compiled) > self._size:
                self._compiled.popitem(last=False)
        else:
            self._compiled.move_to_end(source)
        return template


# --- one attempt ----------------------------------------------------------------------------


class _Exchange:
    """One attempt while it runs: its clock, the response status, the body read so far."""

    def __init__(
        self, target: Target, attempt: int, secrets: SecretResolver, max_bytes: int
    ) -> None:
        self.target = target
        self.attempt = attempt
        self.secrets = secrets
        self.body = _Body(max_bytes)
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


class _Body:
    """A response body as far as it matters: its first bytes, its size, whether it was cut."""

    def __init__(self, max_bytes: int) -> None:
        self.kept = bytearray()
        self.size = 0
        self.truncated = False
        self._max_bytes = max_bytes

    def take(self, chunk: bytes) -> bool:
        """Count a chunk, keeping the first `KEEP_BYTES`; False once the cap is reached
        (the caller then stops reading)."""
        self.size += len(chunk)
        room = KEEP_BYTES - len(self.kept)
        if room > 0:
            self.kept += chunk[:room]
        if self.size >= self._max_bytes:
            self.truncated = True
            return False
        return True

    @property
    def complete(self) -> bool:
        """Whether `kept` is the whole body."""
        return self.size == len(self.kept) and not self.truncated

    @functools.cached_property
    def text(self) -> str:
        """The kept bytes as UTF-8, bad bytes replaced."""
        return self.kept.decode("utf-8", errors="replace")

    def excerpt(self) -> str:
        """The first `EXCERPT_BYTES` as text, without a character cut in half at the end."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return decoder.decode(bytes(self.kept[:EXCERPT_BYTES]), final=False)

    def scope(self) -> str:
        """What the assertions saw, in words."""
        return "body" if self.complete else f"first {len(self.kept)} bytes of the body"


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


def _log_finished(emit: Callable[..., Any], result: StepResult, target: Target) -> None:
    emit(
        "http_attempt_finished",
        status=result.status.value,
        duration_ms=result.duration_ms,
        error=result.error,
        **attempt_fields(result, target),
    )


# --- assertions -----------------------------------------------------------------------------


def check_assertions(assertions: Sequence[Assertion], body: _Body, duration_ms: int) -> list[str]:
    """A message for every assertion the response fails, in definition order."""
    failures = []
    for assertion in assertions:
        check = _CHECKS.get(assertion.kind)
        if check is None:
            failures.append(f"{assertion.kind}: unknown assertion kind")
            continue
        message = check(assertion, body, duration_ms)
        if message is not None:
            failures.append(message)
    return failures


def _check_contains(assertion: Assertion, body: _Body, duration_ms: int) -> str | None:
    needle = str(assertion.value)
    if needle in body.text:
        return None
    return f"body_contains {needle!r}: not in the {body.scope()}, which starts {_start(body)}"


def _check_regex(assertion: Assertion, body: _Body, duration_ms: int) -> str | None:
    try:
        pattern = _compiled_pattern(str(assertion.value))
    except re.error as exc:
        return f"body_regex {assertion.value!r}: invalid pattern: {exc}"
    # Searched in the kept bytes only: a pathological pattern costs at most that much text.
    if pattern.search(body.text):
        return None
    where = body.scope()
    return f"body_regex {pattern.pattern!r}: no match in the {where}, which starts {_start(body)}"


def _check_json_field(assertion: Assertion, body: _Body, duration_ms: int) -> str | None:
    label = f"json_field {assertion.path}"
    if not body.complete:
        return f"{label}: the body is larger than {KEEP_BYTES} bytes, too large to parse"
    try:
        document = orjson.loads(body.kept)
    except orjson.JSONDecodeError:
        return f"{label}: the body is not JSON; it starts {_start(body)}"
    found, missing = json_lookup(document, assertion.path or "")
    if missing is not None:
        return f"{label}: no such field ({missing})"
    if json_equal(found, assertion.value):
        return None
    return f"{label}: expected {_json(assertion.value)}, found {_json(found)}"


def _check_latency(assertion: Assertion, body: _Body, duration_ms: int) -> str | None:
    limit = float(assertion.value)
    if duration_ms <= limit:
        return None
    return f"max_latency_ms {limit:g}: the response took {duration_ms} ms"


_CHECKS: dict[str, Callable[[Assertion, _Body, int], str | None]] = {
    "body_contains": _check_contains,
    "body_regex": _check_regex,
    "json_field": _check_json_field,
    "max_latency_ms": _check_latency,
}


@functools.lru_cache(maxsize=256)
def _compiled_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_INDEX = re.compile(r"\[(\d+)\]")


def json_lookup(document: Any, path: str) -> tuple[Any, str | None]:
    """The value at a dotted `path` (`data.items.0.id` or `data.items[0].id`).

    Returns (value, None), or (None, why) when the path leads nowhere. An empty path is
    the whole document.
    """
    value = document
    keys = [key for key in _INDEX.sub(r".\1", path).split(".") if key]
    for depth, key in enumerate(keys):
        where = ".".join(keys[: depth + 1])
        if isinstance(value, dict):
            if key not in value:
                return None, f"{where} is missing"
            value = value[key]
        elif isinstance(value, list):
            if not key.isdigit() or int(key) >= len(value):
                return None, f"{where}: the list has {len(value)} items"
            value = value[int(key)]
        else:
            return None, f"{where}: {_json(value)} has no fields"
    return value, None


def json_equal(found: Any, expected: Any) -> bool:
    """JSON equality: 1 equals 1.0, but true never equals 1 (as Python would have it)."""
    if isinstance(found, bool) or isinstance(expected, bool):
        return type(found) is type(expected) and found == expected
    if isinstance(found, dict) and isinstance(expected, dict):
        return found.keys() == expected.keys() and all(
            json_equal(found[key], expected[key]) for key in found
        )
    if isinstance(found, list) and isinstance(expected, list):
        return len(found) == len(expected) and all(map(json_equal, found, expected))
    return bool(found == expected)


def _json(value: Any) -> str:
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return _cut(text)


def _start(body: _Body) -> str:
    return repr(_cut(body.text)) if body.size else "(empty)"


def _cut(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"


# --- error classes --------------------------------------------------------------------------


def classify_error(exc: BaseException, target: Target) -> tuple[ErrorType, str]:
    """The error class of a failed request and a message saying what happened."""
    for kinds, error_type, describe in _CLASSES:
        if isinstance(exc, kinds) or (error_type is ErrorType.DNS and _caused_by_gaierror(exc)):
            return error_type, describe(exc, target)
    return ErrorType.UNKNOWN, f"{type(exc).__name__}: {exc}"


def _timeout_message(exc: BaseException, target: Target) -> str:
    if isinstance(exc, wire.ConnectTimeout):
        connect = min(target.timeout_seconds, CONNECT_TIMEOUT_SECONDS)
        return f"timed out connecting, after {connect:g} s"
    return f"timed out after {target.timeout_seconds:g} s"


def _ssl_message(exc: BaseException, target: Target) -> str:
    if isinstance(exc, wire.TLSFailed):
        if exc.certificate:
            return f"TLS certificate of {exc.host} rejected: {_reason(exc.os_error)}"
        return f"TLS handshake with {exc.host} failed: {_reason(exc.os_error)}"
    return f"TLS failure: {_reason(exc)}"


def _dns_message(exc: BaseException, target: Target) -> str:
    if isinstance(exc, wire.ResolveFailed):
        return f"cannot resolve host {exc.host!r}: {_reason(exc.os_error)}"
    return f"cannot resolve host: {_reason(exc)}"


def _connection_message(exc: BaseException, target: Target) -> str:
    if isinstance(exc, wire.ConnectFailed):
        error = exc.os_error
        # asyncio words a refusal "Connect call failed (...)"; the errno says it plainly.
        reason = os.strerror(error.errno) if error.errno else _reason(error)
        return f"cannot connect to {exc.host}:{exc.port}: {reason}"
    if isinstance(exc, wire.Disconnected):
        return "the server closed the connection before a complete response"
    if isinstance(exc, wire.Malformed):
        return f"the answer is not HTTP: {exc}"
    if isinstance(exc, wire.BodyBroken):
        return f"the response body broke off: {_reason(exc)}"
    if isinstance(exc, wire.HeadTooLarge):
        return f"response refused, connection dropped: {exc}"
    return f"connection failed: {_reason(exc)}"


def _redirects_message(exc: BaseException, target: Target) -> str:
    return f"more than {MAX_REDIRECTS} redirects"


def _invalid_url_message(exc: BaseException, target: Target) -> str:
    return str(exc)


# First match wins; the order matters: ssl.SSLError and socket.gaierror are OSErrors too,
# and a connect timeout is a TimeoutError, which is an OSError as well.
_CLASSES: tuple[
    tuple[type[BaseException] | tuple[type[BaseException], ...], ErrorType, _Describe], ...
] = (
    (TimeoutError, ErrorType.TIMEOUT, _timeout_message),
    ((ssl.SSLError, wire.TLSFailed), ErrorType.SSL, _ssl_message),
    (wire.ResolveFailed, ErrorType.DNS, _dns_message),
    (
        (
            OSError,
            wire.ConnectFailed,
            wire.Disconnected,
            wire.BodyBroken,  # Malformed among them
            # As a malformed response is: the target did not answer in HTTP this client
            # takes, which says no more about the service than a broken connection does.
            wire.HeadTooLarge,
        ),
        ErrorType.CONNECTION,
        _connection_message,
    ),
    (wire.TooManyRedirects, ErrorType.UNKNOWN, _redirects_message),
    (wire.UnsupportedURL, ErrorType.UNKNOWN, _invalid_url_message),
)


def _resolve_with(resolver: Resolver) -> wire.Resolve:
    """A resolver as the lean client asks for addresses."""

    async def resolve(host: str, port: int) -> list[tuple[str, int]]:
        found = await resolver.resolve(host, port, socket.AF_UNSPEC)
        return [(str(entry["host"]), int(entry["port"])) for entry in found]

    return resolve


def _caused_by_gaierror(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, socket.gaierror):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
