"""Token guessing, refused: an address that sent too many wrong tokens waits a while.

The controller counts wrong API tokens per client address, whether they came as a bearer
header or through the dashboard's login form. Past `FAILURE_LIMIT` wrong tokens within
`WINDOW_SECONDS`, every request from that address that carries a token is answered 429
with `Retry-After`, the right token included (a guess that happens to be right must not
get through), until the oldest failures age out of the window. Requests without a token
are not guesses and are not counted; neither are requests from other addresses.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from cronmgr.core.errors import TooManyRequests

FAILURE_LIMIT = 20
"""Wrong tokens an address may send within the window before it is refused."""
WINDOW_SECONDS = 60.0
MAX_ADDRESSES = 10_000
"""Addresses remembered at most (the least recently failing are forgotten first), so a
flood from many addresses cannot grow the controller's memory without bound."""


class Lockout:
    """Wrong-token counts per address over a sliding window (a limit of 0: none kept)."""

    def __init__(
        self,
        *,
        limit: int = FAILURE_LIMIT,
        window_seconds: float = WINDOW_SECONDS,
        max_addresses: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._window = window_seconds
        self._max_addresses = max_addresses
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def check(self, address: str | None) -> None:
        """Raise TooManyRequests when `address` is refused for now."""
        if not self._limit:
            return
        failures = self._recent(_key(address))
        if failures is None or len(failures) < self._limit:
            return
        wait = max(1, math.ceil(failures[0] + self._window - self._clock()))
        raise TooManyRequests(
            f"too many wrong tokens from this address ({len(failures)} in the last "
            f"{self._window:g} seconds): try again in {wait} seconds",
            retry_after=wait,
        )

    def failed(self, address: str | None) -> None:
        """Count a wrong token from `address`."""
        if not self._limit:
            return
        key = _key(address)
        failures = self._recent(key)
        if failures is None:
            failures = self._failures[key] = deque(maxlen=self._limit)
            while len(self._failures) > self._max_addresses:
                self._failures.popitem(last=False)
        self._failures.move_to_end(key)
        failures.append(self._clock())

    def _recent(self, key: str) -> deque[float] | None:
        """The address's failures within the window (older ones dropped), or None."""
        failures = self._failures.get(key)
        if failures is None:
            return None
        horizon = self._clock() - self._window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures


def _key(address: str | None) -> str:
    # aiohttp has no address for some transports (a Unix socket): they share one count.
    return address or ""
