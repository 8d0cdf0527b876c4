"""A throwaway dbt project on DuckDB, and running `dbt` and `dbt-stripe-sync` in it as a user
would: subprocesses, the repo installed as a local dbt package, the key in the environment.

`run_cli` measures what the benchmark reports: wall time and the peak RSS of the CLI process
(from the kernel's rusage for that child, so earlier dbt runs cannot inflate it).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
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


class BenchProject:
    """One dbt project directory with its own DuckDB file and schema."""

    def __init__(self, root: Path, schema: str = "bench") -> None:
        self.root = root
        self.schema = schema
        for sub in ("models", "seeds", "macros"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "dbt_project.yml").write_text(
            yaml.safe_dump(
                {
                    "name": PROJECT_NAME,
                    "version": "1.0.0",
                    "config-version": 2,
                    "profile": PROJECT_NAME,
                    "models": {PROJECT_NAME: {"+materialized": "table"}},
                },
                sort_keys=False,
            )
        )
        (root / "packages.yml").write_text(
            yaml.safe_dump({"packages": [{"local": str(REPO_ROOT)}]})
        )
        (root / "profiles.yml").write_text(
            yaml.safe_dump(
                {
                    PROJECT_NAME: {
                        "target": "duckdb",
                        "outputs": {
                            "duckdb": {
                                "type": "duckdb",
                                "path": "{{ env_var('DBT_DUCKDB_PATH') }}",
                                "schema": "{{ env_var('DBT_SCHEMA') }}",
                                "threads": 2,
                            }
                        },
                    }
                },
                sort_keys=False,
            )
        )

    @property
    def database(self) -> Path:
        return self.root / "warehouse.duckdb"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "DBT_"))}
        env.update(
            DBT_PROFILES_DIR=str(self.root),
            DBT_DUCKDB_PATH=str(self.database),
            DBT_SCHEMA=self.schema,
            DBT_SEND_ANONYMOUS_USAGE_STATS="false",
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        )
        env.update(extra)
        return env

    def write_seed(
        self, name: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]
    ) -> None:
        with (self.root / "seeds" / f"{name}.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(columns))
            writer.writeheader()
            writer.writerows(rows)

    def write_model(self, name: str, sql: str, sync: Mapping[str, Any] | None) -> None:
        """The model's SQL, and its sync declared as a user would, in schema YAML."""
        (self.root / "models" / f"{name}.sql").write_text(sql)
        schema_path = self.root / "models" / "schema.yml"
        doc = yaml.safe_load(schema_path.read_text()) if schema_path.exists() else None
        doc = doc or {"version": 2, "models": []}
        doc["models"] = [m for m in doc["models"] if m["name"] != name]
        entry: dict[str, Any] = {"name": name}
        if sync is not None:
            entry["config"] = {"meta": {"stripe_activation": dict(sync)}}
        doc["models"].append(entry)
        schema_path.write_text(yaml.safe_dump(doc, sort_keys=False))

    def dbt(self, *args: str, timeout: float = 600) -> None:
        if args[0] != "deps" and not (self.root / "dbt_packages").exists():
            self.dbt("deps")
        proc = subprocess.run(
            [str(BIN / "dbt"), *args],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise BenchError(
                f"dbt {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
            )

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
