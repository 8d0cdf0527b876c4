"""The Stripe subscription item, for seat-based billing: a row holds the quantity of one
item (`behavior: update_only`; items are created with their subscription, not by a sync).

Fields are read from `stripe.params.SubscriptionItemUpdateParams`: `quantity` and
`metadata.*`. Keys: the item id, or a metadata key (matched by listing the subscriptions,
which carry their items). `proration_behavior` is a block setting sent with every update.
Stripe allows 200 quantity updates per subscription per hour: the engine paces them per
subscription.
"""

from __future__ import annotations

from stripe.params import SubscriptionItemCreateParams, SubscriptionItemUpdateParams

from .catalogue import catalogue_from_sdk
from .contract import (
    METADATA_KEY,
    Behavior,
    CheckRequest,
    DashboardPage,
    GroupLimit,
    KeyLookup,
    KeySpec,
    ListedThrough,
    ObjectSpec,
    RemovalPolicy,
)

# Stripe: "You can update a subscription's quantity at most 200 times per hour"
# (docs.stripe.com/billing/subscriptions/quantities).
QUANTITY_UPDATES_PER_HOUR = 200

_ALL = catalogue_from_sdk(SubscriptionItemCreateParams, SubscriptionItemUpdateParams,
                          exclude={}, overrides={"quantity": {"minimum": 0}})

SUBSCRIPTION_ITEM = ObjectSpec(
    name="subscription_item",
    service="subscription_items",
    # Only what seat-based billing owns: the price, discounts and the rest belong to the
    # subscription's lifecycle, not to a warehouse row.
    fields={path: f for path, f in _ALL.items() if path == "quantity"},
    keys={
        "id": KeySpec(
            "id", KeyLookup.RETRIEVE, written=False,
            description="the subscription item id (si_...)",
        ),
        # Listed through the subscriptions (an item list needs its subscription).
        "metadata": METADATA_KEY,
    },
    removal=RemovalPolicy(never="a subscription item is not removed by this tool: removing "
                          "one changes what the customer pays; end it in Stripe"),
    listed_through=ListedThrough(parent_service="subscriptions", children="items",
                                 parent_filter="subscription"),
    behaviors=(Behavior.UPDATE_ONLY,),
    # Items are listed only per subscription: the probe lists subscriptions.
    check=CheckRequest(service="subscriptions", permission="rak_subscription_read"),
    group_limit=GroupLimit(attribute="subscription", fields=("quantity",),
                           per_hour=QUANTITY_UPDATES_PER_HOUR),
    request_settings={
        "proration_behavior": (("create_prorations", "none", "always_invoice"),
                               "create_prorations"),
    },
    dashboard=DashboardPage("subscriptions", parent_field="subscription"),
)
