"""Talk to a running controller: `Client` (blocking) and `AsyncClient` (asyncio).

`CronAPIClient` is `Client` under the name the original Pipeline Cron Manager API gave
its client, so code written against that client runs unchanged: when requests is
installed, its errors are also `requests.HTTPError` (`requests.ConnectionError` for an
unreachable controller), as that client's `raise_for_status()` raised.

Every endpoint is described once, in `_Endpoints`: each method builds a `Call` (HTTP
method, path, query, body) and hands it to the transport, asking for a JSON object, a
JSON array, text, or every item of a paged list back. The transports are thin and share
the decoding, the paging and the error mapping:

- `Client` uses the standard library's `urllib.request`. Running `AsyncClient` on a private
  event loop was the alternative, but it breaks when the calling thread already runs a
  loop (an async application calling a blocking helper, a notebook), it needs care to
  close the aiohttp session on the loop that opened it, and it turns `follow_logs()` into
  a generator that drives a loop. urllib has none of that, and the CLI, which only needs
  the blocking client, never imports aiohttp.
- `AsyncClient` uses one aiohttp session, opened on first use and closed by `close()`.

Both ignore the `HTTP(S)_PROXY` variables (aiohttp does by default; urllib is told to), so
the two clients reach the same place and a proxy set for the outside world does not
swallow requests to a controller on loopback.

`follow_logs()` reads the server-sent events of `GET /api/v1/logs/stream` rather than
polling `GET /api/v1/logs`: one connection instead of a request per poll, and lines as
soon as the controller sees them. Polling would survive a dropped connection more simply,
but the stream's event ids are cursors, so a reconnection resumes exactly where the last
line left off all the same; the stream is asked for keep-alives well within the read
timeout, so a silent log never looks like a dead connection.

Paged lists (`/api/v1` targets, schedules, runs) come back one page per `list_*` call, as
the bare JSON array the API sends; `iter_*` follows the `X-Next-Offset` header from page
to page, which is why a reply keeps its headers. Datetimes given as arguments are sent
as ISO 8601 (`datetime.isoformat()`); strings are sent as they are.

Errors come back as the project's own exceptions: a non-2xx answer raises the class
`error_for_status()` picks, with the body's `detail` and `errors` and the HTTP status in
`.status`; no answer at all raises `ControllerUnreachable`.
"""

from cronmgr.client.aio import AsyncClient
from cronmgr.client.calls import Call
from cronmgr.client.seed import CronAPIClient
from cronmgr.client.sync import Client

# The errors a call raises, importable beside the clients (they live in `cronmgr.core`).
from cronmgr.core.errors import (
    BadRequest,
    Conflict,
    ControllerUnreachable,
    CronmgrError,
    DaemonError,
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyRequests,
    Unauthorized,
)

__all__ = [
    "AsyncClient",
    "BadRequest",
    "Call",
    "Client",
    "Conflict",
    "ControllerUnreachable",
    "CronAPIClient",
    "CronmgrError",
    "DaemonError",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "TooManyRequests",
    "Unauthorized",
]
