"""A Stripe-like front for the emulator: the account's rate limit, and 429s for a reason the
emulator does not send (`global-concurrency`) at a share of the requests whatever their pace,
as when the account's own application holds Stripe's concurrency (issue 21). The requests it
admits go on to the emulator, which answers them (its own faults included: 500s).

The limit counts every request that reaches it, as Stripe's does; a request refused for
concurrency passed it. Runs in a thread of the caller's process: the client it serves (the
CLI, or a test's gateway) is what is measured, and the front does little per request.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import urllib3

from stripe_emulator import errors
from stripe_emulator.faults import RateLimiter

# Hop-by-hop and length headers: the front sets its own.
_NOT_FORWARDED = frozenset({"host", "content-length", "connection", "keep-alive",
                            "transfer-encoding"})


class FaultFront:
    """`url` is what a client uses as its API base; `counts` says what the front answered:
    `rate_limited` (its limit refused: a real rate limit reached), `refused` (the injected
    429s) and `forwarded`."""

    def __init__(
        self,
        upstream: str,
        *,
        rate_limit: float | None = None,
        refuse_rate: float = 0.0,
        reason: str = "global-concurrency",
        latency_ms: tuple[float, float] = (0.0, 0.0),
        seed: int = 1,
    ) -> None:
        if not 0.0 <= refuse_rate <= 1.0:
            raise ValueError(f"refuse_rate must be a fraction, got {refuse_rate}")
        self.upstream = upstream.rstrip("/")
        self.rate_limit = rate_limit
        self.refuse_rate = refuse_rate
        self.reason = reason
        self.latency_ms = latency_ms
        self.counts: Counter[str] = Counter()
        self._limiter = RateLimiter()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._pool = urllib3.PoolManager(maxsize=128, block=False, retries=False,
                                         timeout=urllib3.Timeout(total=120))
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload = front._answer(
                    self.command, self.path, dict(self.headers.items()), body)
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="fault-front", daemon=True)

    def start(self) -> FaultFront:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._pool.clear()

    def __enter__(self) -> FaultFront:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _answer(self, method: str, path: str, headers: dict[str, str],
                body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        if not path.startswith("/_emulator/"):
            refusal = self._refusal()
            if refusal is not None:
                return refusal
        forwarded = {k: v for k, v in headers.items() if k.lower() not in _NOT_FORWARDED}
        answer = self._pool.request(method, self.upstream + path, body=body or None,
                                    headers=forwarded, redirect=False)
        with self._lock:
            self.counts["forwarded"] += 1
        kept = [(k, v) for k, v in answer.headers.items() if k.lower() not in _NOT_FORWARDED]
        return answer.status, kept, answer.data

    def _refusal(self) -> tuple[int, list[tuple[str, str]], bytes] | None:
        """A 429 as the emulator words one, after the latency a request takes; None: on."""
        limits = [("global", self.rate_limit)] if self.rate_limit else []
        if limits and self._limiter.admit(limits, "sliding_window") is not None:
            exc, what = errors.rate_limited("global-rate", "rate_limit", True), "rate_limited"
        else:
            with self._lock:
                refused = self._random.random() < self.refuse_rate
                low, high = self.latency_ms
                latency = self._random.uniform(low, high) / 1000.0
            if not refused:
                return None
            exc, what = errors.rate_limited(self.reason, "refused", True), "refused"
            time.sleep(latency)
        with self._lock:
            self.counts[what] += 1
        request_id = "req_front" + uuid.uuid4().hex[:14]
        payload = json.dumps(exc.body(request_id)).encode()
        headers = [("Content-Type", "application/json"), ("Request-Id", request_id),
                   *exc.headers.items()]
        return exc.status, headers, payload
