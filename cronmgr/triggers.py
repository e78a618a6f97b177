"""When things fire: triggers turn "now" into the next slot."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class IntervalTrigger:
    """Every `seconds`, on slots anchored at `anchor` (so the schedule never drifts)."""

    seconds: float
    anchor: datetime

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ValueError("interval must be positive")
        if self.anchor.tzinfo is None:
            raise ValueError("anchor must be timezone-aware")

    def at_or_after(self, moment: datetime) -> datetime:
        """The first slot not earlier than `moment`."""
        if moment <= self.anchor:
            return self.anchor
        elapsed = (moment - self.anchor).total_seconds()
        return self._slot(math.ceil(elapsed / self.seconds))

    def after(self, moment: datetime) -> datetime:
        """The first slot strictly later than `moment`."""
        if moment < self.anchor:
            return self.anchor
        elapsed = (moment - self.anchor).total_seconds()
        return self._slot(math.floor(elapsed / self.seconds) + 1)

    def _slot(self, index: int) -> datetime:
        return self.anchor + timedelta(seconds=index * self.seconds)
