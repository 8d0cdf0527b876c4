"""A throwaway dbt project on DuckDB, and running `dbt` and `dbt-stripe-sync` in it as a user
would: subprocesses, the repo installed as a local dbt package, the key in the environment.
The project is the end-to-end tests' own (tests/integration/dbtproj.py).

`run_cli` measures what the benchmark reports: wall time and the peak RSS of the CLI process
(from the kernel's rusage for that child, so earlier dbt runs cannot inflate it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.dbtproj import (
    BIN,
    REPO_ROOT,
    CliResult,
    DbtProject,
    env_outputs,
    write_project,
)

API_KEY = "sk_test_benchmark"  # the emulator accepts any sk_test_ key
PROJECT_NAME = "bench_project"


class BenchError(RuntimeError):
    """A step of the benchmark failed (dbt, the CLI, or an unexpected result)."""


@dataclass(frozen=True)
class CliRun:
    args: tuple[str, ...]
    code: int
    seconds: float
    peak_rss_mb: float
    cpu_seconds: float  # user + system, the CLI process and its waited-for children
    stdout: str
    stderr: str

    @property
    def document(self) -> dict[str, Any]:
        """The `--output json` results document."""
        try:
            return dict(json.loads(self.stdout))
        except ValueError as exc:
            raise BenchError(
                f"dbt-stripe-sync {' '.join(self.args)} printed no JSON (exit {self.code}):\n"
                f"{self.stdout[-2000:]}\n{self.stderr[-4000:]}"
            ) from exc

    def model(self, name: str) -> dict[str, Any]:
        for model in self.document.get("models", []):
            if model.get("model") == name:
                return dict(model)
        raise BenchError(
            f"no model {name!r} in the results of {' '.join(self.args)}: "
            f"{self.stdout[-2000:]}\n{self.stderr[-2000:]}"
        )


@dataclass
class BenchProject(DbtProject):
    """One dbt project directory with its own DuckDB file and schema; a failed dbt step
    raises BenchError, and sync runs are measured (`run_cli`)."""

    target: str = "duckdb"
    schema: str = "bench"
    name: str = PROJECT_NAME

    @classmethod
    def create(cls, root: Path, schema: str = "bench", target: str = "duckdb") -> BenchProject:
        """An empty project in `root`: a DuckDB profile (or the test PostgreSQL server's,
        in a schema of its own), this repo as a local package."""
        if target == "postgres" and schema == "bench":
            schema = f"bench_{uuid.uuid4().hex[:8]}"
        write_project(root, PROJECT_NAME, target, {target: env_outputs()[target]})
        return cls(root=root, schema=schema, target=target)

    def drop_postgres_schemas(self) -> None:
        """The model's schema and its bookkeeping schema, on the test server."""
        import psycopg2

        with psycopg2.connect(host="127.0.0.1", port=5432, user="postgres",
                              dbname="test") as con, con.cursor() as cur:
            for schema in (self.schema, f"{self.schema}_stripe_activation"):
                cur.execute(f'drop schema if exists "{schema}" cascade')

    def dbt(self, *args: str, check: bool = True, timeout: float = 600) -> CliResult:
        """`dbt ARGS` (after `dbt deps`, the first time)."""
        if args[0] != "deps" and not (self.root / "dbt_packages").exists():
            self.dbt("deps")
        result = super().dbt(*args, check=False, timeout=timeout)
        if check and result.code != 0:
            raise BenchError(
                f"dbt {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
            )
        return result

    def sync_cli(self, *args: str, stripe_url: str, timeout: float = 1800) -> CliRun:
        """`dbt-stripe-sync ARGS --output json`, with a test-mode key and the emulator."""
        env = self.env(STRIPE_API_KEY=API_KEY, STRIPE_API_BASE=stripe_url)
        return run_cli(
            [*cli_command(env), *args, "--output", "json"],
            cwd=self.root,
            env=env,
            timeout=timeout,
        )


def cli_command(env: dict[str, str]) -> list[str]:
    """The installed `dbt-stripe-sync` script (`make install`); from a checkout without it,
    the same entry point through this interpreter."""
    script = BIN / "dbt-stripe-sync"
    if script.exists():
        return [str(script)]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return [sys.executable, "-c", "from dbt_stripe_activation.cli import main; main()"]


def run_cli(command: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float) -> CliRun:
    """Run a command to completion; wall time and the kernel's peak RSS for it (its own
    process, or the largest of its waited-for children)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if seconds >= timeout:
        raise BenchError(f"{' '.join(command[:3])} did not finish within {timeout:.0f} s")
    return CliRun(
        args=tuple(command[1:]),
        code=proc.returncode,
        seconds=seconds,
        peak_rss_mb=usage.ru_maxrss / 1024,  # Linux: kilobytes
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        stdout=stdout,
        stderr=stderr,
    )
