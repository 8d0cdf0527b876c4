"""Subscriptions and subscription items, as much as seat-based billing needs
(docs.stripe.com/api/subscriptions, docs.stripe.com/api/subscription_items).

Subscriptions are made by the control API's seed (a customer and items of recurring prices),
not through the API; the API reads them (`GET /v1/subscriptions[/{id}]`) and reads and updates
their items: `POST /v1/subscription_items/{id}` takes `quantity`, `metadata`,
`proration_behavior` and `expand` (nothing is invoiced or prorated here). Stripe allows 200
quantity updates per subscription per hour: an update that changes a quantity beyond that,
within a rolling hour of the emulator clock, answers 400. Objects carry the top-level fields of
Stripe's samples (stripe/openapi `fixtures3.json`), unmodelled ones null or empty.
"""

from __future__ import annotations

import calendar
import datetime
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any

from ..errors import ApiError, invalid, missing_parameter
from ..forms import as_list
from .base import (
    Filter,
    ObjectResource,
    ObjectStore,
    ResourceContext,
    created_range,
    embedded_list,
    exact,
    text,
)
from .customers import CustomersResource
from .params import (
    check_known,
    enum_param,
    expand_names,
    integer_param,
    metadata_change,
    string_param,
)
from .prices import PricesResource

QUANTITY_UPDATES_PER_HOUR = 200  # Stripe: 200 quantity updates per subscription per hour
HOUR = 3600
PRORATION_BEHAVIORS = ("always_invoice", "create_prorations", "none")
ITEM_UPDATE = {"expand", "metadata", "proration_behavior", "quantity"}
# Parameters Stripe takes on an item update that this emulator does not model.
ITEM_UPDATE_UNSUPPORTED = {
    "billing_thresholds",
    "current_trial",
    "discounts",
    "off_session",
    "payment_behavior",
    "plan",
    "price",
    "price_data",
    "proration_date",
    "tax_rates",
}
ITEM_EXPANDABLE = frozenset({"price.product", "plan.product", "discounts"})
SUBSCRIPTION_EXPANDABLE = frozenset({"customer", "items.data.price.product"})
STATUSES = (
    "active",
    "canceled",
    "incomplete",
    "incomplete_expired",
    "past_due",
    "paused",
    "trialing",
    "unpaid",
)
ENDED = ("canceled", "incomplete_expired")
MAX_ITEMS = 20


def quantity_limit_reached(subscription_id: str) -> ApiError:
    # Our wording: we did not find Stripe's message for this limit.
    return invalid(
        f"The quantity of items on subscription `{subscription_id}` can be updated at most "
        f"{QUANTITY_UPDATES_PER_HOUR} times per hour; try again later.",
        "quantity",
    )


def add_interval(start: int, interval: str, count: int) -> int:
    moment = datetime.datetime.fromtimestamp(start, tz=datetime.timezone.utc)
    if interval in ("day", "week"):
        days = count * (7 if interval == "week" else 1)
        return int((moment + datetime.timedelta(days=days)).timestamp())
    months = count * (12 if interval == "year" else 1)
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def _status(value: Any) -> str:
    """Without `status`, a list leaves out ended subscriptions."""
    if value is None:
        return "default"
    return enum_param(value, "status", (*STATUSES, "all", "ended"))


def _status_matches(obj: Mapping[str, Any], status: str) -> bool:
    if status == "default":
        return obj["status"] not in ENDED
    if status == "ended":
        return obj["status"] in ENDED
    return status == "all" or obj["status"] == status


class SubscriptionsResource(ObjectResource):
    name = "subscriptions"
    object_name = "subscription"
    routes = (("GET", "", "list_all"), ("GET", "/{id}", "retrieve"))
    expandable = SUBSCRIPTION_EXPANDABLE
    seed_refusals = (ApiError, ValueError)

    def __init__(self, context: ResourceContext) -> None:
        super().__init__(context)
        self.store = ObjectStore(
            kind="subscription",
            prefix="sub_",
            url="/v1/subscriptions",
            seed=context.seed,
            id_length=24,
        )
        # Items are the subscription's children: their store is here, under its lock.
        self.item_store = ObjectStore(
            kind="subscription_item",
            prefix="si_",
            url="/v1/subscription_items",
            seed=context.seed,
            lock=self.store.lock,
            indexed=("subscription",),
        )
        customers = context.resources["customers"]
        prices = context.resources["prices"]
        assert isinstance(customers, CustomersResource) and isinstance(prices, PricesResource)
        self.customers = customers
        self.prices = prices
        self.filters = (
            Filter("status", _status, test=_status_matches, always=True),
            exact("customer", text("customer")),
            Filter("price", text("price"), test=self._has_price),
            created_range(),
        )

    def _has_price(self, obj: Mapping[str, Any], price: str) -> bool:
        return any(i["price"] == price for i in self.item_store.where("subscription", obj["id"]))

    def render(self, obj: Mapping[str, Any], expand: list[str]) -> dict[str, Any]:
        shown = dict(obj)
        item_expand = ["price.product"] if "items.data.price.product" in expand else []
        stored = self.item_store.where("subscription", obj["id"])
        items = [render_item(self.prices, item, item_expand) for item in stored]
        shown["items"] = embedded_list(items, f"/v1/subscription_items?subscription={obj['id']}")
        customer = self.customers.store.get(obj["customer"])
        if "customer" in expand and customer is not None:
            shown["customer"] = dict(customer)
        return shown

    # -- control API

    def seed_one(self, params: dict[str, Any]) -> dict[str, Any]:
        """`{customer, items: [{price, quantity, metadata, id}], id, created, metadata,
        status}`; prices must be recurring and share currency and interval."""
        known = {"created", "customer", "id", "items", "metadata", "status"}
        check_known(params, known)
        if "customer" not in params:
            raise missing_parameter("customer")
        customer = string_param(params["customer"], "customer", 5000, emptyable=False) or ""
        self.customers.store.require(customer, "customer", 400)
        raw_items = as_list(params.get("items", []), "items")
        if not 1 <= len(raw_items) <= MAX_ITEMS:
            raise invalid(f"A subscription needs 1 to {MAX_ITEMS} items", "items")
        status = enum_param(params.get("status", "active"), "status", STATUSES)
        metadata = metadata_change(params["metadata"]).apply({}) if "metadata" in params else {}
        specs = []
        for position, raw in enumerate(raw_items):
            specs.append(self._item_spec(raw, f"items[{position}]"))
        terms = {
            (p["currency"], p["recurring"]["interval"], p["recurring"]["interval_count"])
            for _, p, _, _ in specs
        }
        if len(terms) > 1:
            raise invalid(
                "All prices on a subscription must have the same currency and billing interval",
                "items",
            )
        [(currency, interval, interval_count)] = terms
        with self.store.lock:
            subscription_id = params.get("id")
            self.store.check_unused(subscription_id)
            for item_id, *_ in specs:
                self.item_store.check_unused(item_id, "items")
            now = int(self.context.clock.now())
            created = now
            if params.get("created") is not None:
                created = integer_param(params["created"], "created")
            period_end = add_interval(created, interval, interval_count)
            obj = subscription_object(
                subscription_id or self.store.new_id(),
                customer,
                currency,
                created,
                status,
                metadata,
            )
            self.store.insert(obj)
            for item_id, price, quantity, item_metadata in specs:
                item: dict[str, Any] = {
                    "id": item_id or self.item_store.new_id(),
                    "object": "subscription_item",
                    "billing_thresholds": None,
                    "created": created,
                    "current_period_end": period_end,
                    "current_period_start": created,
                    "discounts": [],
                    "metadata": item_metadata,
                    "price": price["id"],
                    "quantity": quantity,
                    "subscription": obj["id"],
                    "tax_rates": [],
                }
                if quantity is None:  # metered items carry no quantity
                    del item["quantity"]
                self.item_store.insert(item)
            return obj

    def _item_spec(
        self, raw: Any, param: str
    ) -> tuple[str | None, dict[str, Any], int | None, dict[str, str]]:
        if not isinstance(raw, Mapping):
            raise invalid(f"Invalid object: {param} must be an object", param)
        check_known(raw, {"id", "metadata", "price", "quantity"}, param)
        if "price" not in raw:
            raise missing_parameter(f"{param}[price]")
        price_id = string_param(raw["price"], f"{param}[price]", 5000, emptyable=False) or ""
        price = self.prices.store.require(price_id, f"{param}[price]", 400)
        if price["recurring"] is None:
            raise invalid(
                f"The price `{price_id}` is not recurring: subscriptions need recurring prices",
                f"{param}[price]",
            )
        metered = price["recurring"]["usage_type"] == "metered"
        quantity: int | None = None if metered else 1
        if "quantity" in raw and raw["quantity"] is not None:
            if metered:
                raise invalid(METERED_QUANTITY, f"{param}[quantity]")
            quantity = _quantity(raw["quantity"], f"{param}[quantity]")
        metadata = metadata_change(raw["metadata"]).apply({}) if "metadata" in raw else {}
        item_id = raw.get("id")
        return item_id, price, quantity, metadata


METERED_QUANTITY = "Quantity should not be specified where usage_type is `metered`."  # ours


def _quantity(value: Any, param: str) -> int:
    quantity = integer_param(value, param)
    if quantity < 0:
        raise invalid(f"Invalid {param}: must be greater than or equal to 0", param)
    return quantity


def subscription_object(
    subscription_id: str,
    customer: str,
    currency: str,
    created: int,
    status: str,
    metadata: dict[str, str],
) -> dict[str, Any]:
    ended = created if status in ENDED else None
    return {
        "id": subscription_id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": created,
        "billing_cycle_anchor_config": None,
        "billing_mode": {"flexible": None, "type": "classic"},
        "billing_schedules": [],
        "billing_thresholds": None,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": ended,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically",
        "created": created,
        "currency": currency,
        "customer": customer,
        "customer_account": None,
        "days_until_due": None,
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "ended_at": ended,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": None,  # rendered from the item store
        "latest_invoice": None,
        "livemode": False,
        "managed_payments": None,
        "metadata": metadata,
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": created,
        "status": status,
        "test_clock": None,
        "transfer_data": None,
        "trial_end": None,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": None,
    }


def plan_of(price: Mapping[str, Any]) -> dict[str, Any]:
    """The legacy `plan` view of a recurring price, as Stripe still shows it on items."""
    recurring = price["recurring"] or {}
    return {
        "id": price["id"],
        "object": "plan",
        "active": price["active"],
        "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": price["billing_scheme"],
        "created": price["created"],
        "currency": price["currency"],
        "interval": recurring.get("interval"),
        "interval_count": recurring.get("interval_count"),
        "livemode": False,
        "metadata": price["metadata"],
        "meter": recurring.get("meter"),
        "nickname": price["nickname"],
        "product": price["product"],
        "tiers_mode": price["tiers_mode"],
        "transform_usage": price["transform_quantity"],
        "trial_period_days": recurring.get("trial_period_days"),
        "usage_type": recurring.get("usage_type"),
    }


def render_item(
    prices: PricesResource, obj: Mapping[str, Any], expand: list[str]
) -> dict[str, Any]:
    """An item as Stripe shows it: its price object, and the legacy `plan` view of it."""
    shown = dict(obj)
    price = prices.store.get(obj["price"])
    if price is not None:
        price_expand = ["product"] if "price.product" in expand else []
        shown["price"] = prices.render(price, price_expand)
        shown["plan"] = plan_of(price)
        if "plan.product" in expand:
            shown["plan"]["product"] = prices.render(price, ["product"])["product"]
    return shown


class SubscriptionItemsResource(ObjectResource):
    name = "subscription_items"
    object_name = "subscription"  # items are part of a subscription: rak_subscription_*
    routes = (
        ("GET", "", "list_all"),
        ("GET", "/{id}", "retrieve"),
        ("POST", "/{id}", "update"),
    )
    expandable = ITEM_EXPANDABLE

    def __init__(self, context: ResourceContext) -> None:
        super().__init__(context)
        subscriptions = context.resources["subscriptions"]
        assert isinstance(subscriptions, SubscriptionsResource)
        self.subscriptions = subscriptions
        self.prices = subscriptions.prices
        self.store = subscriptions.item_store
        # The list's filter is required, and names a subscription that exists.
        self.filters = (
            Filter("subscription", self._subscription, field="subscription", always=True),
        )
        self.quantity_windows: dict[str, deque[float]] = {}  # subscription -> clock times
        self.reset_stats()

    def _subscription(self, value: Any) -> str:
        if value is None:
            raise missing_parameter("subscription")
        subscription = string_param(value, "subscription", 5000, False) or ""
        self.subscriptions.store.require(subscription, "subscription", 400)
        return subscription

    def reset(self, seed: int | None) -> None:
        with self.store.lock:
            super().reset(seed)
            self.quantity_windows.clear()

    def render(self, obj: Mapping[str, Any], expand: list[str]) -> dict[str, Any]:
        return render_item(self.prices, obj, expand)

    def changes(self, params: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        for key in params:
            if key in ITEM_UPDATE_UNSUPPORTED:
                raise invalid(f"{key} is not supported by this emulator.", key)
        check_known(params, ITEM_UPDATE)
        expand_names(params, ITEM_EXPANDABLE)
        changes: dict[str, Any] = {"proration_behavior": "create_prorations"}
        if "quantity" in params:
            changes["quantity"] = _quantity(params["quantity"], "quantity")
        if "metadata" in params:
            changes["metadata"] = metadata_change(params["metadata"])
        if "proration_behavior" in params:
            changes["proration_behavior"] = enum_param(
                params["proration_behavior"], "proration_behavior", PRORATION_BEHAVIORS
            )
        return changes

    def apply(self, obj: dict[str, Any], changes: Mapping[str, Any]) -> None:
        """Nothing is invoiced or prorated; a quantity change counts against the hourly limit."""
        quantity = changes.get("quantity")
        changes_quantity = False
        if quantity is not None:
            if "quantity" not in obj:
                raise invalid(METERED_QUANTITY, "quantity")
            changes_quantity = quantity != obj["quantity"]
        if "metadata" in changes:
            obj["metadata"] = changes["metadata"].apply(obj["metadata"])
        if changes_quantity:
            subscription = obj["subscription"]
            now = self.context.clock.now()
            window = self.quantity_windows.setdefault(subscription, deque())
            while window and window[0] <= now - HOUR:
                window.popleft()
            if len(window) >= QUANTITY_UPDATES_PER_HOUR:
                self.refused_quantity_updates += 1
                raise quantity_limit_reached(subscription)
            window.append(now)
            obj["quantity"] = quantity
            self.quantity_changes[subscription] += 1
        self.updates += 1
        self.by_proration_behavior[changes["proration_behavior"]] += 1

    # -- control API

    def seed(self, items: list[Mapping[str, Any]]) -> list[str]:
        raise ValueError("seed subscription items with their subscription: subscriptions[].items")

    def extra_stats(self) -> dict[str, Any]:
        with self.store.lock:
            return {
                "subscription_item_updates": {
                    "updates": self.updates,
                    "quantity_changes": sum(self.quantity_changes.values()),
                    "quantity_changes_by_subscription": dict(self.quantity_changes),
                    "refused_quantity_limit": self.refused_quantity_updates,
                    "by_proration_behavior": dict(self.by_proration_behavior),
                }
            }

    def reset_stats(self) -> None:
        with self.store.lock:
            self.updates = 0
            self.refused_quantity_updates = 0
            self.quantity_changes: Counter[str] = Counter()
            self.by_proration_behavior: Counter[str] = Counter()
