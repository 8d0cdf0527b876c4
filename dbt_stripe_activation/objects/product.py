"""The Stripe Product: the catalogue entry prices hang from.

Fields are read from `stripe.params.ProductCreateParams` / `ProductUpdateParams`. Stripe lets
the caller choose a product's id on create, so a model column can hold it and
`update_or_create` works on `id`. A product with prices cannot be deleted: it is archived
(`active: false`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stripe.params import ProductCreateParams, ProductUpdateParams

from .catalogue import catalogue_from_sdk
from .contract import (
    METADATA_KEY,
    CheckRequest,
    DashboardPage,
    KeyLookup,
    KeySpec,
    ObjectSpec,
    RemovalPolicy,
)

EXCLUDED = {
    "expand": "a request option, not a product field",
    "default_price_data": "creates a price: sync prices from their own model (object: price)",
    "tax_details": "product tax details are in preview; map tax_code instead",
    "type": "deprecated: every product is a service in current API versions",
}

OVERRIDES: Mapping[str, Mapping[str, Any]] = {
    # docs.stripe.com/api/products/create: "statement_descriptor ... at most 22 characters",
    # "unit_label ... at most 12 characters", "images: A list of up to 8 URLs".
    "statement_descriptor": {"max_length": 22},
    "unit_label": {"max_length": 12},
    "name": {"unsettable": False},  # a product always has a name
    "id": {"description": "The product's id, chosen by the caller on create."},
}

KEYS = {
    "id": KeySpec(
        "id",
        KeyLookup.RETRIEVE,
        written=True,  # sent as `id` on create: Stripe keeps the caller's id
        description="the product id, chosen by the model (e.g. its SKU) or prod_...",
    ),
    "metadata": METADATA_KEY,
}

PRODUCT = ObjectSpec(
    name="product",
    service="products",
    fields=catalogue_from_sdk(
        ProductCreateParams, ProductUpdateParams, exclude=EXCLUDED, overrides=OVERRIDES
    ),
    keys=KEYS,
    required_on_create=("name",),
    # Deleting works only while the product has no prices: Stripe refuses otherwise (the
    # row is rejected with Stripe's reason); archive always works.
    removal=RemovalPolicy(archive={"active": False}, restore={"active": True}, delete=True),
    check=CheckRequest(permission="rak_product_read"),
    dashboard=DashboardPage("products"),
)
