"""The emulator's settings: behaviour knobs and fault injection, set at start or at run time.

A config is frozen; the server swaps the whole object on `POST /_emulator/config`, so each
request reads one consistent snapshot without a lock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .resources import ENDPOINTS  # every resource's endpoint names, e.g. "GET /v1/prices"

# Stripe's published sandbox limits (docs.stripe.com/rate-limits): 25/s global, 25/s per
# endpoint, 20 reads/s for Search.
STRIPE_TEST_LIMITS: dict[str, Any] = {
    "rate_limit": 25.0,
    "endpoint_rate_limit": 25.0,
    "endpoint_rate_limits": {"GET /v1/customers/search": 20.0},
}
RATE_FIELDS = (
    "random_429_rate",
    "server_error_rate",
    "lock_timeout_rate",
    "connection_reset_rate",
    "drop_response_rate",
    "slow_response_rate",
)


@dataclass(frozen=True)
class EmulatorConfig:
    seed: int | None = None  # makes ids and fault draws reproducible
    latency_ms: tuple[float, float] = (0.0, 0.0)  # uniform min..max per API request
    rate_limit: float | None = None  # global requests/s; None: unlimited
    endpoint_rate_limit: float | None = None  # default requests/s for each endpoint
    endpoint_rate_limits: Mapping[str, float] = field(default_factory=dict)  # per endpoint
    rate_limit_algorithm: str = "sliding_window"  # or "token_bucket"
    concurrency_limit: int | None = None  # API requests in flight at once
    random_429_rate: float = 0.0  # fraction answered 429 rate_limit (global-rate)
    server_error_rate: float = 0.0  # fraction answered 500 api_error before executing
    server_error_saved: bool = False  # True: a 500 is saved under the idempotency key
    lock_timeout_rate: float = 0.0  # fraction of writes to an existing object: 429 lock_timeout
    lock_wait_ms: float = 0.0  # how long a write waits for a busy object before lock_timeout
    connection_reset_rate: float = 0.0  # fraction closed without an answer, before executing
    drop_response_rate: float = 0.0  # fraction of committed writes closed without an answer
    slow_response_rate: float = 0.0  # fraction answered only after slow_response_seconds
    slow_response_seconds: float = 0.0
    search_delay_seconds: float = 1.0  # search sees a write only this long after it
    should_retry_on_rate_limit: bool = True  # send Stripe-Should-Retry: true on rate limits
    # Other fake servers' list quirks, to test a client against them: localstripe lists
    # oldest first and answers `400 Unexpected created` to the `created` filter.
    list_order: str = "newest_first"  # or "oldest_first"
    refuse_created_filter: bool = False
    # Endpoints with their own pool (meter events, the meter event stream) are not counted by
    # `rate_limit` (Stripe's live-mode pools); True counts them too, as Stripe's usage-billing
    # guide says of test mode and sandboxes ("count toward the basic limit").
    own_pool_in_global_limit: bool = False
    api_keys: tuple[str, ...] | None = None  # None: any sk_test_/rk_test_ key
    restricted_keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # key: lacks
    account_id: str = "acct_1EmuLat0rTest000"  # the platform's own id
    # Connect: connected accounts acct_emu0001 .. acct_emuNNNN exist from the start and after
    # every reset; each has its own objects, idempotency keys and rate-limit windows.
    accounts: int = 0
    # Each connected account's global requests/s; None: the same as `rate_limit` (Stripe
    # measures limits per account, with the same figures). The platform keeps `rate_limit`.
    account_rate_limit: float | None = None

    def __post_init__(self) -> None:
        low, high = self.latency_ms
        if low < 0 or high < low:
            raise ValueError(f"latency_ms must be 0 <= min <= max, got {self.latency_ms}")
        for name in RATE_FIELDS:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a fraction between 0 and 1, got {value}")
        if self.accounts < 0:
            raise ValueError(f"accounts must be 0 or more, got {self.accounts}")
        for name in ("rate_limit", "endpoint_rate_limit", "account_rate_limit"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or null, got {value}")
        for endpoint, value in self.endpoint_rate_limits.items():
            if endpoint not in ENDPOINTS:
                raise ValueError(f"unknown endpoint {endpoint!r}; one of {', '.join(ENDPOINTS)}")
            if value <= 0:
                raise ValueError(f"endpoint_rate_limits[{endpoint!r}] must be positive")
        if self.list_order not in ("newest_first", "oldest_first"):
            raise ValueError(f"list_order must be newest_first or oldest_first, not "
                             f"{self.list_order!r}")
        if self.rate_limit_algorithm not in ("sliding_window", "token_bucket"):
            raise ValueError("rate_limit_algorithm must be sliding_window or token_bucket")
        if self.concurrency_limit is not None and self.concurrency_limit < 1:
            raise ValueError("concurrency_limit must be at least 1 or null")
        for key in self.restricted_keys:
            if not key.startswith("rk_test_"):
                raise ValueError(f"restricted keys start with rk_test_: {key[:8]}...")

    def endpoint_limit(self, endpoint: str) -> float | None:
        return self.endpoint_rate_limits.get(endpoint, self.endpoint_rate_limit)

    def global_limit(self, *, connected: bool) -> float | None:
        """The global requests/s of one account: the platform's, or a connected one's."""
        if connected and self.account_rate_limit is not None:
            return self.account_rate_limit
        return self.rate_limit

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["latency_ms"] = list(self.latency_ms)
        data["endpoint_rate_limits"] = dict(self.endpoint_rate_limits)
        data["api_keys"] = list(self.api_keys) if self.api_keys is not None else None
        data["restricted_keys"] = {k: list(v) for k, v in self.restricted_keys.items()}
        return data

    def updated(self, changes: Mapping[str, Any]) -> EmulatorConfig:
        """A copy with `changes` (JSON-shaped) applied; ValueError names a bad key or value."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}; known: {sorted(names)}")
        return dataclasses.replace(self, **_coerce(changes))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EmulatorConfig:
        return cls().updated(data)


def _coerce(changes: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(changes)
    if "latency_ms" in result:
        result["latency_ms"] = parse_latency(result["latency_ms"])
    if "endpoint_rate_limits" in result:
        result["endpoint_rate_limits"] = {
            str(k): float(v) for k, v in (result["endpoint_rate_limits"] or {}).items()
        }
    if result.get("api_keys") is not None:
        result["api_keys"] = tuple(result["api_keys"])
    if "restricted_keys" in result:
        result["restricted_keys"] = {
            str(k): tuple([v] if isinstance(v, str) else v)
            for k, v in (result["restricted_keys"] or {}).items()
        }
    for name in ("rate_limit", "endpoint_rate_limit", "account_rate_limit"):
        if result.get(name) is not None:
            result[name] = float(result[name])
    for name in (*RATE_FIELDS, "lock_wait_ms", "slow_response_seconds", "search_delay_seconds"):
        if name in result:
            result[name] = float(result[name])
    return result


def parse_latency(value: Any) -> tuple[float, float]:
    """`"100:300"`, `"50"`, `50`, `[100, 300]` -> (min, max) in milliseconds."""
    if isinstance(value, str):
        low, _, high = value.partition(":")
        return (float(low), float(high or low))
    if isinstance(value, (int, float)):
        return (float(value), float(value))
    low, high = value
    return (float(low), float(high))
