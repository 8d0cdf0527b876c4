"""Invoice items from the warehouse: one-off pending charges for a customer's next invoice
(a setup fee, an overage, a credit), each referencing its customer's synced row. An item
Stripe already put on a finalized invoice is `locked`: nothing is written, it is reported
with what changed, and a re-run asks Stripe nothing about it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stripe

from stripe_emulator import start_emulator
from stripe_emulator.handle import EmulatorHandle
from tests.conftest import drop_postgres_schema
from tests.customers import SYNC_BY_METADATA, rows
from tests.integration.dbtproj import DbtProject, new_project
from tests.integration.test_incremental import FAST

ITEMS_SYNC = {
    "object": "invoice_item",
    "key": {"column": "fee_id", "field": "metadata.fee_id"},
    "fields": {
        "customer": {"ref": "stripe_customers", "column": "customer_id"},
        "amount": "amount",
        "currency": {"value": "eur"},
        "description": "description",
    },
    "on_removed": "delete",
}


def fees(amounts: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Three fees of the first three CRM customers; a negative amount is a credit."""
    amounts = {"setup-1": 5000, "overage-2": 1250, "credit-3": -800, **(amounts or {})}
    customers = [row["customer_id"] for row in rows(3)]
    return [{"fee_id": fee, "customer_id": customer, "amount": amount,
             "description": fee.split("-")[0].capitalize()}
            for (fee, amount), customer in zip(amounts.items(), customers, strict=True)]


@pytest.fixture
def emulator() -> Iterator[EmulatorHandle]:
    with start_emulator(seed=11) as handle:
        yield handle


@pytest.fixture
def project(tmp_path: Path, warehouse_target: str) -> Iterator[DbtProject]:
    made = new_project(tmp_path / "proj", warehouse_target)
    made.write_seed("crm", rows(3))
    made.write_seed("fees", fees(), types={"amount": "integer"})
    made.write_model("stripe_customers", "select * from {{ ref('crm') }}",
                     sync=SYNC_BY_METADATA)
    made.write_model("stripe_fees", "select * from {{ ref('fees') }}", sync=ITEMS_SYNC)
    made.build()
    yield made
    if made.target == "postgres":
        drop_postgres_schema(made.schema)


def sync(project: DbtProject, emulator: EmulatorHandle, *args: str) -> Any:
    result = project.sync(*FAST, "--output", "json", *args, stripe_url=emulator.url)
    assert result.code in (0, 1), result.stdout[-2000:] + result.stderr[-2000:]
    return result


def model(result: Any) -> dict[str, Any]:
    return {m["model"]: m for m in result.json["models"]}["stripe_fees"]


def items(emulator: EmulatorHandle) -> dict[str, dict[str, Any]]:
    return {i["metadata"]["fee_id"]: i for i in emulator.invoice_items()}


def test_fees_become_pending_items_once_a_change_is_one_update_and_a_final_one_is_locked(
    project: DbtProject, emulator: EmulatorHandle,
) -> None:
    first = sync(project, emulator)
    assert first.code == 0 and model(first)["counts"]["created"] == 3
    customers = {c["metadata"]["crm_id"]: c["id"] for c in emulator.customers()}
    held = items(emulator)
    for fee in fees():
        item = held[fee["fee_id"]]
        assert (item["customer"], item["amount"], item["currency"], item["invoice"]) == (
            customers[fee["customer_id"]], fee["amount"], "eur", None)  # pending

    emulator.reset(stats_only=True)
    assert sync(project, emulator).code == 0
    assert emulator.stats()["requests_total"] == 0  # nothing changed: nothing asked

    # The customer of overage-2 is invoiced: Stripe takes the pending item and finalizes.
    client = stripe.StripeClient("sk_test_dsa", base_addresses={"api": emulator.url})
    overage = held["overage-2"]
    invoice = client.v1.invoices.create(params={
        "customer": overage["customer"], "collection_method": "send_invoice",
        "days_until_due": 30, "pending_invoice_items_behavior": "include"})
    client.v1.invoices.finalize_invoice(invoice.id)

    project.write_seed("fees", fees({"setup-1": 5500, "overage-2": 9999}),
                       types={"amount": "integer"})
    project.build()
    emulator.reset(stats_only=True)
    changed = sync(project, emulator)
    assert changed.code == 1  # a locked row needs a human
    counts = model(changed)["counts"]
    assert (counts["updated"], counts["locked"], counts["unchanged"]) == (1, 1, 1), counts
    [locked] = model(changed)["locked"]
    assert locked["key"] == "overage-2" and locked["stripe_id"] == overage["id"]
    assert "amount changed in the model" in locked["reason"]
    assert locked["dashboard_url"] == (
        f"https://dashboard.stripe.com/test/customers/{overage['customer']}")
    held = items(emulator)
    assert held["setup-1"]["amount"] == 5500 and held["overage-2"]["amount"] == 1250
    updates = emulator.stats()["by_endpoint"].get("POST /v1/invoiceitems/{id}")
    assert updates == 2  # the update, and the one Stripe refused

    emulator.reset(stats_only=True)
    again = sync(project, emulator)
    assert again.code == 1 and model(again)["counts"]["locked"] == 1
    assert emulator.stats()["requests_total"] == 0  # still locked: reported, not asked


def test_a_removed_fee_deletes_its_pending_item_behind_the_guard(
    project: DbtProject, emulator: EmulatorHandle,
) -> None:
    assert sync(project, emulator).code == 0
    project.write_seed("fees", fees()[:2], types={"amount": "integer"})
    project.build()
    refused = project.sync(*FAST, stripe_url=emulator.url)
    assert refused.code == 2 and "--max-removed" in refused.stderr  # 1 of 3: over the guard
    removed = sync(project, emulator, "--max-removed", "1")
    assert removed.code == 0 and model(removed)["counts"]["deleted"] == 1
    assert set(items(emulator)) == {"setup-1", "overage-2"}


def test_a_model_that_creates_must_map_a_price_or_an_amount_with_its_currency(
    project: DbtProject, emulator: EmulatorHandle,
) -> None:
    project.write_model("stripe_fees", "select * from {{ ref('fees') }}", sync={
        **ITEMS_SYNC, "fields": {"customer": ITEMS_SYNC["fields"]["customer"],
                                 "amount": "amount"}})
    project.build()
    result = project.sync(*FAST, stripe_url=emulator.url)
    assert result.code == 2
    assert ("stripe_activation.fields: maps amount without currency: Stripe needs currency "
            "with it to create the invoice_item. Map currency.") in " ".join(result.stderr.split())
    assert emulator.stats()["requests_total"] == 0
