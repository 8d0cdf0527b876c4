"""The gateway: the object operations the stages call (check, list, retrieve, create,
update, delete, send meter events), for the platform or a connected account."""

from __future__ import annotations

import copy
import hashlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote_plus

import stripe

from ..errors import StripeConnectionError
from ..ratelimit import RateLimiter
from .errors import (
    ACCOUNT_INVALID,
    StripeReadError,
    StripeWriteError,
    code_of,
    is_retryable,
    message_of,
    redact,
    refused,
)
from .event_stream import MeterEventStream
from .listing import pages, parallel_pages
from .retries import Retrier
from .settings import (
    ENDPOINT_RPS_OVERRIDES,
    HEADROOM,
    STRIPE_API_VERSION,
    ConnectionCheck,
    StripeSettings,
)
from .transport import Meter, MeteredHTTPClient, RequestStats

MAX_IDEMPOTENCY_KEY = 255

T = TypeVar("T")


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
        self._meter = Meter()
        self._retry = Retrier(settings, self._meter, sleep)
        global_rps, endpoint_rps = settings.rate_limits
        self.limiter = limiter or RateLimiter(
            global_rps,
            endpoint_rps,
            settings.concurrency,
            endpoint_overrides={k: v * HEADROOM for k, v in ENDPOINT_RPS_OVERRIDES.items()},
            separate_pools={k: v * HEADROOM for k, v in settings.separate_pools.items()},
            account_rps=settings.account_rps * HEADROOM if settings.account_rps else None,
        )
        self._http = MeteredHTTPClient(
            limiter=self.limiter, meter=self._meter, timeout=settings.timeout_seconds,
            connections=settings.concurrency,
            backoff=lambda retry: self._retry.backoff(retry, None, rate=False),
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
        self._events = self._event_stream()
        # What the server does unlike Stripe, for the run's warnings; shared by the account
        # views (copy.copy keeps the same list).
        self._notices: list[str] = []

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
                view._events = view._event_stream()
                self._accounts[account] = view
            return view

    def _event_stream(self) -> MeterEventStream:
        return MeterEventStream(self._client, self._http, self.settings, self._retry,
                                lambda exc, what: self._error(exc, StripeWriteError, what))

    def take_notices(self) -> list[str]:
        """What the server did unlike Stripe since the last call, each once."""
        with self._accounts_guard:
            found, self._notices[:] = list(dict.fromkeys(self._notices)), []
        return found

    def _notice(self, what: str) -> None:
        with self._accounts_guard:
            self._notices.append(
                f"the server at {self.settings.resolved_api_base} {what}: its objects were "
                "listed one page after another, which is slower (Stripe lists newest first "
                "and filters on `created`, which lets a sync list in parallel)")

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
                    self._retry.rate_limited(partial(call, params=dict(params)))
                    query = "&".join(f"{k}={v}" for k, v in params.items())
                    done.append((f"{service_name}.{method_name}",
                                 f"GET /v1/{service_name}" + (f"?{query}" if query else "")))
                method = ", ".join(m for m, _ in done)
                detail = ", ".join(d for _, d in done) + " answered"
            else:
                method = "balance"
                self._retry.rate_limited(lambda: self._client.v1.balance.retrieve())
                detail = "GET /v1/balance answered"
        except stripe.StripeError as exc:
            if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
                raise refused(exc, settings.api_key_env) from None
            if isinstance(exc, stripe.APIConnectionError):
                raise StripeConnectionError(
                    f"Cannot reach Stripe at {settings.resolved_api_base}: {message_of(exc)} "
                    "Check the network and proxy, and --api-base / STRIPE_API_BASE if set."
                ) from None
            raise StripeConnectionError(
                f"Stripe at {settings.resolved_api_base} answered {exc.http_status} "
                f"({code_of(exc) or 'error'}) to the connection check: {message_of(exc)}"
            ) from None
        return ConnectionCheck(
            mode=settings.mode,
            key_kind=settings.key_kind,
            method=method,
            api_base=settings.resolved_api_base,
            detail=f"{detail} ({settings.mode} mode, {settings.key_kind} key)",
        )

    # -- reads ---------------------------------------------------------------------------

    def list_where(self, service_name: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """A list filter (email=, lookup_keys[]=): exact and strongly consistent, one read
        per 100 objects."""
        return list(self._pages(service_name, params))

    def iter_all(self, service_name: str, workers: int = 1) -> Iterator[dict[str, Any]]:
        """Every object, 100 per page (one read per page); with `workers` > 1, listed in
        parallel by `created` ranges (listing.parallel_pages)."""
        if workers <= 1:
            return self._pages(service_name, {})
        return iter(parallel_pages(self._page_reader(service_name), workers, self._notice))

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

    def _pages(self, service_name: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        return pages(self._page_reader(service_name), params)

    def _page_reader(
        self, service_name: str
    ) -> Callable[[dict[str, Any]], tuple[list[dict[str, Any]], bool]]:
        """One list request of the service: its objects as dicts, and whether more follow."""
        service = self._service(service_name)
        what = f"list {_noun(service_name)}"

        def read_page(params: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
            page = self._read(partial(service.list, params=params), what)
            return [_to_dict(obj) for obj in page.data], bool(page.has_more)

        return read_page

    def retrieve(self, service_name: str, object_id: str) -> dict[str, Any] | None:
        """None when Stripe answers 404 resource_missing (or the object is deleted)."""
        object_name = _noun(service_name)
        service = self._service(service_name)
        try:
            obj = self._retry.read(lambda: service.retrieve(object_id))
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
            return self._retry.read(call)
        except stripe.StripeError as exc:
            raise self._error(exc, StripeReadError, what) from None

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
        path = _PATHS.get(service_name) or _PATHS.setdefault(
            service_name, _collection_path(service_name, type(self._service(service_name))))
        if object_id is not None:
            path += "/" + quote_plus(object_id)  # as the SDK puts an id in a path
        client, fields = self._client, {**params, **options}
        # Plain dicts, as to_dict gives from a service's answer (.data holds OrderedDicts).
        return lambda: json.loads(client.raw_request(method, path, **fields).body)

    def _write(self, call: Callable[[], Any], what: str) -> dict[str, Any]:
        try:
            return _to_dict(self._retry.rate_limited(call))
        except stripe.StripeError as exc:
            raise self._error(exc, StripeWriteError, what) from None

    # -- the meter event stream ----------------------------------------------------------

    def send_event_stream(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Up to 100 events to the v2 meter event stream (event_stream.MeterEventStream)."""
        self._events.send(events)

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

    def _error(self, exc: stripe.StripeError, kind: type[StripeWriteError], what: str) -> Exception:
        if self.account is not None and code_of(exc) == ACCOUNT_INVALID:
            # One connected account the platform cannot act for: its rows fail, not the run.
            return kind(f"account {self.account}: {exc.http_status} {ACCOUNT_INVALID}: "
                        f"{message_of(exc)}", code=ACCOUNT_INVALID, retryable=False,
                        status=exc.http_status)
        if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
            return refused(exc, self.settings.api_key_env)
        status = exc.http_status
        code = code_of(exc)
        message = message_of(exc)
        if isinstance(exc, stripe.APIConnectionError):
            text = (
                f"{what}: no answer from {self.settings.resolved_api_base} after "
                f"{self.settings.max_network_retries} retries: {message}"
            )
        else:
            request = f" (request {exc.request_id})" if exc.request_id else ""
            kind_of_error = code or getattr(exc.error, "type", None) or "error"
            text = f"{what}: {status} {kind_of_error}: {message}{request}"
        return kind(redact(text), code=code, retryable=is_retryable(exc), status=status)


_PATHS: dict[str, str] = {}  # service -> its collection's path, found once


def _collection_path(service_name: str, service_class: type) -> str:
    """A collection's path as the SDK's own resource class gives it (`/v1/invoiceitems` for
    the `invoice_items` service): the service's name and the URL differ for some objects."""
    package = sys.modules[service_class.__module__.rsplit(".", 1)[0]]
    resource = getattr(package, service_class.__name__.removesuffix("Service"), None)
    class_url = getattr(resource, "class_url", None)
    if callable(class_url):
        return str(class_url())
    return "/v1/" + service_name.replace(".", "/")


def _noun(service_name: str) -> str:
    """How messages name one object of a service: the service's name in the singular."""
    name = service_name.rsplit(".", 1)[-1].replace("_", " ")
    return name[:-1] if name.endswith("s") else name


def _idempotency_key(key: str) -> str:
    """Stripe takes keys of at most 255 characters: hash a longer one (still deterministic)."""
    if len(key) <= MAX_IDEMPOTENCY_KEY:
        return key
    return "sha256-" + hashlib.sha256(key.encode()).hexdigest()
