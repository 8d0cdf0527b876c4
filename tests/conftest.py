"""Shared fixtures: real local servers (localstripe, the Stripe emulator), PostgreSQL
availability, and throwaway dbt projects."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest

from tests import commands
from tests.servers import LocalStripe

# dbt and dbt-stripe-sync run forked from a warm server: each still a process of its own.
commands.enable()


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


@pytest.fixture
def postgres_target() -> str:
    """A test that needs PostgreSQL itself (several writing processes at once: DuckDB
    allows one); mandatory in CI."""
    if not postgres_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not running on 127.0.0.1:5432 and CI requires it")
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    return "postgres"


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
