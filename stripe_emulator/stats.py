"""Request counters: what one account's traffic saw and did, for assertions and reports."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Stats:
    """What the emulator saw and did, for assertions and benchmark reports."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.generation = 0
        self.reset()

    def reset(self) -> None:
        with self._lock:
            # A request that arrived before a reset and ends after it is not counted again
            # (its status would land in counts that never saw it arrive).
            self.generation += 1
            self.requests_total = 0
            self.by_endpoint: Counter[str] = Counter()
            self.by_status: Counter[str] = Counter()
            self.by_endpoint_status: dict[str, Counter[str]] = {}
            self.writes_committed = 0
            self.writes_by_endpoint: Counter[str] = Counter()
            self.idempotent_replays = 0
            self.faults: Counter[str] = Counter()
            self.in_flight = 0
            self.max_in_flight = 0
            self.executing = 0  # writes past their locks and idempotency key, not yet committed

    def enter(self, endpoint: str) -> tuple[int, int]:
        """Count an arriving request: (requests in flight now, the counts' generation)."""
        with self._lock:
            self.requests_total += 1
            self.by_endpoint[endpoint] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self.in_flight, self.generation

    def leave(self, endpoint: str, outcome: str, fault: str | None, generation: int) -> None:
        with self._lock:
            if generation != self.generation:
                return  # arrived before a reset
            self.in_flight -= 1
            self.by_status[outcome] += 1
            self.by_endpoint_status.setdefault(endpoint, Counter())[outcome] += 1
            if fault:
                self.faults[fault] += 1

    def committed(self, endpoint: str) -> None:
        with self._lock:
            self.writes_committed += 1
            self.writes_by_endpoint[endpoint] += 1

    def executing_delta(self, delta: int) -> None:
        with self._lock:
            self.executing += delta

    def replayed(self) -> None:
        with self._lock:
            self.idempotent_replays += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests_total": self.requests_total,
                "by_endpoint": dict(self.by_endpoint),
                "by_status": dict(self.by_status),
                "by_endpoint_status": {k: dict(v) for k, v in self.by_endpoint_status.items()},
                "writes_committed": self.writes_committed,
                "writes_by_endpoint": dict(self.writes_by_endpoint),
                "idempotent_replays": self.idempotent_replays,
                "faults": dict(self.faults),
                "faults_total": sum(self.faults.values()),
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "executing": self.executing,
            }
