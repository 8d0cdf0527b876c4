"""The fault matrix (issue 5): for each fault, a sync of a few hundred rows, re-run until it
reports nothing left to do, ends with every Stripe customer equal to its model row, exactly one
customer per key, and every failure reported with its reason in the results file and the
warehouse tables; no API key appears in any output.

The account starts with a fifth of the keys holding stale values and a fifth already equal, so
every run mixes creates, updates and adoptions. Faults come from the Stripe emulator, seeded:
the same traffic draws the same faults on every run of the suite.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from stripe_emulator import start_emulator
from stripe_emulator.handle import EmulatorHandle
from tests.conftest import drop_postgres_schema, postgres_available
from tests.faults.helpers import (
    MODEL_OF,
    N_ROWS,
    Template,
    assert_no_api_key,
    assert_state_consistent,
    assert_stripe_equals_model,
    backends_waiting_on_lock,
    existing_customers,
    expected_writes,
    killed_output,
    model_rows,
    postgres_project,
    sigkill,
    start_sync,
    state_rows,
    sync_until_done,
    terminate_backends,
    wait_until,
    waits_for_table,
)
from tests.integration.dbtproj import DbtProject

FAST_EMULATOR = {"latency_ms": (0, 5)}
# While a run is to be killed mid-way, writes take long enough to land the kill between them.
SLOW_WRITES = [80, 120]

FAULTS = [
    pytest.param({"random_429_rate": 0.3}, (), "metadata", "random_429", id="429-on-30pct"),
    pytest.param({"server_error_rate": 0.1}, (), "metadata", "server_error", id="5xx-on-10pct"),
    # Stripe's own 500s are saved under the idempotency key and replayed to every retry.
    pytest.param(
        {"server_error_rate": 0.1, "server_error_saved": True},
        (),
        "email",  # the failed rows' re-run looks each key up: per-row email lookups
        "server_error",
        id="5xx-saved-under-idempotency-key-on-10pct-email-key",
    ),
    pytest.param(
        {"lock_timeout_rate": 0.3},
        (),
        "metadata",
        "random_lock_timeout",
        id="lock-timeout-on-30pct-of-updates",
    ),
    pytest.param(
        {"connection_reset_rate": 0.2},
        (),
        "metadata",
        "connection_reset",
        id="connection-reset-on-20pct",
    ),
    pytest.param(
        {"slow_response_rate": 0.1, "slow_response_seconds": 1.0},
        ("--request-timeout", "0.5"),
        "metadata",
        "slow_response",
        id="slower-than-client-timeout-on-10pct",
    ),
    pytest.param(
        {"drop_response_rate": 0.05},
        (),
        "metadata",
        "dropped_response",
        id="response-dropped-after-commit-on-5pct-of-writes",
    ),
    pytest.param(
        {"drop_response_rate": 0.05},
        (),
        "email",
        "dropped_response",
        id="response-dropped-after-commit-on-5pct-of-writes-email-key",
    ),
]


@pytest.mark.parametrize(("fault", "args", "key_kind", "fault_name"), FAULTS)
def test_sync_converges_under_fault(
    template: Template,
    tmp_path: Path,
    fault: dict[str, Any],
    args: tuple[str, ...],
    key_kind: str,
    fault_name: str,
) -> None:
    project, model = template.copy(tmp_path / "proj"), MODEL_OF[key_kind]
    with start_emulator(seed=5, **FAST_EMULATOR, **fault) as emulator:
        emulator.seed(existing_customers(model_rows()))
        outcome = sync_until_done(project, emulator, "--select", model, *args)
        hit = outcome.emulator_stats[0]["faults"].get(fault_name, 0)
        assert hit > 0, f"the fault never fired: {outcome.emulator_stats[0]['faults']}"
        assert_stripe_equals_model(emulator, key_kind)
        assert assert_state_consistent(project, emulator, model) == N_ROWS


# -- SIGKILL -------------------------------------------------------------------------------------

WRITES = expected_writes(model_rows())
# Where one sync is killed, run after run: each re-run recovers what the last kill left
# (a stale lock, writes Stripe has and the state lacks) and is killed in turn, further on.
KILL_POINTS = [
    ("during-first-stripe-read", 0),
    *((f"after-{k}-writes", k) for k in (1, 25, 60, 100, 140, 180)),
    ("after-last-write", WRITES),
]


def _converges_after_kill(project: DbtProject, emulator: EmulatorHandle, model: str) -> None:
    emulator.config(latency_ms=list(FAST_EMULATOR["latency_ms"]))
    sync_until_done(project, emulator, "--select", model)
    assert_stripe_equals_model(emulator, "metadata")
    assert assert_state_consistent(project, emulator, model) == N_ROWS


def _reached(emulator: EmulatorHandle, writes: int) -> bool:
    """`writes` committed writes, or for 0, a first request received."""
    stats = emulator.stats()
    return stats["writes_committed"] >= writes if writes else stats["requests_total"] > 0


def test_sigkill_at_eight_points_of_a_sync_each_rerun_recovers(
    template: Template, tmp_path: Path
) -> None:
    project, model = template.copy(tmp_path / "proj"), MODEL_OF["metadata"]
    with start_emulator(seed=5, **FAST_EMULATOR) as emulator:
        emulator.seed(existing_customers(model_rows()))
        for i, (point, writes) in enumerate(KILL_POINTS):
            # Slow answers for the first point: the kill lands while the first read is in flight.
            emulator.config(latency_ms=SLOW_WRITES if writes else [300, 300])
            proc = start_sync(project, emulator, "--select", model)
            wait_until(proc, partial(_reached, emulator, writes), point)
            sigkill(proc, project)
            written = emulator.stats()["writes_committed"]
            next_point = KILL_POINTS[i + 1][1] if i + 1 < len(KILL_POINTS) else WRITES + 1
            assert writes <= written < next_point, (point, written)
            try:
                assert_state_consistent(project, emulator, model)
            except AssertionError as exc:
                raise AssertionError(f"state inconsistent after the kill {point}") from exc
        _converges_after_kill(project, emulator, model)


PG_MODELS = ("customers_diff", "customers_write_back", "customers_lost")


@pytest.fixture(scope="module")
def pg_project(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not postgres_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not running on 127.0.0.1:5432 and CI requires it")
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    project = postgres_project(tmp_path_factory.mktemp("pg") / "proj", PG_MODELS)
    try:
        yield project
    finally:
        drop_postgres_schema(project.schema)


class _TableLock:
    """A PostgreSQL table lock held by the test, in an open transaction, until released."""

    def __init__(self, relation: str, mode: str) -> None:
        import psycopg2

        self.con = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test")
        self.con.cursor().execute(f"lock table {relation} in {mode} mode")

    def release(self) -> None:
        if not self.con.closed:
            self.con.rollback()
            self.con.close()


@pytest.mark.postgres
def test_sigkill_while_the_diff_waits_for_the_warehouse_then_rerun(pg_project: DbtProject) -> None:
    project, model = pg_project, "customers_diff"
    with start_emulator(seed=5, **FAST_EMULATOR) as emulator:
        emulator.seed(existing_customers(model_rows()))
        lock = _TableLock(f'"{project.schema}".{model}', "access exclusive")
        try:
            proc = start_sync(project, emulator, "--select", model)
            wait_until(proc, lambda: waits_for_table(proc.pid, model),
                       "the diff query to wait for the model's table")
            sigkill(proc, project)
        finally:
            lock.release()
        assert emulator.stats()["requests_total"] == 0
        assert state_rows(project, model) == []
        _converges_after_kill(project, emulator, model)


@pytest.mark.postgres
def test_sigkill_during_state_write_back_then_rerun(pg_project: DbtProject) -> None:
    project, model = pg_project, "customers_write_back"
    with start_emulator(seed=5, **FAST_EMULATOR) as emulator:
        emulator.seed(existing_customers(model_rows()))
        emulator.config(latency_ms=SLOW_WRITES)
        proc = start_sync(project, emulator, "--select", model)
        wait_until(proc, lambda: emulator.stats()["writes_committed"] >= 10, "10 writes")
        # SHARE blocks the state write-back (insert/delete), not the diff's reads.
        lock = _TableLock(f'"{project.schema}_stripe_activation".stripe_sync_state', "share")
        try:
            wait_until(
                proc,
                lambda: any("stripe_sync_state" in q for q in backends_waiting_on_lock(proc.pid)),
                "the state write-back to wait for the table",
            )
            sigkill(proc, project)
        finally:
            lock.release()
        assert emulator.stats()["writes_committed"] >= 10
        assert state_rows(project, model) == [], "the interrupted write-back is all or nothing"
        _converges_after_kill(project, emulator, model)


# -- the warehouse lost mid-run --------------------------------------------------------------------


@pytest.mark.postgres
def test_warehouse_connection_lost_mid_run_fails_cleanly_then_rerun_finishes(
    pg_project: DbtProject,
) -> None:
    project, model = pg_project, "customers_lost"
    with start_emulator(seed=5, **FAST_EMULATOR) as emulator:
        emulator.seed(existing_customers(model_rows()))
        emulator.config(latency_ms=SLOW_WRITES)
        proc = start_sync(project, emulator, "--select", model)
        wait_until(proc, lambda: emulator.stats()["writes_committed"] >= 40, "40 writes")
        assert terminate_backends(proc.pid) >= 1
        code = proc.wait(timeout=120)
        stdout, stderr = killed_output(project)
        assert code == 2, (code, stdout[-2000:], stderr[-2000:])
        assert "Traceback" not in stderr, stderr[-3000:]
        assert "Error:" in stderr and "warehouse" in stderr.lower(), stderr[-2000:]
        assert_no_api_key(stdout, stderr)
        # The results file says what happened, though the warehouse could not record it.
        results = project.results_file()
        assert_no_api_key(repr(results))
        assert results["exit_code"] == 2
        [lost] = results["models"]
        assert lost["model"] == model and lost["status"] == "error"
        assert "warehouse" in lost["error"].lower(), lost
        assert lost["counts"]["failed"] == len(lost["failed"])
        assert all(row["key"] and row["reason"] for row in lost["failed"]), lost["failed"]
        assert emulator.stats()["writes_committed"] < WRITES, "the run was not cut mid-way"
        assert_state_consistent(project, emulator, model)
        _converges_after_kill(project, emulator, model)
