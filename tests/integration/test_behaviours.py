"""The behaviours of the issue, end to end on localstripe: both behaviours, all three key
kinds, case-insensitive emails, ambiguous matches, nested fields and arrays, the three ways
to declare the block, and `plan` predicting exactly what `sync` does."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import stripe

from tests import commands
from tests.integration.dbtproj import BIN, REPO_ROOT, DbtProject, new_project
from tests.servers import LocalStripe


def client(server: LocalStripe) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_setup", base_addresses={"api": server.url})


def people(n: int = 3) -> list[dict[str, Any]]:
    return [{"email": f"Person{i}@Example.com", "full_name": f"Person {i}",
             "city": "Berlin", "line1": f"{i} Hauptstr.", "locales": "de,en"} for i in range(n)]


def build(tmp_path: Path, sync: dict[str, Any], seed: list[dict[str, Any]],
          config_style: str = "schema") -> DbtProject:
    project = new_project(tmp_path / "proj")
    project.write_seed("src", seed)
    project.write_model("to_stripe", "select * from {{ ref('src') }}", sync=sync,
                        config_style=config_style)
    project.build()
    return project


def plan_and_sync(project: DbtProject, server: LocalStripe) -> dict[str, Any]:
    """Run plan then sync; plan must have predicted exactly the sync's counts."""
    planned = project.sync("plan", "--output", "json", stripe_url=server.url)
    assert planned.code in (0, 1), planned.stdout + planned.stderr
    synced = project.sync("--output", "json", stripe_url=server.url)
    assert synced.code in (0, 1), synced.stdout + synced.stderr
    assert planned.json["models"][0]["counts"] == synced.json["models"][0]["counts"]
    return dict(synced.json["models"][0])


@pytest.mark.parametrize("config_style", ["schema", "project", "inline"])
def test_email_key_matches_case_insensitively_and_updates_nested_fields(
    tmp_path: Path, localstripe: LocalStripe, config_style: str
) -> None:
    existing = client(localstripe).v1.customers.create(
        {"email": "person0@example.com", "name": "Old Name"}
    )
    sync = {"object": "customer", "behavior": "update_or_create",
            "key": {"column": "email", "field": "email"},
            "fields": {"name": "full_name", "address.city": "city",
                       "address.line1": "line1", "preferred_locales": "locales"}}
    project = build(tmp_path, sync, people(3), config_style)

    model = plan_and_sync(project, localstripe)
    assert model["counts"]["updated"] == 1 and model["counts"]["created"] == 2
    customers = {c["email"].lower(): c for c in localstripe.customers()}
    assert len(customers) == 3
    updated = customers["person0@example.com"]
    assert updated["id"] == existing.id  # matched despite the case difference
    assert updated["name"] == "Person 0"
    assert updated["address"]["city"] == "Berlin"
    assert updated["address"]["line1"] == "0 Hauptstr."
    assert updated["preferred_locales"] == ["de", "en"]
    # A created customer carries the row's email as written.
    assert customers["person1@example.com"]["email"] == "Person1@Example.com"


def test_update_only_by_stripe_id_reports_not_found_and_creates_nothing(
    tmp_path: Path, localstripe: LocalStripe
) -> None:
    real = client(localstripe).v1.customers.create({"email": "known@example.com"})
    sync = {"object": "customer", "behavior": "update_only",
            "key": {"column": "stripe_id", "field": "id"},
            "fields": {"name": "full_name", "metadata.tier": "tier"}}
    seed = [{"stripe_id": real.id, "full_name": "Known Person", "tier": "gold"},
            {"stripe_id": "cus_doesnotexist", "full_name": "Ghost", "tier": "none"}]
    project = build(tmp_path, sync, seed)

    model = plan_and_sync(project, localstripe)
    assert model["counts"] == {"created": 0, "updated": 1, "unchanged": 0, "rejected": 0,
                               "not_found": 1, "failed": 0, "replaced": 0, "skipped": 0,
        "sent": 0, "already_sent": 0, "uncertain": 0,
        "archived": 0, "deleted": 0, "locked": 0}
    assert model["not_found"][0]["key"] == "cus_doesnotexist"
    [customer] = localstripe.customers()
    assert customer["name"] == "Known Person" and customer["metadata"] == {"tier": "gold"}
    # not_found is not a failure under update_only.
    result = project.sync("--output", "json", stripe_url=localstripe.url)
    assert result.code == 0


def test_key_matching_several_customers_is_rejected_naming_them(
    tmp_path: Path, localstripe: LocalStripe
) -> None:
    api = client(localstripe)
    first = api.v1.customers.create({"email": "shared@example.com"})
    second = api.v1.customers.create({"email": "shared@example.com"})
    sync = {"object": "customer", "key": {"column": "email", "field": "email"},
            "fields": {"name": "full_name"}}
    project = build(tmp_path, sync, [{"email": "shared@example.com", "full_name": "Who"},
                                     {"email": "solo@example.com", "full_name": "Solo"}])

    model = plan_and_sync(project, localstripe)
    assert model["counts"]["rejected"] == 1 and model["counts"]["created"] == 1
    reason = model["rejected"][0]["reason"]
    ids = ", ".join(sorted([first.id, second.id]))
    assert reason == (f"key email='shared@example.com' matches 2 Stripe customers ({ids}); "
                      "refusing to pick one")
    assert all(c.get("name") != "Who" for c in localstripe.customers())


def test_integration_tests_project_builds_and_syncs(tmp_path: Path) -> None:
    """The package's own dbt project (packages.yml: local: ../), as `make demo` runs it:
    customers, then products, then the prices referencing them (the emulator: localstripe
    has no Prices)."""
    import json

    from stripe_emulator import start_emulator

    project_dir = tmp_path / "integration_tests"
    shutil.copytree(REPO_ROOT / "integration_tests", project_dir,
                    ignore=shutil.ignore_patterns("target", "dbt_packages", "logs", "*.duckdb"))
    (project_dir / "packages.yml").write_text(f"packages:\n  - local: {REPO_ROOT}\n")
    with start_emulator(seed=3) as emulator:
        emulator.seed_meters([{"display_name": "API calls", "event_name": "api_calls"}])
        [customer] = emulator.seed([{"email": "teams@example.com"}])
        [product] = emulator.seed_products([{"name": "Team seats"}])
        [price] = emulator.seed_prices([{"product": product, "currency": "usd",
                                         "unit_amount": 1500,
                                         "recurring": {"interval": "month"}}])
        emulator.seed_subscriptions([{"customer": customer, "items": [
            {"id": "si_demo_team_a", "price": price, "quantity": 1},
            {"id": "si_demo_team_b", "price": price, "quantity": 1},
        ]}])
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DBT_", "STRIPE_"))}
        env.update(DBT_PROFILES_DIR=str(project_dir),
                   DBT_DUCKDB_PATH=str(tmp_path / "it.duckdb"),
                   STRIPE_API_KEY="sk_test_it", STRIPE_API_BASE=emulator.url)
        for args in (["deps"], ["build"]):
            done = commands.run([str(BIN / "dbt"), *args], cwd=project_dir, env=env)
            assert done.returncode == 0, done.stdout
        outputs = {}
        for command in ("check", "plan", "sync", "sync"):
            done = commands.run([str(BIN / "dbt-stripe-sync"), command, "--output", "json"],
                                cwd=project_dir, env=env)
            assert done.returncode == 0, done.stdout + done.stderr
            outputs[command if command not in outputs else "again"] = json.loads(done.stdout)

        assert outputs["check"]["stripe"]["mode"] == "test"
        planned = {m["model"]: m["counts"] for m in outputs["plan"]["models"]}
        synced = {m["model"]: m["counts"] for m in outputs["sync"]["models"]}
        assert planned == synced
        assert list(synced) == ["stripe_customers", "stripe_products", "stripe_prices",
                                "stripe_seats", "stripe_usage"]
        assert [synced[m]["created"] for m in synced][:3] == [5, 3, 4]
        assert synced["stripe_seats"]["updated"] == 2 and synced["stripe_usage"]["sent"] == 6
        assert all(m["counts"]["unchanged"] == m["diff"]["total"]
                   for m in outputs["again"]["models"])
        amy = next(c for c in emulator.customers() if c["metadata"].get("crm_id") == "c001")
        assert amy["address"] == {**amy["address"], "line1": "1 Market St",
                                  "city": "San Francisco", "postal_code": "94105",
                                  "country": "US"}
        assert amy["metadata"]["vip"] == "true"
        assert amy["metadata"]["signed_up_on"] == "2024-01-15"
        prices = {p["lookup_key"]: p for p in emulator.prices()}
        assert prices["pro_yearly"]["product"] == "prod_pro"
        assert prices["pro_yearly"]["recurring"]["interval"] == "year"
        assert prices["pro_onboarding"]["type"] == "one_time"
