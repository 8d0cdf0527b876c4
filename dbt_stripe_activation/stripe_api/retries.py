"""Retries that are ours, not the SDK's: 429s (it never retries a plain one) and reads that
Stripe told the SDK not to replay. A rate 429 backs off at the rate limit's pace; any other
retry (a concurrency 429, lock_timeout, 409, 5xx) says nothing of the rate and waits briefly.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeVar

import stripe

from .errors import code_of
from .settings import StripeSettings
from .transport import Meter, header, is_rate_429

T = TypeVar("T")


class Retrier:
    """Runs a request again, the same request (hence the same idempotency key), after a
    jittered wait; thread-safe as the gateway's workers need."""

    def __init__(self, settings: StripeSettings, meter: Meter,
                 sleep: Callable[[float], None]) -> None:
        self.settings = settings
        self._meter = meter
        self._sleep = sleep
        self._jitter = random.Random()

    def rate_limited(self, call: Callable[[], T]) -> T:
        """Retry 429s (rate limits, concurrency and lock_timeout) unless Stripe says
        `Stripe-Should-Retry: false`."""
        retries = 0
        while True:
            try:
                return call()
            except stripe.RateLimitError as exc:
                if header(exc.headers, "stripe-should-retry") == "false":
                    raise
                if retries >= self.settings.max_rate_limit_retries:
                    raise
                retries += 1
                self._meter.retry()
                rate = is_rate_429(code_of(exc), exc.headers)
                self._sleep(self.backoff(retries, header(exc.headers, "retry-after"),
                                         rate=rate))

    def read(self, call: Callable[[], T]) -> T:
        """Also retry a 5xx that Stripe marked `Stripe-Should-Retry: false` (the SDK stops
        there): that verdict is about replaying a write, and a read changes nothing. Without
        it, one such answer on one list page fails the whole model's index."""
        retries = 0
        while True:
            try:
                return self.rate_limited(call)
            except stripe.APIError as exc:
                sdk_gave_up = header(exc.headers, "stripe-should-retry") == "false"
                if (not sdk_gave_up or (exc.http_status or 0) < 500
                        or retries >= self.settings.max_network_retries):
                    raise
                retries += 1
                self._meter.retry()
                self._sleep(self.backoff(retries, None, rate=False))

    def backoff(self, retry: int, retry_after: str | None, *, rate: bool = True) -> float:
        """Full jitter (uniform over 0..base*2**(retry-1), capped), never under Retry-After;
        `rate`: the rate limit's base and cap, else the short ones of any other retry."""
        settings = self.settings
        base, most = (
            (settings.rate_limit_backoff_seconds, settings.rate_limit_backoff_max_seconds)
            if rate
            else (settings.retry_backoff_seconds, settings.retry_backoff_max_seconds)
        )
        cap = min(most, base * 2 ** (retry - 1))
        delay = self._jitter.uniform(0, cap)
        try:
            return max(delay, float(retry_after)) if retry_after else delay
        except ValueError:  # an HTTP date: Stripe sends seconds; keep the jittered delay
            return delay
