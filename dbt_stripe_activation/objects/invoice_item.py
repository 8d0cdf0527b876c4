"""The Stripe Invoice item: a one-off pending charge (an overage, a setup fee, or a credit
with a negative amount) that Stripe puts on the customer's next invoice.

Fields are read from `stripe.params.InvoiceItemCreateParams` / `InvoiceItemUpdateParams`. An
item is a price (`pricing.price`, a reference to a synced price) times a quantity, or an
amount in a currency. While it is pending, or on a draft invoice, it can change and be
deleted; once its invoice is finalized Stripe refuses both (`invoice_already_finalized`,
docs.stripe.com/changelog/2018-11-08), and the row is `locked`: nothing is written, the
changed fields are reported (Stripe's way out is a credit note, or voiding the invoice).
The Dashboard shows invoice items on their customer's page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stripe.params import InvoiceItemCreateParams, InvoiceItemUpdateParams

from .catalogue import catalogue_from_sdk
from .contract import (
    METADATA_KEY,
    CheckRequest,
    DashboardPage,
    KeyLookup,
    KeySpec,
    ObjectSpec,
    RemovalPolicy,
    RowIssue,
    ValueKind,
)
from .price import ISO_4217

EXCLUDED = {
    "expand": "a request option, not an invoice item field",
    "customer_account": "a v2 Account id: the customer field names the customer",
    "invoice": "an item on a given invoice is a line of that invoice: sync it from the "
    "invoice's model (its lines)",
    "subscription": "an item for a subscription's next invoice: not synced yet",
    "price_data": "an inline price: sync prices from their own model and reference them "
    "(pricing.price: {ref: <prices model>, column: ...})",
}

OVERRIDES: Mapping[str, Mapping[str, Any]] = {
    "currency": {
        "kind": ValueKind.ENUM,
        "choices": tuple(sorted(ISO_4217)),
        "choices_name": "a three-letter ISO 4217 currency code (usd, eur, ...)",
        "lowercase": True,
    },
    "customer": {"references": "customer"},
    "pricing.price": {"references": "price"},
    "quantity": {"minimum": 1},
}

# Stripe's codes for a write to an item whose invoice is final: the current one, and the
# one its error list gives for an invoice that can no longer be edited.
LOCKED_CODES = ("invoice_already_finalized", "invoice_not_editable")

AMOUNT, PRICE = "amount", "pricing.price"


def _row_rules(flat: Mapping[str, Any]) -> list[RowIssue]:
    """An amount is the whole charge: a quantity is for a price."""
    quantity = flat.get("quantity")
    if flat.get(AMOUNT) is not None and quantity not in (None, 1):
        return [RowIssue("quantity", f"is {quantity}; with amount (the whole charge) Stripe "
                         "takes quantity 1: bill a price for a quantity")]
    return []


INVOICE_ITEM = ObjectSpec(
    name="invoice_item",
    service="invoice_items",
    fields=catalogue_from_sdk(
        InvoiceItemCreateParams, InvoiceItemUpdateParams, exclude=EXCLUDED, overrides=OVERRIDES
    ),
    keys={
        "metadata": METADATA_KEY,
        "id": KeySpec(
            "id",
            KeyLookup.RETRIEVE,
            written=False,
            description="the Stripe id (ii_...): Stripe assigns it, so update_only",
        ),
    },
    required_on_create=("customer",),
    exclusive=((AMOUNT, PRICE),),
    create_needs_one_of=((AMOUNT, PRICE),),
    required_with_on_create={AMOUNT: ("currency",)},
    validate_row=_row_rules,
    # Deleting works while the item is pending or on a draft: one on a finalized invoice is
    # locked, and Stripe keeps it.
    removal=RemovalPolicy(delete=True, delete_note="only while it is pending or on a draft "
                          "invoice; an item of a finalized invoice stays (locked)"),
    check=CheckRequest(permission="rak_invoice_read"),
    dashboard=DashboardPage("customers", parent_field="customer"),
    locked_codes=LOCKED_CODES,
)
