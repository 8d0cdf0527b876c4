"""on_removed end to end against the repo's emulator: archive and restore (products, prices,
a customer's metadata flag), delete and create again (customers), the guard (an emptied
model, too many removals), plan listing removals first, and a crash in the middle of the
removals. The SQL is the same for every mode: archive runs on DuckDB and PostgreSQL, the
other cases on one of them each (PostgreSQL where a crash or a delete must survive)."""

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
from tests.customers import SYNC_BY_METADATA, rows
from tests.integration.dbtproj import BIN, DbtProject, new_project
from tests.integration.test_sync_catalogue import (
    PRICES,
    PRICES_SYNC,
    PRODUCTS,
    PRODUCTS_SYNC,
    write_catalogue,
)

FAST = ("--max-rps", "1000", "--max-endpoint-rps", "1000")
ALL = ("--max-removed", "100%")


@pytest.fixture
def emulator() -> Iterator[EmulatorHandle]:
    with start_emulator(seed=13) as handle:
        yield handle


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "proj"


def _cleanup(project: DbtProject) -> None:
    if project.target == "postgres":
        drop_postgres_schema(project.schema)


@pytest.fixture
def catalogue(root: Path, warehouse_target: str) -> Iterator[DbtProject]:
    project = new_project(root, warehouse_target)
    write_catalogue(project, PRODUCTS, PRICES)
    project.write_model("stripe_products", "select * from {{ ref('catalogue') }}",
                        sync={**PRODUCTS_SYNC, "on_removed": "archive"})
    project.write_model("stripe_prices", "select * from {{ ref('plans') }}",
                        sync={**PRICES_SYNC, "on_removed": "archive"})
    project.build()
    yield project
    _cleanup(project)


def customers_project(root: Path, target: str, on_removed: Any, n: int = 3) -> DbtProject:
    project = new_project(root, target)
    project.write_seed("crm", rows(n))
    project.write_model("stripe_customers", "select * from {{ ref('crm') }}",
                        sync={**SYNC_BY_METADATA, "on_removed": on_removed})
    project.build()
    return project


def model(result: Any, name: str) -> dict[str, Any]:
    return next(m for m in result.json["models"] if m["model"] == name)


def sync(project: DbtProject, emulator: EmulatorHandle, *args: str) -> Any:
    """`dbt-stripe-sync ARGS` (a command first, if any) with JSON output."""
    return project.sync(*args, *FAST, "--output", "json", stripe_url=emulator.url)


def test_products_and_prices_are_archived_then_restored_when_they_come_back(
    catalogue: DbtProject, emulator: EmulatorHandle
) -> None:
    assert sync(catalogue, emulator).code == 0
    price_ids = {p["lookup_key"]: p["id"] for p in emulator.prices()}
    write_catalogue(catalogue, PRODUCTS[:1], PRICES[:1])  # prod_pro and its price leave
    catalogue.build()

    emulator.reset(stats_only=True)
    plan = sync(catalogue, emulator, "plan", *ALL)
    assert plan.code == 0, plan.stdout + plan.stderr
    # Each named object links to its page in the Dashboard of the key's mode (test).
    assert model(plan, "stripe_products")["removals"] == [
        {"key": "prod_pro", "stripe_id": "prod_pro", "action": "archive", "reason": None,
         "dashboard_url": "https://dashboard.stripe.com/test/products/prod_pro"}]
    assert model(plan, "stripe_prices")["removals"] == [
        {"key": "pro_setup_fee", "stripe_id": price_ids["pro_setup_fee"], "action": "archive",
         "reason": None, "dashboard_url": "https://dashboard.stripe.com/test/prices/"
         + price_ids["pro_setup_fee"]}]
    assert emulator.stats()["writes_committed"] == 0
    text = catalogue.sync("plan", *FAST, *ALL, stripe_url=emulator.url).stdout
    assert text.index("keys left the model") < text.index("Plan (nothing written")

    removed = sync(catalogue, emulator, *ALL)
    assert removed.code == 0, removed.stdout + removed.stderr
    assert model(removed, "stripe_products")["counts"]["archived"] == 1
    assert model(removed, "stripe_prices")["counts"]["archived"] == 1
    products = {p["id"]: p for p in emulator.products()}
    assert products["prod_pro"]["active"] is False and products["prod_starter"]["active"]
    prices = {p["id"]: p for p in emulator.prices()}
    archived = prices[price_ids["pro_setup_fee"]]
    # The archived price keeps its lookup key: a key that comes back finds the same price.
    assert archived["active"] is False and archived["lookup_key"] == "pro_setup_fee"

    emulator.reset(stats_only=True)
    assert sync(catalogue, emulator, *ALL).code == 0
    assert emulator.stats()["requests_total"] == 0  # archived once, never again

    write_catalogue(catalogue, PRODUCTS, PRICES)  # both come back
    catalogue.build()
    back = sync(catalogue, emulator)
    assert back.code == 0, back.stdout + back.stderr
    assert model(back, "stripe_products")["counts"]["updated"] == 1
    assert model(back, "stripe_prices")["counts"]["updated"] == 1
    assert {p["id"]: p["active"] for p in emulator.products()} == {
        "prod_starter": True, "prod_pro": True}
    assert sorted((p["lookup_key"], p["active"]) for p in emulator.prices()) == [
        ("pro_setup_fee", True), ("starter_monthly", True)]  # no second price
    emulator.reset(stats_only=True)
    assert sync(catalogue, emulator).code == 0
    assert emulator.stats()["requests_total"] == 0


def test_a_deleted_customer_is_created_again_when_its_key_comes_back(
    root: Path, postgres_target: str, emulator: EmulatorHandle
) -> None:
    project = customers_project(root, postgres_target, "delete")
    try:
        assert sync(project, emulator).code == 0
        before = {c["metadata"]["crm_id"]: c["id"] for c in emulator.customers()}
        project.write_seed("crm", rows(3)[:2])
        project.build()
        removed = sync(project, emulator, "--max-removed", "1")
        assert removed.code == 0, removed.stdout + removed.stderr
        assert model(removed, "stripe_customers")["counts"]["deleted"] == 1
        assert sorted(c["metadata"]["crm_id"] for c in emulator.customers()) == [
            "c00000", "c00001"]

        project.write_seed("crm", rows(3))
        project.build()
        back = sync(project, emulator)
        assert back.code == 0, back.stdout + back.stderr
        assert model(back, "stripe_customers")["counts"]["created"] == 1
        after = {c["metadata"]["crm_id"]: c["id"] for c in emulator.customers()}
        assert len(after) == 3 and after["c00002"] != before["c00002"]
    finally:
        _cleanup(project)


def test_a_customer_archive_sets_the_named_flag_and_a_return_clears_it(
    root: Path, emulator: EmulatorHandle
) -> None:
    project = customers_project(root, "duckdb",
                                {"archive": {"metadata.status": "archived"}})
    try:
        assert sync(project, emulator).code == 0
        project.write_seed("crm", rows(3)[1:])
        project.build()
        assert sync(project, emulator, "--max-removed", "1").code == 0
        flags = {c["metadata"]["crm_id"]: c["metadata"].get("status")
                 for c in emulator.customers()}
        assert flags == {"c00000": "archived", "c00001": None, "c00002": None}

        project.write_seed("crm", rows(3))
        project.build()
        back = sync(project, emulator)
        assert model(back, "stripe_customers")["counts"]["updated"] == 1
        [restored] = [c for c in emulator.customers() if c["metadata"]["crm_id"] == "c00000"]
        assert "status" not in restored["metadata"]  # "" deletes a metadata key in Stripe
        assert len(emulator.customers()) == 3
    finally:
        _cleanup(project)


def test_the_guard_refuses_an_emptied_model_and_too_many_removals(
    root: Path, emulator: EmulatorHandle
) -> None:
    project = customers_project(root, "duckdb", "delete", n=20)
    assert sync(project, emulator).code == 0
    project.write_model("stripe_customers", "select * from {{ ref('crm') }} where false",
                        sync={**SYNC_BY_METADATA, "on_removed": "delete"})
    project.build()
    emulator.reset(stats_only=True)
    empty = sync(project, emulator)
    assert empty.code == 2
    assert empty.json["error"] == (
        "model 'stripe_customers' (models/stripe_customers.sql): returned no rows, so "
        "on_removed: delete would remove all 20 of its synced keys. Nothing was written. If "
        "the model is meant to be empty, run again with --allow-empty-removal.")
    assert emulator.stats()["requests_total"] == 0 and len(emulator.customers()) == 20

    project.write_model("stripe_customers", "select * from {{ ref('crm') }} where "
                        "customer_id > 'c00004'", sync={**SYNC_BY_METADATA, "on_removed": "delete"})
    project.build()
    over = sync(project, emulator)
    assert over.code == 2
    assert over.json["error"] == (
        "model 'stripe_customers' (models/stripe_customers.sql): on_removed: delete would "
        "remove 5 of its 20 synced keys, more than allowed (2: the default, 10% of its synced "
        "keys and at most 1,000). Nothing was written. Check the model; if it is right, run "
        "again with --max-removed 5.")
    assert emulator.stats()["requests_total"] == 0
    # plan shows what the sync would remove, and fails as the sync would.
    plan = sync(project, emulator, "plan")
    assert plan.code == 2 and len(model(plan, "stripe_customers")["removals"]) == 5
    assert "--max-removed 5" in plan.json["error"]
    bad = sync(project, emulator, "--max-removed", "lots")
    assert bad.code == 2 and "--max-removed 'lots' is not a count or a percentage" in \
        bad.json["error"]

    ok = sync(project, emulator, "--max-removed", "25%")
    assert ok.code == 0 and model(ok, "stripe_customers")["counts"]["deleted"] == 5
    assert len(emulator.customers()) == 15


def test_a_crash_in_the_middle_of_removals_converges(
    root: Path, postgres_target: str, emulator: EmulatorHandle
) -> None:
    project = customers_project(root, postgres_target, "delete", n=40)
    try:
        assert sync(project, emulator).code == 0
        project.write_seed("crm", rows(40)[:10])
        project.build()
        emulator.config(latency_ms=(40, 60))
        proc = subprocess.Popen(
            [str(BIN / "dbt-stripe-sync"), *FAST, *ALL, "--concurrency", "2",
             "--target", project.target],
            cwd=project.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=project.env(STRIPE_API_KEY="sk_test_dsa", STRIPE_API_BASE=emulator.url),
        )
        deadline = time.monotonic() + 120
        while len(emulator.customers()) > 25 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert 10 < len(emulator.customers()) < 40  # killed part-way
        emulator.config(latency_ms=(0, 0))

        again = sync(project, emulator, *ALL)
        assert again.code == 0, again.stdout + again.stderr
        counts = model(again, "stripe_customers")["counts"]
        assert counts["deleted"] <= 30 and counts["failed"] == counts["rejected"] == 0
        assert sorted(c["metadata"]["crm_id"] for c in emulator.customers()) == [
            f"c{i:05d}" for i in range(10)]
        emulator.reset(stats_only=True)
        assert sync(project, emulator, *ALL).code == 0
        assert emulator.stats()["requests_total"] == 0
    finally:
        _cleanup(project)
