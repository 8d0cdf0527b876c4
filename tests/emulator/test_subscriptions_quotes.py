"""Subscriptions (create, one update that changes several items, cancel, list) and quotes
(draft -> open -> accepted or canceled, creating a subscription or an invoice), driven through
the official stripe SDK, and the server's machinery (idempotency, Connect) on their routes.

Reuses test_emulator's module emulator, per-test reset and client.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import stripe

from stripe_emulator import EmulatorHandle
from stripe_emulator.resources import ENDPOINTS
from tests.emulator import test_emulator as shared
from tests.emulator.test_billing import error_of

emulator, fresh, client = shared.emulator, shared.fresh, shared.client

CUSTOMER = "cus_subsQuotes0001"
OTHER_CUSTOMER = "cus_subsQuotes0002"
DAY = 86400
MONTHLY = {"interval": "month"}
# Top-level fields of Stripe's subscription in the pinned SDK (stripe 16.x `Subscription`),
# less the ones it only sends in some states or API versions.
SUBSCRIPTION_FIELDS = {
    "id", "object", "application", "application_fee_percent", "automatic_tax",
    "billing_cycle_anchor", "billing_cycle_anchor_config", "billing_mode", "billing_schedules",
    "billing_thresholds", "cancel_at", "cancel_at_period_end", "canceled_at",
    "cancellation_details", "collection_method", "created", "currency", "customer",
    "customer_account", "days_until_due", "default_payment_method", "default_source",
    "default_tax_rates", "description", "discounts", "ended_at", "invoice_settings", "items",
    "latest_invoice", "livemode", "managed_payments", "metadata",
    "next_pending_invoice_item_invoice", "on_behalf_of", "pause_collection",
    "payment_settings", "pending_invoice_item_interval", "pending_setup_intent",
    "pending_update", "schedule", "start_date", "status", "test_clock", "transfer_data",
    "trial_end", "trial_settings", "trial_start",
}  # fmt: skip
# The stripe SDK's `Quote` (16.x), less `line_items` (only with expand[]=line_items).
QUOTE_FIELDS = {
    "id", "object", "amount_subtotal", "amount_total", "application", "application_fee_amount",
    "application_fee_percent", "automatic_tax", "collection_method", "computed", "created",
    "currency", "customer", "customer_account", "default_tax_rates", "description",
    "discounts", "expires_at", "footer", "from_quote", "header", "invoice", "invoice_settings",
    "livemode", "metadata", "number", "on_behalf_of", "status", "status_transitions",
    "subscription", "subscription_data", "subscription_schedule", "test_clock",
    "total_details", "transfer_data",
}  # fmt: skip
LINE_ITEM_FIELDS = {
    "id", "object", "amount_discount", "amount_subtotal", "amount_tax", "amount_total",
    "currency", "description", "price", "quantity",
}  # fmt: skip


@pytest.fixture
def catalog(emulator: EmulatorHandle) -> None:
    """Two customers; monthly prices seat $15, api $5, support $10, extra $2, free $0; a
    yearly, an archived monthly and a one-time setup price (ids chosen)."""
    emulator.seed([{"id": CUSTOMER, "email": "ada@example.com"}, {"id": OTHER_CUSTOMER}])
    monthly = [("seat", 1500), ("api", 500), ("support", 1000), ("extra", 200), ("free", 0)]
    emulator.seed_many(
        products=[{"id": "prod_plan", "name": "Plan"}],
        prices=[
            *({"id": f"price_{name}", "product": "prod_plan", "currency": "usd",
               "unit_amount": amount, "recurring": MONTHLY} for name, amount in monthly),
            {"id": "price_yearly", "product": "prod_plan", "currency": "usd",
             "unit_amount": 9000, "recurring": {"interval": "year"}},
            {"id": "price_old", "product": "prod_plan", "currency": "usd", "unit_amount": 100,
             "recurring": MONTHLY, "active": False},
            {"id": "price_setup", "product": "prod_plan", "currency": "usd",
             "unit_amount": 5000},
        ],
    )  # fmt: skip


def subscribe(client: stripe.StripeClient, *items: dict[str, Any], **params: Any) -> Any:
    """A send_invoice subscription unless told otherwise (it needs no payment method)."""
    terms = {"collection_method": "send_invoice", "days_until_due": 30}
    return client.v1.subscriptions.create(
        params={"customer": CUSTOMER, "items": list(items), **terms, **params}
    )


def refused(call: Any) -> dict[str, Any]:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        call()
    assert raised.value.http_status == 400
    return error_of(raised)


def quantities(subscription: Any) -> dict[str, int | None]:
    return {i.price.id: i.to_dict().get("quantity") for i in subscription["items"].data}


# --- subscriptions ---------------------------------------------------------------------------


def test_one_update_changes_a_quantity_adds_a_price_and_deletes_an_item(
    client: stripe.StripeClient, emulator: EmulatorHandle, catalog: None
) -> None:
    created = subscribe(
        client,
        {"price": "price_seat", "quantity": 3, "metadata": {"team": "core"}},
        {"price": "price_api"},
        {"price": "price_support", "quantity": 2},
        metadata={"row": "1"},
    )
    assert set(created.to_dict()) == SUBSCRIPTION_FIELDS and created.id.startswith("sub_")
    assert created.status == "active" and created.collection_method == "send_invoice"
    assert created.days_until_due == 30 and created.metadata.to_dict() == {"row": "1"}
    assert quantities(created) == {"price_seat": 3, "price_api": 1, "price_support": 2}
    by_price = {i.price.id: i for i in created["items"].data}
    seat, support = by_price["price_seat"], by_price["price_support"]
    assert seat.current_period_end - seat.current_period_start >= 28 * DAY
    emulator.reset(stats_only=True)

    updated = client.v1.subscriptions.update(
        created.id,
        params={
            "items": [
                {"id": seat.id, "quantity": 5},
                {"price": "price_extra", "quantity": 4},
                {"id": support.id, "deleted": True},
            ],
            "proration_behavior": "none",
        },
    )
    assert quantities(updated) == {"price_seat": 5, "price_api": 1, "price_extra": 4}
    kept = {i.price.id: i for i in updated["items"].data}
    assert kept["price_seat"].id == seat.id and kept["price_seat"].metadata.to_dict() == {
        "team": "core"
    }
    stats = emulator.stats()
    assert stats["by_endpoint"] == {"POST /v1/subscriptions/{id}": 1}  # exactly one request
    assert stats["subscription_items"] == 3
    [update] = emulator.subscription_updates(created.id)
    assert update["proration_behavior"] == "none"
    assert update["payment_behavior"] == "allow_incomplete"
    assert update["fields"] == ["items", "proration_behavior"]
    assert update["updated"] == [seat.id] and update["deleted"] == [support.id]
    assert update["added"] == [kept["price_extra"].id]
    listed = client.v1.subscription_items.list(params={"subscription": created.id})
    assert {i.price.id for i in listed.data} == {"price_seat", "price_api", "price_extra"}
    with pytest.raises(stripe.InvalidRequestError) as gone:
        client.v1.subscription_items.retrieve(support.id)
    assert gone.value.http_status == 404
    # the default proration_behavior is Stripe's: create_prorations
    client.v1.subscriptions.update(created.id, params={"metadata": {"row": "2"}})
    assert emulator.subscription_updates(created.id)[1]["proration_behavior"] == (
        "create_prorations"
    )


def test_21_items_duplicate_prices_and_unusable_prices_are_refused(
    client: stripe.StripeClient, emulator: EmulatorHandle, catalog: None
) -> None:
    emulator.seed_prices(
        [{"id": f"price_many{n:02d}", "product": "prod_plan", "currency": "usd",
          "unit_amount": 100, "recurring": MONTHLY} for n in range(21)]
    )  # fmt: skip
    many = [{"price": f"price_many{n:02d}"} for n in range(21)]
    assert refused(lambda: subscribe(client, *many))["param"] == "items"
    assert subscribe(client, *many[:20]).status == "active"  # 20 is the limit
    duplicate = refused(lambda: subscribe(client, {"price": "price_seat"}, {"price": "price_seat"}))
    assert duplicate["message"] == (
        "Cannot add multiple subscription items with the same plan: price_seat"
    )
    inactive = refused(lambda: subscribe(client, {"price": "price_old"}))
    assert "inactive" in inactive["message"] and inactive["param"] == "items[0][price]"
    one_time = refused(lambda: subscribe(client, {"price": "price_setup"}))
    assert "type=recurring" in one_time["message"]
    mixed = refused(lambda: subscribe(client, {"price": "price_seat"}, {"price": "price_yearly"}))
    assert "same currency and billing interval" in mixed["message"]
    missing = refused(lambda: subscribe(client, {"price": "price_nothing"}))
    assert missing["code"] == "resource_missing"
    assert refused(lambda: client.v1.subscriptions.create(
        params={"customer": "cus_nothing", "items": [{"price": "price_seat"}]}
    ))["param"] == "customer"  # fmt: skip
    assert emulator.stats()["subscriptions"] == 1  # only the 20-item one
    # an update may not add a price the subscription already has, nor go past 20 items
    one = subscribe(client, {"price": "price_seat"})
    again = refused(lambda: client.v1.subscriptions.update(
        one.id, params={"items": [{"price": "price_seat"}]}
    ))  # fmt: skip
    assert again["message"].startswith("Cannot add multiple subscription items")
    full = [{"price": f"price_many{n:02d}"} for n in range(20)]
    assert refused(lambda: client.v1.subscriptions.update(one.id, params={"items": full}))
    assert quantities(client.v1.subscriptions.retrieve(one.id)) == {"price_seat": 1}
    # deleting the only item leaves none: refused
    [item] = client.v1.subscriptions.retrieve(one.id)["items"].data
    assert refused(lambda: client.v1.subscriptions.update(
        one.id, params={"items": [{"id": item.id, "deleted": True}]}
    ))["param"] == "items"  # fmt: skip


def test_incomplete_trialing_and_active_first_statuses(
    client: stripe.StripeClient, catalog: None
) -> None:
    seat = {"customer": CUSTOMER, "items": [{"price": "price_seat", "quantity": 2}]}
    # No payment method can exist here: Stripe refuses to start a charge_automatically
    # subscription that owes money unless it may start incomplete.
    for behavior in ({}, {"payment_behavior": "allow_incomplete"},
                     {"payment_behavior": "error_if_incomplete"}):  # fmt: skip
        error = refused(lambda b=behavior: client.v1.subscriptions.create(params={**seat, **b}))
        assert error["message"].startswith(
            "This customer has no attached payment source or default payment method."
        )
    incomplete = client.v1.subscriptions.create(
        params={**seat, "payment_behavior": "default_incomplete"}
    )
    assert incomplete.status == "incomplete"
    trialing = client.v1.subscriptions.create(params={**seat, "trial_period_days": 14})
    assert trialing.status == "trialing"
    assert trialing.trial_end == trialing.trial_start + 14 * DAY
    assert trialing.billing_cycle_anchor == trialing.trial_end
    until = int(time.time()) + 3 * DAY
    assert client.v1.subscriptions.create(params={**seat, "trial_end": until}).trial_end == until
    free = client.v1.subscriptions.create(
        params={"customer": CUSTOMER, "items": [{"price": "price_free"}]}
    )
    assert free.status == "active"  # nothing to pay
    assert subscribe(client, {"price": "price_seat"}).status == "active"  # send_invoice
    no_terms = refused(lambda: client.v1.subscriptions.create(
        params={**seat, "collection_method": "send_invoice"}
    ))  # fmt: skip
    assert no_terms["code"] == "parameter_missing" and no_terms["param"] == "days_until_due"
    pending = refused(lambda: client.v1.subscriptions.create(
        params={**seat, "payment_behavior": "pending_if_incomplete"}
    ))  # fmt: skip
    assert pending["param"] == "payment_behavior"
    # ending the trial of a subscription that owes money, with nothing to charge: past_due
    ended = client.v1.subscriptions.update(trialing.id, params={"trial_end": "now"})
    assert ended.status == "past_due"


def test_billing_cycle_anchor_is_set_on_create_only(
    client: stripe.StripeClient, catalog: None
) -> None:
    anchor = int(time.time()) + 5 * DAY
    anchored = subscribe(client, {"price": "price_seat"}, billing_cycle_anchor=anchor)
    assert anchored.billing_cycle_anchor == anchor
    assert anchored["items"].data[0].current_period_end == anchor
    too_late = int(time.time()) + 60 * DAY
    assert refused(lambda: subscribe(client, {"price": "price_seat"},
                                     billing_cycle_anchor=too_late))["param"] == (
        "billing_cycle_anchor"
    )  # fmt: skip
    timestamp = refused(lambda: client.v1.subscriptions.update(
        anchored.id, params={"billing_cycle_anchor": anchor + DAY}  # type: ignore[typeddict-item]
    ))  # fmt: skip
    assert timestamp["param"] == "billing_cycle_anchor"
    unchanged = client.v1.subscriptions.update(
        anchored.id, params={"billing_cycle_anchor": {"type": "unchanged"}}
    )
    assert unchanged.billing_cycle_anchor == anchor


def test_cancel_now_and_at_period_end(
    client: stripe.StripeClient, emulator: EmulatorHandle, catalog: None
) -> None:
    later = subscribe(client, {"price": "price_seat"})
    period_end = later["items"].data[0].current_period_end
    scheduled = client.v1.subscriptions.update(later.id, params={"cancel_at_period_end": True})
    assert scheduled.status == "active" and scheduled.cancel_at_period_end is True
    assert scheduled.cancel_at == period_end and scheduled.canceled_at is not None
    assert scheduled.cancellation_details.reason == "cancellation_requested"
    kept = client.v1.subscriptions.update(later.id, params={"cancel_at_period_end": False})
    assert (kept.cancel_at, kept.canceled_at, kept.cancel_at_period_end) == (None, None, False)

    now = subscribe(client, {"price": "price_api"})
    canceled = client.v1.subscriptions.cancel(
        now.id, params={"cancellation_details": {"comment": "moved on"}}
    )
    assert canceled.status == "canceled" and canceled.ended_at == canceled.canceled_at
    assert canceled.cancellation_details.comment == "moved on"
    refusal = refused(lambda: client.v1.subscriptions.update(
        now.id, params={"items": [{"price": "price_extra"}]}
    ))  # fmt: skip
    assert refusal["message"] == (
        "A canceled subscription can only update its cancellation_details and metadata."
    )
    assert refused(lambda: client.v1.subscriptions.update(
        now.id, params={"cancel_at_period_end": False}
    ))  # fmt: skip  (no reactivation)
    noted = client.v1.subscriptions.update(now.id, params={"metadata": {"why": "price"}})
    assert noted.status == "canceled" and noted.metadata.to_dict() == {"why": "price"}
    assert refused(lambda: client.v1.subscriptions.cancel(now.id))

    # list: the default leaves canceled ones out; status=all includes them
    default = client.v1.subscriptions.list()
    assert [s.id for s in default.data] == [later.id]
    everything = client.v1.subscriptions.list(params={"status": "all"})
    assert [s.id for s in everything.data] == [now.id, later.id]  # newest first
    only = client.v1.subscriptions.list(params={"status": "canceled"})
    assert [s.id for s in only.data] == [now.id]
    assert emulator.stats()["subscriptions"] == 2  # canceled ones stay retrievable


def test_list_filters_and_pages(client: stripe.StripeClient, catalog: None) -> None:
    first = subscribe(client, {"price": "price_seat"})
    second = subscribe(client, {"price": "price_api"})
    other = subscribe(client, {"price": "price_seat"}, customer=OTHER_CUSTOMER)
    by_customer = client.v1.subscriptions.list(params={"customer": CUSTOMER})
    assert [s.id for s in by_customer.data] == [second.id, first.id]
    by_price = client.v1.subscriptions.list(params={"price": "price_seat"})
    assert [s.id for s in by_price.data] == [other.id, first.id]
    page = client.v1.subscriptions.list(params={"limit": 2})
    assert page.has_more is True and [s.id for s in page.data] == [other.id, second.id]
    rest = client.v1.subscriptions.list(params={"limit": 2, "starting_after": second.id})
    assert rest.has_more is False and [s.id for s in rest.data] == [first.id]
    created = client.v1.subscriptions.list(params={"created": {"gte": first.created}})
    assert len(created.data) == 3


# --- quotes ----------------------------------------------------------------------------------


def test_a_quote_goes_from_draft_to_an_accepted_subscription(
    client: stripe.StripeClient, emulator: EmulatorHandle, catalog: None
) -> None:
    quote = client.v1.quotes.create(
        params={
            "customer": CUSTOMER,
            "line_items": [
                {"price": "price_seat", "quantity": 2},
                {"price_data": {"currency": "usd", "product": "prod_plan", "unit_amount": 700,
                                "recurring": MONTHLY}},
            ],
            "header": "Seats for 2027",
            "metadata": {"deal": "42"},
            "subscription_data": {"description": "Team plan", "metadata": {"deal": "42"}},
        }
    )  # fmt: skip
    assert set(quote.to_dict()) == QUOTE_FIELDS and quote.id.startswith("qt_")
    assert quote.status == "draft" and quote.number is None and quote.currency == "usd"
    assert (quote.amount_subtotal, quote.amount_total) == (3700, 3700)
    assert quote.computed.recurring.amount_total == 3700
    assert quote.computed.recurring.interval == "month"
    assert quote.expires_at > quote.created
    lines = client.v1.quotes.line_items.list(quote.id)
    assert [set(line.to_dict()) for line in lines.data] == [LINE_ITEM_FIELDS] * 2
    assert [line.amount_total for line in lines.data] == [3000, 700]  # oldest first
    seat_line = lines.data[0]

    # a draft is edited in place; line_items replaces the list (a listed id keeps its line)
    edited = client.v1.quotes.update(
        quote.id,
        params={
            "line_items": [{"id": seat_line.id, "quantity": 3}, {"price": "price_support"}],
            "description": "Revised",
        },
    )
    assert edited.amount_total == 5500 and edited.description == "Revised"
    after = client.v1.quotes.line_items.list(quote.id)
    assert [(line.price.id, line.quantity) for line in after.data] == [
        ("price_seat", 3),
        ("price_support", 1),
    ]
    assert after.data[0].id == seat_line.id

    opened = client.v1.quotes.finalize_quote(quote.id)
    assert opened.status == "open" and opened.number.startswith("QT-")
    assert opened.status_transitions.finalized_at is not None
    for change in ({"description": "late"}, {"line_items": [{"price": "price_api"}]}):
        assert "draft" in refused(lambda c=change: client.v1.quotes.update(quote.id, params=c))[
            "message"
        ]
    assert refused(lambda: client.v1.quotes.finalize_quote(quote.id))

    options = {"idempotency_key": "accept-quote-1"}
    accepted = client.v1.quotes.accept(quote.id, options=options)
    replay = client.v1.quotes.accept(quote.id, options=options)
    assert replay.last_response.headers["Idempotent-Replayed"] == "true"
    assert accepted.status == replay.status == "accepted" and accepted.invoice is None
    assert accepted.subscription == replay.subscription
    assert accepted.status_transitions.accepted_at is not None
    assert refused(lambda: client.v1.quotes.accept(quote.id))
    assert emulator.quote_accepts(quote.id) == 1  # accepted exactly once

    subscription = client.v1.subscriptions.retrieve(accepted.subscription)
    assert subscription.customer == CUSTOMER and subscription.description == "Team plan"
    assert subscription.metadata.to_dict() == {"deal": "42"}
    assert quantities(subscription) == {"price_seat": 3, "price_support": 1}
    assert subscription.status == "incomplete"  # charge_automatically, no payment method
    [dumped] = emulator.quotes()
    assert dumped["accepts"] == 1 and len(dumped["line_items"]["data"]) == 2
    assert emulator.stats()["quote_accepts"] == 1


def test_a_one_time_quote_becomes_a_draft_invoice(
    client: stripe.StripeClient, emulator: EmulatorHandle, catalog: None
) -> None:
    quote = client.v1.quotes.create(
        params={
            "customer": CUSTOMER,
            "collection_method": "send_invoice",
            "invoice_settings": {"days_until_due": 15},
            "line_items": [{"price": "price_setup", "quantity": 2}],
            "footer": "Thanks",
        }
    )
    assert quote.computed.recurring is None and quote.amount_total == 10000
    client.v1.quotes.finalize_quote(quote.id)
    accepted = client.v1.quotes.accept(quote.id)
    assert accepted.subscription is None and accepted.invoice.startswith("in_")
    invoice = client.v1.invoices.retrieve(accepted.invoice)
    assert invoice.status == "draft" and invoice.total == 10000
    assert invoice.collection_method == "send_invoice" and invoice.footer == "Thanks"
    assert invoice.parent.quote_details.quote == quote.id
    [line] = invoice.lines.data
    assert line.quantity == 2 and line.pricing.price_details.price == "price_setup"
    assert client.v1.subscriptions.list(params={"status": "all"}).data == []


def test_quote_cancel_and_wrong_state_transitions(
    client: stripe.StripeClient, emulator: EmulatorHandle, catalog: None
) -> None:
    lines = [{"price": "price_seat"}]
    nobody = client.v1.quotes.create(params={"line_items": lines})
    missing = refused(lambda: client.v1.quotes.finalize_quote(nobody.id))
    assert missing["code"] == "parameter_missing" and missing["param"] == "customer"
    assert refused(lambda: client.v1.quotes.accept(nobody.id))  # a draft cannot be accepted
    canceled = client.v1.quotes.cancel(nobody.id)
    assert canceled.status == "canceled" and canceled.status_transitions.canceled_at is not None
    for call in (client.v1.quotes.finalize_quote, client.v1.quotes.accept,
                 client.v1.quotes.cancel):  # fmt: skip
        assert "canceled" in refused(lambda c=call: c(nobody.id))["message"]

    opened = client.v1.quotes.create(params={"customer": CUSTOMER, "line_items": lines})
    client.v1.quotes.finalize_quote(opened.id)
    assert client.v1.quotes.cancel(opened.id).status == "canceled"  # open quotes cancel too
    empty = client.v1.quotes.create(params={"customer": OTHER_CUSTOMER})
    assert refused(lambda: client.v1.quotes.finalize_quote(empty.id))
    assert refused(lambda: client.v1.quotes.create(params={"customer": "cus_nothing"}))[
        "code"
    ] == "resource_missing"  # fmt: skip
    assert refused(lambda: client.v1.quotes.create(
        params={"line_items": [{"price": "price_old"}]}
    ))["param"] == "line_items[0][price]"  # fmt: skip

    by_customer = client.v1.quotes.list(params={"customer": CUSTOMER})
    assert [q.id for q in by_customer.data] == [opened.id]
    drafts = client.v1.quotes.list(params={"status": "draft"})
    assert [q.id for q in drafts.data] == [empty.id]
    page = client.v1.quotes.list(params={"limit": 2})
    assert page.has_more is True and [q.id for q in page.data] == [empty.id, opened.id]
    assert emulator.quote_accepts(opened.id) == 0


# --- the server's machinery on the new routes -----------------------------------------------


def test_an_idempotent_subscription_create_is_replayed_not_repeated(
    client: stripe.StripeClient, emulator: EmulatorHandle, catalog: None
) -> None:
    routes = {"POST /v1/subscriptions", "POST /v1/subscriptions/{id}",
              "DELETE /v1/subscriptions/{id}", "POST /v1/quotes/{id}/accept",
              "GET /v1/quotes/{id}/line_items"}  # fmt: skip
    assert routes <= set(ENDPOINTS)
    options = {"idempotency_key": "subscription-row-1"}
    params = {"customer": CUSTOMER, "items": [{"price": "price_free"}]}
    first = client.v1.subscriptions.create(params=params, options=options)
    again = client.v1.subscriptions.create(params=params, options=options)
    assert again.id == first.id and again.last_response.headers["Idempotent-Replayed"] == "true"
    stats = emulator.stats()
    assert stats["subscriptions"] == 1 and stats["subscription_items"] == 1
    assert stats["idempotent_replays"] == 1
    assert stats["writes_by_endpoint"]["POST /v1/subscriptions"] == 1
    with pytest.raises(stripe.IdempotencyError):
        client.v1.subscriptions.create(
            params={**params, "metadata": {"other": "body"}}, options=options
        )


def test_subscriptions_and_quotes_of_one_connected_account_are_invisible_to_another(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    first, second = emulator.seed_accounts(2)
    for account in (first, second):
        emulator.seed([{"id": CUSTOMER}], account=account)
        emulator.seed_many(
            products=[{"id": "prod_plan", "name": "Plan"}],
            prices=[{"id": "price_seat", "product": "prod_plan", "currency": "usd",
                     "unit_amount": 1500, "recurring": MONTHLY}],
            account=account,
        )  # fmt: skip
    on_first = {"stripe_account": first}
    subscription = client.v1.subscriptions.create(
        params={"customer": CUSTOMER, "items": [{"price": "price_seat"}],
                "collection_method": "send_invoice", "days_until_due": 30},
        options=on_first,
    )  # fmt: skip
    quote = client.v1.quotes.create(
        params={"customer": CUSTOMER, "line_items": [{"price": "price_seat"}]}, options=on_first
    )
    for retrieve, object_id in ((client.v1.subscriptions.retrieve, subscription.id),
                                (client.v1.quotes.retrieve, quote.id)):  # fmt: skip
        with pytest.raises(stripe.InvalidRequestError) as elsewhere:
            retrieve(object_id, options={"stripe_account": second})
        assert elsewhere.value.http_status == 404
    assert client.v1.subscriptions.list(options={"stripe_account": second}).data == []
    assert client.v1.quotes.list(options={"stripe_account": second}).data == []
    assert client.v1.quotes.list().data == []  # nor the platform's
    assert [q["id"] for q in emulator.quotes(account=first)] == [quote.id]
    assert emulator.quotes(account=second) == [] and emulator.quotes() == []
    assert [s["id"] for s in emulator.subscriptions(account=first)] == [subscription.id]
    assert emulator.subscriptions() == []
