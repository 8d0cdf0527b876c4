"""Shared fixtures: real local servers (localstripe, the Stripe emulator), PostgreSQL
availability, and throwaway dbt projects."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

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


@pytest.fixture
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStripe]:
    """A fresh, empty localstripe per test: tests assert exact account contents."""
    server = LocalStripe(tmp_path_factory.mktemp("localstripe"))
    try:
        yield server
    finally:
        server.stop()


def postgres_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse_target(request: pytest.FixtureRequest) -> str:
    """Run a test on both warehouses; PostgreSQL is mandatory in CI (CI set)."""
    if request.param == "postgres" and not postgres_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not running on 127.0.0.1:5432 and CI requires it")
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    return str(request.param)


def drop_postgres_schema(schema: str) -> None:
    psql = shutil.which("psql")
    if not psql or not postgres_available():
        return
    subprocess.run(
        [psql, "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-q", "-c",
         f'drop schema if exists "{schema}" cascade; '
         f'drop schema if exists "{schema}_stripe_activation" cascade;'],
        capture_output=True, check=False,
    )
