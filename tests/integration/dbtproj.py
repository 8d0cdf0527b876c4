"""A throwaway dbt project for a test: seeds, models with meta blocks, profiles for DuckDB and
PostgreSQL, the repo root installed as a local package, and helpers to build it and run the
CLI against it as a user would (a process per command: dbt, then dbt-stripe-sync; see
tests/commands.py).

The warehouse tests' fixture project and the benchmark's projects are built with it too: the
benchmark imports this module, so it must not import pytest, nor any module that does."""

from __future__ import annotations

import csv
import json
import os
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests import commands

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROJECT_NAME = "test_project"


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class DbtProject:
    root: Path
    target: str = "duckdb"  # duckdb | postgres
    schema: str = field(default_factory=lambda: "t_" + uuid.uuid4().hex[:10])
    env_extra: dict[str, str] = field(default_factory=dict)
    name: str = PROJECT_NAME  # the dbt project's and its profile's

    @property
    def duckdb_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "DBT_"))}
        env.update(
            DBT_PROFILES_DIR=str(self.root),
            DBT_DUCKDB_PATH=str(self.duckdb_path),
            DBT_SCHEMA=self.schema,
            DBT_SEND_ANONYMOUS_USAGE_STATS="false",
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        )
        env.update(self.env_extra)
        env.update(extra)
        return env

    def write_seed(self, name: str, rows: Sequence[Mapping[str, Any]],
                   columns: Sequence[str] | None = None,
                   types: Mapping[str, str] | None = None) -> None:
        """Columns are varchar unless `types` says otherwise: type inference from CSV differs
        between agate and DuckDB (a phone number is not an integer)."""
        columns = list(columns or rows[0].keys())
        project = yaml.safe_load((self.root / "dbt_project.yml").read_text())
        seeds = project.setdefault("seeds", {}).setdefault(self.name, {})
        seeds[name] = {"+column_types": {c: (types or {}).get(c, "varchar") for c in columns}}
        (self.root / "dbt_project.yml").write_text(yaml.safe_dump(project, sort_keys=False))
        path = self.root / "seeds" / f"{name}.csv"
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})

    def write_model(self, name: str, sql: str, sync: Mapping[str, Any] | None = None,
                    config_style: str = "schema") -> None:
        """config_style: schema (YAML `config: meta:`), project (`+meta` in dbt_project.yml)
        or inline (`{{ config(meta=...) }}`)."""
        models_dir = self.root / "models"
        if sync is not None and config_style == "inline":
            sql = "{{ config(meta=" + json.dumps({"stripe_activation": sync}) + ") }}\n" + sql
        (models_dir / f"{name}.sql").write_text(sql)
        schema_path = models_dir / "schema.yml"
        doc = yaml.safe_load(schema_path.read_text()) if schema_path.exists() else None
        doc = doc or {"version": 2, "models": []}
        doc["models"] = [m for m in doc["models"] if m["name"] != name]
        entry: dict[str, Any] = {"name": name}
        if sync is not None and config_style == "schema":
            entry["config"] = {"meta": {"stripe_activation": sync}}
        doc["models"].append(entry)
        schema_path.write_text(yaml.safe_dump(doc, sort_keys=False))
        if sync is not None and config_style == "project":
            project = yaml.safe_load((self.root / "dbt_project.yml").read_text())
            models = project.setdefault("models", {}).setdefault(self.name, {})
            models[name] = {"+meta": {"stripe_activation": sync}}
            (self.root / "dbt_project.yml").write_text(yaml.safe_dump(project, sort_keys=False))

    def dbt(self, *args: str, check: bool = True, timeout: float = 300) -> CliResult:
        proc = commands.run([str(BIN / "dbt"), *args, "--target", self.target],
                            cwd=self.root, env=self.env(), timeout=timeout)
        result = CliResult(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"dbt {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return result

    def build(self, check: bool = True) -> CliResult:
        if not (self.root / "dbt_packages").exists():
            self.dbt("deps")
        return self.dbt("build", check=check)

    def sync(self, *args: str, stripe_url: str | None = None, api_key: str = "sk_test_dsa",
             env: Mapping[str, str] | None = None, timeout: float = 600) -> CliResult:
        """Run `dbt-stripe-sync ARGS` in the project, as a user would."""
        extra = {"STRIPE_API_KEY": api_key}
        if stripe_url:
            extra["STRIPE_API_BASE"] = stripe_url
        extra.update(env or {})
        proc = commands.run([str(BIN / "dbt-stripe-sync"), *args, "--target", self.target],
                            cwd=self.root, env=self.env(**extra), timeout=timeout)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    def results_file(self) -> dict[str, Any]:
        return json.loads((self.root / "target" / "stripe_sync_results.json").read_text())


def duckdb_output(path: str, schema: str, threads: int = 2) -> dict[str, Any]:
    return {"type": "duckdb", "path": path, "schema": schema, "threads": threads}


def postgres_output(schema: str, threads: int = 2) -> dict[str, Any]:
    """The test server on 127.0.0.1:5432, database `test`."""
    return {"type": "postgres", "host": "127.0.0.1", "port": 5432, "user": "postgres",
            "password": "", "dbname": "test", "schema": schema, "threads": threads}


def write_project(root: Path, name: str, target: str, outputs: Mapping[str, Any],
                  **config: Any) -> None:
    """dbt_project.yml (models materialized as tables unless `config` has its own `models`),
    packages.yml (this repo as a local package, like a user's project) and profiles.yml (the
    profile `name`: `outputs`, `target` by default), and the models, seeds and macros dirs."""
    for sub in ("models", "seeds", "macros"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "dbt_project.yml").write_text(yaml.safe_dump({
        "name": name,
        "version": "1.0.0",
        "config-version": 2,
        "profile": name,
        **config,
        "models": config.get("models", {name: {"+materialized": "table"}}),
    }, sort_keys=False))
    (root / "packages.yml").write_text(yaml.safe_dump({"packages": [{"local": str(REPO_ROOT)}]}))
    (root / "profiles.yml").write_text(yaml.safe_dump(
        {name: {"target": target, "outputs": dict(outputs)}}, sort_keys=False
    ))


def env_outputs() -> dict[str, dict[str, Any]]:
    """Profile outputs whose warehouse, DuckDB file and schema, come from the environment
    `DbtProject.env` sets."""
    schema = "{{ env_var('DBT_SCHEMA') }}"
    return {
        "duckdb": duckdb_output("{{ env_var('DBT_DUCKDB_PATH') }}", schema),
        "postgres": postgres_output(schema),
    }


def new_project(root: Path, target: str = "duckdb", name: str = PROJECT_NAME) -> DbtProject:
    """An empty dbt project that uses this repo as a local package, like a user's would."""
    write_project(root, name, target, env_outputs())
    return DbtProject(root=root, target=target, name=name)
