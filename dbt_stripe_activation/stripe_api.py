"""The official stripe SDK behind one small, thread-safe client.

Adds what the SDK leaves to us: a client-side rate limiter that knows Stripe's published
limits and adapts on 429, backoff with jitter for rate-limited requests (the SDK does not
retry a plain 429), and request counting. Knows nothing of dbt.

Every HTTP attempt -- SDK network retries included -- goes through one metered HTTP client:
that is where requests are paced, counted and watched for 429s, so the counts are what Stripe
saw. The SDK retries 409, 5xx and connection errors itself (`max_network_retries`, same
idempotency key); 429s are retried here, with exponential backoff and full jitter. Only a rate
429 slows the pace; a concurrency 429, a lock_timeout, a 409 or a 5xx costs a retry after a
short backoff (the retry is paced like any request), so a server that answers a share of
requests that way while it admits its full rate is used at that rate (benchmark (g)).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote_plus, urlsplit

import stripe
import urllib3

from .errors import StripeConnectionError
from .ratelimit import RateLimiter, is_concurrency

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
PAGE_SIZE = 100  # Stripe's largest page: one read per 100 objects
MAX_IDEMPOTENCY_KEY = 255

_KEY_SHAPE = re.compile(r"(sk|rk|pk)_(test|live)_[A-Za-z0-9]+")
_PERMISSION = re.compile(r"\brak_[a-z0-9_]+")
# Path segments after a collection that are actions, not ids (`/v1/customers/search`).
_ACTIONS = frozenset({"search", "deactivate", "reactivate"})
# Path segments that group collections (`/v1/billing/meters`), not collections themselves.
_NAMESPACES = frozenset({"billing", "checkout", "issuing", "terminal", "treasury", "tax",
                         "test_helpers", "radar", "reporting", "identity", "core"})

T = TypeVar("T")


def redact(text: str) -> str:
    """Mask anything shaped like a Stripe key, keeping its prefix: 'sk_test_***'."""
    return _KEY_SHAPE.sub(lambda m: f"{m.group(1)}_{m.group(2)}_***", text)


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


class StripeReadError(StripeWriteError):
    """A lookup that failed after retries (or was refused as invalid).

    A StripeWriteError, so a worker that catches write errors marks the row failed
    (retryable) or rejected instead of ending the run.
    """


class _Meter:
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


class _MeteredHTTPClient(stripe.HTTPClient):
    """Every HTTP attempt of the SDK (its network retries included) and of the meter event
    stream: paced by the limiter and counted, over one transport."""

    name = "dbt-stripe-activation"

    def __init__(self, *, limiter: RateLimiter, meter: _Meter, timeout: float,
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
        account = _header(headers, "stripe-account")  # Connect: that account's limits
        attempts = getattr(self._thread_local, "attempts", 0)
        self._thread_local.attempts = attempts + 1
        with self._limiter.slot(endpoint, account):
            self._meter.attempt(endpoint, method, retry=attempts > 0)
            answer: Any = self._transport.request(method, url, headers, post_data)
        content, status, rheaders = answer
        if status == 429:
            self._meter.rate_limited()
        if status != 429 or not _is_rate_429(_error_code(content), rheaders):
            # Past Stripe's rate limiter (a concurrency 429 or one busy object included):
            # what the account admits, counted.
            self._limiter.on_admitted(endpoint, account)
        else:
            self._limiter.on_rate_limited(
                endpoint, _header(rheaders, "stripe-rate-limited-reason"), account
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


def _is_rate_429(code: str | None, headers: Mapping[str, str] | None) -> bool:
    """A 429 about the rate requests are sent at. Not one busy object (`lock_timeout`) nor
    too many requests in flight (a concurrency reason): those say nothing of the pace."""
    if code == "lock_timeout":
        return False
    return not is_concurrency(_header(headers, "stripe-rate-limited-reason"))


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return None


def _error_code(content: Any) -> str | None:
    try:
        body = json.loads(content)
        return str(body["error"].get("code") or "") or None
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def _code_of(exc: stripe.StripeError) -> str | None:
    """Stripe's error code; `e.code` is None on some error classes (429, idempotency)."""
    error = exc.error  # an ErrorObject: attributes, not a dict (v15+)
    code = exc.code or (getattr(error, "code", None) if error is not None else None)
    if code:
        return str(code)
    if error is not None and getattr(error, "type", None) == "idempotency_error":
        return "idempotency_error"
    if exc.http_status == 404:  # an object path that does not exist is resource_missing
        return "resource_missing"
    return None


def _message_of(exc: stripe.StripeError) -> str:
    """Stripe's message as one redacted sentence; for a network error, its cause only."""
    text = " ".join((exc.user_message or "").split())
    if isinstance(exc, stripe.APIConnectionError) and "(Network error:" in text:
        text = text.rsplit("(Network error:", 1)[1].strip(") ")
        errno = re.search(r"\[Errno -?\d+\][^\"')]*", text)
        text = errno.group(0).strip() if errno else text
    text = redact(text) or type(exc).__name__
    return text if text.endswith((".", "!", "?")) else text + "."


_USER_AGENT = f"Stripe/v2 PythonBindings/{stripe.VERSION} dbt-stripe-activation"


def _v2_error(content: Any, status: int, answer_headers: Mapping[str, str]) -> stripe.StripeError:
    """A v2 error answer as the SDK's error class for its status, as the SDK raises it."""
    headers = dict(answer_headers)
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)
    try:
        body = json.loads(text)
        error = body.get("error") if isinstance(body, dict) else None
    except ValueError:
        body, error = None, None
    if not isinstance(error, dict):
        return stripe.APIError(f"Invalid response object from API: {text[:200]!r} (HTTP "
                               f"response code was {status})", text, status, body, headers)
    kind: type[stripe.StripeError] = {
        400: stripe.InvalidRequestError, 401: stripe.AuthenticationError,
        403: stripe.PermissionError, 404: stripe.InvalidRequestError,
        429: stripe.RateLimitError,
    }.get(status, stripe.APIError)
    if kind is stripe.InvalidRequestError:
        return stripe.InvalidRequestError(error.get("message"), error.get("param"),
                                          error.get("code"), text, status, body, headers)
    return kind(error.get("message"), text, status, body, headers, error.get("code"))


def _is_retryable(exc: stripe.StripeError) -> bool:
    status = exc.http_status
    if isinstance(exc, stripe.APIConnectionError):
        return True
    return status is not None and (status in (409, 429) or status >= 500)


# The keyword names StripeClient.raw_request takes as request options or uses itself, not
# as a request's fields.
RAW_REQUEST_NAMES = frozenset({
    "api_key", "stripe_version", "stripe_account", "stripe_context", "max_network_retries",
    "idempotency_key", "content_type", "headers", "base", "usage",
})


def _to_dict(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


class StripeGateway:
    """Thread-safe: the engine calls it from a pool of worker threads.

    Exceptions: StripeConnectionError (401, 403, or check() cannot reach Stripe) means no
    request of this run can succeed; StripeWriteError (StripeReadError for lookups) is about
    one request, with `retryable` telling a later run may succeed.
    """

    def __init__(
        self,
        settings: StripeSettings,
        *,
        limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`limiter` replaces the one built from settings; `sleep` waits between 429 retries
        (tests pass a recorder)."""
        stripe.enable_telemetry = False  # no telemetry headers, no id file in ~/.config
        self.settings = settings
        self._sleep = sleep
        self._jitter = random.Random()
        self._meter = _Meter()
        global_rps, endpoint_rps = settings.rate_limits
        self.limiter = limiter or RateLimiter(
            global_rps,
            endpoint_rps,
            settings.concurrency,
            endpoint_overrides={k: v * HEADROOM for k, v in ENDPOINT_RPS_OVERRIDES.items()},
            separate_pools={k: v * HEADROOM for k, v in settings.separate_pools.items()},
            account_rps=settings.account_rps * HEADROOM if settings.account_rps else None,
        )
        self._http = _MeteredHTTPClient(
            limiter=self.limiter, meter=self._meter, timeout=settings.timeout_seconds,
            connections=settings.concurrency,
            backoff=lambda retry: self._backoff(retry, None, rate=False),
        )
        options: dict[str, Any] = {}
        addresses: dict[str, str] = {}
        if settings.api_base:
            addresses["api"] = settings.resolved_api_base
            addresses["meter_events"] = settings.resolved_api_base
        if settings.meter_events_base:
            addresses["meter_events"] = settings.meter_events_base.rstrip("/")
        if addresses:
            options["base_addresses"] = addresses
        self._client_options = {
            "stripe_version": STRIPE_API_VERSION,
            "max_network_retries": settings.max_network_retries,
            "http_client": self._http,
            **options,
        }
        self._client = stripe.StripeClient(settings.api_key, **self._client_options)
        self.account: str | None = None
        self._accounts: dict[str, StripeGateway] = {}
        self._accounts_guard = threading.Lock()
        self._object_locks: dict[str, list[Any]] = {}
        self._object_locks_guard = threading.Lock()
        self._event_session: tuple[str, float] | None = None  # (token, expires at: monotonic)
        self._event_session_lock = threading.Lock()

    def for_account(self, account: str | None) -> StripeGateway:
        """The gateway acting for a connected account (`Stripe-Account`; None: the platform):
        the same HTTP sessions, limiter (which paces each account on its own budget),
        counters and object locks; its own SDK client and meter event session."""
        if account is None or account == self.account:
            return self
        with self._accounts_guard:
            view = self._accounts.get(account)
            if view is None:
                view = copy.copy(self)
                view.account = account
                view._client = stripe.StripeClient(self.settings.api_key,
                                                   stripe_account=account,
                                                   **self._client_options)
                view._event_session = None
                view._event_session_lock = threading.Lock()
                self._accounts[account] = view
            return view

    @property
    def stats(self) -> RequestStats:
        """A snapshot: reads and writes are HTTP attempts (SDK retries included)."""
        return self._meter.snapshot()

    # -- connection ---------------------------------------------------------------------

    def check(self, probes: Sequence[tuple[str, str, Mapping[str, Any]]]) -> ConnectionCheck:
        """One cheap read that proves the key works: Balance for a secret key; for a
        restricted key (which need not read balances), each synced object's own probe
        (`probes`: SDK service, method, params), so a missing permission is named now."""
        settings = self.settings
        try:
            if settings.key_kind == "restricted":
                done = []
                for service_name, method_name, params in probes:
                    call = getattr(self._service(service_name), method_name)
                    self._with_rate_limit_retries(partial(call, params=dict(params)))
                    query = "&".join(f"{k}={v}" for k, v in params.items())
                    done.append((f"{service_name}.{method_name}",
                                 f"GET /v1/{service_name}" + (f"?{query}" if query else "")))
                method = ", ".join(m for m, _ in done)
                detail = ", ".join(d for _, d in done) + " answered"
            else:
                method = "balance"
                self._with_rate_limit_retries(lambda: self._client.v1.balance.retrieve())
                detail = "GET /v1/balance answered"
        except stripe.StripeError as exc:
            if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
                raise self._refused(exc) from None
            if isinstance(exc, stripe.APIConnectionError):
                raise StripeConnectionError(
                    f"Cannot reach Stripe at {settings.resolved_api_base}: {_message_of(exc)} "
                    "Check the network and proxy, and --api-base / STRIPE_API_BASE if set."
                ) from None
            raise StripeConnectionError(
                f"Stripe at {settings.resolved_api_base} answered {exc.http_status} "
                f"({_code_of(exc) or 'error'}) to the connection check: {_message_of(exc)}"
            ) from None
        return ConnectionCheck(
            mode=settings.mode,
            key_kind=settings.key_kind,
            method=method,
            api_base=settings.resolved_api_base,
            detail=f"{detail} ({settings.mode} mode, {settings.key_kind} key)",
        )

    def _refused(self, exc: stripe.StripeError) -> StripeConnectionError:
        env = self.settings.api_key_env
        message = _message_of(exc)
        if isinstance(exc, stripe.PermissionError):
            found = _PERMISSION.search(message)
            if found:
                permission = found.group(0)
                return StripeConnectionError(
                    f"The key in ${env} lacks the '{permission}' permission (403): {message} "
                    f"Grant '{permission}' to the restricted key in the Stripe dashboard "
                    "(Developers > API keys), or use a key that has it."
                )
            return StripeConnectionError(
                f"Stripe refused a permission to the key in ${env} (403): {message} Grant the "
                "restricted key read and write access to the synced objects."
            )
        return StripeConnectionError(
            f"Stripe refused the API key in ${env} (401): {message} Set ${env} to a valid "
            "secret (sk_) or restricted (rk_) key from the Stripe dashboard "
            "(Developers > API keys)."
        )

    # -- reads ---------------------------------------------------------------------------

    def list_where(self, service_name: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """A list filter (email=, lookup_keys[]=): exact and strongly consistent, one read
        per 100 objects."""
        return list(self._pages(service_name, params))

    def iter_all(self, service_name: str, workers: int = 1) -> Iterator[dict[str, Any]]:
        """Every object, 100 per page (one read per page); with `workers` > 1, listed in
        parallel by `created` ranges (see _parallel_pages)."""
        if workers <= 1:
            return self._pages(service_name, {})
        return iter(self._parallel_pages(service_name, workers))

    def iter_children(
        self, parent_service: str, children: str, child_service: str, parent_filter: str,
        workers: int = 1,
    ) -> Iterator[dict[str, Any]]:
        """Every object Stripe lists only under a parent (a subscription's items): from each
        parent's embedded first page, and the rest of a longer list by the parent filter."""
        for parent in self.iter_all(parent_service, workers):
            embedded = parent.get(children) or {}
            yield from embedded.get("data") or []
            if embedded.get("has_more"):
                known = {child["id"] for child in embedded.get("data") or []}
                for child in self.list_where(child_service, {parent_filter: parent["id"]}):
                    if child["id"] not in known:
                        yield child

    def _parallel_pages(self, service_name: str, workers: int) -> list[dict[str, Any]]:
        """Every object, listed by up to `workers` requests at once.

        Stripe lists newest first and filters on `created`; nothing says in advance how the
        objects spread over time. So a range's first page measures their density (the span
        of its 100 `created` values): below it, `workers` pieces of about
        `_PAGES_PER_PIECE` pages each are listed in parallel, and an open-ended oldest piece
        that finds more does the same again. A piece past the oldest object costs one empty
        read and ends; a page of objects created within a minute is followed page by page
        (no density to go by). Boundaries are inclusive on both sides and objects are kept
        by id, so none is lost or counted twice, whatever order a page comes in. Reads:
        about ceil(N/100), plus one per piece.
        """
        seen: dict[str, dict[str, Any]] = {}
        lock = threading.Lock()
        service = self._service(service_name)
        what = f"list {_noun(service_name)}"

        def list_range(low: int | None, high: int | None) -> list[tuple[int | None, int | None]]:
            """Page one range; an open-ended one that finds more returns its pieces."""
            created: dict[str, int] = {}
            if low is not None:
                created["gte"] = low
            if high is not None:
                created["lte"] = high
            params: dict[str, Any] = {"limit": PAGE_SIZE, **({"created": created}
                                                               if created else {})}
            first = True
            while True:
                page = self._read(partial(service.list, params=dict(params)), what)
                items = [_to_dict(obj) for obj in page.data]
                with lock:
                    for item in items:
                        seen.setdefault(item["id"], item)
                if not page.has_more or not items:
                    return []
                if first and low is None:
                    stamps = [int(item["created"]) for item in items]
                    if max(stamps) - min(stamps) >= _MIN_SPAN_SECONDS:
                        return _pieces(max(stamps), min(stamps), workers)
                first = False
                params["starting_after"] = items[-1]["id"]

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stripe-list") as pool:
            pending = {pool.submit(list_range, None, None)}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    for low, high in future.result():
                        pending.add(pool.submit(list_range, low, high))
        return list(seen.values())

    def _pages(self, service_name: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        object_name = _noun(service_name)
        service = self._service(service_name)
        starting_after: str | None = None
        while True:
            page_params: dict[str, Any] = {**params, "limit": PAGE_SIZE}
            if starting_after:
                page_params["starting_after"] = starting_after
            page = self._read(partial(service.list, params=page_params), f"list {object_name}")
            items = [_to_dict(obj) for obj in page.data]
            yield from items
            if not page.has_more or not items:
                return
            starting_after = items[-1]["id"]

    def retrieve(self, service_name: str, object_id: str) -> dict[str, Any] | None:
        """None when Stripe answers 404 resource_missing (or the object is deleted)."""
        object_name = _noun(service_name)
        service = self._service(service_name)
        try:
            obj = self._with_read_retries(lambda: service.retrieve(object_id))
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise self._error(exc, StripeReadError, f"retrieve {object_name} {object_id}") from None
        except stripe.StripeError as exc:
            raise self._error(exc, StripeReadError, f"retrieve {object_name} {object_id}") from None
        data = _to_dict(obj)
        return None if data.get("deleted") else data

    def _read(self, call: Callable[[], T], what: str) -> T:
        try:
            return self._with_read_retries(call)
        except stripe.StripeError as exc:
            raise self._error(exc, StripeReadError, what) from None

    def _with_read_retries(self, call: Callable[[], T]) -> T:
        """Also retry a 5xx that Stripe marked `Stripe-Should-Retry: false` (the SDK stops
        there): that verdict is about replaying a write, and a read changes nothing. Without
        it, one such answer on one list page fails the whole model's index."""
        retries = 0
        while True:
            try:
                return self._with_rate_limit_retries(call)
            except stripe.APIError as exc:
                sdk_gave_up = _header(exc.headers, "stripe-should-retry") == "false"
                if (not sdk_gave_up or (exc.http_status or 0) < 500
                        or retries >= self.settings.max_network_retries):
                    raise
                retries += 1
                self._meter.retry()
                self._sleep(self._backoff(retries, None, rate=False))

    # -- writes --------------------------------------------------------------------------

    def create(
        self, service_name: str, params: Mapping[str, Any], idempotency_key: str
    ) -> dict[str, Any]:
        object_name = _noun(service_name)
        options = {"idempotency_key": _idempotency_key(idempotency_key)}
        return self._write(self._call("post", service_name, None, params, options),
                           f"create {object_name}")

    def update(
        self, service_name: str, object_id: str, params: Mapping[str, Any], idempotency_key: str
    ) -> dict[str, Any]:
        object_name = _noun(service_name)
        options = {"idempotency_key": _idempotency_key(idempotency_key)}
        # Concurrent writes to one object fail with 429 lock_timeout: ours go one at a time.
        with self._object_lock(object_id):
            return self._write(self._call("post", service_name, object_id, params, options),
                               f"update {object_name} {object_id}")

    def delete(self, service_name: str, object_id: str, idempotency_key: str) -> dict[str, Any]:
        """Permanent (on_removed: delete). A delete whose answer was lost and is sent again
        finds the object gone: the caller takes `resource_missing` as done."""
        object_name = _noun(service_name)
        options = {"idempotency_key": _idempotency_key(idempotency_key)}
        with self._object_lock(object_id):
            return self._write(self._call("delete", service_name, object_id, {}, options),
                               f"delete {object_name} {object_id}")

    def _call(self, method: str, service_name: str, object_id: str | None,
              params: Mapping[str, Any], options: dict[str, Any]) -> Callable[[], Any]:
        """One write through the SDK's `raw_request`: the same request, retries and error
        classes as the service's method, without building a StripeObject from the answer
        (about 6% of a sync's CPU): the answer's JSON is all a write needs. raw_request
        takes some keyword names as options: no object's field has one (a unit test checks
        every object's catalogue against RAW_REQUEST_NAMES)."""
        path = "/v1/" + service_name.replace(".", "/")
        if object_id is not None:
            path += "/" + quote_plus(object_id)  # as the SDK puts an id in a path
        client, fields = self._client, {**params, **options}
        # Plain dicts, as to_dict gives from a service's answer (.data holds OrderedDicts).
        return lambda: json.loads(client.raw_request(method, path, **fields).body)

    def _write(self, call: Callable[[], Any], what: str) -> dict[str, Any]:
        try:
            return _to_dict(self._with_rate_limit_retries(call))
        except stripe.StripeError as exc:
            raise self._error(exc, StripeWriteError, what) from None

    # -- the meter event stream ----------------------------------------------------------

    def send_event_stream(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Post up to 100 events to the v2 meter event stream under a session token.

        The stream takes no idempotency key: Stripe de-duplicates events by identifier, so
        a batch whose answer was lost is sent again as it is. A session lasts 15 minutes:
        one is opened on first use, renewed a minute before it expires, and once more if
        Stripe says it expired. Validation is asynchronous: the answer says nothing of
        single events.

        The one request not made through the SDK's service: it would form-encode every
        event before sending it as JSON (about 60 us an event, more than the rest of the
        sync's work for it). The body is encoded once here and goes through the same HTTP
        client (pacing, counting, the SDK's network retries); an error answer becomes the
        SDK's own error class, as the SDK would raise it.
        """
        body = json.dumps({"events": list(events)}, separators=(",", ":")).encode()
        url = self.settings.resolved_meter_events_base + "/v2/billing/meter_event_stream"
        for attempt in (1, 2):
            token = self._event_token(renew=attempt == 2)
            headers = {
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Stripe-Version": STRIPE_API_VERSION,
                "User-Agent": _USER_AGENT,
            }
            try:
                self._with_rate_limit_retries(partial(self._post_stream, url, headers, body))
                return
            except stripe.StripeError as exc:
                expired = exc.http_status == 401 and "session" in (_code_of(exc) or "") + str(
                    getattr(exc.error, "code", "") or "")
                if expired and attempt == 1:
                    continue
                raise self._error(exc, StripeWriteError, "send meter events") from None

    def _post_stream(self, url: str, headers: Mapping[str, str], body: bytes) -> None:
        content, status, rheaders = self._http.request_with_retries(
            "post", url, headers, body, self.settings.max_network_retries)
        if status >= 400:
            raise _v2_error(content, status, rheaders)

    def _event_token(self, *, renew: bool) -> str:
        with self._event_session_lock:
            now = time.monotonic()
            if renew or self._event_session is None or self._event_session[1] - now < 60:
                try:
                    session = self._with_rate_limit_retries(
                        lambda: self._client.v2.billing.meter_event_session.create())
                except stripe.StripeError as exc:
                    raise self._error(exc, StripeWriteError,
                                      "open a meter event session") from None
                self._event_session = (session.authentication_token, now + 14 * 60)
            return self._event_session[0]

    @contextmanager
    def _object_lock(self, object_id: str) -> Iterator[None]:
        with self._object_locks_guard:
            entry = self._object_locks.setdefault(object_id, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._object_locks_guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._object_locks[object_id]

    # -- shared --------------------------------------------------------------------------

    def _service(self, service_name: str) -> Any:
        """`client.v1.<service_name>` ("billing.meters" walks the namespace): the object's
        contract names the service."""
        service: Any = self._client.v1
        for part in service_name.split("."):
            service = getattr(service, part, None)
            if service is None:
                raise ValueError(f"the stripe SDK has no service client.v1.{service_name}")
        return service

    def _with_rate_limit_retries(self, call: Callable[[], T]) -> T:
        """Retry 429s (rate limits, concurrency and lock_timeout) with the same request, hence
        the same idempotency key, unless Stripe says `Stripe-Should-Retry: false`. A rate
        429 backs off at the rate limit's pace; the others at the short one of a 5xx."""
        retries = 0
        while True:
            try:
                return call()
            except stripe.RateLimitError as exc:
                if _header(exc.headers, "stripe-should-retry") == "false":
                    raise
                if retries >= self.settings.max_rate_limit_retries:
                    raise
                retries += 1
                self._meter.retry()
                rate = _is_rate_429(_code_of(exc), exc.headers)
                self._sleep(self._backoff(retries, _header(exc.headers, "retry-after"),
                                          rate=rate))

    def _backoff(self, retry: int, retry_after: str | None, *, rate: bool = True) -> float:
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

    def _error(self, exc: stripe.StripeError, kind: type[StripeWriteError], what: str) -> Exception:
        if self.account is not None and _code_of(exc) == ACCOUNT_INVALID:
            # One connected account the platform cannot act for: its rows fail, not the run.
            return kind(f"account {self.account}: {exc.http_status} {ACCOUNT_INVALID}: "
                        f"{_message_of(exc)}", code=ACCOUNT_INVALID, retryable=False,
                        status=exc.http_status)
        if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
            return self._refused(exc)
        status = exc.http_status
        code = _code_of(exc)
        message = _message_of(exc)
        if isinstance(exc, stripe.APIConnectionError):
            text = (
                f"{what}: no answer from {self.settings.resolved_api_base} after "
                f"{self.settings.max_network_retries} retries: {message}"
            )
        else:
            request = f" (request {exc.request_id})" if exc.request_id else ""
            kind_of_error = code or getattr(exc.error, "type", None) or "error"
            text = f"{what}: {status} {kind_of_error}: {message}{request}"
        return kind(redact(text), code=code, retryable=_is_retryable(exc), status=status)


# Pieces of a parallel listing hold about this many pages each (by the first page's density).
_PAGES_PER_PIECE = 4
# A first page whose objects were created within this many seconds (an import, a burst)
# says nothing useful about density: the range is paged one page after another.
_MIN_SPAN_SECONDS = 60


def _pieces(newest: int, oldest_seen: int, workers: int) -> list[tuple[int | None, int | None]]:
    """The rest of an open-ended range whose first page went from `newest` down to
    `oldest_seen`: that span and later again (its objects are read once more, a page at
    most, so no order is assumed), `workers` pieces of about _PAGES_PER_PIECE pages at the
    page's density below it, and the oldest part, open-ended."""
    span = max(newest - oldest_seen, 1) * _PAGES_PER_PIECE
    ranges: list[tuple[int | None, int | None]] = [(oldest_seen, newest)]
    high = oldest_seen
    for _ in range(workers):
        low = high - span
        if low <= 0:
            break
        ranges.append((low, high))
        high = low  # inclusive both sides: an object on a boundary is read twice, kept once
    ranges.append((None, high))
    return ranges


# Stripe's code for a Stripe-Account the platform cannot act for (unknown, not connected).
ACCOUNT_INVALID = "account_invalid"


def _noun(service_name: str) -> str:
    """How messages name one object of a service: the service's name in the singular."""
    name = service_name.rsplit(".", 1)[-1].replace("_", " ")
    return name[:-1] if name.endswith("s") else name


def _idempotency_key(key: str) -> str:
    """Stripe takes keys of at most 255 characters: hash a longer one (still deterministic)."""
    if len(key) <= MAX_IDEMPOTENCY_KEY:
        return key
    return "sha256-" + hashlib.sha256(key.encode()).hexdigest()
