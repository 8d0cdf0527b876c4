"""Measuring a run from the emulator's side: its exact request counters, sampled over time,
give the steady-state write rate without trusting anything the tool reports about itself."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from stripe_emulator.handle import EmulatorHandle


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the sampler started
    writes: int  # writes committed
    requests: int  # API requests answered (refused ones included)


class StatsSampler:
    """Polls the emulator's stats (control API: not counted as requests) in a thread."""

    def __init__(self, emulator: EmulatorHandle, interval: float = 0.25) -> None:
        self.emulator = emulator
        self.interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stats-sampler", daemon=True)
        self._t0 = 0.0

    def _run(self) -> None:
        while True:
            stats = self.emulator.stats()
            self.samples.append(
                Sample(
                    time.perf_counter() - self._t0,
                    int(stats["writes_committed"]),
                    int(stats["requests_total"]),
                )
            )
            if self._stop.wait(self.interval):
                break

    def __enter__(self) -> StatsSampler:
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        stats = self.emulator.stats()  # the final counts, after the run
        self.samples.append(
            Sample(
                time.perf_counter() - self._t0,
                int(stats["writes_committed"]),
                int(stats["requests_total"]),
            )
        )


def _time_at(samples: list[Sample], writes: float) -> float:
    """When the writes counter reached `writes` (linear between samples)."""
    previous = samples[0]
    for sample in samples:
        if sample.writes >= writes:
            if sample.writes == previous.writes:
                return sample.t
            share = (writes - previous.writes) / (sample.writes - previous.writes)
            return previous.t + share * (sample.t - previous.t)
        previous = sample
    return samples[-1].t


@dataclass(frozen=True)
class WriteTimeline:
    first_write_s: float  # since the sampler started (≈ the CLI's start)
    last_write_s: float
    steady_writes_per_s: float  # between 10% and 90% of the writes
    overall_writes_per_s: float  # first write to last write

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 3) for k, v in self.__dict__.items()}


def write_timeline(samples: list[Sample], low: float = 0.1, high: float = 0.9) -> WriteTimeline:
    """Steady state = the middle of the write phase: it leaves out start-up (dbt, the
    warehouse diff, the index reads) and the tail, where in-flight requests drain."""
    total = samples[-1].writes - samples[0].writes
    if total <= 0:
        return WriteTimeline(0.0, 0.0, 0.0, 0.0)
    base = samples[0].writes
    first = _time_at(samples, base + 1)
    last = _time_at(samples, base + total)
    t_low = _time_at(samples, base + low * total)
    t_high = _time_at(samples, base + high * total)
    steady = (high - low) * total / (t_high - t_low) if t_high > t_low else 0.0
    overall = (total - 1) / (last - first) if last > first else 0.0
    return WriteTimeline(first, last, steady, overall)
