"""What the bad-input catalogue and the security checks share.

One throwaway dbt project per group, built once; the CLI run as a user runs it (a process
of its own, tests/commands.py) against a Stripe emulator of its own, whose counts are exact;
and what a run left behind: the results file, the bookkeeping tables, the customers in
Stripe.
"""

from __future__ import annotations

import json
import os
import shutil
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from stripe_emulator import start_emulator
from stripe_emulator.handle import EmulatorHandle
from tests import commands
from tests.conftest import postgres_available
from tests.integration.dbtproj import BIN, DbtProject

FAST = ("--max-rps", "1000", "--max-endpoint-rps", "1000")
KEY = "sk_test_catalogue"
RESULTS = "stripe_sync_results.json"


def one_line(text: str) -> str:
    """Rich wraps long messages to the console width: compare them as one line."""
    return " ".join(text.split())


def require_postgres() -> None:
    """Skip with a visible reason when PostgreSQL is down; CI requires it."""
    if not postgres_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not running on 127.0.0.1:5432 and CI requires it")
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")


@dataclass
class Run:
    """One `dbt-stripe-sync` invocation and what Stripe saw of it."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str
    stats: dict[str, Any]
    target: Path  # the target path the run used (manifest in, results file out)

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(f"not JSON:\n{self.stdout}\n{self.stderr}") from exc

    @property
    def error(self) -> str:
        return str(self.json["error"])

    @property
    def results_written(self) -> bool:
        return (self.target / RESULTS).exists()

    def model(self, name: str) -> dict[str, Any]:
        [found] = [m for m in self.json["models"] if m["model"] == name]
        return dict(found)

    def explain(self) -> str:
        """What a failed assertion shows."""
        return f"exit {self.code}\nstdout:\n{self.stdout[-3000:]}\nstderr:\n{self.stderr[-3000:]}"


def isolated_target(project: DbtProject, name: str) -> Path:
    """A target path of the case's own holding the built manifest: cases run side by side
    without sharing dbt's files, and a results file found there is the case's own."""
    source = project.root / "target"
    dest = project.root / "case_targets" / name
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for item in ("manifest.json", "partial_parse.msgpack"):
        if (source / item).exists():
            shutil.copy2(source / item, dest / item)
    return dest


@contextmanager
def emulator_for(
    emulator: EmulatorHandle | None, config: Mapping[str, Any] | None
) -> Iterator[EmulatorHandle]:
    if emulator is not None:
        yield emulator
        return
    with start_emulator(in_process=True, **dict(config or {})) as handle:
        yield handle


def run_cli(
    project: DbtProject,
    *args: str,
    api_key: str | None = KEY,
    emulator: EmulatorHandle | None = None,
    emulator_config: Mapping[str, Any] | None = None,
    api_base: str | None = None,
    target: Path | None = None,
    dbt_target: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Run:
    """`dbt-stripe-sync ARGS` in the project, as a user runs it, against `emulator` (a fresh
    one, configured by `emulator_config`, when None). `api_base` overrides the emulator's
    URL; `target` is the --target-path (the project's own target/ when None)."""
    with emulator_for(emulator, emulator_config) as stripe:
        extra = {"STRIPE_API_BASE": api_base or stripe.url}
        if api_key is not None:
            extra["STRIPE_API_KEY"] = api_key
        extra.update(env or {})
        command = [str(BIN / "dbt-stripe-sync"), *args, "--target", dbt_target or project.target]
        if target is not None:
            command += ["--target-path", str(target)]
        proc = commands.run(command, cwd=project.root, env=project.env(**extra), timeout=300)
        stats = stripe.stats()
    return Run(
        tuple(args),
        proc.returncode,
        proc.stdout,
        proc.stderr,
        stats,
        target or project.root / "target",
    )


# --- the warehouse, as a user inspecting it would query it --------------------------------


def sql(project: DbtProject, query: str) -> list[tuple[Any, ...]]:
    """`{bk}` is the bookkeeping schema, `{schema}` the models' schema."""
    query = query.replace("{bk}", f'"{project.schema}_stripe_activation"')
    query = query.replace("{schema}", f'"{project.schema}"')
    if project.target == "duckdb":
        import duckdb

        with duckdb.connect(str(project.root / "warehouse.duckdb")) as con:
            return con.execute(query).fetchall()
    import psycopg2

    con = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test")
    try:
        with con, con.cursor() as cur:
            cur.execute(query)
            return cur.fetchall() if cur.description else []
    finally:
        con.close()


def bookkeeping_schemas(project: DbtProject) -> list[str]:
    """The bookkeeping schema of the project when it exists: [] means nothing was created."""
    rows = sql(
        project,
        "select schema_name from information_schema.schemata "
        f"where schema_name = '{project.schema}_stripe_activation'",
    )
    return [r[0] for r in rows]


def bookkeeping_dump(project: DbtProject) -> str:
    """Every row of every bookkeeping table, as text."""
    schema = f"{project.schema}_stripe_activation"
    tables = [
        r[0]
        for r in sql(
            project,
            f"select table_name from information_schema.tables where table_schema = '{schema}'",
        )
    ]
    out = []
    for table in sorted(tables):
        rows = sql(project, "select * from {bk}." + quote_identifier(table))
        out.append(f"{table}: {rows!r}")
    return "\n".join(out)


def state_rows(project: DbtProject, model: str) -> list[tuple[Any, ...]]:
    """(key_value, stripe_id, last_outcome) of a model's sync state, sorted."""
    return sorted(
        sql(
            project,
            "select key_value, stripe_id, last_outcome from {bk}.stripe_sync_state "
            f"where model_unique_id = 'model.test_project.{model}'",
        ),
        key=lambda r: str(r[0]),
    )


# --- models whose rows are SQL literals --------------------------------------------------


@dataclass(frozen=True)
class Sql:
    """A cell given as a SQL expression (`repeat('x', 500)`), with the text it evaluates to."""

    expr: str
    value: str


def repeat(char: str, times: int) -> Sql:
    return Sql(f"repeat('{char}', {times})", char * times)


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _is_special(char: str) -> bool:
    """Characters written as chr(n), so the model file says exactly which code point it is."""
    return unicodedata.category(char) in ("Cc", "Cf", "Mn", "Zl", "Zp")


def literal(value: str | Sql | None) -> str:
    """A SQL literal for DuckDB and PostgreSQL, byte-exact: control characters, combining
    marks and joiners become chr(n)."""
    if value is None:
        return "null"
    if isinstance(value, Sql):
        return value.expr
    if value == "":
        return "''"
    parts: list[str] = []
    plain = ""
    for char in value:
        if _is_special(char):
            if plain:
                parts.append("'" + plain.replace("'", "''") + "'")
                plain = ""
            parts.append(f"chr({ord(char)})")
        else:
            plain += char
    if plain:
        parts.append("'" + plain.replace("'", "''") + "'")
    return " || ".join(parts)


def values_model(
    columns: Sequence[str], rows: Sequence[Mapping[str, str | Sql | None]], prefix: str = ""
) -> str:
    """A model selecting these rows, every column varchar. The SQL sits in a raw block:
    a value like `{{ x }}` is data, not Jinja."""
    selects = []
    for row in rows:
        cells = [
            f"cast({literal(row.get(c))} as varchar) as {quote_identifier(c)}" for c in columns
        ]
        selects.append("select " + ", ".join(cells))
    return prefix + "{% raw %}\n" + "\nunion all\n".join(selects) + "\n{% endraw %}\n"


def materialize_as_views(project: DbtProject) -> None:
    path = project.root / "dbt_project.yml"
    config = yaml.safe_load(path.read_text())
    config["models"]["test_project"]["+materialized"] = "view"
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def add_profile_targets(project: DbtProject, **targets: Mapping[str, Any]) -> None:
    """More outputs in the project's profile, each based on the `postgres` one."""
    path = project.root / "profiles.yml"
    profiles = yaml.safe_load(path.read_text())
    outputs = profiles["test_project"]["outputs"]
    for name, changes in targets.items():
        outputs[name] = {**outputs["postgres"], **changes}
    path.write_text(yaml.safe_dump(profiles, sort_keys=False))


def customers_by(emulator: EmulatorHandle, metadata_key: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for customer in emulator.customers():
        out.setdefault(customer["metadata"].get(metadata_key), []).append(customer)
    return out
