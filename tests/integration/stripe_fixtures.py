"""Real local servers for the Stripe gateway's tests: localstripe, the Stripe emulator, and a
scripted server for answers neither gives (Retry-After, `Stripe-Should-Retry: false`).

Each is a real HTTP server driven by the real SDK; none patches the client.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import stripe

from tests.servers import LocalStripe, free_port, wait_for_port  # noqa: F401

BIN = Path(sys.executable).parent
KEY = "sk_test_gatewayTests0000000001"
LIVE_KEY = "sk_live_" + "gatewayTests0000000001"
NO_WRITE_KEY = "rk_test_cannotWrite000000001"
NO_READ_KEY = "rk_test_cannotRead0000000001"
stripe.enable_telemetry = False


class LocalStripeServer(LocalStripe):
    """localstripe, with an SDK client outside the gateway for arranging and looking."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.sdk = stripe.StripeClient(KEY, base_addresses={"api": self.url})


@pytest.fixture(scope="module")
def localstripe_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStripeServer]:
    server = LocalStripeServer(tmp_path_factory.mktemp("localstripe"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def emulator() -> Iterator[Any]:
    from stripe_emulator import start_emulator

    handle = start_emulator(seed=11)
    try:
        yield handle
    finally:
        handle.stop()


EMULATOR_DEFAULTS: dict[str, Any] = {
    "seed": 11,
    "restricted_keys": {
        NO_WRITE_KEY: ["rak_customer_write"],
        NO_READ_KEY: ["rak_customer_read", "rak_balance_read"],
    },
}


@pytest.fixture
def fresh_emulator(emulator: Any) -> Any:
    """The module's emulator with no customers, no stats, and only EMULATOR_DEFAULTS set."""
    from stripe_emulator import EmulatorConfig

    emulator.config(**EmulatorConfig.from_dict(EMULATOR_DEFAULTS).to_dict())
    emulator.reset()
    return emulator


@dataclass
class Answer:
    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: str


def rate_limited(**headers: str) -> Answer:
    return Answer(
        429,
        {"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Slow down"}},
        headers,
    )


def customer(customer_id: str = "cus_scripted0000001", **fields: Any) -> Answer:
    return Answer(200, {"id": customer_id, "object": "customer", "metadata": {}, **fields})


class ScriptedStripe:
    """Answers each request with the next scripted Answer (then a plain customer)."""

    def __init__(self) -> None:
        self.script: list[Answer] = []
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                with outer._lock:
                    outer.seen.append(Seen(self.command, self.path, dict(self.headers), body))
                    answer = outer.script.pop(0) if outer.script else customer()
                payload = json.dumps(answer.body).encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Request-Id", f"req_scripted{len(outer.seen):04d}")
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, *answers: Answer) -> None:
        with self._lock:
            self.script = list(answers)
            self.seen = []

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedStripe]:
    server = ScriptedStripe()
    try:
        yield server
    finally:
        server.stop()
