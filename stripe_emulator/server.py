"""The HTTP server: one router over the resources (stripe_emulator/resources), faults, and the
control API.

Every resource gets the same machinery here: auth, restricted-key permissions, rate limits,
fault draws, idempotency, object locks, stats. One thread per connection (ThreadingHTTPServer,
HTTP/1.1 keep-alive). Latency and slow responses are plain sleeps outside every shared lock, so
many requests are in flight at once; a write to an existing object sleeps its latency while
holding that object's lock, which is what makes concurrent writes to one object collide with
lock_timeout as on Stripe.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import random
import socket
import string
import struct
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from . import errors
from .clock import EmulatorClock
from .config import EmulatorConfig
from .errors import ApiError
from .faults import FaultDraws, FaultPlanner, RateLimiter
from .forms import canonical, decode
from .idempotency import IdempotencyStore, SavedResponse
from .resources import Resource, build_resources
from .resources.base import Operation

STRIPE_VERSION = "2026-10-28.endive"  # the pinned SDK's version; echoed unless the client sends one
HOST = "127.0.0.1"
_ALNUM = string.ascii_letters + string.digits
_request_ids = random.Random()


def _request_id() -> str:
    return "req_" + "".join(_request_ids.choices(_ALNUM, k=14))


@dataclass(frozen=True)
class Route:
    endpoint: str  # Stripe's name for the operation, e.g. "POST /v1/customers/{id}"
    object_id: str | None = None
    resource: Resource | None = None
    operation: Operation | None = None  # the resource's method for this endpoint
    own_pool: bool = False  # its own rate-limit pool: the global limit does not count it
    token_auth: bool = False  # authenticated by a token its resource checks, not an API key

    @property
    def is_write(self) -> bool:
        return self.endpoint.startswith(("POST", "DELETE"))

    @property
    def is_v2(self) -> bool:
        return self.endpoint.split(" ", 1)[1].startswith("/v2/")

    @property
    def permission(self) -> str:
        """The restricted-key permission this request needs, as its resource names it."""
        assert self.resource is not None
        return self.resource.permission(self.endpoint)

    def run(self, params: dict[str, Any]) -> Any:
        assert self.operation is not None
        return self.operation(params, self.object_id)


class Router:
    """(method, path) -> Route, from the endpoints the resources declare.

    A template segment in braces (`{id}`) matches any non-empty segment and names the object;
    literal segments win over it (`/v1/customers/search` before `/v1/customers/{id}`).
    """

    def __init__(self, resources: Iterable[Resource]) -> None:
        table: dict[tuple[str, int], list[tuple[tuple[str | None, ...], Route]]] = {}
        for resource in resources:
            for method, suffix, attribute in resource.routes:
                endpoint = resource.endpoint_name(method, suffix)
                template = endpoint.split(" ", 1)[1]  # "/v1/..." or "/v2/..."
                segments = tuple(
                    None if s.startswith("{") else s for s in template.strip("/").split("/")
                )
                route = Route(
                    endpoint,
                    None,
                    resource,
                    getattr(resource, attribute),
                    own_pool=attribute in resource.own_rate_limit_pool,
                    token_auth=attribute in resource.token_auth,
                )
                table.setdefault((method, len(segments)), []).append((segments, route))
        for candidates in table.values():
            candidates.sort(key=lambda c: sum(s is None for s in c[0]))
        self._table = table

    def route(self, method: str, path: str) -> Route | None:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        for segments, template in self._table.get((method, len(parts)), ()):
            ids: list[str] = []
            for want, got in zip(segments, parts, strict=True):
                if want is None and got:
                    ids.append(got)
                elif want != got:
                    break
            else:
                return dataclasses.replace(template, object_id=ids[-1] if ids else None)
        return None


# Endpoints where Stripe ignores Idempotency-Key (the SDK sends one on every v2 POST): the
# meter event stream takes none and de-duplicates events by their identifier instead.
NO_IDEMPOTENCY = frozenset({"POST /v2/billing/meter_event_stream"})


class Stats:
    """What the emulator saw and did, for assertions and benchmark reports."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
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

    def enter(self, endpoint: str) -> int:
        with self._lock:
            self.requests_total += 1
            self.by_endpoint[endpoint] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self.in_flight

    def leave(self, endpoint: str, outcome: str, fault: str | None) -> None:
        with self._lock:
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


class EmulatorState:
    """Everything a request handler needs; the config is swapped whole, never mutated."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.clock = EmulatorClock()  # Stripe's calendar, as tests move it (not latency, limits)
        self.resources = build_resources(
            seed=config.seed,
            search_delay=lambda: self.config.search_delay_seconds,
            clock=self.clock,
        )
        self.router = Router(self.resources.values())
        self.store = self.resources["customers"].store  # the customer store, as before
        self.limiter = RateLimiter()
        self.planner = FaultPlanner()
        self.idempotency = IdempotencyStore()
        self.stats = Stats()
        self._config_lock = threading.Lock()

    @property
    def stored(self) -> list[Resource]:
        """The resources that keep objects, in build order (customers, products, prices)."""
        return [r for r in self.resources.values() if r.has_store]

    def update_config(self, changes: Mapping[str, Any]) -> EmulatorConfig:
        with self._config_lock:
            self.config = self.config.updated(changes)
            return self.config

    def reset(self, *, stats_only: bool = False) -> None:
        self.stats.reset()
        self.limiter.reset()
        for resource in self.resources.values():
            resource.reset_stats()
        if not stats_only:
            for resource in self.stored:
                resource.reset(self.config.seed)
            self.planner.reset()
            self.idempotency.reset()
            self.clock.reset()

    def set_clock(self, payload: Any) -> dict[str, float]:
        """`POST /_emulator/clock`: `{"advance_seconds": N}`, `{"now": unix}` or
        `{"reset": true}` (back to real time)."""
        if not isinstance(payload, dict) or len(payload) != 1:
            raise ValueError(
                'POST /_emulator/clock takes one of {"advance_seconds": N}, {"now": unix}, '
                '{"reset": true}'
            )
        [(key, value)] = payload.items()
        if key == "reset" and value is True:
            self.clock.reset()
        elif key in ("advance_seconds", "now") and (
            isinstance(value, (int, float)) and not isinstance(value, bool)
        ):
            if key == "now":
                self.clock.set(float(value))
            else:
                self.clock.advance(float(value))
        else:
            raise ValueError(f"POST /_emulator/clock: bad {key!r}: {value!r}")
        return self.clock.describe()

    def control_read(self, name: str) -> Any:
        """`GET /_emulator/<name>` for the reads resources declare (`control_reads`)."""
        for resource in self.resources.values():
            attribute = resource.control_reads.get(name)
            if attribute is not None:
                return getattr(resource, attribute)()
        return None

    def seed(self, items: list[Mapping[str, Any]]) -> list[str]:
        """Insert customers directly (no API accounting), searchable at once."""
        return self.resources["customers"].seed(items)

    def seed_all(self, payload: Any) -> dict[str, Any]:
        """`POST /_emulator/seed`: a list of customers (`{"ids": [...]}`), or an object of
        lists by resource name, seeded in build order so prices can name seeded products
        (`{"ids": [every id], "customers": [...], "products": [...], ...}`)."""
        if isinstance(payload, list):
            return {"ids": self.seed(payload)}
        if not isinstance(payload, dict):
            raise ValueError(
                "POST /_emulator/seed takes a JSON list of customers or an object of lists "
                f"by resource ({', '.join(r.name for r in self.stored)})"
            )
        known = {r.name for r in self.stored}
        unknown = sorted(set(payload) - known)
        if unknown:
            raise ValueError(f"cannot seed {', '.join(unknown)}; one of {sorted(known)}")
        result: dict[str, Any] = {"ids": []}
        for resource in self.stored:
            if resource.name not in payload:
                continue
            items = payload[resource.name]
            if not isinstance(items, list):
                raise ValueError(f"seed {resource.name!r} takes a JSON list")
            ids = resource.seed(items)
            result[resource.name] = ids
            result["ids"].extend(ids)
        return result


class _Drop(Exception):
    """Close the connection without an answer."""


@dataclass
class _Answer:
    status: int
    body: bytes
    headers: list[tuple[str, str]]


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, indent=2).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    server_version = "nginx"  # what Stripe's API answers with
    sys_version = ""
    # Headers and body go out in two sends: with Nagle on, the second waits for the client's
    # delayed ACK (40 ms) on every small response.
    disable_nagle_algorithm = True

    # -- plumbing

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _read_body(self) -> bytes | None:
        """The body, or None when the client went away before sending all of it (killed
        mid-request): a server never acts on a truncated request."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        return body if len(body) == length else None

    def _send(self, answer: _Answer) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def _reset_connection(self) -> None:
        """Close the socket without answering; SO_LINGER 0 makes it a TCP reset."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        body = self._read_body()
        if body is None:
            self.close_connection = True
            return
        if url.path.startswith("/_emulator/"):
            self._send(self._control(method, url.path, url.query, body))
            return
        try:
            answer = self._api(method, url.path, url.query, body)
        except _Drop:
            self._reset_connection()
            return
        self._send(answer)

    # -- the Stripe API

    def _api(self, method: str, path: str, query: str, body: bytes) -> _Answer:
        state = self.server.state
        config = state.config
        request_id = _request_id()
        found = state.router.route(method, path)
        endpoint = found.endpoint if found else "other"
        idem_key = self.headers.get("Idempotency-Key") if method == "POST" else None
        if endpoint in NO_IDEMPOTENCY:
            idem_key = None  # Stripe de-duplicates these by identifier, not by key
        # Not the idempotency key: stripe-python puts a random one on every POST, and the same
        # traffic must draw the same faults on every run.
        fingerprint = f"{method} {path}?{query}|{body.decode('latin-1')}"
        draws = state.planner.draw(config, fingerprint)
        in_flight = state.stats.enter(endpoint)
        outcome, fault = "error", None
        started = time.monotonic()
        try:
            answer, fault, latency_left = self._api_answer(
                config, found, method, path, query, body, request_id, idem_key, draws, in_flight
            )
            if draws.slow_response and config.slow_response_seconds > 0:
                fault = fault or "slow_response"
                time.sleep(config.slow_response_seconds)
            remaining = latency_left - (time.monotonic() - started)
            if remaining > 0:
                time.sleep(remaining)
            outcome = str(answer.status)
            return answer
        except _Drop as drop:
            outcome, fault = str(drop), str(drop)
            raise
        except Exception:  # an emulator bug: answer like Stripe would, and say so on stderr
            traceback.print_exc()
            outcome = "500"
            exc = errors.server_error(should_retry=False)
            headers = [("Content-Type", "application/json"), ("Request-Id", request_id)]
            return _Answer(500, _json_bytes(exc.body(request_id)), headers)
        finally:
            state.stats.leave(endpoint, outcome, fault)

    def _api_answer(
        self,
        config: EmulatorConfig,
        found: Route | None,
        method: str,
        path: str,
        query: str,
        body: bytes,
        request_id: str,
        idem_key: str | None,
        draws: FaultDraws,
        in_flight: int,
    ) -> tuple[_Answer, str | None, float]:
        """(answer, injected fault name, latency still to sleep before answering)."""
        state = self.server.state
        headers = [
            ("Content-Type", "application/json"),
            ("Request-Id", request_id),
            ("Stripe-Version", self.headers.get("Stripe-Version") or STRIPE_VERSION),
        ]
        if idem_key is not None:
            headers.append(("Idempotency-Key", idem_key))

        v2 = path.startswith("/v2/")

        def error_answer(exc: ApiError) -> _Answer:
            return _Answer(
                exc.status,
                _json_bytes(exc.body(request_id, v2=v2)),
                headers + list(exc.headers.items()),
            )

        latency = draws.latency_s
        try:
            if config.concurrency_limit is not None and in_flight > config.concurrency_limit:
                raise errors.rate_limited(
                    "global-concurrency", "concurrency_limit", config.should_retry_on_rate_limit
                )
            if found is not None and found.token_auth:
                assert found.resource is not None
                token = self._credentials()
                if not token:
                    raise ApiError(401, errors.NO_KEY_MESSAGE)
                found.resource.check_token(token)
            else:
                api_key = self._authenticate(config)
                if found is None:
                    raise errors.unrecognized_url(method, path)
                lacking = config.restricted_keys.get(api_key, ())
                if found.permission in lacking:
                    raise errors.missing_permission(api_key, config.account_id, found.permission)
            assert found is not None
            self._rate_limit(config, found)
            if draws.random_429:
                raise errors.rate_limited(
                    "global-rate", "random_429", config.should_retry_on_rate_limit
                )
            if draws.connection_reset:
                raise _Drop("connection_reset")
            if draws.server_error and not config.server_error_saved:
                raise errors.server_error(should_retry=True)
            params = self._params(method, query, body)
        except ApiError as exc:
            return error_answer(exc), exc.fault, latency

        saved: SavedResponse | None = None
        if idem_key is not None:
            try:
                if len(idem_key) > 255:
                    raise errors.invalid(
                        "Invalid idempotency key: must be at most 255 characters long"
                    )
                saved = state.idempotency.begin(idem_key, path, canonical(params))
            except ApiError as exc:
                return error_answer(exc), exc.fault, latency
            if saved is not None:
                state.stats.replayed()
                replay_headers = [
                    (k, v) for k, v in saved.headers if k not in ("Request-Id", "Idempotency-Key")
                ]
                return (
                    _Answer(
                        saved.status,
                        saved.body,
                        [
                            *headers,
                            *replay_headers,
                            ("Idempotent-Replayed", "true"),
                            ("Original-Request", saved.request_id),
                        ],
                    ),
                    None,
                    latency,
                )

        try:
            answer, fault, executed, latency = self._execute(
                config, found, params, draws, latency, headers, error_answer
            )
        except BaseException:
            if idem_key is not None:
                state.idempotency.finish(idem_key, None)
            raise
        if idem_key is not None:
            keep = executed and answer.status != 400
            response = None
            if keep:
                extra = tuple(h for h in answer.headers if h not in headers)
                response = SavedResponse(
                    path, canonical(params), answer.status, answer.body, extra, request_id
                )
            state.idempotency.finish(idem_key, response)
        if fault == "dropped_response":
            raise _Drop("dropped_response")
        return answer, fault, latency

    def _execute(
        self,
        config: EmulatorConfig,
        found: Route,
        params: dict[str, Any],
        draws: FaultDraws,
        latency: float,
        headers: list[tuple[str, str]],
        error_answer: Any,
    ) -> tuple[_Answer, str | None, bool, float]:
        """Run the operation: (answer, fault, executed, latency left)."""
        state = self.server.state
        lock = None
        try:
            if draws.server_error:  # server_error_saved: the endpoint ran, then failed
                raise errors.server_error(should_retry=False)
            if found.is_write and found.object_id is not None:
                if draws.lock_timeout:
                    raise errors.lock_timeout("random_lock_timeout")
                assert found.resource is not None
                busy = found.resource.object_lock(found.object_id)
                if config.lock_wait_ms > 0:
                    acquired = busy.acquire(timeout=config.lock_wait_ms / 1000.0)
                else:
                    acquired = busy.acquire(blocking=False)
                if not acquired:
                    raise errors.lock_timeout("lock_timeout")
                lock = busy
            if found.is_write:
                state.stats.executing_delta(1)
                try:
                    time.sleep(latency)  # holds the object lock and idempotency key meanwhile
                    data = found.run(params)
                finally:
                    state.stats.executing_delta(-1)
                latency = 0.0
            else:
                data = found.run(params)
        except ApiError as exc:
            executed = exc.status not in (400, 409, 429) or exc.fault == "server_error"
            return error_answer(exc), exc.fault, executed, latency
        finally:
            if lock is not None:
                lock.release()
        fault = None
        if found.is_write:
            state.stats.committed(found.endpoint)
            if draws.drop_response:
                fault = "dropped_response"
        return _Answer(200, _json_bytes(data), list(headers)), fault, True, latency

    def _params(self, method: str, query: str, body: bytes) -> dict[str, Any]:
        """The request's parameters: the query string, plus a POST body decoded by its
        Content-Type (JSON for v2 endpoints, as stripe-python sends them; else a form)."""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if method == "POST" and content_type == "application/json":
            params = decode(query)
            if body.strip():
                try:
                    data = json.loads(body)
                except (UnicodeDecodeError, ValueError):
                    raise errors.invalid("Invalid JSON in the request body.") from None
                if not isinstance(data, dict):
                    raise errors.invalid("The request body must be a JSON object.")
                params.update(data)
            return params
        form = body.decode("utf-8", "replace")
        raw = query if method != "POST" else "&".join(p for p in (query, form) if p)
        return decode(raw)

    def _credentials(self) -> str:
        """The key or token of `Authorization: Bearer <key>` (or Basic `key:`)."""
        header = self.headers.get("Authorization") or ""
        scheme, _, credentials = header.partition(" ")
        key = ""
        if scheme.lower() == "bearer":
            key = credentials.strip()
        elif scheme.lower() == "basic":
            try:
                key = base64.b64decode(credentials).decode().partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                key = ""
        return key

    def _authenticate(self, config: EmulatorConfig) -> str:
        key = self._credentials()
        if not key:
            raise ApiError(401, errors.NO_KEY_MESSAGE)
        if not key.startswith(("sk_test_", "rk_test_")):
            raise errors.invalid_api_key(key)
        if (
            config.api_keys is not None
            and key not in config.api_keys
            and (key not in config.restricted_keys)
        ):
            raise errors.invalid_api_key(key)
        return key

    def _rate_limit(self, config: EmulatorConfig, found: Route) -> None:
        endpoint = found.endpoint
        limits: list[tuple[str, float]] = []
        counted_globally = not found.own_pool or config.own_pool_in_global_limit
        if config.rate_limit is not None and counted_globally:
            limits.append(("global", config.rate_limit))
        endpoint_limit = config.endpoint_limit(endpoint)
        if endpoint_limit is not None:
            limits.append((endpoint, endpoint_limit))
        if not limits:
            return
        refused = self.server.state.limiter.admit(limits, config.rate_limit_algorithm)
        if refused == "global":
            raise errors.rate_limited(
                "global-rate", "global_rate_limit", config.should_retry_on_rate_limit
            )
        if refused is not None:
            raise errors.rate_limited(
                "endpoint-rate", "endpoint_rate_limit", config.should_retry_on_rate_limit
            )

    # -- the control API

    def _control(self, method: str, path: str, query: str, body: bytes) -> _Answer:
        state = self.server.state
        headers = [("Content-Type", "application/json")]
        dumps = {r.name: r for r in state.stored}  # GET /_emulator/customers, .../products, ...
        try:
            payload = json.loads(body) if body.strip() else None
            if method == "GET" and path == "/_emulator/health":
                data: Any = {"ok": True}
            elif method == "GET" and path == "/_emulator/config":
                data = state.config.to_dict()
            elif method == "POST" and path == "/_emulator/config":
                if not isinstance(payload, dict):
                    raise ValueError("POST /_emulator/config takes a JSON object")
                data = state.update_config(payload).to_dict()
            elif method == "GET" and path == "/_emulator/stats":
                data = state.stats.snapshot()
                for resource in state.stored:  # live counts: "customers", "products", ...
                    data[resource.name] = resource.live_count
                for resource in state.resources.values():  # "meter_events": {...}, ...
                    data.update(resource.extra_stats())
                data["idempotency_keys"] = len(state.idempotency)
            elif method == "POST" and path == "/_emulator/reset":
                stats_only = bool((payload or {}).get("stats_only"))
                state.reset(stats_only=stats_only)
                data = {"ok": True, "stats_only": stats_only}
            elif method == "POST" and path == "/_emulator/seed":
                data = state.seed_all(payload)
            elif method == "GET" and path == "/_emulator/clock":
                data = state.clock.describe()
            elif method == "POST" and path == "/_emulator/clock":
                data = state.set_clock(payload)
            elif method == "GET" and (
                (read := state.control_read(path.removeprefix("/_emulator/"))) is not None
            ):
                data = {"data": read}
            elif method == "GET" and path.removeprefix("/_emulator/") in dumps:
                flags = parse_qs(query)
                include_deleted = flags.get("include_deleted", ["false"])[0] == "true"
                resource = dumps[path.removeprefix("/_emulator/")]
                data = {"data": resource.dump(include_deleted)}
            else:
                return _Answer(
                    404, _json_bytes({"error": f"no control route {method} {path}"}), headers
                )
        except (ValueError, TypeError) as exc:
            return _Answer(400, _json_bytes({"error": str(exc)}), headers)
        return _Answer(200, json.dumps(data).encode(), headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # many clients connect at once; the default backlog of 5 drops SYNs

    def __init__(self, port: int, state: EmulatorState, verbose: bool) -> None:
        self.state = state
        self.verbose = verbose
        super().__init__((HOST, port), Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.verbose:
            super().handle_error(request, client_address)


class EmulatorServer:
    """The emulator in this process: `start()` serves from a background thread.

    Prefer `start_emulator()` (a subprocess) for benchmarks: in-process, the server competes
    with the client for the GIL.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        port: int = 0,
        verbose: bool = False,
        **overrides: Any,
    ) -> None:
        config = config or EmulatorConfig()
        if overrides:
            config = config.updated(overrides)
        self.state = EmulatorState(config)
        self._server = _Server(port, self.state, verbose)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="stripe-emulator", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
