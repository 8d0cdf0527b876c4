"""What a Stripe client is configured with: the key, where Stripe is, and the limits it paces
at (Stripe's published ones unless given)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import stripe

STRIPE_API_VERSION = "2026-10-28.endive"  # pinned; the SDK's own version at the time

# docs.stripe.com/rate-limits: 100 requests/s live, 25/s in test mode (sandboxes), and by
# default 25/s for each endpoint even in live mode; Search allows 20 reads/s.
LIVE_RPS = 100.0
TEST_RPS = 25.0
ENDPOINT_RPS = 25.0
ENDPOINT_RPS_OVERRIDES = {"GET /v1/customers/search": 20.0}
# Pace a little under each limit: requests leave on time but reach Stripe with jitter, and a
# sliding one-second window then sees one more than was sent in any second. Against the
# emulator's exact 25/s window (100-300 ms latency, 32 threads), 1.0 drew 429s, 0.95 none,
# and 0.99 one in a 5,000-row sync (after which the limit is learned and paced at 0.98 of
# it): benchmark (a) 1.081x -> 1.043x its floor (benchmarks/RESULTS.md).
HEADROOM = 0.99


@dataclass(frozen=True)
class StripeSettings:
    api_key: str = field(repr=False)
    api_base: str | None = None  # None: https://api.stripe.com
    max_rps: float | None = None  # None: from the key's mode (100 live, 25 test)
    per_endpoint_rps: float | None = None  # None: 25/s per endpoint (Stripe's newest docs)
    concurrency: int = 16
    timeout_seconds: float = 30.0
    max_network_retries: int = 4  # SDK retries (409, 5xx, connection errors)
    max_rate_limit_retries: int = 8  # ours, for 429
    # Added by stripe_api: the variable the key came from, named in error messages (never
    # the key itself), and the 429 backoff: full jitter over base * 2**retry, capped.
    api_key_env: str = "STRIPE_API_KEY"
    rate_limit_backoff_seconds: float = 0.5
    rate_limit_backoff_max_seconds: float = 16.0
    # The backoff of a retry that is not about the rate (5xx, 409, concurrency 429s,
    # lock_timeout), ours and the SDK's (whose own waits at least 0.5 s, doubling to 5 s):
    # full jitter over base * 2**retry, capped. With 10% 500s and 30% concurrency 429s at
    # 100 requests/s, 0.5 s waits left the workers idle (benchmark (g)).
    retry_backoff_seconds: float = 0.1
    retry_backoff_max_seconds: float = 5.0
    # Endpoints with limits of their own, outside the global limit (meter events), in
    # requests a second, and the base address of the meter event stream (None: Stripe's,
    # or api_base when that is set).
    separate_pools: Mapping[str, float] = field(default_factory=dict)
    meter_events_base: str | None = None
    # Stripe Connect: each connected account's own requests/s (None: the mode's limit, as
    # Stripe applies the same limits to every account).
    account_rps: float | None = None

    @property
    def mode(self) -> str:
        """'live' or 'test', from the key's prefix, before any call."""
        return "live" if "_live_" in self.api_key[:8] else "test"

    @property
    def key_kind(self) -> str:
        """'secret' (sk_) or 'restricted' (rk_)."""
        return "restricted" if self.api_key.startswith("rk_") else "secret"

    @property
    def resolved_api_base(self) -> str:
        return (self.api_base or stripe.DEFAULT_API_BASE).rstrip("/")

    @property
    def resolved_meter_events_base(self) -> str:
        """Where meter events go: STRIPE_METER_EVENTS_BASE, else the API base when that is
        set (an emulator serves both), else Stripe's meter events host."""
        if self.meter_events_base:
            return self.meter_events_base.rstrip("/")
        if self.api_base:
            return self.resolved_api_base
        return str(stripe.DEFAULT_METER_EVENTS_API_BASE).rstrip("/")

    @property
    def rate_limits(self) -> tuple[float, float]:
        """(global, per endpoint) requests per second we pace at: the limits less HEADROOM."""
        ceiling = self.max_rps or (LIVE_RPS if self.mode == "live" else TEST_RPS)
        endpoint = self.per_endpoint_rps or ENDPOINT_RPS
        return ceiling * HEADROOM, endpoint * HEADROOM


@dataclass(frozen=True)
class ConnectionCheck:
    mode: str  # test | live
    key_kind: str  # secret | restricted
    method: str  # "balance" | "customers.list"
    api_base: str
    detail: str
