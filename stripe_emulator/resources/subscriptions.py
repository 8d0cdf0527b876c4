"""Subscriptions and subscription items (docs.stripe.com/api/subscriptions,
docs.stripe.com/api/subscription_items).

`POST /v1/subscriptions` starts a subscription for an existing customer with 1 to 20 items of
active, recurring prices (one item per price; one currency and billing interval). No payment
method can be attached here, so the first status follows Stripe's rules for a customer without
one: `trialing` during a trial, `active` for `send_invoice` or when nothing is due, `incomplete`
with `payment_behavior=default_incomplete`, and Stripe's 400 otherwise. One
`POST /v1/subscriptions/{id}` changes fields and items together (`items[n][id]` changes an item
or, with `deleted`, removes it; `items[n][price]` adds one); what each update asked for is
logged per subscription (`GET /_emulator/subscription_updates`). `DELETE` cancels at once;
`cancel_at` and `cancel_at_period_end` only schedule it (the clock does not carry it out). A
canceled subscription takes only `metadata` and `cancellation_details`. Nothing is invoiced or
prorated and periods never roll over.

Items are read and updated on their own too: `POST /v1/subscription_items/{id}` takes
`quantity`, `metadata`, `proration_behavior` and `expand`. Stripe allows 200 quantity updates
per subscription per hour: an item update that changes a quantity beyond that, within a rolling
hour of the emulator clock, answers 400. Seeds (`subscriptions` in `POST /_emulator/seed`) may
choose ids, `created` and `status`. Objects carry the top-level fields of Stripe's samples
(stripe/openapi `fixtures3.json`), unmodelled ones null or empty.
"""

from __future__ import annotations

import calendar
import copy
import datetime
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from ..errors import ApiError, invalid, missing_parameter, no_such
from ..forms import as_list
from .base import (
    CRUD_ROUTES,
    Filter,
    ObjectResource,
    ObjectStore,
    ResourceContext,
    choice,
    created_range,
    embedded_list,
    exact,
    flag,
    text,
)
from .customers import CustomersResource
from .invoices import INACTIVE_PRICE, NO_PAYMENT_METHOD, built, unsupported
from .params import check_known, expand_names, hash_param, metadata_change, string_param
from .params import integer_param as _integer
from .prices import PricesResource

QUANTITY_UPDATES_PER_HOUR = 200  # Stripe: 200 quantity updates per subscription per hour
HOUR = 3600
DAY = 86400
PRORATION_BEHAVIORS = ("always_invoice", "create_prorations", "none")
PAYMENT_BEHAVIORS = (
    "allow_incomplete",
    "default_incomplete",
    "error_if_incomplete",
    "pending_if_incomplete",
)
COLLECTION_METHODS = ("charge_automatically", "send_invoice")
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
# `items[n]` of a subscription create or update: known to Stripe, not modelled here.
ITEM_ENTRY_UNSUPPORTED = {
    "billing_thresholds",
    "current_trial",
    "discounts",
    "plan",
    "price_data",
    "tax_rates",
}
ITEM_EXPANDABLE = frozenset({"price.product", "plan.product", "discounts"})
SUBSCRIPTION_EXPANDABLE = frozenset({"customer", "items.data.price.product"})
# SubscriptionCreateParams / SubscriptionUpdateParams (stripe 16.x) this emulator models.
CREATE = {
    "billing_cycle_anchor",
    "cancel_at",
    "cancel_at_period_end",
    "collection_method",
    "customer",
    "days_until_due",
    "description",
    "expand",
    "items",
    "metadata",
    "payment_behavior",
    "proration_behavior",
    "trial_end",
    "trial_period_days",
}
UPDATE = (CREATE - {"customer", "trial_period_days"}) | {"cancellation_details"}
SUBSCRIPTION_UNSUPPORTED = {
    "add_invoice_items",
    "application_fee_percent",
    "automatic_tax",
    "backdate_start_date",
    "billing_cycle_anchor_config",
    "billing_mode",
    "billing_schedules",
    "billing_thresholds",
    "currency",
    "customer_account",
    "default_payment_method",
    "default_source",
    "default_tax_rates",
    "discounts",
    "invoice_settings",
    "off_session",
    "on_behalf_of",
    "pause_collection",
    "payment_settings",
    "pending_invoice_item_interval",
    "proration_date",
    "transfer_data",
    "trial_from_plan",
    "trial_settings",
}
# What a canceled subscription still takes (Stripe's message below).
CANCELED_WRITABLE = {"cancellation_details", "expand", "metadata"}
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
# A new subscription's item: its price, quantity (None: metered), metadata, chosen id.
Line = tuple[dict[str, Any], "int | None", dict[str, str], "str | None"]

# Stripe's wording (seen in its API answers); the ones marked "ours" are not.
NO_PAYMENT_METHOD_SUBSCRIPTION = (
    f"{NO_PAYMENT_METHOD} Please consider adding a default payment method. For more "
    "information, visit https://stripe.com/docs/billing/subscriptions/"
    "payment-methods-setting#payment-method-priority."
)
CANCELED_UPDATE = "A canceled subscription can only update its cancellation_details and metadata."
EXPIRED_UPDATE = "You cannot update a subscription that is `canceled` or `incomplete_expired`."
ONE_TIME_PRICE = (  # the counterpart of Stripe's message for a recurring price on an invoice
    "The price specified is set to `type=one_time` but this field only accepts prices with "
    "`type=recurring`."
)


def duplicate_price(price_id: str, param: str) -> ApiError:
    return invalid(f"Cannot add multiple subscription items with the same plan: {price_id}", param)


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


def timestamp_param(value: Any, param: str) -> int:
    moment = _integer(value, param)
    if moment < 0:
        raise invalid(f"Invalid {param}: must be a unix timestamp", param)
    return moment


def future(moment: int, now: int, param: str) -> int:
    if moment <= now:  # ours
        raise invalid(f"Invalid {param}: must be a timestamp in the future", param)
    return moment


def due_terms(collection_method: str, days_until_due: int | None, param: str = "") -> None:
    """Stripe's rule, our wording: `send_invoice` needs `days_until_due`, and only it has one."""
    name = f"{param}[days_until_due]" if param else "days_until_due"
    if collection_method == "send_invoice" and days_until_due is None:
        raise missing_parameter(name)
    if collection_method != "send_invoice" and days_until_due is not None:
        raise invalid(f"{name} can only be set when collection_method is send_invoice.", name)


def days_param(value: Any, param: str) -> int:
    days = _integer(value, param)
    if not 0 <= days <= 730:  # ours
        raise invalid(f"Invalid {param}: must be between 0 and 730", param)
    return days


def licensed_amount(price: Mapping[str, Any], quantity: int | None) -> Decimal:
    """What an item adds to the first invoice (metered items bill usage later: nothing)."""
    return Decimal(price["unit_amount_decimal"]) * (quantity or 0)


def quantity_param(value: Any, param: str) -> int:
    quantity = _integer(value, param)
    if quantity < 0:
        raise invalid(f"Invalid {param}: must be greater than or equal to 0", param)
    return quantity


def item_params(raw: Any, param: str, known: set[str]) -> dict[str, Any]:
    """One `items[n]`, validated: `price` (an id), `quantity`, `metadata`, and for updates
    (or seeds) `id`, `deleted`."""
    if not isinstance(raw, Mapping):
        raise invalid(f"Invalid object: {param} must be an object", param)
    unsupported(raw, ITEM_ENTRY_UNSUPPORTED, param)
    check_known(raw, known, param)
    spec: dict[str, Any] = {}
    for key, value in raw.items():
        name = f"{param}[{key}]"
        if key in ("id", "price"):
            spec[key] = string_param(value, name, 5000, emptyable=False)
        elif key == "quantity" and value is not None:
            spec[key] = quantity_param(value, name)
        elif key == "metadata":
            spec[key] = metadata_change(value)
        elif key in ("deleted", "clear_usage"):
            spec[key] = flag(name)(value)
    return spec


def _cancellation_details(value: Any, key: str) -> dict[str, str | None]:
    given = hash_param(value, key, ("comment", "feedback"))
    return {part: string_param(given[part], f"{key}[{part}]", 5000) for part in given}


def _one_of(choices: tuple[str, ...]) -> Callable[[Any, str], str]:
    return lambda value, key: choice(key, choices)(value)


# How a create or update parameter is read: (value, its name) -> the validated change.
FIELD_PARSERS: dict[str, Callable[[Any, str], Any]] = {
    "billing_cycle_anchor": timestamp_param,  # a create's; an update takes `{type}`
    "cancel_at": lambda value, key: None if value == "" else timestamp_param(value, key),
    "cancel_at_period_end": lambda value, key: flag(key)(value),
    "cancellation_details": _cancellation_details,
    "collection_method": _one_of(COLLECTION_METHODS),
    "customer": lambda value, key: string_param(value, key, 5000, emptyable=False),
    "days_until_due": days_param,
    "description": lambda value, key: string_param(value, key, 500),
    "metadata": lambda value, key: metadata_change(value),
    "payment_behavior": _one_of(PAYMENT_BEHAVIORS),
    "proration_behavior": _one_of(PRORATION_BEHAVIORS),
    "trial_end": lambda value, key: "now" if value == "now" else timestamp_param(value, key),
    "trial_period_days": days_param,
}


def _status(value: Any) -> str:
    """Without `status`, a list leaves out ended subscriptions."""
    if value is None:
        return "default"
    return choice("status", (*STATUSES, "all", "ended"))(value)


def _status_matches(obj: Mapping[str, Any], status: str) -> bool:
    if status == "default":
        return obj["status"] not in ENDED
    if status == "ended":
        return obj["status"] in ENDED
    return status == "all" or obj["status"] == status


class SubscriptionsResource(ObjectResource):
    name = "subscriptions"
    object_name = "subscription"
    routes = (*CRUD_ROUTES, ("DELETE", "/{id}", "cancel"))
    control_reads = {"subscription_updates": "subscription_updates"}
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
        self.customers = built(context, "customers", CustomersResource)
        self.prices = built(context, "prices", PricesResource)
        self.filters = (
            Filter("status", _status, test=_status_matches, always=True),
            exact("customer", text("customer")),
            Filter("price", text("price"), test=self._has_price),
            created_range(),
        )
        # subscription id -> what each API update asked for, oldest first
        self.updates: dict[str, list[dict[str, Any]]] = {}

    def reset(self, seed: int | None) -> None:
        with self.store.lock:
            super().reset(seed)
            self.updates.clear()

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

    def subscription_updates(self) -> dict[str, list[dict[str, Any]]]:
        """`GET /_emulator/subscription_updates`: per subscription, each API update's
        `proration_behavior`, `payment_behavior`, `fields` and item ids `added`, `updated`,
        `deleted`, oldest first."""
        with self.store.lock:
            return copy.deepcopy(self.updates)

    # -- parameters

    def changes(self, params: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        unsupported(params, SUBSCRIPTION_UNSUPPORTED)
        check_known(params, CREATE if creating else UPDATE)
        for required in ("customer", "items") if creating else ():
            if required not in params or params[required] in ("", []):
                raise missing_parameter(required)
        expand_names(params, self.expandable)
        entry = {"metadata", "price", "quantity"} | (
            set() if creating else {"clear_usage", "deleted", "id"}
        )
        changes: dict[str, Any] = {}
        for key, value in params.items():
            if key == "items":
                raw_items = as_list(value, key)
                changes[key] = [
                    item_params(raw, f"items[{n}]", entry) for n, raw in enumerate(raw_items)
                ]
            elif key == "billing_cycle_anchor" and not creating:  # `{type: now|unchanged}`
                given = hash_param(value, key, ("type",))
                if "type" not in given:
                    raise missing_parameter(f"{key}[type]")
                changes[key] = choice(f"{key}[type]", ("now", "unchanged"))(given["type"])
            elif key in FIELD_PARSERS:
                changes[key] = FIELD_PARSERS[key](value, key)
        if changes.get("cancel_at") is not None and changes.get("cancel_at_period_end"):
            raise invalid(  # ours
                "You may only specify one of these parameters: cancel_at, cancel_at_period_end.",
                "cancel_at",
            )
        if "trial_end" in changes and "trial_period_days" in changes:
            raise invalid(  # ours
                "You may only specify one of these parameters: trial_end, trial_period_days.",
                "trial_end",
            )
        return changes

    def _price(self, price_id: str, param: str, *, seeding: bool = False) -> dict[str, Any]:
        """A recurring price of the catalog; an API request also needs it active."""
        price = self.prices.store.require(price_id, param, 400)
        if not price["active"] and not seeding:
            raise invalid(INACTIVE_PRICE, param)
        if price["recurring"] is None:
            raise invalid(ONE_TIME_PRICE, param)
        return price

    def _terms(
        self, items: list[tuple[dict[str, Any], str]], one_per_price: bool = True
    ) -> tuple[str, str, int]:
        """A subscription's items, as (price, param): 1 to 20, one per price (seeds may
        repeat one: fixtures of many items), one currency and billing interval; that currency
        and interval."""
        if not 1 <= len(items) <= MAX_ITEMS:
            raise invalid(  # ours
                f"A subscription needs 1 to {MAX_ITEMS} items; this one would have {len(items)}.",
                "items",
            )
        seen: set[str] = set()
        for price, param in items:
            if price["id"] in seen and one_per_price:
                raise duplicate_price(price["id"], param)
            seen.add(price["id"])
        terms = {
            (p["currency"], p["recurring"]["interval"], p["recurring"]["interval_count"])
            for p, _ in items
        }
        if len(terms) > 1:
            raise invalid(
                "All prices on a subscription must have the same currency and billing interval",
                "items",
            )
        [(currency, interval, interval_count)] = terms
        return currency, interval, interval_count

    def _quantity_of(self, price: Mapping[str, Any], spec: Mapping[str, Any], param: str) -> Any:
        metered = price["recurring"]["usage_type"] == "metered"
        if "quantity" in spec and metered:
            raise invalid(METERED_QUANTITY, f"{param}[quantity]")
        return None if metered else spec.get("quantity", 1)

    def _new_item(
        self,
        subscription_id: str,
        price: Mapping[str, Any],
        quantity: int | None,
        metadata: dict[str, str],
        period: tuple[int, int],
        created: int,
        item_id: str | None = None,
    ) -> dict[str, Any]:
        start, end = period
        fields = {
            "billing_thresholds": None,
            "created": created,
            "current_period_end": end,
            "current_period_start": start,
            "discounts": [],
            "metadata": metadata,
            "price": price["id"],
            "subscription": subscription_id,
            "tax_rates": [],
        }
        if quantity is not None:  # metered items carry no quantity
            fields["quantity"] = quantity
        return {"id": item_id or self.item_store.new_id(), "object": "subscription_item", **fields}

    # -- create

    def insert(
        self, changes: Mapping[str, Any], *, object_id: str | None = None, created: Any = None
    ) -> dict[str, Any]:
        with self.store.lock:
            customer = self.customers.store.require(changes["customer"], "customer", 400)
            lines = []
            for n, spec in enumerate(changes["items"]):
                param = f"items[{n}]"
                if "price" not in spec:
                    raise missing_parameter(f"{param}[price]")
                price = self._price(spec["price"], f"{param}[price]")
                metadata = spec["metadata"].apply({}) if "metadata" in spec else {}
                lines.append((price, self._quantity_of(price, spec, param), metadata, None))
            return self.start(customer["id"], lines, changes)

    def start(
        self,
        customer: str,
        lines: Sequence[Line],
        changes: Mapping[str, Any],
        *,
        object_id: str | None = None,
        created: int | None = None,
        status: str | None = None,
    ) -> dict[str, Any]:
        """A new subscription of (price, quantity, metadata, item id) lines, under the store
        lock: every check first, then the writes. Also what an accepted quote creates."""
        with self.store.lock:
            return self._start(customer, lines, changes, object_id, created, status)

    def _start(
        self,
        customer: str,
        lines: Sequence[Line],
        changes: Mapping[str, Any],
        object_id: str | None,
        created: int | None,
        status: str | None,
    ) -> dict[str, Any]:
        currency, interval, interval_count = self._terms(
            [(price, f"items[{n}][price]") for n, (price, *_) in enumerate(lines)],
            one_per_price=status is None,  # a seed names its status
        )
        self.store.check_unused(object_id)
        for *_, item_id in lines:
            self.item_store.check_unused(item_id, "items")
        now = int(self.context.clock.now()) if created is None else created
        collection = changes.get("collection_method", "charge_automatically")
        days = changes.get("days_until_due")
        due_terms(collection, days)
        trial_end = changes.get("trial_end")
        if trial_end == "now":
            trial_end = None
        elif trial_end is not None:
            trial_end = future(trial_end, now, "trial_end")
        if "trial_period_days" in changes and changes["trial_period_days"] > 0:
            trial_end = now + DAY * changes["trial_period_days"]
        natural_end = add_interval(now, interval, interval_count)
        anchor = changes.get("billing_cycle_anchor")
        if anchor is not None:
            future(anchor, now, "billing_cycle_anchor")
            if anchor > add_interval(trial_end or now, interval, interval_count):
                raise invalid(  # ours, after Stripe's rule
                    "billing_cycle_anchor cannot be later than the next natural billing date "
                    f"({natural_end}) of the subscription's prices.",
                    "billing_cycle_anchor",
                )
        period_end = trial_end or anchor or natural_end
        if status is None:
            due = sum(licensed_amount(price, quantity) for price, quantity, *_ in lines)
            status = self._first_status(changes, collection, trial_end is not None, due > 0)
        metadata = changes["metadata"].apply({}) if "metadata" in changes else {}
        obj = subscription_object(
            object_id or self.store.new_id(), customer, currency, now, status, metadata
        )
        obj.update(
            billing_cycle_anchor=trial_end or anchor or now,
            collection_method=collection,
            days_until_due=days,
            description=changes.get("description"),
            trial_end=trial_end,
            trial_start=now if trial_end else None,
        )
        self._schedule_cancel(obj, changes, now, period_end)
        self.store.insert(obj)
        for price, quantity, item_metadata, item_id in lines:
            item = self._new_item(
                obj["id"], price, quantity, item_metadata, (now, period_end), now, item_id
            )
            self.item_store.insert(item)
        return obj

    def _first_status(
        self, changes: Mapping[str, Any], collection: str, trial: bool, due: bool
    ) -> str:
        """Stripe's first status for a customer without a payment method (none exist here)."""
        behavior = changes.get("payment_behavior", "allow_incomplete")
        if behavior == "pending_if_incomplete":
            raise invalid(  # ours: Stripe documents it for updates (pending updates) only
                "payment_behavior=pending_if_incomplete is only supported when updating a "
                "subscription.",
                "payment_behavior",
            )
        if trial:
            return "trialing"
        if collection == "send_invoice" or not due:
            return "active"
        if behavior == "default_incomplete":
            return "incomplete"
        raise invalid(NO_PAYMENT_METHOD_SUBSCRIPTION)

    def _schedule_cancel(
        self, obj: dict[str, Any], changes: Mapping[str, Any], now: int, period_end: int
    ) -> None:
        """`cancel_at` / `cancel_at_period_end`: recorded (the clock does not carry it out).
        As Stripe shows it, `canceled_at` is the time of the request."""
        if "cancel_at" in changes:
            cancel_at = changes["cancel_at"]
            if cancel_at is not None:
                future(cancel_at, now, "cancel_at")
            obj.update(cancel_at=cancel_at, cancel_at_period_end=False)
        if "cancel_at_period_end" in changes:
            at_end = changes["cancel_at_period_end"]
            obj.update(cancel_at=period_end if at_end else None, cancel_at_period_end=at_end)
        if "cancel_at" in changes or "cancel_at_period_end" in changes:
            scheduled = obj["cancel_at"] is not None
            obj["canceled_at"] = now if scheduled else None
            obj["cancellation_details"] = {
                **obj["cancellation_details"],
                "reason": "cancellation_requested" if scheduled else None,
            }

    # -- update

    def apply(self, obj: dict[str, Any], changes: Mapping[str, Any]) -> None:
        """Check everything, then write the items; the caller stores the subscription."""
        now = int(self.context.clock.now())
        if obj["status"] in ENDED and set(changes) - CANCELED_WRITABLE:
            message = CANCELED_UPDATE if obj["status"] == "canceled" else EXPIRED_UPDATE
            raise invalid(message)
        stored = self.item_store.where("subscription", obj["id"])
        period = (stored[0]["current_period_start"], stored[0]["current_period_end"])
        kept = {item["id"]: item for item in stored}
        log: dict[str, list[str]] = {"added": [], "updated": [], "deleted": []}
        added: list[dict[str, Any]] = []
        for n, spec in enumerate(changes.get("items", [])):
            self._item_change(obj, spec, f"items[{n}]", kept, added, log, period)
        if "items" in changes:
            priced = [(self.prices.store.require(i["price"]), "items") for i in kept.values()]
            priced += [(self.prices.store.require(i["price"]), "items") for i in added]
            self._terms(priced)
        collection = changes.get("collection_method", obj["collection_method"])
        if "days_until_due" in changes:
            days = changes["days_until_due"]
        else:  # moving to charge_automatically drops the terms
            days = obj["days_until_due"] if collection == "send_invoice" else None
        due_terms(collection, days)
        obj.update(collection_method=collection, days_until_due=days)
        if changes.get("billing_cycle_anchor") == "now":
            start = now
            end = add_interval(now, *self._interval(kept, added))
            period = (start, end)
            obj["billing_cycle_anchor"] = now
            for item_id, item in kept.items():
                kept[item_id] = {**item, "current_period_start": start, "current_period_end": end}
            for item in added:
                item.update(current_period_start=start, current_period_end=end)
        if "trial_end" in changes:
            self._move_trial(obj, changes["trial_end"], now, kept, added)
        self._schedule_cancel(obj, changes, now, period[1])
        for key in ("description",):
            if key in changes:
                obj[key] = changes[key]
        if "metadata" in changes:
            obj["metadata"] = changes["metadata"].apply(obj["metadata"])
        if "cancellation_details" in changes:
            obj["cancellation_details"] = {**obj["cancellation_details"],
                                           **changes["cancellation_details"]}  # fmt: skip
        # every check passed: write the items
        for item in stored:
            if item["id"] not in kept:
                self.item_store.mark_deleted(item["id"])
            elif kept[item["id"]] is not item:
                self.item_store.replace(kept[item["id"]])
        for item in added:
            self.item_store.insert(item)
        self.updates.setdefault(obj["id"], []).append({
            "proration_behavior": changes.get("proration_behavior", "create_prorations"),
            "payment_behavior": changes.get("payment_behavior", "allow_incomplete"),
            "fields": sorted(set(changes) - {"expand"}),
            **log,
        })  # fmt: skip

    def _interval(
        self, kept: Mapping[str, Mapping[str, Any]], added: list[dict[str, Any]]
    ) -> tuple[str, int]:
        item = next(iter(kept.values()), None) or added[0]
        recurring = self.prices.store.require(item["price"])["recurring"]
        return recurring["interval"], recurring["interval_count"]

    def _item_change(
        self,
        obj: Mapping[str, Any],
        spec: Mapping[str, Any],
        param: str,
        kept: dict[str, dict[str, Any]],
        added: list[dict[str, Any]],
        log: dict[str, list[str]],
        period: tuple[int, int],
    ) -> None:
        """One `items[n]` of an update, applied to `kept` (id -> item) or `added`."""
        item_id = spec.get("id")
        if item_id is None:
            if spec.get("deleted"):
                raise missing_parameter(f"{param}[id]")
            if "price" not in spec:
                raise missing_parameter(f"{param}[price]")
            price = self._price(spec["price"], f"{param}[price]")
            metadata = spec["metadata"].apply({}) if "metadata" in spec else {}
            quantity = self._quantity_of(price, spec, param)
            now = int(self.context.clock.now())
            item = self._new_item(obj["id"], price, quantity, metadata, period, now)
            added.append(item)
            log["added"].append(item["id"])
            return
        if item_id not in kept:
            raise no_such("subscription_item", item_id, f"{param}[id]", 400)
        if spec.get("deleted"):
            del kept[item_id]
            log["deleted"].append(item_id)
            return
        item = copy.deepcopy(kept[item_id])
        price = self.prices.store.require(item["price"])
        if "price" in spec and spec["price"] != item["price"]:
            price = self._price(spec["price"], f"{param}[price]")
            item["price"] = price["id"]
            item.pop("quantity", None)
            if (quantity := self._quantity_of(price, {}, param)) is not None:
                item["quantity"] = quantity
        if "quantity" in spec:
            item["quantity"] = self._quantity_of(price, spec, param)
        if "metadata" in spec:
            item["metadata"] = spec["metadata"].apply(item["metadata"])
        kept[item_id] = item
        log["updated"].append(item_id)

    def _move_trial(
        self,
        obj: dict[str, Any],
        trial_end: Any,
        now: int,
        kept: Mapping[str, Mapping[str, Any]],
        added: list[dict[str, Any]],
    ) -> None:
        """`trial_end=now` ends a trial: with nothing to charge it with, a charge_automatically
        subscription that owes money is `past_due` (ours); a future time starts or moves it."""
        if trial_end == "now":
            if obj["status"] != "trialing":
                return
            items = [*kept.values(), *added]
            due = sum(
                licensed_amount(self.prices.store.require(i["price"]), i.get("quantity"))
                for i in items
            )
            owes = obj["collection_method"] == "charge_automatically" and due > 0
            obj.update(status="past_due" if owes else "active", trial_end=now)
            return
        obj.update(trial_end=future(trial_end, now, "trial_end"), status="trialing")
        if obj["trial_start"] is None:
            obj["trial_start"] = now

    # -- cancel

    def cancel(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        """`DELETE /v1/subscriptions/{id}`: canceled now (`invoice_now`, `prorate` are taken
        and change nothing: no invoices here)."""
        assert object_id is not None
        check_known(params, {"cancellation_details", "expand", "invoice_now", "prorate"})
        expand = expand_names(params, self.expandable)
        details: dict[str, Any] = {}
        for key, value in params.items():
            if key in ("invoice_now", "prorate"):
                flag(key)(value)
            elif key == "cancellation_details":
                details = _cancellation_details(value, key)
        with self.store.lock:
            obj = copy.deepcopy(self.store.require(object_id))
            if obj["status"] in ENDED:
                raise invalid(  # ours: we did not find Stripe's wording
                    f"Subscription `{object_id}` is already {obj['status']}: it cannot be "
                    "canceled again.",
                )
            now = int(self.context.clock.now())
            obj.update(status="canceled", canceled_at=now, ended_at=now)
            obj["cancellation_details"] = {
                **obj["cancellation_details"],
                **details,
                "reason": "cancellation_requested",
            }
            self.store.replace(obj)
        return self.render(obj, expand)

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
        status = choice("status", STATUSES)(params.get("status", "active"))
        changes: dict[str, Any] = {}
        if "metadata" in params:
            changes["metadata"] = metadata_change(params["metadata"])
        lines = []
        for n, raw in enumerate(raw_items):
            param = f"items[{n}]"
            spec = item_params(raw, param, {"id", "metadata", "price", "quantity"})
            if "price" not in spec:
                raise missing_parameter(f"{param}[price]")
            price = self._price(spec["price"], f"{param}[price]", seeding=True)
            metadata = spec["metadata"].apply({}) if "metadata" in spec else {}
            lines.append((price, self._quantity_of(price, spec, param), metadata, spec.get("id")))
        created = None
        if params.get("created") is not None:
            created = _integer(params["created"], "created")
        return self.start(customer, lines, changes, object_id=params.get("id"),
                          created=created, status=status)  # fmt: skip


METERED_QUANTITY = "Quantity should not be specified where usage_type is `metered`."  # ours


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
            changes["quantity"] = quantity_param(params["quantity"], "quantity")
        if "metadata" in params:
            changes["metadata"] = metadata_change(params["metadata"])
        if "proration_behavior" in params:
            behavior = choice("proration_behavior", PRORATION_BEHAVIORS)
            changes["proration_behavior"] = behavior(params["proration_behavior"])
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
