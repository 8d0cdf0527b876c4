"""Products and Prices end to end, on DuckDB and PostgreSQL, against the repo's emulator
(localstripe has no Prices): references between models, dependency order, immutable prices
replaced and archived, create_only, and a crash between a replacement's two writes."""

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
from tests.integration.dbtproj import BIN, DbtProject, new_project

FAST = ("--max-rps", "1000", "--max-endpoint-rps", "1000")

PRODUCTS_SYNC = {
    "object": "product",
    "key": {"column": "sku", "field": "id"},
    "fields": {"name": "name", "description": "description", "metadata.tier": "tier"},
}
PRICES_SYNC = {
    "object": "price",
    "key": {"column": "lookup_key", "field": "lookup_key"},
    "fields": {
        "product": {"ref": "stripe_products", "column": "sku"},
        "currency": "currency",
        "unit_amount": "amount",
        "recurring.interval": "billing_interval",
        "nickname": "nickname",
    },
}

PRODUCTS = [
    {"sku": "prod_starter", "name": "Starter", "description": "For one team", "tier": "1"},
    {"sku": "prod_pro", "name": "Pro", "description": "For many teams", "tier": "2"},
]
PRICES = [
    {"lookup_key": "starter_monthly", "sku": "prod_starter", "currency": "USD", "amount": "900",
     "billing_interval": "month", "nickname": "Starter monthly"},
    {"lookup_key": "pro_setup_fee", "sku": "prod_pro", "currency": "eur", "amount": "5000",
     "billing_interval": "", "nickname": "Pro setup"},
]


@pytest.fixture
def emulator() -> Iterator[EmulatorHandle]:
    with start_emulator(seed=11) as handle:
        yield handle


def catalogue_project(
    root: Path, target: str, prices_sync: dict[str, Any] | None = None,
    products_sync: dict[str, Any] | None = None,
) -> DbtProject:
    project = new_project(root, target)
    write_catalogue(project, PRODUCTS, PRICES)
    project.write_model("stripe_products", "select * from {{ ref('catalogue') }}",
                        sync=products_sync or PRODUCTS_SYNC)
    project.write_model("stripe_prices", "select * from {{ ref('plans') }}",
                        sync=prices_sync or PRICES_SYNC)
    project.build()
    return project


def write_catalogue(project: DbtProject, products: list[dict[str, Any]],
                    prices: list[dict[str, Any]]) -> None:
    project.write_seed("catalogue", products)
    project.write_seed("plans", prices, types={"amount": "integer"})


@pytest.fixture
def project(tmp_path: Path, warehouse_target: str) -> Iterator[DbtProject]:
    proj = catalogue_project(tmp_path / "proj", warehouse_target)
    yield proj
    if warehouse_target == "postgres":
        drop_postgres_schema(proj.schema)


def active_prices(emulator: EmulatorHandle) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for price in emulator.prices():
        if price["active"]:
            out.setdefault(price["lookup_key"], []).append(price)
    return out


def models(result: Any) -> dict[str, dict[str, Any]]:
    return {m["model"]: m for m in result.json["models"]}


def test_products_then_prices_in_one_run_and_a_rerun_makes_no_request(
    project: DbtProject, emulator: EmulatorHandle
) -> None:
    plan = project.sync("plan", *FAST, "--output", "json", stripe_url=emulator.url)
    assert plan.code == 0, plan.stdout + plan.stderr
    # Dependency order: products first, though prices would sort first by name.
    assert [m["model"] for m in plan.json["models"]] == ["stripe_products", "stripe_prices"]
    assert emulator.stats()["writes_committed"] == 0

    first = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
    assert first.code == 0, first.stdout + first.stderr
    result = models(first)
    assert result["stripe_products"]["counts"]["created"] == 2
    assert result["stripe_prices"]["counts"]["created"] == 2

    products = {p["id"]: p for p in emulator.products()}
    assert set(products) == {"prod_starter", "prod_pro"}  # the model's ids, chosen on create
    assert products["prod_pro"]["metadata"] == {"tier": "2"}
    prices = active_prices(emulator)
    [monthly] = prices["starter_monthly"]
    assert (monthly["product"], monthly["currency"], monthly["unit_amount"]) == (
        "prod_starter", "usd", 900)
    assert monthly["recurring"]["interval"] == "month" and monthly["type"] == "recurring"
    [setup] = prices["pro_setup_fee"]
    assert (setup["product"], setup["currency"], setup["type"]) == ("prod_pro", "eur", "one_time")

    emulator.reset(stats_only=True)
    again = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
    assert again.code == 0, again.stderr
    assert emulator.stats()["requests_total"] == 0
    assert {m: r["counts"]["unchanged"] for m, r in models(again).items()} == {
        "stripe_products": 2, "stripe_prices": 2}


def test_a_changed_amount_replaces_the_price_and_a_changed_nickname_updates_it(
    project: DbtProject, emulator: EmulatorHandle
) -> None:
    assert project.sync(*FAST, stripe_url=emulator.url).code == 0
    [old] = active_prices(emulator)["starter_monthly"]
    changed = [dict(PRICES[0], amount="1200"), dict(PRICES[1], nickname="Pro onboarding")]
    write_catalogue(project, PRODUCTS, changed)
    project.build()

    emulator.reset(stats_only=True)
    plan = project.sync("plan", *FAST, "--output", "json", "--select", "stripe_prices",
                        stripe_url=emulator.url)
    assert plan.code == 0, plan.stdout + plan.stderr
    planned = models(plan)["stripe_prices"]
    assert planned["counts"]["replaced"] == 1 and planned["counts"]["updated"] == 1
    [replace] = [s for s in planned["samples"] if s["action"] == "replace"]
    assert replace["replaces"] == old["id"] and replace["forced_by"] == ["unit_amount"]
    assert emulator.stats()["writes_committed"] == 0
    text = project.sync("plan", *FAST, "--select", "stripe_prices", stripe_url=emulator.url)
    assert f"would replace 'starter_monthly': {old['id']} -> a new price (changed " \
        "unit_amount" in text.stdout

    emulator.reset(stats_only=True)
    synced = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
    assert synced.code == 0, synced.stdout + synced.stderr
    counts = models(synced)["stripe_prices"]["counts"]
    assert (counts["replaced"], counts["updated"], counts["unchanged"]) == (1, 1, 0)
    stats = emulator.stats()
    # One create and one archive for the replacement, one update for the nickname, and one
    # strongly consistent read by the lookup key that guards against a second replacement.
    assert stats["writes_by_endpoint"] == {"POST /v1/prices": 1, "POST /v1/prices/{id}": 2}
    assert stats["by_endpoint"].get("GET /v1/prices", 0) == 1

    prices = {p["id"]: p for p in emulator.prices()}
    assert prices[old["id"]]["active"] is False and prices[old["id"]]["lookup_key"] is None
    [new] = active_prices(emulator)["starter_monthly"]
    assert new["id"] != old["id"] and new["unit_amount"] == 1200
    assert new["product"] == "prod_starter" and new["nickname"] == "Starter monthly"
    [setup] = active_prices(emulator)["pro_setup_fee"]
    assert setup["nickname"] == "Pro onboarding"

    emulator.reset(stats_only=True)
    assert project.sync(*FAST, stripe_url=emulator.url).code == 0
    assert emulator.stats()["requests_total"] == 0


def test_prices_alone_need_the_products_state_then_resolve_from_it(
    project: DbtProject, emulator: EmulatorHandle
) -> None:
    alone = project.sync(*FAST, "--select", "stripe_prices", "--output", "json",
                         stripe_url=emulator.url)
    assert alone.code == 2
    assert alone.json["error"] == (
        "model 'stripe_prices' (models/stripe_prices.sql): stripe_activation.fields.product: "
        "references model 'stripe_products', which has no sync state yet, so no key of it "
        "resolves to a Stripe product. Sync 'stripe_products' first (dbt-stripe-sync --select "
        "stripe_products), or select both models."
    )
    assert emulator.stats()["requests_total"] == 0

    assert project.sync(*FAST, "--select", "stripe_products", stripe_url=emulator.url).code == 0
    emulator.reset(stats_only=True)
    prices = project.sync(*FAST, "--select", "stripe_prices", "--output", "json",
                          stripe_url=emulator.url)
    assert prices.code == 0, prices.stdout + prices.stderr
    assert models(prices)["stripe_prices"]["counts"]["created"] == 2
    # References resolve from the products model's state: no product is read from Stripe.
    assert not any("products" in endpoint for endpoint in emulator.stats()["by_endpoint"])


def test_a_row_referencing_an_unsynced_key_is_rejected_naming_the_model(
    project: DbtProject, emulator: EmulatorHandle
) -> None:
    orphan = {"lookup_key": "ghost_monthly", "sku": "prod_ghost", "currency": "usd",
              "amount": "100", "billing_interval": "month", "nickname": "Ghost"}
    write_catalogue(project, PRODUCTS, [*PRICES, orphan])
    project.build()
    result = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
    assert result.code == 1
    prices = models(result)["stripe_prices"]
    assert prices["counts"]["created"] == 2 and prices["counts"]["rejected"] == 1
    [rejected] = prices["rejected"]
    assert rejected["key"] == "ghost_monthly"
    assert rejected["reason"] == (
        "product (ref stripe_products, column sku): key 'prod_ghost' has no Stripe product in "
        "stripe_products's sync state (not in that model, rejected there, or not synced yet); "
        "sync stripe_products first"
    )
    # Once the product exists, the same (unchanged) row is planned again: the resolved id
    # is part of its hash.
    write_catalogue(project, [*PRODUCTS, {"sku": "prod_ghost", "name": "Ghost",
                                          "description": "", "tier": "0"}], [*PRICES, orphan])
    project.build()
    again = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
    assert again.code == 0, again.stdout
    assert models(again)["stripe_prices"]["counts"]["created"] == 1
    [ghost] = active_prices(emulator)["ghost_monthly"]
    assert ghost["product"] == "prod_ghost"


def test_create_only_creates_missing_objects_and_leaves_matches_alone(
    tmp_path: Path, emulator: EmulatorHandle
) -> None:
    sync = dict(PRODUCTS_SYNC, behavior="create_only")
    project = catalogue_project(tmp_path / "proj", "duckdb", products_sync=sync)
    assert project.sync(*FAST, "--select", "stripe_products", stripe_url=emulator.url).code == 0
    renamed = [dict(PRODUCTS[0], name="Starter (renamed)"), PRODUCTS[1],
               {"sku": "prod_team", "name": "Team", "description": "x", "tier": "3"}]
    write_catalogue(project, renamed, PRICES)
    project.build()
    emulator.reset(stats_only=True)
    result = project.sync(*FAST, "--select", "stripe_products", "--output", "json",
                          stripe_url=emulator.url)
    assert result.code == 0, result.stdout + result.stderr
    counts = models(result)["stripe_products"]["counts"]
    assert (counts["created"], counts["skipped"], counts["unchanged"]) == (1, 1, 1)
    assert emulator.stats()["writes_by_endpoint"] == {"POST /v1/products": 1}
    products = {p["id"]: p for p in emulator.products()}
    assert products["prod_starter"]["name"] == "Starter"  # never updated
    assert products["prod_team"]["name"] == "Team"


def test_products_keyed_on_metadata_are_adopted_not_duplicated(
    tmp_path: Path, warehouse_target: str, emulator: EmulatorHandle
) -> None:
    sync = {"object": "product", "key": {"column": "sku", "field": "metadata.sku"},
            "fields": {"name": "name"}}
    emulator.seed_products([{"name": "Old starter", "metadata": {"sku": "prod_starter"}}])
    project = new_project(tmp_path / "proj", warehouse_target)
    try:
        project.write_seed("catalogue", PRODUCTS)
        project.write_model("stripe_products", "select * from {{ ref('catalogue') }}", sync=sync)
        project.build()
        result = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
        assert result.code == 0, result.stdout + result.stderr
        counts = models(result)["stripe_products"]["counts"]
        assert (counts["created"], counts["updated"]) == (1, 1)
        by_sku = {}
        for product in emulator.products():
            by_sku.setdefault(product["metadata"]["sku"], []).append(product)
        assert sorted(by_sku) == ["prod_pro", "prod_starter"]
        assert [p["name"] for p in by_sku["prod_starter"]] == ["Starter"]
    finally:
        if warehouse_target == "postgres":
            drop_postgres_schema(project.schema)


def test_sigkill_between_the_create_and_the_archive_converges_on_rerun(
    tmp_path: Path, warehouse_target: str, emulator: EmulatorHandle
) -> None:
    project = catalogue_project(tmp_path / "proj", warehouse_target)
    try:
        assert project.sync(*FAST, stripe_url=emulator.url).code == 0
        write_catalogue(project, PRODUCTS, [dict(p, amount=str(int(p["amount"]) + 1))
                                            for p in PRICES])
        project.build()
        # The archives are refused (429) until the process is killed: each replacement
        # exists in Stripe, its old price is still active.
        emulator.config(rate_limit_algorithm="token_bucket",
                        endpoint_rate_limits={"POST /v1/prices/{id}": 0.001})
        emulator.reset(stats_only=True)
        proc = subprocess.Popen(
            [str(BIN / "dbt-stripe-sync"), *FAST, "--target", warehouse_target],
            cwd=project.root,
            env=project.env(STRIPE_API_KEY="sk_test_dsa", STRIPE_API_BASE=emulator.url),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while emulator.stats()["writes_by_endpoint"].get("POST /v1/prices", 0) < 2:
            assert proc.poll() is None, "the sync ended before both replacements were created"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)  # the archives are being refused and retried
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert sum(p["active"] for p in emulator.prices()) == 4  # old and new, both active

        emulator.config(endpoint_rate_limits={}, rate_limit_algorithm="sliding_window")
        emulator.reset(stats_only=True)
        rerun = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
        assert rerun.code == 0, rerun.stdout + rerun.stderr
        assert models(rerun)["stripe_prices"]["counts"]["replaced"] == 2
        # No second replacement: the re-run found each by its key and archived the old.
        assert emulator.stats()["writes_by_endpoint"] == {"POST /v1/prices/{id}": 2}
        prices = active_prices(emulator)
        assert {k: [p["unit_amount"] for p in v] for k, v in prices.items()} == {
            "starter_monthly": [901], "pro_setup_fee": [5001]}
        assert len(emulator.prices()) == 4  # two archived, two active, nothing more

        emulator.reset(stats_only=True)
        assert project.sync(*FAST, stripe_url=emulator.url).code == 0
        assert emulator.stats()["requests_total"] == 0
    finally:
        if warehouse_target == "postgres":
            drop_postgres_schema(project.schema)
