"""The HTTP under the SDK: one metered client through which every attempt goes (the SDK's
network retries and the meter event stream included), paced by the limiter and counted, over
urllib3's keep-alive pool."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import stripe
import urllib3

from ..ratelimit import RateLimiter, is_concurrency

# Path segments after a collection that are actions, not ids (`/v1/customers/search`).
_ACTIONS = frozenset({"search", "deactivate", "reactivate"})
# Path segments that group collections (`/v1/billing/meters`), not collections themselves.
_NAMESPACES = frozenset({"billing", "checkout", "issuing", "terminal", "treasury", "tax",
                         "test_helpers", "radar", "reporting", "identity", "core"})


def endpoint_of(method: str, url: str) -> str:
    """Stripe's name for an operation: 'POST /v1/customers/{id}' for any customer id;
    namespaces keep their collections' names ('POST /v1/billing/meter_events')."""
    parts = [p for p in urlsplit(url).path.split("/") if p]
    start = next((i for i, p in enumerate(parts) if re.fullmatch(r"v\d+", p)), 0)
    named: list[str] = []
    collection_next = False  # after the version: a collection (or a namespace) comes first
    for position, part in enumerate(parts[start:]):
        if position == 0:
            named.append(part)
            collection_next = True
        elif collection_next:
            named.append(part)
            collection_next = part in _NAMESPACES
        else:
            named.append(part if part in _ACTIONS else "{id}")
            collection_next = True
    return f"{method.upper()} /" + "/".join(named)


@dataclass
class RequestStats:
    """Requests sent, by endpoint (e.g. 'POST /v1/customers'), and what happened to them."""

    by_endpoint: dict[str, int] = field(default_factory=dict)
    reads: int = 0
    writes: int = 0
    rate_limited: int = 0
    retries: int = 0


class Meter:
    """RequestStats behind a lock: worker threads count concurrently."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = RequestStats()

    def attempt(self, endpoint: str, method: str, *, retry: bool) -> None:
        with self._lock:
            stats = self._stats
            stats.by_endpoint[endpoint] = stats.by_endpoint.get(endpoint, 0) + 1
            if method.upper() == "GET":
                stats.reads += 1
            else:
                stats.writes += 1
            if retry:
                stats.retries += 1

    def rate_limited(self) -> None:
        with self._lock:
            self._stats.rate_limited += 1

    def retry(self) -> None:
        with self._lock:
            self._stats.retries += 1

    def snapshot(self) -> RequestStats:
        with self._lock:
            return replace(self._stats, by_endpoint=dict(self._stats.by_endpoint))


class _Urllib3Client(stripe.HTTPClient):
    """The SDK's HTTP client contract over urllib3's keep-alive pool: what requests adds on
    top (sessions, hooks, the environment read on every request) is about half of the
    client's CPU per request, and a sync is CPU-bound at Stripe's limits. Proxies are the
    requests client's job (see `_transport`)."""

    name = "urllib3"

    def __init__(self, *, timeout: float, connections: int) -> None:
        super().__init__()
        self._pool = urllib3.PoolManager(
            num_pools=8, maxsize=max(connections, 64), block=False, retries=False,
            timeout=urllib3.Timeout(total=timeout), cert_reqs="CERT_REQUIRED",
            ca_certs=stripe.ca_bundle_path,
        )

    def request(  # type: ignore[override]
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        try:
            answer = self._pool.request(method.upper(), url, body=post_data,
                                        headers=dict(headers or {}), redirect=False)
        except urllib3.exceptions.SSLError as exc:  # worded as the SDK's own clients word it
            raise stripe.APIConnectionError(
                "Could not verify Stripe's SSL certificate.\n\n(Network error: "
                f"{type(exc).__name__}: {exc})", should_retry=False) from exc
        except urllib3.exceptions.HTTPError as exc:  # timeouts, resets, refused connections
            raise stripe.APIConnectionError(
                "Unexpected error communicating with Stripe.\n\n(Network error: "
                f"{type(exc).__name__}: {exc})", should_retry=True) from exc
        return answer.data, answer.status, answer.headers

    def close(self) -> None:
        self._pool.clear()


def _transport(timeout: float, connections: int) -> stripe.HTTPClient:
    """urllib3; with proxy variables set, the SDK's requests client, which honours them
    (and NO_PROXY, and ~/.netrc) as requests always does."""
    if any(name.lower().endswith("_proxy") for name in os.environ):
        return stripe.RequestsClient(timeout=timeout)
    return _Urllib3Client(timeout=timeout, connections=connections)


class MeteredHTTPClient(stripe.HTTPClient):
    """Every HTTP attempt of the SDK (its network retries included) and of the meter event
    stream: paced by the limiter and counted, over one transport."""

    name = "dbt-stripe-activation"

    def __init__(self, *, limiter: RateLimiter, meter: Meter, timeout: float,
                 connections: int, backoff: Callable[[int], float] | None = None) -> None:
        super().__init__()
        self._limiter = limiter
        self._meter = meter
        self._transport = _transport(timeout, connections)
        self._backoff = backoff  # the wait before the SDK's retry n of an answered request

    def close(self) -> None:
        self._transport.close()

    def request_with_retries(  # type: ignore[override]
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        post_data: Any = None,
        max_network_retries: int | None = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        self._thread_local.attempts = 0  # the SDK's retries of this request follow
        return super().request_with_retries(
            method, url, headers, post_data, max_network_retries, _usage=_usage
        )

    def request(  # type: ignore[override]
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        endpoint = endpoint_of(method, url)
        account = header(headers, "stripe-account")  # Connect: that account's limits
        attempts = getattr(self._thread_local, "attempts", 0)
        self._thread_local.attempts = attempts + 1
        with self._limiter.slot(endpoint, account):
            self._meter.attempt(endpoint, method, retry=attempts > 0)
            answer: Any = self._transport.request(method, url, headers, post_data)
        content, status, rheaders = answer
        if status == 429:
            self._meter.rate_limited()
        if status != 429 or not is_rate_429(error_code(content), rheaders):
            # Past Stripe's rate limiter (a concurrency 429 or one busy object included):
            # what the account admits, counted.
            self._limiter.on_admitted(endpoint, account)
        else:
            self._limiter.on_rate_limited(
                endpoint, header(rheaders, "stripe-rate-limited-reason"), account
            )
        return content, status, rheaders

    def _should_retry(
        self,
        response: tuple[Any, int, Mapping[str, str] | None] | None,
        api_connection_error: stripe.APIConnectionError | None,
        num_retries: int,
        max_network_retries: int | None,
    ) -> bool:
        # 429s are the gateway's to retry, with its own budget and backoff, even when Stripe
        # sends `Stripe-Should-Retry: true` (which would make the SDK retry them too).
        if response is not None and response[1] == 429:
            return False
        self._thread_local.answered = response is not None
        return bool(
            super()._should_retry(response, api_connection_error, num_retries, max_network_retries)
        )

    def _sleep_time_seconds(self, num_retries: int) -> float:
        """The SDK's wait before its retry: ours for an answer (5xx, 409), which says
        nothing of the rate (the retry is paced anyway); the SDK's own, which waits at least
        0.5 s, for a request that got no answer (a network that is down stays down a while)."""
        if self._backoff is not None and getattr(self._thread_local, "answered", False):
            return self._backoff(num_retries)
        return float(super()._sleep_time_seconds(num_retries))


def is_rate_429(code: str | None, headers: Mapping[str, str] | None) -> bool:
    """A 429 about the rate requests are sent at. Not one busy object (`lock_timeout`) nor
    too many requests in flight (a concurrency reason): those say nothing of the pace."""
    if code == "lock_timeout":
        return False
    return not is_concurrency(header(headers, "stripe-rate-limited-reason"))


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return None


def error_code(content: Any) -> str | None:
    try:
        body = json.loads(content)
        return str(body["error"].get("code") or "") or None
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
