"""What an attempt sends: the run it belongs to, its body template rendered, its request.

`RequestContext` is what a body template sees; `TemplateCache` keeps the compiled
templates (sandboxed, as they were checked when saved); `Prepared` is an attempt's request
for the lean client with its total timeout; `Unsendable` says why a request could not be
built at all (a template error, a missing secret), which no retry would change.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import jinja2

from cronmgr.core import templating
from cronmgr.core.models import utcnow
from cronmgr.runners.http.wire import Request as WireRequest

MAX_REDIRECTS = 10
#: Connecting (DNS excluded) never gets longer than this, even under a long total timeout.
CONNECT_TIMEOUT_SECONDS = 10.0


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


class Prepared(NamedTuple):
    """An attempt's request for the lean client and its total timeout in seconds."""

    request: WireRequest
    timeout: float


class Unsendable(Exception):
    """The request cannot be built (template error, missing secret): no point retrying."""


class TemplateCache:
    """Compiled body templates by source, least recently used dropped first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._compiled: OrderedDict[str, jinja2.Template] = OrderedDict()
        # The environment templates were checked in when saved: sandboxed (no __class__, no
        # mutating methods), StrictUndefined, and `*`/`**` bounded.
        self._env = templating.environment()

    def render(self, source: str, variables: Mapping[str, Any]) -> str:
        """`source` rendered with `variables`; Unsendable says what went wrong."""
        try:
            return self._template(source).render(variables)
        except jinja2.TemplateSyntaxError as exc:
            raise Unsendable(f"body template, line {exc.lineno}: {exc.message}") from exc
        except jinja2.TemplateError as exc:
            raise Unsendable(f"body template: {exc}") from exc
        except Exception as exc:  # a template can raise anything: 1/0, int("x"), ...
            raise Unsendable(f"body template: {type(exc).__name__}: {exc}") from exc

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
