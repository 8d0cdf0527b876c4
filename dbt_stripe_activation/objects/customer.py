"""The Stripe Customer: only the facts the SDK's typed params do not carry.

The field catalogue (paths, types, enum choices, create-only, unsettable, the limits the
SDK's docstrings state) is read from `stripe.params.CustomerCreateParams` and
`CustomerUpdateParams`, so it follows the API version the pinned SDK targets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stripe.params import CustomerCreateParams, CustomerUpdateParams

from .catalogue import catalogue_from_sdk, sdk_required
from .contract import (
    METADATA_KEY,
    CheckRequest,
    DashboardPage,
    KeyLookup,
    KeySpec,
    ObjectSpec,
    RemovalPolicy,
)

# Practical, not RFC 5322: one @, no whitespace, a dot in the domain. Stripe rejects worse.
EMAIL_PATTERN = r"[^@\s]+@[^@\s]+\.[^@\s]+"
EMAIL_REASON = "is not a valid email address"

# Scalar params that are not customer data a model should own (path prefix -> why).
EXCLUDED = {
    "expand": "a request option (which fields the response expands), not a customer field",
    "validate": "a request directive, not stored on the customer",
    "source": "a legacy card token: it creates a payment source",
    "cash_balance": "cash balance settings live on a separate, expandable object",
    "tax.validate_location": "a request directive (when to validate), not stored",
    "tax_id_data": "a list of objects (type + value), not a scalar",
    "invoice_settings.custom_fields": "a list of objects (name + value), not a scalar",
}

# Limits and behaviours Stripe enforces that the SDK's typed params do not state.
OVERRIDES: Mapping[str, Mapping[str, Any]] = {
    # Stripe refuses longer values with "Invalid string: ...; must be at most N characters"
    # (phone: odoo/odoo#109728, Automattic/woocommerce-payments#4433; name:
    # sagemathinc/cocalc#4656). The SDK states email (512) and the names (150) itself.
    "name": {"max_length": 256, "unsettable": True},
    "phone": {"max_length": 20, "unsettable": True},
    # Posting "" unsets these on update (docs.stripe.com/api/customers/update), although
    # the SDK types them as plain `str`.
    "email": {"pattern": EMAIL_PATTERN, "pattern_reason": EMAIL_REASON, "unsettable": True},
    "description": {"unsettable": True},
    # The pinned SDK's docstring says "Must be 1–12 uppercase letters or numbers" and Stripe
    # answers a bad prefix with "Invoice number prefix must be 1–12 uppercase letters or
    # numbers." (older API references said 3–12: the current rule is the one enforced).
    "invoice_prefix": {
        "pattern": r"[A-Z0-9]{1,12}",
        "pattern_reason": "must be 1 to 12 uppercase letters or digits (A-Z, 0-9)",
        "max_length": 12,
    },
    "next_invoice_sequence": {"minimum": 1},  # "Defaults to 1": the first invoice number
    # Each locale is checked for the shape of Stripe's locales, IETF language tags such as
    # en, fr-CA, es-419 (docs.stripe.com/js/appendix/supported_locales): `en_US` or
    # `English` is a mistake in the model. Which tags Stripe supports it decides itself.
    "preferred_locales": {
        "pattern": r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*",
        "pattern_reason": "is not a language tag like en, fr-CA or es-419",
    },
    "payment_method": {"description": "ID of a PaymentMethod to attach to the new customer."},
}

# The SDK requires `shipping.address` and `shipping.name` whenever shipping is sent; an
# address stands for its first line.
_GROUP_REPRESENTATIVE = {"shipping.address": "shipping.address.line1"}

KEYS = {
    # `GET /v1/customers?email=` is exact, case-sensitive and strongly consistent; emails are
    # matched case-insensitively, so a lookup asks for the value as written and lowercased.
    "email": KeySpec(
        "email",
        KeyLookup.FILTER,
        list_filter="email",
        casefold=True,
        max_length=512,
        description="the customer's email, compared case-insensitively",
    ),
    "id": KeySpec(
        "id",
        KeyLookup.RETRIEVE,
        written=False,
        description="the Stripe id (cus_...): Stripe assigns it, so update_only",
    ),
    "metadata": METADATA_KEY,
}

CUSTOMER = ObjectSpec(
    name="customer",
    service="customers",
    fields=catalogue_from_sdk(
        CustomerCreateParams, CustomerUpdateParams, exclude=EXCLUDED, overrides=OVERRIDES
    ),
    keys=KEYS,
    # Customers have no archived state: archive sets a metadata flag the user names. A
    # delete is permanent.
    removal=RemovalPolicy(
        archive_by_flag=True, delete=True,
        delete_note="Stripe's delete is permanent and immediately cancels the customer's "
        "active subscriptions"),
    check=CheckRequest(permission="rak_customer_read"),
    required_together={
        group: tuple(sorted(_GROUP_REPRESENTATIVE.get(p, p) for p in paths))
        for group, paths in sdk_required(CustomerUpdateParams).items()
    },
    # `customer.tax` is returned only with expand=["tax"].
    read_expand={"tax.": "tax"},
    dashboard=DashboardPage("customers"),
)
