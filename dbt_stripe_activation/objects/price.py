"""The Stripe Price: immutable where it matters, so a change is a replacement.

Fields are read from `stripe.params.PriceCreateParams` / `PriceUpdateParams`. Stripe's
price update takes only active, currency_options, lookup_key, metadata, nickname,
tax_behavior and transfer_lookup_key: amount, currency, recurring terms and product never
change. A row whose immutable field changed is a replace: a new price carrying the key
(`transfer_lookup_key: true` moves the lookup key atomically), then the old one archived.
Prices cannot be deleted through the API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stripe.params import PriceCreateParams, PriceUpdateParams

from .catalogue import catalogue_from_sdk, sdk_required
from .contract import (
    METADATA_KEY,
    Behavior,
    CheckRequest,
    DashboardPage,
    KeyLookup,
    KeySpec,
    ObjectSpec,
    RemovalPolicy,
    ReplacePolicy,
    RowIssue,
    ValueKind,
)

# ISO 4217 currency codes (the funds, metals and testing codes left out). Which of them a
# Stripe account can charge in Stripe decides; a code outside this list is a model mistake.
ISO_4217 = frozenset(
    (
        "aed", "afn", "all", "amd", "ang", "aoa", "ars", "aud", "awg", "azn", "bam", "bbd", "bdt",
        "bgn", "bhd", "bif", "bmd", "bnd", "bob", "brl", "bsd", "btn", "bwp", "byn", "bzd", "cad",
        "cdf", "chf", "clp", "cny", "cop", "crc", "cuc", "cup", "cve", "czk", "djf", "dkk", "dop",
        "dzd", "egp", "ern", "etb", "eur", "fjd", "fkp", "gbp", "gel", "ghs", "gip", "gmd", "gnf",
        "gtq", "gyd", "hkd", "hnl", "htg", "huf", "idr", "ils", "inr", "iqd", "irr", "isk", "jmd",
        "jod", "jpy", "kes", "kgs", "khr", "kmf", "kpw", "krw", "kwd", "kyd", "kzt", "lak", "lbp",
        "lkr", "lrd", "lsl", "lyd", "mad", "mdl", "mga", "mkd", "mmk", "mnt", "mop", "mru", "mur",
        "mvr", "mwk", "mxn", "myr", "mzn", "nad", "ngn", "nio", "nok", "npr", "nzd", "omr", "pab",
        "pen", "pgk", "php", "pkr", "pln", "pyg", "qar", "ron", "rsd", "rub", "rwf", "sar", "sbd",
        "scr", "sdg", "sek", "sgd", "shp", "sle", "sll", "sos", "srd", "ssp", "stn", "svc", "syp",
        "szl", "thb", "tjs", "tmt", "tnd", "top", "try", "ttd", "twd", "tzs", "uah", "ugx", "usd",
        "uyu", "uzs", "ves", "vnd", "vuv", "wst", "xaf", "xcd", "xcg", "xof", "xpf", "yer", "zar",
        "zmw", "zwg", "zwl",
    )
)

EXCLUDED = {
    "expand": "a request option, not a price field",
    "transfer_lookup_key": "sent by the sync itself when a replacement takes the lookup key",
    "product_data": "creates a product inline: sync products from their own model and "
    "reference it (product: {ref: <products model>, column: ...})",
    "custom_unit_amount": "customer-chosen amounts are not synced yet",
    "currency_options": "a map of objects, not a scalar",
    "tiers": "a list of objects, not a scalar",
    "tiers_mode": "tiered prices need tiers, which are not synced yet",
}

OVERRIDES: Mapping[str, Mapping[str, Any]] = {
    "currency": {
        "kind": ValueKind.ENUM,
        "choices": tuple(sorted(ISO_4217)),
        "choices_name": "a three-letter ISO 4217 currency code (usd, eur, ...)",
        "lowercase": True,
    },
    # The SDK types it as Decimal; Stripe takes and returns a decimal string.
    "unit_amount_decimal": {"kind": ValueKind.DECIMAL, "unsettable": False},
    "unit_amount": {"minimum": 0},
    "recurring.interval_count": {"minimum": 1},
    "lookup_key": {"max_length": 200},
    "product": {"references": "product"},
    "billing_scheme": {"choices": ("per_unit",)},  # tiered needs tiers: not synced yet
}

KEYS = {
    # `GET /v1/prices?lookup_keys[]=` is exact and strongly consistent; a lookup key is
    # unique per account and case-sensitive.
    "lookup_key": KeySpec(
        "lookup_key",
        KeyLookup.FILTER,
        list_filter="lookup_keys",
        filter_takes_list=True,
        max_length=200,
        description="the price's lookup key, unique per account",
    ),
    "metadata": METADATA_KEY,
    "id": KeySpec(
        "id",
        KeyLookup.RETRIEVE,
        written=False,
        description="the Stripe id (price_...): Stripe assigns it, so update_only",
    ),
}

AMOUNTS = ("unit_amount", "unit_amount_decimal")


def _row_rules(flat: Mapping[str, Any]) -> list[RowIssue]:
    issues = []
    if flat.get("recurring.usage_type") == "metered" and not flat.get("recurring.meter"):
        issues.append(
            RowIssue("recurring.meter", "is required for a metered price (usage_type metered)")
        )
    return issues


_FIELDS = catalogue_from_sdk(
    PriceCreateParams, PriceUpdateParams, exclude=EXCLUDED, overrides=OVERRIDES
)

PRICE = ObjectSpec(
    name="price",
    service="prices",
    fields=_FIELDS,
    keys=KEYS,
    behaviors=(Behavior.UPDATE_OR_CREATE, Behavior.UPDATE_ONLY, Behavior.CREATE_ONLY),
    required_on_create=("currency", "product"),
    # recurring needs its interval; transform_quantity needs divide_by and round.
    required_together={
        group: paths
        for group, paths in sdk_required(PriceCreateParams).items()
        if all(path in _FIELDS for path in paths)
    },
    exclusive=(AMOUNTS,),
    create_needs_one_of=(AMOUNTS,),
    replace=ReplacePolicy(
        # Every field the update params lack: amount, currency, product, recurring terms.
        fields=frozenset(path for path, f in _FIELDS.items() if f.create_only),
        create_extra_by_key={"lookup_key": {"transfer_lookup_key": True}},
        locked_once_set={"tax_behavior": ("inclusive", "exclusive")},
    ),
    # Prices cannot be deleted. An archived price keeps its lookup key, so a key that comes
    # back finds (and reactivates) the same price, never a second one.
    removal=RemovalPolicy(archive={"active": False}, restore={"active": True}),
    check=CheckRequest(permission="rak_price_read"),
    validate_row=_row_rules,
    dashboard=DashboardPage("prices"),
)
