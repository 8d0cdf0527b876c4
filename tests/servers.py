"""Real local servers the tests run against: free ports, localstripe in its own process."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class LocalStripe:
    """localstripe (a stateful fake Stripe) in its own process, on its own port."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        # localstripe keeps its state in a pickle under /tmp unless told otherwise; each
        # instance starts from scratch and gets its own working directory.
        self.proc = subprocess.Popen(
            [str(BIN / "localstripe"), "--port", str(self.port), "--from-scratch"],
            cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        self.url = f"http://127.0.0.1:{self.port}"

    def customers(self) -> list[dict]:
        import stripe

        client = stripe.StripeClient("sk_test_inspect", base_addresses={"api": self.url})
        return [c.to_dict() for c in client.v1.customers.list({"limit": 100}).auto_paging_iter()]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
