"""Invoices, their lines and invoice items, driven through the official stripe SDK: what a
customer is billed (totals from lines), the draft -> open -> paid / void / uncollectible
lifecycle and its refusals, and the server's machinery (idempotency, faults, Connect) on the
new routes.

Reuses test_emulator's module emulator, per-test reset and client.
"""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from stripe_emulator import EmulatorHandle
from stripe_emulator.resources import ENDPOINTS
from tests.emulator import test_emulator as shared
from tests.emulator.test_billing import error_of

emulator, fresh, client = shared.emulator, shared.fresh, shared.client

CUSTOMER = "cus_invoiceTest001"
OTHER_CUSTOMER = "cus_invoiceTest002"
# Top-level fields of Stripe's invoice in the pinned SDK (stripe 16.x `Invoice`), less the ones
# it only sends on request or in some states (payments, confirmation_secret, status_details,
# threshold_reason, deleted).
INVOICE_FIELDS = {
    "id", "object", "account_country", "account_name", "account_tax_ids", "amount_due",
    "amount_overpaid", "amount_paid", "amount_paid_off_stripe", "amount_remaining",
    "amount_shipping", "application", "attempt_count", "attempted", "auto_advance",
    "automatic_tax", "automatically_finalizes_at", "billing_reason", "collection_method",
    "created", "currency", "custom_fields", "customer", "customer_account", "customer_address",
    "customer_email", "customer_name", "customer_phone", "customer_shipping",
    "customer_tax_exempt", "customer_tax_ids", "default_payment_method", "default_source",
    "default_tax_rates", "description", "discounts", "due_date", "effective_at",
    "ending_balance", "footer", "from_invoice", "hosted_invoice_url", "invoice_pdf", "issuer",
    "last_finalization_error", "latest_revision", "lines", "livemode", "metadata",
    "next_payment_attempt", "number", "on_behalf_of", "parent", "payment_settings",
    "period_end", "period_start", "post_payment_credit_notes_amount",
    "pre_payment_credit_notes_amount", "receipt_number", "rendering", "shipping_cost",
    "shipping_details", "starting_balance", "statement_descriptor", "status",
    "status_transitions", "subtotal", "subtotal_excluding_tax", "test_clock", "total",
    "total_discount_amounts", "total_excluding_tax", "total_pretax_credit_amounts",
    "total_taxes", "webhooks_delivered_at",
}  # fmt: skip
# Stripe's samples (stripe/openapi, openapi/fixtures3.json).
LINE_FIELDS = {
    "id", "object", "amount", "currency", "description", "discount_amounts", "discountable",
    "discounts", "invoice", "livemode", "metadata", "parent", "period", "pretax_credit_amounts",
    "pricing", "quantity", "quantity_decimal", "subscription", "subtotal", "taxes",
}  # fmt: skip
ITEM_FIELDS = {
    "id", "object", "amount", "currency", "customer", "customer_account", "date",
    "description", "discountable", "discounts", "invoice", "livemode", "metadata",
    "net_amount", "parent", "period", "pricing", "proration", "quantity", "quantity_decimal",
    "tax_rates", "test_clock",
}  # fmt: skip


@pytest.fixture
def catalog(emulator: EmulatorHandle) -> dict[str, str]:
    """Two customers, a $2.50 one-time price, an archived one and a recurring one."""
    emulator.seed([{"id": CUSTOMER, "email": "ada@example.com"}, {"id": OTHER_CUSTOMER}])
    ids = emulator.seed_many(
        products=[{"id": "prod_seats", "name": "Seats"}],
        prices=[
            {"product": "prod_seats", "currency": "usd", "unit_amount": 250},
            {"product": "prod_seats", "currency": "usd", "unit_amount": 999, "active": False},
            {"product": "prod_seats", "currency": "usd", "unit_amount": 100,
             "recurring": {"interval": "month"}},
        ],
    )["prices"]  # fmt: skip
    return {"price": ids[0], "archived": ids[1], "monthly": ids[2]}


def draft(client: stripe.StripeClient, customer: str = CUSTOMER, **params: Any) -> Any:
    return client.v1.invoices.create(params={"customer": customer, **params})


def add(client: stripe.StripeClient, invoice_id: str, *lines: dict[str, Any]) -> Any:
    return client.v1.invoices.add_lines(invoice_id, params={"lines": list(lines)})


def refused(call: Any) -> dict[str, Any]:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        call()
    assert raised.value.http_status == 400
    return error_of(raised)


def billed(invoice: Any) -> tuple[int, int, int, int, int]:
    return (invoice.subtotal, invoice.total, invoice.amount_due, invoice.amount_paid,
            invoice.amount_remaining)  # fmt: skip


# --- drafts and pending items ---------------------------------------------------------------


def test_a_draft_leaves_pending_items_unless_it_includes_them(
    client: stripe.StripeClient, catalog: dict[str, str]
) -> None:
    pending = client.v1.invoice_items.create(
        params={"customer": CUSTOMER, "pricing": {"price": catalog["price"]}, "quantity": 2}
    )
    assert set(pending.to_dict()) == ITEM_FIELDS and pending.invoice is None
    assert pending.amount == 500 and pending.currency == "usd"
    # Stripe's default since 2022-08-01 is `exclude`, and so is an explicit one.
    for params in ({}, {"pending_invoice_items_behavior": "exclude"}):
        empty = draft(client, **params)
        assert set(empty.to_dict()) == INVOICE_FIELDS
        assert empty.status == "draft" and empty.number is None and empty.lines.data == []
        assert billed(empty) == (0, 0, 0, 0, 0)
    still = client.v1.invoice_items.list(params={"customer": CUSTOMER, "pending": True})
    assert [i.id for i in still.data] == [pending.id]

    swept = draft(client, pending_invoice_items_behavior="include")
    [line] = swept.lines.data
    assert set(line.to_dict()) == LINE_FIELDS and line.id.startswith("il_")
    assert line.parent.invoice_item_details.invoice_item == pending.id
    assert line.pricing.price_details.price == catalog["price"]
    assert line.pricing.price_details.product == "prod_seats"
    assert billed(swept) == (500, 500, 500, 0, 500)
    assert client.v1.invoice_items.retrieve(pending.id).invoice == swept.id
    assert client.v1.invoice_items.list(params={"pending": True}).data == []
    # Another customer's pending item is never swept.
    client.v1.invoice_items.create(params={"customer": OTHER_CUSTOMER, "amount": 7,
                                           "currency": "usd"})  # fmt: skip
    assert draft(client, pending_invoice_items_behavior="include").lines.data == []


def test_create_checks_customer_and_payment_terms(
    client: stripe.StripeClient, catalog: dict[str, str]
) -> None:
    assert refused(lambda: client.v1.invoices.create(params={}))["code"] == "parameter_missing"
    missing = refused(lambda: draft(client, "cus_nobody"))
    assert missing["code"] == "resource_missing" and missing["param"] == "customer"
    assert refused(lambda: draft(client, collection_method="send_invoice"))["param"] == (
        "days_until_due"
    )
    assert refused(lambda: draft(client, days_until_due=30))["param"] == "days_until_due"
    invoice = draft(
        client,
        collection_method="send_invoice",
        days_until_due=30,
        description="May",
        footer="Thanks",
        statement_descriptor="SEATS",
        custom_fields=[{"name": "PO", "value": "42"}],
        metadata={"row": "7"},
    )
    assert invoice.due_date is None and invoice.custom_fields[0].value == "42"
    assert (invoice.description, invoice.footer, invoice.metadata["row"]) == ("May", "Thanks", "7")
    add(client, invoice.id, {"amount": 100})
    opened = client.v1.invoices.finalize_invoice(invoice.id)
    assert opened.due_date == opened.status_transitions.finalized_at + 30 * 86400


# --- lines and totals -----------------------------------------------------------------------


def test_lines_are_added_updated_and_removed_and_totals_follow(
    client: stripe.StripeClient, catalog: dict[str, str]
) -> None:
    invoice = draft(client)
    invoice = add(
        client,
        invoice.id,
        {"pricing": {"price": catalog["price"]}, "quantity": 3, "metadata": {"seat": "a"}},
        {"amount": 1200, "description": "Setup fee"},
        {"price": catalog["price"]},  # the form before `pricing[price]`
        {"price_data": {"currency": "usd", "product": "prod_seats", "unit_amount": 15},
         "quantity": 4, "period": {"start": 1700000000, "end": 1700086400}},
    )  # fmt: skip
    seats, fee, single, inline = invoice.lines.data
    assert [line.amount for line in invoice.lines.data] == [750, 1200, 250, 60]
    assert billed(invoice) == (2260, 2260, 2260, 0, 2260)
    assert seats.metadata["seat"] == "a" and fee.description == "Setup fee"
    assert inline.period.start == 1700000000 and inline.pricing.price_details.price.startswith(
        "price_"
    )
    invoice = client.v1.invoices.update_lines(
        invoice.id,
        params={"lines": [{"id": seats.id, "quantity": 10}, {"id": fee.id, "amount": 1000}],
                "invoice_metadata": {"batch": "1"}},
    )  # fmt: skip
    assert [line.amount for line in invoice.lines.data] == [2500, 1000, 250, 60]
    assert invoice.total == 3810 and invoice.metadata["batch"] == "1"
    invoice = client.v1.invoices.remove_lines(
        invoice.id,
        params={"lines": [{"id": single.id, "behavior": "delete"},
                          {"id": inline.id, "behavior": "unassign"}]},
    )  # fmt: skip
    assert [line.id for line in invoice.lines.data] == [seats.id, fee.id]
    assert invoice.amount_due == 3500
    unassigned = inline.parent.invoice_item_details.invoice_item
    assert client.v1.invoice_items.retrieve(unassigned).invoice is None
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoice_items.retrieve(single.parent.invoice_item_details.invoice_item)
    # A line's pending item can go back on with `invoice_item`.
    invoice = add(client, invoice.id, {"invoice_item": unassigned})
    assert invoice.total == 3560 and len(invoice.lines.data) == 3

    first = client.v1.invoices.line_items.list(invoice.id, params={"limit": 2})
    assert [line.id for line in first.data] == [seats.id, fee.id] and first.has_more
    rest = client.v1.invoices.line_items.list(invoice.id, params={"starting_after": fee.id})
    assert len(rest.data) == 1 and not rest.has_more
    back = client.v1.invoices.line_items.list(invoice.id, params={"ending_before": rest.data[0].id,
                                                             "limit": 1})  # fmt: skip
    assert [line.id for line in back.data] == [fee.id] and back.has_more


def test_a_line_needs_a_known_active_one_time_price(
    client: stripe.StripeClient, catalog: dict[str, str]
) -> None:
    invoice = draft(client)
    unknown = refused(lambda: add(client, invoice.id, {"pricing": {"price": "price_nope"}}))
    assert unknown["code"] == "resource_missing"
    assert unknown["param"] == "lines[0][pricing][price]"
    archived = refused(lambda: add(client, invoice.id, {"pricing": {"price": catalog["archived"]}}))
    assert archived["message"].startswith("The price specified is inactive.")
    monthly = refused(lambda: add(client, invoice.id, {"price": catalog["monthly"]}))
    assert "type=one_time" in monthly["message"] and monthly["param"] == "lines[0][price]"
    neither = refused(lambda: add(client, invoice.id, {"quantity": 2}))
    assert neither["param"] == "lines[0][amount]"
    # Nothing was written by the refused requests, even with a good line beside a bad one.
    refused(lambda: add(client, invoice.id, {"amount": 5}, {"price": "price_nope"}))
    assert client.v1.invoices.retrieve(invoice.id).lines.data == []


def test_an_invoice_holds_at_most_250_lines(
    client: stripe.StripeClient, catalog: dict[str, str]
) -> None:
    invoice = draft(client)
    full = add(client, invoice.id, *({"amount": 1} for _ in range(250)))
    assert full.total == 250 and full.lines.has_more and len(full.lines.data) == 10
    assert "at most 250" in refused(lambda: add(client, invoice.id, {"amount": 1}))["message"]
    item = refused(lambda: client.v1.invoice_items.create(
        params={"customer": CUSTOMER, "invoice": invoice.id, "amount": 1}
    ))  # fmt: skip
    assert "at most 250" in item["message"]


# --- the lifecycle --------------------------------------------------------------------------


def test_finalize_numbers_an_invoice_and_freezes_its_lines(
    client: stripe.StripeClient, catalog: dict[str, str]
) -> None:
    invoice = add(client, draft(client).id, {"pricing": {"price": catalog["price"]}})
    line = invoice.lines.data[0]
    opened = client.v1.invoices.finalize_invoice(invoice.id, params={"auto_advance": False})
    assert opened.status == "open" and opened.number and opened.auto_advance is False
    assert opened.status_transitions.finalized_at is not None and opened.amount_due == 250
    again = refused(lambda: client.v1.invoices.finalize_invoice(invoice.id))
    assert again["message"] == (
        "This invoice is already finalized, you can't re-finalize a non-draft invoice."
    )
    for call in (
        lambda: add(client, invoice.id, {"amount": 5}),
        lambda: client.v1.invoices.update_lines(
            invoice.id, params={"lines": [{"id": line.id, "quantity": 9}]}
        ),
        lambda: client.v1.invoices.remove_lines(
            invoice.id, params={"lines": [{"id": line.id, "behavior": "delete"}]}
        ),
        lambda: client.v1.invoices.update(invoice.id, params={"collection_method": "send_invoice",
                                                              "days_until_due": 3}),
    ):  # fmt: skip
        assert call_refused_as_not_editable(call)
    kept = client.v1.invoices.update(
        invoice.id, params={"metadata": {"synced": "yes"}, "description": "Seats, May"}
    )
    assert kept.metadata["synced"] == "yes" and kept.description == "Seats, May"
    assert kept.total == 250 and kept.lines.data[0].quantity == 1
    second = client.v1.invoices.finalize_invoice(
        add(client, draft(client).id, {"amount": 1}).id
    )  # fmt: skip
    first_number, second_number = opened.number.rsplit("-", 1), second.number.rsplit("-", 1)
    assert first_number[0] == second_number[0]
    assert int(second_number[1]) == int(first_number[1]) + 1


def call_refused_as_not_editable(call: Any) -> bool:
    return refused(call)["code"] == "invoice_not_editable"


def test_a_zero_invoice_is_paid_when_finalized(
    client: stripe.StripeClient, catalog: dict[str, str]
) -> None:
    invoice = draft(client, customer=OTHER_CUSTOMER)
    assert client.v1.invoices.finalize_invoice(invoice.id).status == "paid"
    assert billed(client.v1.invoices.retrieve(invoice.id)) == (0, 0, 0, 0, 0)


def test_send_counts_each_email_and_only_for_send_invoice(
    client: stripe.StripeClient, emulator: EmulatorHandle, catalog: dict[str, str]
) -> None:
    automatic = add(client, draft(client).id, {"amount": 100})
    client.v1.invoices.finalize_invoice(automatic.id)
    wrong = refused(lambda: client.v1.invoices.send_invoice(automatic.id))
    assert wrong["message"] == (
        "You can only manually send an invoice if its collection method is 'send_invoice'."
    )
    emailed = add(client, draft(client, collection_method="send_invoice", days_until_due=14).id,
                  {"amount": 100})  # fmt: skip
    assert "draft" in refused(lambda: client.v1.invoices.send_invoice(emailed.id))["message"]
    client.v1.invoices.finalize_invoice(emailed.id)
    assert emulator.invoice_emails(emailed.id) == 0
    assert client.v1.invoices.send_invoice(emailed.id).status == "open"
    assert emulator.invoice_emails(emailed.id) == 1
    client.v1.invoices.send_invoice(emailed.id)  # sending twice emails twice
    assert emulator.invoice_emails(emailed.id) == 2 and emulator.invoice_emails(automatic.id) == 0
    dumped = {invoice["id"]: invoice for invoice in emulator.invoices()}
    assert dumped[emailed.id]["emails_sent"] == 2 and dumped[emailed.id]["total"] == 100
    assert emulator.stats()["invoice_emails_sent"] == 2


def test_void_pay_and_uncollectible_move_only_from_their_states(
    client: stripe.StripeClient, catalog: dict[str, str]
) -> None:
    def opened() -> str:
        invoice = add(client, draft(client).id, {"pricing": {"price": catalog["price"]},
                                                 "quantity": 4})  # fmt: skip
        return str(client.v1.invoices.finalize_invoice(invoice.id).id)

    still_draft = draft(client).id
    for call in (client.v1.invoices.void_invoice, client.v1.invoices.mark_uncollectible):
        assert "draft" in refused(lambda call=call: call(still_draft))["message"]

    voided = opened()
    assert client.v1.invoices.void_invoice(voided).status == "void"
    for call in (client.v1.invoices.void_invoice, client.v1.invoices.mark_uncollectible,
                 client.v1.invoices.finalize_invoice):  # fmt: skip
        assert refused(lambda call=call: call(voided))["code"] == "invoice_not_editable"
    assert "void" in refused(
        lambda: client.v1.invoices.pay(voided, params={"paid_out_of_band": True})
    )["message"]  # fmt: skip

    paid = opened()
    no_method = refused(lambda: client.v1.invoices.pay(paid))
    assert no_method["message"].startswith("This customer has no attached payment source")
    settled = client.v1.invoices.pay(paid, params={"paid_out_of_band": True})
    assert settled.status == "paid" and billed(settled) == (1000, 1000, 1000, 1000, 0)
    assert settled.amount_paid_off_stripe == 1000 and settled.status_transitions.paid_at
    assert (
        refused(lambda: client.v1.invoices.pay(paid, params={"paid_out_of_band": True}))["message"]
        == "Invoice is already paid"
    )
    assert refused(lambda: client.v1.invoices.void_invoice(paid))["code"] == "invoice_not_editable"

    written_off = opened()
    marked = client.v1.invoices.mark_uncollectible(written_off)
    assert marked.status == "uncollectible" and marked.status_transitions.marked_uncollectible_at
    refused(lambda: client.v1.invoices.mark_uncollectible(written_off))
    late = client.v1.invoices.pay(written_off, params={"paid_out_of_band": True})
    assert late.status == "paid"  # Stripe: an uncollectible invoice can still be paid (or voided)


def test_only_drafts_are_deleted_and_their_items_with_them(
    client: stripe.StripeClient, catalog: dict[str, str]
) -> None:
    invoice = add(client, draft(client).id, {"amount": 300})
    item_id = invoice.lines.data[0].parent.invoice_item_details.invoice_item
    deleted = client.v1.invoices.delete(invoice.id)
    assert deleted.deleted is True and deleted.id == invoice.id
    for call in (lambda: client.v1.invoices.retrieve(invoice.id),
                 lambda: client.v1.invoice_items.retrieve(item_id)):  # fmt: skip
        with pytest.raises(stripe.InvalidRequestError) as gone:
            call()
        assert gone.value.http_status == 404
    final = client.v1.invoices.finalize_invoice(add(client, draft(client).id, {"amount": 1}).id)
    assert "delete" in refused(lambda: client.v1.invoices.delete(final.id))["message"]
    assert client.v1.invoices.retrieve(final.id).status == "open"


def test_list_filters_by_customer_and_status_and_pages(
    client: stripe.StripeClient, catalog: dict[str, str]
) -> None:
    mine = [draft(client).id for _ in range(3)]
    theirs = draft(client, customer=OTHER_CUSTOMER).id
    client.v1.invoices.finalize_invoice(add(client, mine[0], {"amount": 10}).id)
    listed = client.v1.invoices.list(params={"customer": CUSTOMER})
    assert [i.id for i in listed.data] == mine[::-1]
    drafts = client.v1.invoices.list(params={"customer": CUSTOMER, "status": "draft"})
    assert [i.id for i in drafts.data] == [mine[2], mine[1]]
    assert [i.id for i in client.v1.invoices.list(params={"status": "open"}).data] == [mine[0]]
    page = client.v1.invoices.list(params={"limit": 2})
    assert [i.id for i in page.data] == [theirs, mine[2]] and page.has_more
    after = client.v1.invoices.list(params={"limit": 2, "starting_after": mine[2]})
    assert [i.id for i in after.data] == [mine[1], mine[0]] and not after.has_more
    assert refused(lambda: client.v1.invoices.list(params={"status": "lost"}))["param"] == "status"
    walked = [i.id for i in client.v1.invoices.list(params={"limit": 1}).auto_paging_iter()]
    assert walked == [theirs, *mine[::-1]]


# --- invoice items --------------------------------------------------------------------------


def test_invoice_items_change_while_pending_or_on_a_draft_only(
    client: stripe.StripeClient, catalog: dict[str, str]
) -> None:
    pending = client.v1.invoice_items.create(
        params={"customer": CUSTOMER, "amount": 400, "currency": "usd", "description": "Extra"}
    )
    assert client.v1.invoice_items.update(pending.id, params={"amount": 450}).amount == 450
    invoice = draft(client)
    attached = client.v1.invoice_items.create(
        params={"customer": CUSTOMER, "invoice": invoice.id,
                "pricing": {"price": catalog["price"]}, "quantity": 2}
    )  # fmt: skip
    assert attached.invoice == invoice.id
    changed = client.v1.invoice_items.update(attached.id, params={"quantity": 5})
    assert changed.amount == 1250
    assert client.v1.invoices.retrieve(invoice.id).total == 1250
    on_draft = client.v1.invoice_items.list(params={"invoice": invoice.id})
    assert [i.id for i in on_draft.data] == [attached.id]
    assert [i.id for i in client.v1.invoice_items.list(params={"pending": True}).data] == [
        pending.id
    ]

    client.v1.invoices.finalize_invoice(invoice.id)
    for call in (lambda: client.v1.invoice_items.update(attached.id, params={"quantity": 1}),
                 lambda: client.v1.invoice_items.delete(attached.id)):  # fmt: skip
        assert call_refused_as_not_editable(call)
    open_invoice = client.v1.invoices.retrieve(invoice.id)
    assert open_invoice.total == 1250 and len(open_invoice.lines.data) == 1
    refused_item = refused(lambda: client.v1.invoice_items.create(
        params={"customer": CUSTOMER, "invoice": invoice.id, "amount": 1}
    ))  # fmt: skip
    assert refused_item["code"] == "invoice_not_editable"
    assert client.v1.invoice_items.delete(pending.id).deleted is True
    assert "currency" in refused(lambda: client.v1.invoice_items.create(
        params={"customer": CUSTOMER, "amount": 1}
    ))["param"]  # fmt: skip


# --- the server's machinery on the new routes -----------------------------------------------


def test_an_idempotent_create_is_replayed_not_repeated(
    client: stripe.StripeClient, emulator: EmulatorHandle, catalog: dict[str, str]
) -> None:
    options = {"idempotency_key": "invoice-row-1"}
    params = {"customer": CUSTOMER, "metadata": {"row": "1"}}
    first = client.v1.invoices.create(params=params, options=options)
    again = client.v1.invoices.create(params=params, options=options)
    assert again.id == first.id and again.last_response.headers["Idempotent-Replayed"] == "true"
    assert [i["id"] for i in emulator.invoices()] == [first.id]
    stats = emulator.stats()
    assert stats["invoices"] == 1 and stats["idempotent_replays"] == 1
    assert stats["writes_by_endpoint"]["POST /v1/invoices"] == 1
    lines = {"lines": [{"amount": 5}]}
    added = client.v1.invoices.add_lines(first.id, params=lines, options={"idempotency_key": "l1"})
    replay = client.v1.invoices.add_lines(first.id, params=lines, options={"idempotency_key": "l1"})
    assert added.total == replay.total == 5


def test_faults_and_rate_limits_reach_the_invoice_routes(
    client: stripe.StripeClient, emulator: EmulatorHandle, catalog: dict[str, str]
) -> None:
    routes = {"POST /v1/invoices/{id}/add_lines", "POST /v1/invoices/{id}/finalize",
              "GET /v1/invoices/{id}/lines", "DELETE /v1/invoiceitems/{id}"}  # fmt: skip
    assert routes <= set(ENDPOINTS)
    invoice = draft(client)
    emulator.config(random_429_rate=1.0)
    with pytest.raises(stripe.RateLimitError) as limited:
        add(client, invoice.id, {"amount": 5})
    assert limited.value.error.code == "rate_limit"
    emulator.config(random_429_rate=0.0)
    assert client.v1.invoices.retrieve(invoice.id).lines.data == []  # refused before executing
    emulator.config(endpoint_rate_limits={"GET /v1/invoices": 2})
    limited_list = shared.first_rate_limit(lambda: client.v1.invoices.list())
    assert limited_list.headers["Stripe-Rate-Limited-Reason"] == "endpoint-rate"
    emulator.config(endpoint_rate_limits={}, lock_timeout_rate=1.0)
    with pytest.raises(stripe.RateLimitError) as locked:
        client.v1.invoices.finalize_invoice(invoice.id)
    assert locked.value.error.code == "lock_timeout"
    stats = emulator.stats()
    assert stats["faults"]["random_429"] == 1 and stats["faults"]["random_lock_timeout"] == 1
    assert stats["by_endpoint"]["POST /v1/invoices/{id}/add_lines"] == 1


def test_an_invoice_of_one_connected_account_is_invisible_to_another(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    first, second = emulator.seed_accounts(2)
    for account in (first, second):
        emulator.seed([{"id": CUSTOMER}], account=account)
    invoice = client.v1.invoices.create(
        params={"customer": CUSTOMER}, options={"stripe_account": first}
    )
    add_options = {"stripe_account": first}
    client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 9}]},
                                 options=add_options)  # fmt: skip
    with pytest.raises(stripe.InvalidRequestError) as elsewhere:
        client.v1.invoices.retrieve(invoice.id, options={"stripe_account": second})
    assert elsewhere.value.http_status == 404
    assert client.v1.invoices.list(options={"stripe_account": second}).data == []
    assert client.v1.invoices.list().data == []  # nor the platform's
    assert [i["id"] for i in emulator.invoices(account=first)] == [invoice.id]
    assert emulator.invoices(account=second) == [] and emulator.invoices() == []
    assert len(emulator.invoice_items(account=first)) == 1
