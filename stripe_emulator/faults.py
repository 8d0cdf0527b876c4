"""Rate limiters and the random draws that decide which faults hit a request.

Draws come from a generator seeded by (config seed, request fingerprint, how many times that
same request was seen), not from one shared stream: with a seed, the same client traffic gets
the same faults however the server's threads interleave.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .config import EmulatorConfig


class RateLimiter:
    """Requests per second per limit key: a sliding 1 s window or a token bucket.

    A refused request is not counted, so a client that backs off gets through again.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, deque[float]] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()
            self._buckets.clear()

    def admit(self, limits: list[tuple[str, float]], algorithm: str) -> str | None:
        """Count the request against every (key, rate) or none; the refusing key, if any."""
        now = self._clock()
        with self._lock:
            if algorithm == "token_bucket":
                levels = {}
                for key, rate in limits:
                    tokens, at = self._buckets.get(key, (rate, now))
                    tokens = min(rate, tokens + (now - at) * rate)
                    if tokens < 1.0:
                        return key
                    levels[key] = tokens
                for key, _rate in limits:
                    self._buckets[key] = (levels[key] - 1.0, now)
                return None
            for key, rate in limits:
                window = self._windows.setdefault(key, deque())
                while window and window[0] <= now - 1.0:
                    window.popleft()
                if len(window) >= rate:
                    return key
            for key, _rate in limits:
                self._windows[key].append(now)
            return None


@dataclass(frozen=True)
class FaultDraws:
    """Every random decision for one request, drawn up front in a fixed order."""

    latency_s: float
    connection_reset: bool
    server_error: bool
    random_429: bool
    lock_timeout: bool
    drop_response: bool
    slow_response: bool


class FaultPlanner:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}
        self._unseeded = random.Random()

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()

    def draw(self, config: EmulatorConfig, fingerprint: str) -> FaultDraws:
        if config.seed is None:
            with self._lock:
                rng = random.Random(self._unseeded.getrandbits(64))
        else:
            with self._lock:
                attempt = self._seen.get(fingerprint, 0)
                self._seen[fingerprint] = attempt + 1
            digest = hashlib.sha256(f"{config.seed}|{fingerprint}|{attempt}".encode()).digest()
            rng = random.Random(int.from_bytes(digest[:8], "big"))
        low, high = config.latency_ms
        values = [rng.random() for _ in range(7)]
        return FaultDraws(
            latency_s=(low + (high - low) * values[0]) / 1000.0,
            connection_reset=values[1] < config.connection_reset_rate,
            server_error=values[2] < config.server_error_rate,
            random_429=values[3] < config.random_429_rate,
            lock_timeout=values[4] < config.lock_timeout_rate,
            drop_response=values[5] < config.drop_response_rate,
            slow_response=values[6] < config.slow_response_rate,
        )
