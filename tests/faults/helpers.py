"""The fault matrix's building blocks: a prebuilt project copied per test, an emulator whose
account already holds some of the model's customers, the re-run-until-done loop and the checks
every fault must pass (Stripe equals the model, one customer per key, every failure reported
in the results file and the warehouse tables, no API key anywhere)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from stripe_emulator.handle import EmulatorHandle
from tests.customers import SYNC_BY_METADATA, SYNCS, customer_params, rows, stripe_differences
from tests.integration.dbtproj import BIN, CliResult, DbtProject, new_project
from tests.integration.test_incremental import FAST, sql

N_ROWS = 250
MAX_RUNS = 6
# A key no output may contain: the suffix is what redaction must hide ('sk_test_***').
API_KEY_SECRET = "FaultMatrix" + uuid.uuid4().hex
API_KEY = "sk_test_" + API_KEY_SECRET

MODEL_OF = {"metadata": "stripe_customers", "email": "customers_by_email"}
BOOKKEEPING_TABLES = (
    "stripe_sync_state",
    "stripe_sync_runs",
    "stripe_sync_row_results",
    "stripe_sync_locks",
)


def model_rows() -> list[dict[str, Any]]:
    return rows(N_ROWS)


def existing_customers(model: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What the account holds before the first sync: a fifth of the keys with stale values
    (updates, so lock_timeout and update replays are exercised), a fifth already equal to
    the model (adopted without a write); the rest are new (creates)."""
    return [
        customer_params(row, name=f"Old name {i}", city="Berlin", plan="legacy")
        if i % 5 == 0
        else customer_params(row)
        for i, row in enumerate(model)
        if i % 5 <= 1
    ]


def expected_writes(model: Sequence[Mapping[str, Any]]) -> int:
    """Writes a clean first sync makes: every stale or new key once."""
    return sum(1 for i, _ in enumerate(model) if i % 5 != 1)


# -- projects ----------------------------------------------------------------------------------


class Template:
    """The DuckDB project, built once per session (dbt deps + build take seconds) and copied
    per test: a copy of the directory, DuckDB file included, is a fresh warehouse. It has one
    model per key kind (MODEL_OF), each run alone with `--select`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._project: DbtProject | None = None

    def get(self) -> DbtProject:
        if self._project is None:
            project = new_project(self.root / "template", "duckdb")
            project.write_seed("crm", model_rows())
            for key_kind, model in MODEL_OF.items():
                project.write_model(model, "select * from {{ ref('crm') }}", sync=SYNCS[key_kind])
            project.build()
            self._project = project
        return self._project

    def copy(self, dest: Path) -> DbtProject:
        template = self.get()
        shutil.copytree(template.root, dest, symlinks=True)
        return DbtProject(root=dest, target="duckdb", schema=template.schema)


def postgres_project(root: Path, models: Sequence[str]) -> DbtProject:
    """One PostgreSQL project for several tests (a build takes seconds): one synced model per
    test, each run with `--select` and its own emulator; state is kept per model."""
    project = new_project(root, "postgres")
    project.write_seed("crm", model_rows())
    for model in models:
        project.write_model(model, "select * from {{ ref('crm') }}", sync=SYNC_BY_METADATA)
    project.build()
    return project


# -- runs --------------------------------------------------------------------------------------


@dataclass
class Run:
    """One CLI run and what it left behind."""

    result: CliResult
    document: dict[str, Any]
    results_file: dict[str, Any] | None

    @property
    def model(self) -> dict[str, Any]:
        return dict(self.document["models"][0])

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.model["counts"])

    @property
    def done(self) -> bool:
        """Nothing left to do: exit 0, no model error, nothing failed or rejected."""
        counts = self.counts
        return (
            self.result.code == 0
            and self.model["error"] is None
            and counts["failed"] == 0
            and counts["rejected"] == 0
        )

    def summary(self) -> str:
        model = self.document.get("models", [{}])[0] if self.document.get("models") else {}
        return repr(
            {
                "exit": self.result.code,
                "counts": model.get("counts"),
                "error": model.get("error") or self.document.get("error"),
                "failed": (model.get("failed") or [])[:5],
                "stderr": self.result.stderr[-1500:],
            }
        )


@dataclass
class Convergence:
    runs: list[Run] = field(default_factory=list)
    emulator_stats: list[dict[str, Any]] = field(default_factory=list)  # per run


def sync(project: DbtProject, emulator: EmulatorHandle, *args: str) -> Run:
    """One `dbt-stripe-sync --output json` run, checked for what every run must honour."""
    results_path = project.root / "target" / "stripe_sync_results.json"
    results_path.unlink(missing_ok=True)
    result = project.sync(
        *FAST, *args, "--output", "json", stripe_url=emulator.url, api_key=API_KEY
    )
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert_no_api_key(result.stdout, result.stderr)
    try:
        document = json.loads(result.stdout)
    except ValueError as exc:
        raise AssertionError(
            f"stdout is not the JSON document: {result.stdout[-2000:]!r} "
            f"stderr: {result.stderr[-2000:]}"
        ) from exc
    results_file = None
    if results_path.exists():
        text = results_path.read_text()
        assert_no_api_key(text)
        results_file = json.loads(text)
    return Run(result, document, results_file)


def sync_until_done(
    project: DbtProject, emulator: EmulatorHandle, *args: str, max_runs: int = MAX_RUNS
) -> Convergence:
    """Re-run until a run reports nothing failed or rejected (at most `max_runs`), checking
    each run's failures are reported; then a further run must make no Stripe request."""
    outcome = Convergence()
    for _ in range(max_runs):
        run = sync(project, emulator, *args)
        outcome.runs.append(run)
        outcome.emulator_stats.append(emulator.stats())
        assert_failures_reported(project, run)
        if run.done:
            break
    else:
        raise AssertionError(
            f"no convergence in {max_runs} runs: " + " | ".join(r.summary() for r in outcome.runs)
        )
    emulator.reset(stats_only=True)
    further = sync(project, emulator, *args)
    assert further.done, further.summary()
    assert emulator.stats()["requests_total"] == 0, emulator.stats()
    assert further.counts["unchanged"] == N_ROWS, further.summary()
    assert_bookkeeping_has_no_api_key(project)
    return outcome


# -- checks ------------------------------------------------------------------------------------


def assert_no_api_key(*texts: str) -> None:
    for text in texts:
        assert API_KEY_SECRET not in text, "the Stripe API key leaked into the output"


def assert_bookkeeping_has_no_api_key(project: DbtProject) -> None:
    dumped = [repr(sql(project, f"select * from {{bk}}.{table}")) for table in BOOKKEEPING_TABLES]
    assert_no_api_key(*dumped)


def assert_failures_reported(project: DbtProject, run: Run) -> None:
    """A run's failed rows are in the results file, each with a reason, and in the row
    results table with outcome 'failed' and the same error; its status is in the runs table."""
    assert run.results_file is not None, f"no results file: {run.summary()}"
    assert run.results_file["run_id"] == run.document["run_id"]
    assert run.results_file["models"] == run.document["models"]
    model = run.model
    run_id = run.document["run_id"]
    failed = {(f["key"], f["reason"]) for f in model["failed"]}
    assert len(failed) == len(model["failed"]) == run.counts["failed"], run.summary()
    for key, reason in failed:
        assert key and reason, f"a failed row without key or reason: {run.summary()}"
    in_table = set(
        sql(
            project,
            "select key_value, error from {bk}.stripe_sync_row_results "
            f"where run_id = '{run_id}' and outcome = 'failed'",
        )
    )
    assert in_table == failed
    assert not model["rejected"], f"no row of the model is invalid: {run.summary()}"
    if model["error"] is not None:
        assert model["status"] == "error"
    status = sql(project, f"select status from {{bk}}.stripe_sync_runs where run_id = '{run_id}'")
    assert status == [(model["status"],)], (status, run.summary())


def assert_stripe_equals_model(
    emulator: EmulatorHandle, key_kind: str, model: Sequence[Mapping[str, Any]] | None = None
) -> None:
    """Exactly one customer per key, none without a row, every mapped field equal."""
    problems = stripe_differences(emulator.customers(), model or model_rows(), key_kind)
    assert not problems, problems


def state_rows(project: DbtProject, model: str = "stripe_customers") -> list[tuple[Any, ...]]:
    return sql(
        project,
        "select key_value, stripe_id, last_outcome, synced_values "
        "from {bk}.stripe_sync_state "
        f"where model_unique_id = 'model.test_project.{model}'",
    )


def assert_state_consistent(
    project: DbtProject, emulator: EmulatorHandle, model: str = "stripe_customers"
) -> int:
    """Every state row that records a synced customer names one Stripe holds, with the values
    the state says it holds (a later run plans from them). Returns the rows checked."""
    customers = {c["id"]: c for c in emulator.customers()}
    checked = 0
    for key, stripe_id, outcome, synced in state_rows(project, model):
        if outcome not in ("created", "updated", "unchanged"):
            continue
        assert stripe_id in customers, f"state names {stripe_id} for {key}: not in Stripe"
        values = json.loads(synced) if isinstance(synced, str) else synced
        customer = customers[stripe_id]
        for path, value in values.items():
            assert value_at(customer, path) == value, (key, stripe_id, path, value, customer)
        checked += 1
    return checked


def value_at(obj: Mapping[str, Any], path: str) -> Any:
    head, _, rest = path.partition(".")
    value = obj.get(head)
    if head == "metadata":
        return (value or {}).get(rest)
    if rest:
        return value_at(value or {}, rest)
    return value


# -- killing -----------------------------------------------------------------------------------


def start_sync(project: DbtProject, emulator: EmulatorHandle, *args: str) -> subprocess.Popen:
    """The CLI in the background, as a CI job would run it; stdout and stderr to files."""
    out = (project.root / "killed.stdout").open("w")
    err = (project.root / "killed.stderr").open("w")
    return subprocess.Popen(
        [str(BIN / "dbt-stripe-sync"), *FAST, *args, "--target", project.target],
        cwd=project.root,
        stdout=out,
        stderr=err,
        stdin=subprocess.DEVNULL,
        env=project.env(STRIPE_API_KEY=API_KEY, STRIPE_API_BASE=emulator.url),
    )


def wait_until(
    proc: subprocess.Popen, condition: Callable[[], bool], what: str, timeout: float = 120.0
) -> None:
    """Poll `condition` while `proc` runs; fail if it exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the sync exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


def sigkill(proc: subprocess.Popen, project: DbtProject) -> None:
    """Kill the sync as the OOM killer or a cancelled CI job would; what it printed until
    then must not hold the key either."""
    assert proc.poll() is None, "the sync finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert_no_api_key(*killed_output(project))


def killed_output(project: DbtProject) -> tuple[str, str]:
    """stdout and stderr of the last start_sync."""
    return (
        (project.root / "killed.stdout").read_text(),
        (project.root / "killed.stderr").read_text(),
    )


# -- PostgreSQL --------------------------------------------------------------------------------


def pg_query(query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """One query on the test database, from a connection of the test's own."""
    import psycopg2

    con = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test")
    try:
        with con, con.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall()
    finally:
        con.close()


def backends_of(pid: int) -> list[int]:
    """PostgreSQL backend pids serving process `pid`: matched by the client's TCP port, so
    nothing else using the server (other tests, other people) is touched."""
    try:
        ports = {
            c.laddr.port
            for c in psutil.Process(pid).net_connections(kind="tcp")
            if c.raddr and c.raddr.port == 5432
        }
    except psutil.NoSuchProcess:
        return []
    if not ports:
        return []
    rows = pg_query(
        "select pid, client_port from pg_stat_activity "
        "where datname = 'test' and pid <> pg_backend_pid()"
    )
    return [backend for backend, port in rows if port in ports]


def backends_waiting_on_lock(pid: int) -> list[str]:
    """The queries of `pid`'s backends that wait for a lock."""
    backends = backends_of(pid)
    if not backends:
        return []
    rows = pg_query(
        "select query from pg_stat_activity where wait_event_type = 'Lock' and pid = any(%s)",
        (backends,),
    )
    return [row[0] for row in rows]


def waits_for_table(pid: int, table: str) -> bool:
    """Whether a backend of `pid` waits for a lock on `table`, by PostgreSQL's lock table
    (a query's text is cut at 1 KB in pg_stat_activity: a long one may not show the name)."""
    backends = backends_of(pid)
    if not backends:
        return False
    rows = pg_query(
        "select 1 from pg_locks l join pg_class c on c.oid = l.relation "
        "where not l.granted and l.pid = any(%s) and c.relname = %s",
        (backends, table),
    )
    return bool(rows)


def terminate_backends(pid: int) -> int:
    """Cut `pid`'s warehouse connections, as a restarted or failed-over server would."""
    rows = pg_query(
        "select pg_terminate_backend(b) from unnest(%s::int[]) as b", (backends_of(pid),)
    )
    return sum(1 for (terminated,) in rows if terminated)
