"""The official stripe SDK behind one small, thread-safe client.

Adds what the SDK leaves to us: a client-side rate limiter that knows Stripe's published
limits and adapts on 429, backoff with jitter for rate-limited requests (the SDK does not
retry a plain 429), and request counting. Knows nothing of dbt.
CONTRACT STUB: the signatures and dataclasses below are fixed; bodies are being written.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

STRIPE_API_VERSION = "2026-10-28.endive"  # pinned; the SDK's own version at the time


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

    @property
    def mode(self) -> str:
        """'live' or 'test', from the key's prefix, before any call."""
        return "live" if "_live_" in self.api_key[:8] else "test"

    @property
    def key_kind(self) -> str:
        """'secret' (sk_) or 'restricted' (rk_)."""
        return "restricted" if self.api_key.startswith("rk_") else "secret"


@dataclass(frozen=True)
class ConnectionCheck:
    mode: str  # test | live
    key_kind: str  # secret | restricted
    method: str  # "balance" | "customers.list"
    api_base: str
    detail: str


@dataclass
class RequestStats:
    """Requests sent, by endpoint (e.g. 'POST /v1/customers'), and what happened to them."""

    by_endpoint: dict[str, int] = field(default_factory=dict)
    reads: int = 0
    writes: int = 0
    rate_limited: int = 0
    retries: int = 0


class StripeWriteError(Exception):
    """A write Stripe refused or that failed after retries; `retryable` tells which."""

    def __init__(self, message: str, *, code: str | None, retryable: bool, status: int | None):
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.status = status


class StripeGateway:
    """Thread-safe: the engine calls it from a pool of worker threads."""

    def __init__(self, settings: StripeSettings) -> None:
        raise NotImplementedError

    @property
    def stats(self) -> RequestStats:
        raise NotImplementedError

    def check(self) -> ConnectionCheck:
        raise NotImplementedError

    def list_by_email(self, object_name: str, email: str) -> list[dict[str, Any]]:
        """Exact, case-sensitive, strongly consistent list filter (one read per 100)."""
        raise NotImplementedError

    def iter_all(self, object_name: str) -> Iterator[dict[str, Any]]:
        """Every object, 100 per page (one read per page)."""
        raise NotImplementedError

    def retrieve(self, object_name: str, object_id: str) -> dict[str, Any] | None:
        """None when Stripe answers 404 resource_missing (or the object is deleted)."""
        raise NotImplementedError

    def create(
        self, object_name: str, params: Mapping[str, Any], idempotency_key: str
    ) -> dict[str, Any]:
        raise NotImplementedError

    def update(
        self, object_name: str, object_id: str, params: Mapping[str, Any], idempotency_key: str
    ) -> dict[str, Any]:
        raise NotImplementedError
