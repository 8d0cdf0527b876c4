"""Incremental and exact (issue: state in the warehouse, diff in SQL, never a duplicate),
end to end against the Stripe emulator, whose request counts are exact."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stripe_emulator import start_emulator
from stripe_emulator.handle import EmulatorHandle
from tests.conftest import drop_postgres_schema
from tests.customers import SYNC_BY_METADATA, customers_by_key, rows, stripe_differences
from tests.integration.dbtproj import BIN, DbtProject, new_project

SYNC = SYNC_BY_METADATA
FAST = ("--max-rps", "1000", "--max-endpoint-rps", "1000", "--concurrency", "16")


@pytest.fixture
def emulator() -> Iterator[EmulatorHandle]:
    with start_emulator(seed=7) as handle:
        yield handle


def make_project(tmp_path: Path, target: str, n: int) -> DbtProject:
    project = new_project(tmp_path / "proj", target)
    project.write_seed("crm", rows(n))
    project.write_model("stripe_customers", "select * from {{ ref('crm') }}", sync=SYNC)
    project.build()
    return project


@pytest.fixture
def project_factory(tmp_path: Path, warehouse_target: str) -> Iterator[Any]:
    made: list[DbtProject] = []

    def factory(n: int) -> DbtProject:
        made.append(make_project(tmp_path, warehouse_target, n))
        return made[-1]

    yield factory
    for project in made:
        if project.target == "postgres":
            drop_postgres_schema(project.schema)


def sql(project: DbtProject, query: str) -> list[tuple[Any, ...]]:
    """Query the project's warehouse directly, as a user inspecting sync history would."""
    query = query.replace("{bk}", f'"{project.schema}_stripe_activation"')
    if project.target == "duckdb":
        import duckdb

        with duckdb.connect(str(project.root / "warehouse.duckdb")) as con:
            return con.execute(query).fetchall()
    import psycopg2

    with psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test") as con, \
            con.cursor() as cur:
        cur.execute(query)
        return cur.fetchall() if cur.description else []


def by_key(emulator: EmulatorHandle) -> dict[str, list[dict[str, Any]]]:
    return customers_by_key(emulator.customers(), "metadata")


def outcome_summary(result: Any) -> str:
    """What a failed assertion should show: the counts and the rows that went wrong."""
    try:
        model = result.json["models"][0]
    except (ValueError, KeyError, IndexError):
        return result.stdout[-2000:] + result.stderr[-2000:]
    return repr({k: model[k] for k in ("counts", "rejected", "failed", "error")})[:3000]


def assert_stripe_equals_model(emulator: EmulatorHandle, expected: list[dict[str, Any]]) -> None:
    """Exactly one customer per key, none without a row, every mapped field equal."""
    problems = stripe_differences(emulator.customers(), expected, "metadata")
    assert not problems, problems


def test_rerun_makes_zero_requests_and_k_changed_rows_cost_k_writes(
    project_factory: Any, emulator: EmulatorHandle
) -> None:
    project = project_factory(60)
    first = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
    assert first.code == 0, first.stderr
    assert first.json["models"][0]["counts"]["created"] == 60
    assert emulator.stats()["writes_committed"] == 60

    emulator.reset(stats_only=True)
    again = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
    assert again.code == 0, again.stderr
    assert emulator.stats()["requests_total"] == 0
    assert again.json["models"][0]["counts"]["unchanged"] == 60

    project.write_seed("crm", rows(60, changed=frozenset({3, 17, 42})))
    project.build()
    emulator.reset(stats_only=True)
    changed = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
    assert changed.code == 0, changed.stderr
    stats = emulator.stats()
    assert stats["requests_total"] == 3
    assert stats["by_endpoint"] == {"POST /v1/customers/{id}": 3}
    assert changed.json["models"][0]["counts"]["updated"] == 3
    assert_stripe_equals_model(emulator, rows(60, changed=frozenset({3, 17, 42})))


def test_dropped_state_table_adopts_existing_customers_and_creates_nothing(
    project_factory: Any, emulator: EmulatorHandle
) -> None:
    project = project_factory(250)
    assert project.sync(*FAST, stripe_url=emulator.url).code == 0
    sql(project, "drop table {bk}.stripe_sync_state")

    emulator.reset(stats_only=True)
    result = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
    assert result.code == 0, result.stderr
    counts = result.json["models"][0]["counts"]
    assert counts["created"] == 0 and counts["updated"] == 0 and counts["unchanged"] == 250
    stats = emulator.stats()
    assert stats["writes_committed"] == 0
    assert stats["by_endpoint"] == {"GET /v1/customers": 3}  # ceil(250/100) list pages
    assert_stripe_equals_model(emulator, rows(250))


def test_sigkill_mid_first_run_then_rerun_leaves_one_customer_per_key(
    tmp_path: Path, emulator: EmulatorHandle
) -> None:
    project = make_project(tmp_path, "duckdb", 2000)
    emulator.config(latency_ms=[2, 10])
    proc = subprocess.Popen(
        [str(BIN / "dbt-stripe-sync"), *FAST, "--target", "duckdb"], cwd=project.root,
        env=project.env(STRIPE_API_KEY="sk_test_dsa", STRIPE_API_BASE=emulator.url),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while emulator.stats()["writes_committed"] < 700 and time.monotonic() < deadline:
        assert proc.poll() is None, "the sync finished before it could be killed"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = emulator.stats()["writes_committed"]
    assert 700 <= killed_at < 2000

    emulator.config(latency_ms=[0, 0])
    rerun = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
    assert rerun.code == 0, outcome_summary(rerun)
    assert_stripe_equals_model(emulator, rows(2000))
    again = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
    assert again.json["models"][0]["counts"]["unchanged"] == 2000


def test_run_history_and_row_outcomes_are_queryable_in_sql(
    project_factory: Any, emulator: EmulatorHandle
) -> None:
    project = project_factory(5)
    first = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
    project.write_seed("crm", rows(5, changed=frozenset({1})))
    project.build()
    second = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)

    runs = sql(project, "select run_id, command, status, created, updated, unchanged "
                        "from {bk}.stripe_sync_runs order by started_at")
    assert [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in runs] == [
        (first.json["run_id"], "sync", "success", 5, 0, 0),
        (second.json["run_id"], "sync", "success", 0, 1, 4),
    ]
    outcomes = sql(project, "select run_id, key_value, outcome from "
                            "{bk}.stripe_sync_row_results order by run_id, key_value")
    assert [(r[1], r[2]) for r in outcomes if r[0] == second.json["run_id"]] == [
        ("c00001", "updated")
    ]
    assert len([r for r in outcomes if r[0] == first.json["run_id"]]) == 5
    state = sql(project, "select key_value, stripe_id, last_outcome from "
                         "{bk}.stripe_sync_state order by key_value")
    ids = {c["metadata"]["crm_id"]: c["id"] for c in emulator.customers()}
    assert [(k, i) for k, i, _ in state] == sorted(ids.items())


def test_null_values_clear_unsets_and_skip_leaves_stripe_alone(
    tmp_path: Path, emulator: EmulatorHandle
) -> None:
    sync = {**SYNC, "fields": {**SYNC["fields"],
                               "metadata.plan": {"column": "plan", "null_values": "clear"}}}
    project = new_project(tmp_path / "proj")
    project.write_seed("crm", rows(3))
    project.write_model("stripe_customers", "select * from {{ ref('crm') }}", sync=sync)
    project.build()
    assert project.sync(*FAST, stripe_url=emulator.url).code == 0

    blanked = rows(3)
    blanked[0]["plan"] = None  # clear: the metadata key goes
    blanked[0]["city"] = None  # skip (the default): Stripe keeps its city
    project.write_seed("crm", blanked)
    project.build()
    emulator.reset(stats_only=True)
    result = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
    assert result.code == 0, outcome_summary(result)
    assert emulator.stats()["writes_committed"] == 1
    customer = by_key(emulator)["c00000"][0]
    assert customer["metadata"] == {"crm_id": "c00000"}
    assert customer["address"]["city"] == "Paris"


def test_full_resync_repairs_drift_and_reset_state_sends_nothing(
    tmp_path: Path, emulator: EmulatorHandle
) -> None:
    project = make_project(tmp_path, "duckdb", 120)
    assert project.sync(*FAST, stripe_url=emulator.url).code == 0
    # Someone edits a customer in the Stripe dashboard: the state cannot know.
    import stripe

    api = stripe.StripeClient("sk_test_edit", base_addresses={"api": emulator.url})
    drifted = by_key(emulator)["c00007"][0]
    api.v1.customers.update(drifted["id"], {"name": "Edited By Hand"})

    emulator.reset(stats_only=True)
    normal = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
    assert emulator.stats()["requests_total"] == 0  # nothing changed in the model
    assert normal.json["models"][0]["counts"]["unchanged"] == 120

    full = project.sync(*FAST, "--full-resync", "--output", "json", stripe_url=emulator.url)
    assert full.code == 0, outcome_summary(full)
    counts = full.json["models"][0]["counts"]
    assert counts["updated"] == 1 and counts["unchanged"] == 119 and counts["created"] == 0
    assert emulator.stats()["by_endpoint"] == {"GET /v1/customers": 2,
                                               "POST /v1/customers/{id}": 1}
    assert by_key(emulator)["c00007"][0]["name"] == "User 7"

    emulator.reset(stats_only=True)
    reset = project.sync("--reset-state", "--output", "json", stripe_url=emulator.url)
    assert reset.code == 0 and reset.json["cleared"] == {"stripe_customers": 120}
    assert emulator.stats()["requests_total"] == 0
    assert sql(project, "select count(*) from {bk}.stripe_sync_state") == [(0,)]
    adopted = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
    assert adopted.json["models"][0]["counts"]["unchanged"] == 120
    assert len(emulator.customers()) == 120


@pytest.mark.parametrize("warehouse_target", ["postgres"], indirect=True)
def test_a_second_sync_of_the_same_model_is_refused_while_the_first_holds_the_lock(
    project_factory: Any, emulator: EmulatorHandle
) -> None:
    project = project_factory(400)
    emulator.config(latency_ms=[20, 40])
    first = subprocess.Popen(
        [str(BIN / "dbt-stripe-sync"), "--max-rps", "50", "--target", project.target],
        cwd=project.root,
        env=project.env(STRIPE_API_KEY="sk_test_dsa", STRIPE_API_BASE=emulator.url),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while emulator.stats()["writes_committed"] < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        second = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
        assert second.code == 2, second.stdout
        message = second.json["error"]
        assert "stripe_customers" in message and f":{first.pid}" in message
        assert "Traceback" not in second.stderr
    finally:
        first.kill()
        first.wait()
