"""End to end, as a user runs it: a dbt project, a model with a stripe_activation block,
`dbt build`, then `dbt-stripe-sync plan` and `dbt-stripe-sync`, against localstripe."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import drop_postgres_schema
from tests.integration.dbtproj import DbtProject, new_project
from tests.servers import LocalStripe

CRM_ROWS = [
    {"customer_id": "c1", "email": "amy@example.com", "full_name": "Amy Adams",
     "phone": "+14155550101", "city": "San Francisco", "country": "US", "plan": "pro",
     "locales": "en,fr", "seats": 3},
    {"customer_id": "c2", "email": "bob@example.com", "full_name": "Bob Brown",
     "phone": "", "city": "Paris", "country": "FR", "plan": "starter", "locales": "fr",
     "seats": 1},
    {"customer_id": "c3", "email": "not-an-email", "full_name": "Carla Cruz",
     "phone": "", "city": "", "country": "", "plan": "pro", "locales": "", "seats": 2},
    {"customer_id": "", "email": "nokey@example.com", "full_name": "No Key",
     "phone": "", "city": "", "country": "", "plan": "", "locales": "", "seats": 0},
    {"customer_id": "c5", "email": "dup1@example.com", "full_name": "Dup One",
     "phone": "", "city": "", "country": "", "plan": "", "locales": "", "seats": 0},
    {"customer_id": "c5", "email": "dup2@example.com", "full_name": "Dup Two",
     "phone": "", "city": "", "country": "", "plan": "", "locales": "", "seats": 0},
]

SYNC_BY_CRM_ID = {
    "object": "customer",
    "behavior": "update_or_create",
    "key": {"column": "customer_id", "field": "metadata.crm_id"},
    "fields": {
        "email": "email",
        "name": "full_name",
        "phone": "phone",
        "address.city": "city",
        "address.country": "country",
        "preferred_locales": "locales",
        "metadata.plan": "plan",
        "metadata.seats": "seats",
    },
}


def crm_project(tmp_path: Path, target: str = "duckdb", config_style: str = "schema",
                sync: dict | None = None) -> DbtProject:
    project = new_project(tmp_path / "proj", target)
    project.write_seed("crm", CRM_ROWS, types={"seats": "integer"})
    project.write_model("stripe_customers", "select * from {{ ref('crm') }}",
                        sync=sync or SYNC_BY_CRM_ID, config_style=config_style)
    return project


@pytest.fixture
def project(tmp_path: Path, warehouse_target: str):
    proj = crm_project(tmp_path, warehouse_target)
    yield proj
    if warehouse_target == "postgres":
        drop_postgres_schema(proj.schema)


def by_crm_id(customers: list[dict]) -> dict[str, dict]:
    return {c["metadata"]["crm_id"]: c for c in customers if c["metadata"].get("crm_id")}


def test_plan_then_sync_creates_valid_rows_and_rejects_bad_ones(
    project: DbtProject, localstripe: LocalStripe
) -> None:
    project.build()

    plan = project.sync("plan", "--output", "json", stripe_url=localstripe.url)
    assert plan.code == 1, plan.stderr
    planned = plan.json["models"][0]
    assert localstripe.customers() == []  # plan writes nothing

    synced = project.sync("--output", "json", stripe_url=localstripe.url)
    assert synced.code == 1, synced.stderr
    model = synced.json["models"][0]
    assert model["counts"] == {"created": 2, "updated": 0, "unchanged": 0, "rejected": 4,
                               "not_found": 0, "failed": 0, "replaced": 0, "skipped": 0,
        "sent": 0, "already_sent": 0, "uncertain": 0,
        "archived": 0, "deleted": 0, "locked": 0}
    assert planned["counts"] == model["counts"]  # plan predicted exactly what sync did

    reasons = {r["key"]: r["reason"] for r in model["rejected"]}
    assert "is not a valid email address" in reasons["c3"]
    assert reasons[None] == "key column customer_id is null or empty"
    assert reasons["c5"].startswith("key metadata.crm_id='c5' is shared by 2 rows")

    customers = by_crm_id(localstripe.customers())
    assert set(customers) == {"c1", "c2"}
    amy = customers["c1"]
    assert amy["email"] == "amy@example.com"
    assert amy["name"] == "Amy Adams"
    assert amy["phone"] == "+14155550101"
    assert amy["address"]["city"] == "San Francisco"
    assert amy["address"]["country"] == "US"
    assert amy["preferred_locales"] == ["en", "fr"]
    assert amy["metadata"] == {"crm_id": "c1", "plan": "pro", "seats": "3"}
    assert customers["c2"]["phone"] in (None, "")  # a null column never writes

    # The results file says the same as stdout, and never holds the key.
    assert project.results_file()["models"][0]["counts"] == model["counts"]
    assert "sk_test_dsa" not in (project.root / "target" / "stripe_sync_results.json").read_text()


def test_second_run_without_changes_makes_no_stripe_call(
    project: DbtProject, localstripe: LocalStripe
) -> None:
    project.build()
    first = project.sync("--output", "json", stripe_url=localstripe.url)
    assert first.json["models"][0]["counts"]["created"] == 2
    again = project.sync("--output", "json", stripe_url=localstripe.url)
    model = again.json["models"][0]
    assert model["stripe_reads"] == 0 and model["stripe_writes"] == 0
    assert len(localstripe.customers()) == 2
    # Rows rejected last time and unchanged since are reported again (nothing is lost
    # silently, the exit code stays 1), without a single Stripe call.
    assert again.code == 1
    assert model["counts"] == {"created": 0, "updated": 0, "unchanged": 2, "rejected": 4,
                               "not_found": 0, "failed": 0, "replaced": 0, "skipped": 0,
        "sent": 0, "already_sent": 0, "uncertain": 0,
        "archived": 0, "deleted": 0, "locked": 0}
    assert {r["key"] for r in model["rejected"]} == {None, "c3", "c5"}
    assert any("is not a valid email address" in r["reason"] for r in model["rejected"])

    # --max-failed-pct tolerates rejected rows up to a share of the model: 4 of 6 is 66.7%.
    assert project.sync("--max-failed-pct", "70", stripe_url=localstripe.url).code == 0
    assert project.sync("--max-failed-pct", "60", stripe_url=localstripe.url).code == 1

    # A run refused before it starts (no key here) leaves no stale results behind for CI.
    refused = project.sync("--output", "json", stripe_url=localstripe.url, api_key="")
    assert refused.code == 2 and refused.json["error_type"] == "StripeConnectionError"
    assert not (project.root / "target" / "stripe_sync_results.json").exists()
