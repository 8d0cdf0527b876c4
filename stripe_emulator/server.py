"""The HTTP server: the accounts' routers over the resources (stripe_emulator/resources), faults,
and the control API.

Every resource gets the same machinery here: auth, the account a request acts on (Connect's
`Stripe-Account` header, stripe_emulator/accounts.py), restricted-key permissions, rate limits,
fault draws, idempotency, object locks, stats. One thread per connection (ThreadingHTTPServer,
HTTP/1.1 keep-alive). Latency and slow responses are plain sleeps outside every shared lock, so
many requests are in flight at once; a write to an existing object sleeps its latency while
holding that object's lock, which is what makes concurrent writes to one object collide with
lock_timeout as on Stripe.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import socket
import string
import struct
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import errors
from .accounts import Account, Accounts
from .clock import EmulatorClock
from .config import EmulatorConfig
from .errors import ApiError
from .faults import FaultDraws, FaultPlanner
from .forms import canonical, decode
from .idempotency import SavedResponse
from .resources import ListQuirks, Resource
from .routing import Route, Router
from .stats import Stats

__all__ = ["EmulatorServer", "EmulatorState", "Route", "Router", "Stats"]

STRIPE_VERSION = "2026-10-28.endive"  # the pinned SDK's version; echoed unless the client sends one
HOST = "127.0.0.1"
_ALNUM = string.ascii_letters + string.digits
_request_ids = random.Random()


def _request_id() -> str:
    return "req_" + "".join(_request_ids.choices(_ALNUM, k=14))


# Endpoints where Stripe ignores Idempotency-Key (the SDK sends one on every v2 POST): the
# meter event stream takes none and de-duplicates events by their identifier instead.
NO_IDEMPOTENCY = frozenset({"POST /v2/billing/meter_event_stream"})


class EmulatorState:
    """Everything a request handler needs; the config is swapped whole, never mutated."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.clock = EmulatorClock()  # Stripe's calendar, as tests move it (not latency, limits)
        self.accounts = Accounts(
            config.account_id,
            seed=config.seed,
            search_delay=lambda: self.config.search_delay_seconds,
            clock=self.clock,
            list_quirks=lambda: ListQuirks(oldest_first=self.config.list_order == "oldest_first",
                                           refuses_created=self.config.refuse_created_filter),
        )
        self.accounts.ensure(config.accounts, config.seed)
        self.planner = FaultPlanner()
        self._config_lock = threading.Lock()

    @property
    def platform(self) -> Account:
        return self.accounts.platform

    @property
    def resources(self) -> dict[str, Resource]:
        """The platform's resources (each connected account has its own)."""
        return self.platform.resources

    def update_config(self, changes: Mapping[str, Any]) -> EmulatorConfig:
        with self._config_lock:
            self.config = self.config.updated(changes)
            self.platform.id = self.config.account_id
            self.accounts.ensure(self.config.accounts, self.config.seed)
            return self.config

    def reset(self, *, stats_only: bool = False) -> None:
        self.accounts.reset(self.config.seed, stats_only=stats_only)
        if not stats_only:
            self.accounts.ensure(self.config.accounts, self.config.seed)
            self.planner.reset()
            self.clock.reset()

    def connect(self, payload: Any) -> dict[str, Any]:
        """`POST /_emulator/accounts`: connect `{"count": N}` new accounts or `{"ids": [...]}`
        by id (already connected ones are kept); answers `{"ids": [...]}`."""
        count = payload.get("count") if isinstance(payload, dict) else None
        ids = payload.get("ids") if isinstance(payload, dict) else None
        if len(payload or {}) != 1 or not (
            (type(count) is int and count >= 0)
            or (isinstance(ids, list) and all(isinstance(i, str) for i in ids))
        ):
            raise ValueError('POST /_emulator/accounts takes {"count": N} or {"ids": [...]}')
        requested: list[str | None] = [None] * count if count is not None else list(ids or [])
        accounts = self.accounts.connect(requested, self.config.seed)
        return {"ids": [account.id for account in accounts]}

    def describe_accounts(self) -> dict[str, Any]:
        """`GET /_emulator/accounts`: the platform's id and the connected ones, oldest first."""
        return {"platform": self.platform.id, "data": [a.id for a in self.accounts.connected]}

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
        # Stripe-Account: the connected account this request acts on. One the platform cannot
        # act for is refused after auth; until then the request is the platform's.
        requested = (self.headers.get("Stripe-Account") or "").strip()
        account = state.accounts.get(requested)
        denied = requested if account is None else None
        account = account or state.platform
        found = account.router.route(method, path)
        endpoint = found.endpoint if found else "other"
        idem_key = self.headers.get("Idempotency-Key") if method == "POST" else None
        if endpoint in NO_IDEMPOTENCY:
            idem_key = None  # Stripe de-duplicates these by identifier, not by key
        # Not the idempotency key: stripe-python puts a random one on every POST, and the same
        # traffic must draw the same faults on every run.
        fingerprint = f"{method} {path}?{query}|{body.decode('latin-1')}"
        if account.connected:
            fingerprint = f"{account.id}|{fingerprint}"
        draws = state.planner.draw(config, fingerprint)
        in_flight, generation = account.stats.enter(endpoint)
        outcome, fault = "error", None
        started = time.monotonic()
        try:
            answer, fault, latency_left = self._api_answer(
                config,
                account,
                denied,
                found,
                method,
                path,
                query,
                body,
                request_id,
                idem_key,
                draws,
                in_flight,
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
            account.stats.leave(endpoint, outcome, fault, generation)

    def _api_answer(
        self,
        config: EmulatorConfig,
        account: Account,
        denied: str | None,
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
        """(answer, injected fault name, latency still to sleep before answering); `denied`
        names a Stripe-Account the platform cannot act for (`account` is then the platform)."""
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
                credential = self._credentials()
                if not credential:
                    raise ApiError(401, errors.NO_KEY_MESSAGE)
            else:
                credential = self._authenticate(config)
                if found is None:
                    raise errors.unrecognized_url(method, path)
            if denied is not None:
                raise errors.account_invalid(credential, denied)
            assert found is not None and found.resource is not None
            if found.token_auth:
                found.resource.check_token(credential)
            elif found.permission in config.restricted_keys.get(credential, ()):
                raise errors.missing_permission(credential, account.id, found.permission)
            self._rate_limit(config, account, found)
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
                saved = account.idempotency.begin(idem_key, path, canonical(params))
            except ApiError as exc:
                return error_answer(exc), exc.fault, latency
            if saved is not None:
                account.stats.replayed()
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
                config, account.stats, found, params, draws, latency, headers, error_answer
            )
        except BaseException:
            if idem_key is not None:
                account.idempotency.finish(idem_key, None)
            raise
        if idem_key is not None:
            keep = executed and answer.status != 400
            response = None
            if keep:
                extra = tuple(h for h in answer.headers if h not in headers)
                response = SavedResponse(
                    path, canonical(params), answer.status, answer.body, extra, request_id
                )
            account.idempotency.finish(idem_key, response)
        if fault == "dropped_response":
            raise _Drop("dropped_response")
        return answer, fault, latency

    def _execute(
        self,
        config: EmulatorConfig,
        stats: Stats,
        found: Route,
        params: dict[str, Any],
        draws: FaultDraws,
        latency: float,
        headers: list[tuple[str, str]],
        error_answer: Any,
    ) -> tuple[_Answer, str | None, bool, float]:
        """Run the operation: (answer, fault, executed, latency left)."""
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
                stats.executing_delta(1)
                try:
                    time.sleep(latency)  # holds the object lock and idempotency key meanwhile
                    data = found.run(params)
                finally:
                    stats.executing_delta(-1)
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
            stats.committed(found.endpoint)
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

    def _rate_limit(self, config: EmulatorConfig, account: Account, found: Route) -> None:
        """Stripe measures rate limits per account: each account has its own windows."""
        endpoint = found.endpoint
        limits: list[tuple[str, float]] = []
        counted_globally = not found.own_pool or config.own_pool_in_global_limit
        global_limit = config.global_limit(connected=account.connected)
        if global_limit is not None and counted_globally:
            limits.append(("global", global_limit))
        endpoint_limit = config.endpoint_limit(endpoint)
        if endpoint_limit is not None:
            limits.append((endpoint, endpoint_limit))
        if not limits:
            return
        refused = account.limiter.admit(limits, config.rate_limit_algorithm)
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
        flags = parse_qs(query)
        try:
            # `?account=acct_...`: a connected account's objects, seeds and stats
            account = state.accounts.require(flags.get("account", [None])[0])
            dumps = {r.name: r for r in account.stored}  # GET /_emulator/customers, ...
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
                data = account.snapshot()
                data["requests_by_account"] = {
                    a.id: a.stats.requests_total for a in state.accounts.all()
                }
            elif method == "POST" and path == "/_emulator/reset":
                stats_only = bool((payload or {}).get("stats_only"))
                state.reset(stats_only=stats_only)
                data = {"ok": True, "stats_only": stats_only}
            elif method == "POST" and path == "/_emulator/seed":
                data = account.seed_all(payload)
            elif method == "GET" and path == "/_emulator/accounts":
                data = state.describe_accounts()
            elif method == "POST" and path == "/_emulator/accounts":
                data = state.connect(payload)
            elif method == "GET" and path == "/_emulator/clock":
                data = state.clock.describe()
            elif method == "POST" and path == "/_emulator/clock":
                data = state.set_clock(payload)
            elif method == "GET" and (
                (read := account.control_read(path.removeprefix("/_emulator/"))) is not None
            ):
                data = {"data": read}
            elif method == "GET" and path.removeprefix("/_emulator/") in dumps:
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
