"""How the runners report a step's attempt: its duration, and the caller's callback.

Shared by the command runner (`runners.pipeline`) and the HTTP runner (`runners.http`), whose
callers may pass a plain function or a coroutine function to hear of each result.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any


async def report(callback: Callable[..., Any] | None, *args: Any) -> None:
    """Call `callback(*args)` if there is one, awaiting it when it returns an awaitable."""
    if callback is None:
        return
    outcome = callback(*args)
    if inspect.isawaitable(outcome):
        await outcome


def elapsed_ms(started: float) -> int:
    """Whole milliseconds since `started` (a `time.monotonic()` reading)."""
    return int((time.monotonic() - started) * 1000)
