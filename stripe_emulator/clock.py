"""The emulator's notion of wall-clock time, which tests can move.

It decides what depends on Stripe's calendar: meter event session expiry (15 minutes), the
rolling 24 h window of meter event identifiers, the 35-day / 5-minute window of event
timestamps, the rolling hour of subscription quantity updates, and `created` of the billing
objects. Latency, slow responses and rate limiting stay on the real monotonic clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class EmulatorClock:
    """Real time plus an offset: `advance(seconds)` and `set(now)` move it, `reset()` returns
    it to real time. Time keeps flowing after a move."""

    def __init__(self, real: Callable[[], float] = time.time) -> None:
        self._real = real
        self._lock = threading.Lock()
        self._offset = 0.0

    def now(self) -> float:
        return self._real() + self._offset

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._offset += float(seconds)
            return self.now()

    def set(self, now: float) -> float:
        with self._lock:
            self._offset = float(now) - self._real()
            return self.now()

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0

    @property
    def offset(self) -> float:
        return self._offset

    def describe(self) -> dict[str, float]:
        """What `GET /_emulator/clock` answers."""
        return {"now": self.now(), "offset_seconds": self._offset}
