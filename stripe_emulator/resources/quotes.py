"""Quotes and their line items (docs.stripe.com/api/quotes, docs.stripe.com/quotes/overview).

A quote is a draft while it is written (`POST /v1/quotes/{id}` edits it in place, and
`line_items` replaces the whole list: a listed `id` keeps that line, the others go), `open`
once finalized, then `accepted` or `canceled`; only a draft changes. Accepting creates what it
quoted, as Stripe does: a subscription when any line is recurring (the quote's `subscription`),
else a draft invoice of its lines (the quote's `invoice`). Amounts come from the lines (no
discounts or taxes). Accepts are counted per quote (`GET /_emulator/quote_accepts`). A line
item (`li_`) is a store the quote owns, indexed by quote. Objects carry the top-level fields of
the stripe SDK's `Quote` and `LineItem`; unmodelled ones are null, zero or empty.
"""

from __future__ import annotations

import copy
import functools
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

from ..errors import ApiError, invalid, missing_parameter, no_such
from ..forms import as_list
from .base import (
    CRUD_ROUTES,
    ObjectResource,
    ObjectStore,
    ResourceContext,
    choice,
    embedded_list,
    exact,
    one_cursor,
    text,
)
from .customers import CustomersResource
from .invoices import (
    INACTIVE_PRICE,
    InvoicesResource,
    built,
    line_amount,
    new_item,
    pricing_of,
    unsupported,
)
from .params import check_known, expand_names, hash_param, metadata_change, page_limit, string_param
from .prices import PricesResource, price_spec
from .subscriptions import (
    COLLECTION_METHODS,
    DAY,
    Line,
    SubscriptionsResource,
    days_param,
    due_terms,
    future,
    quantity_param,
    timestamp_param,
)

STATUSES = ("accepted", "canceled", "draft", "open")
DEFAULT_EXPIRY_DAYS = 30  # Stripe's default quote expiry (a setting in the Dashboard)
FIELDS = {
    "collection_method",
    "customer",
    "description",
    "expand",
    "expires_at",
    "footer",
    "header",
    "invoice_settings",
    "line_items",
    "metadata",
    "subscription_data",
}
# QuoteCreateParams / QuoteUpdateParams (stripe 16.x) this emulator does not model.
UNSUPPORTED = {
    "application_fee_amount",
    "application_fee_percent",
    "automatic_tax",
    "customer_account",
    "default_tax_rates",
    "discounts",
    "from_quote",
    "on_behalf_of",
    "test_clock",
    "transfer_data",
}
PRICE_DATA = ("currency", "product", "recurring", "tax_behavior", "unit_amount",
              "unit_amount_decimal")  # fmt: skip
EXPANDABLE = frozenset({"customer", "invoice", "line_items", "subscription"})
# action -> (the statuses it leaves, the status it makes, its `status_transitions` time)
TRANSITIONS = {
    "finalize": (("draft",), "open", "finalized_at"),
    "accept": (("open",), "accepted", "accepted_at"),
    "cancel": (("draft", "open"), "canceled", "canceled_at"),
}


def wrong_status(quote: Mapping[str, Any], action: str, allowed: str) -> ApiError:
    """Ours: we did not find Stripe's wording for a quote in the wrong state."""
    return invalid(
        f"You can only {action} a quote that is {allowed}; quote `{quote['id']}` is "
        f"{quote['status']}."
    )


def line_params(raw: Any, param: str, updating: bool) -> dict[str, Any]:
    """One `line_items[n]`: `price` or `price_data`, `quantity`; `id` (an update's kept line)."""
    if not isinstance(raw, Mapping):
        raise invalid(f"Invalid object: {param} must be a hash", param)
    unsupported(raw, {"discounts", "tax_rates"}, param)
    check_known(raw, {"price", "price_data", "quantity"} | ({"id"} if updating else set()), param)
    spec: dict[str, Any] = {}
    for key, value in raw.items():
        name = f"{param}[{key}]"
        if key in ("id", "price"):
            spec[key] = string_param(value, name, 5000, emptyable=False)
        elif key == "price_data":
            spec[key] = hash_param(value, name, PRICE_DATA)
        elif key == "quantity":
            spec[key] = quantity_param(value, name)
    if "price" in spec and "price_data" in spec:
        raise invalid("You may only specify one of these parameters: price, price_data.", param)
    if not ({"id", "price", "price_data"} & set(spec)):
        raise missing_parameter(f"{param}[price]")
    return spec


def quote_object(quote_id: str, created: int) -> dict[str, Any]:
    """A new draft; `apply` sets what the request gives, `render` the amounts."""
    return {
        "id": quote_id,
        "object": "quote",
        "amount_subtotal": 0,
        "amount_total": 0,
        "application": None,
        "application_fee_amount": None,
        "application_fee_percent": None,
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "collection_method": "charge_automatically",
        "computed": None,
        "created": created,
        "currency": None,
        "customer": None,
        "customer_account": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "expires_at": created + DAY * DEFAULT_EXPIRY_DAYS,
        "footer": None,
        "from_quote": None,
        "header": None,
        "invoice": None,
        "invoice_settings": {"days_until_due": None, "issuer": {"type": "self"}},
        "livemode": False,
        "metadata": {},
        "number": None,
        "on_behalf_of": None,
        "status": "draft",
        "status_transitions": {"accepted_at": None, "canceled_at": None, "finalized_at": None},
        "subscription": None,
        "subscription_data": {
            "billing_mode": {"flexible": None, "type": "classic"},
            "description": None,
            "effective_date": None,
            "metadata": None,
            "trial_period_days": None,
        },
        "subscription_schedule": None,
        "test_clock": None,
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "transfer_data": None,
    }


class QuotesResource(ObjectResource):
    name = "quotes"
    object_name = "quote"
    routes = (
        *CRUD_ROUTES,
        ("GET", "/{id}/line_items", "list_line_items"),
        ("POST", "/{id}/finalize", "finalize"),
        ("POST", "/{id}/accept", "accept"),
        ("POST", "/{id}/cancel", "cancel"),
    )
    expandable = EXPANDABLE
    filters = (exact("customer", text("customer")), exact("status", choice("status", STATUSES)))
    control_reads = {"quote_accepts": "quote_accepts"}

    def __init__(self, context: ResourceContext) -> None:
        super().__init__(context)
        # The quotes and their lines: two stores under one lock.
        store = functools.partial(ObjectStore, url="/v1/quotes", seed=context.seed, id_length=24,
                                  lock=threading.RLock())  # fmt: skip
        self.store = store(kind="quote", prefix="qt_", indexed=("customer", "status"))
        self.line_store = store(kind="line item", prefix="li_", indexed=("quote",))
        self.line_filter = exact("quote", text("quote"))
        self.customers = built(context, "customers", CustomersResource)
        self.prices = built(context, "prices", PricesResource)
        self.subscriptions = built(context, "subscriptions", SubscriptionsResource)
        self.invoices = built(context, "invoices", InvoicesResource)
        self.accepts: Counter[str] = Counter()  # quote id -> accepts that succeeded
        self.sequences: dict[str, int] = {}  # customer id -> its next quote number

    def reset(self, seed: int | None) -> None:
        with self.store.lock:
            for store in (self.store, self.line_store):
                store.reset(seed)
            self.accepts.clear()
            self.sequences.clear()

    def seed(self, items: list[Mapping[str, Any]]) -> list[str]:
        raise ValueError("cannot seed quotes: create them through the API (POST /v1/quotes)")

    def accepted(self) -> Counter[str]:
        """Quote id -> accepts that succeeded (a snapshot)."""
        with self.store.lock:
            return Counter(self.accepts)

    def quote_accepts(self) -> dict[str, int]:
        """`GET /_emulator/quote_accepts`."""
        return dict(self.accepted())

    def extra_stats(self) -> dict[str, Any]:
        return {"quote_accepts": self.accepted().total()}

    def dump(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        """As the API shows them with `line_items`, each with `accepts` added."""
        accepts = self.accepted()
        return [
            {**self.render(obj, ["line_items"]), "accepts": accepts[obj["id"]]}
            for obj in self.store.dump()
        ]

    # -- the quote object

    def changes(self, params: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        unsupported(params, UNSUPPORTED)
        check_known(params, FIELDS)
        expand_names(params, EXPANDABLE)
        changes: dict[str, Any] = {}
        for key, value in params.items():
            if key == "customer":
                changes[key] = string_param(value, key, 5000, emptyable=False)
            elif key == "collection_method":
                changes[key] = choice(key, COLLECTION_METHODS)(value)
            elif key in ("description", "footer"):
                changes[key] = string_param(value, key, 500)
            elif key == "header":
                changes[key] = string_param(value, key, 50)
            elif key == "expires_at":
                changes[key] = timestamp_param(value, key)
            elif key == "metadata":
                changes[key] = metadata_change(value)
            elif key == "line_items":
                changes[key] = [
                    line_params(raw, f"line_items[{n}]", not creating)
                    for n, raw in enumerate(as_list(value, key))
                ]
            elif key == "invoice_settings":
                unsupported(value if isinstance(value, Mapping) else {},
                            {"custom_fields", "description", "footer", "issuer"}, key)  # fmt: skip
                given = hash_param(value, key, ("days_until_due",))
                days = given.get("days_until_due", "")
                changes[key] = None if days == "" else days_param(days, f"{key}[days_until_due]")
            elif key == "subscription_data":
                changes[key] = self._subscription_data(value)
        return changes

    def _subscription_data(self, value: Any) -> dict[str, Any]:
        key = "subscription_data"
        unsupported(value if isinstance(value, Mapping) else {},
                    {"billing_mode", "effective_date"}, key)  # fmt: skip
        given = hash_param(value, key, ("description", "metadata", "trial_period_days"))
        data: dict[str, Any] = {}
        if "description" in given:
            data["description"] = string_param(given["description"], f"{key}[description]", 500)
        if "metadata" in given:
            data["metadata"] = metadata_change(given["metadata"])
        if "trial_period_days" in given:
            days = given["trial_period_days"]
            param = f"{key}[trial_period_days]"
            data["trial_period_days"] = None if days == "" else days_param(days, param)
        return data

    def insert(
        self, changes: Mapping[str, Any], *, object_id: str | None = None, created: Any = None
    ) -> dict[str, Any]:
        with self.store.lock:
            obj = quote_object(self.store.new_id(), int(self.context.clock.now()))
            self.apply(obj, changes)
            return self.store.insert(obj)

    def apply(self, obj: dict[str, Any], changes: Mapping[str, Any]) -> None:
        """A draft's fields and lines; every check before the lines are written."""
        if obj["status"] != "draft":
            raise wrong_status(obj, "update", "a draft")  # Stripe: finalized quotes are fixed
        now = int(self.context.clock.now())
        if "customer" in changes:
            obj["customer"] = self.customers.store.require(changes["customer"], "customer", 400)[
                "id"
            ]
        for key in ("collection_method", "description", "footer", "header"):
            if key in changes:
                obj[key] = changes[key]
        if "expires_at" in changes:
            obj["expires_at"] = future(changes["expires_at"], now, "expires_at")
        if "metadata" in changes:
            obj["metadata"] = changes["metadata"].apply(obj["metadata"])
        if "invoice_settings" in changes:
            obj["invoice_settings"] = {**obj["invoice_settings"],
                                       "days_until_due": changes["invoice_settings"]}  # fmt: skip
        if obj["collection_method"] != "send_invoice":
            obj["invoice_settings"] = {**obj["invoice_settings"], "days_until_due": None}
        data = dict(obj["subscription_data"])
        for key, value in changes.get("subscription_data", {}).items():
            data[key] = value.apply(data[key] or {}) if key == "metadata" else value
        obj["subscription_data"] = data
        if "line_items" in changes:
            self._replace_lines(obj, changes["line_items"])

    def _replace_lines(self, obj: dict[str, Any], specs: list[dict[str, Any]]) -> None:
        """The new list: lines named by `id` stay (their quantity may change), new ones are
        priced, the rest go. Prices: active ones of the catalog, or made from `price_data`."""
        current = {line["id"]: line for line in self.line_store.where("quote", obj["id"])}
        lines: list[dict[str, Any]] = []
        for n, spec in enumerate(specs):
            param = f"line_items[{n}]"
            if "id" in spec:
                if spec["id"] not in current:
                    raise no_such("line item", spec["id"], f"{param}[id]", 400)
                line = dict(current[spec["id"]])
            else:
                line = {"id": None, "object": "item", "quote": obj["id"], "quantity": 1}
            if "price" in spec:
                price = self.prices.store.require(spec["price"], f"{param}[price]", 400)
                if not price["active"]:
                    raise invalid(INACTIVE_PRICE, f"{param}[price]")
                line["price"] = price["id"]
            elif "price_data" in spec:
                line["_price_data"] = (spec["price_data"], f"{param}[price_data]")
            if "quantity" in spec:
                line["quantity"] = spec["quantity"]
            lines.append(line)
        for line in lines:  # made last: a refused request leaves no prices behind but these
            if "_price_data" in line:
                given, param = line.pop("_price_data")
                line["price"] = self.prices.insert(price_spec({**given, "active": False}))["id"]
        self._check_terms([self.prices.store.require(line["price"]) for line in lines])
        kept = {line["id"] for line in lines}
        for line_id in current:
            if line_id not in kept:
                self.line_store.mark_deleted(line_id)
        for line in lines:
            if line["id"] is None:
                self.line_store.insert({**line, "id": self.line_store.new_id()})
            elif line != current[line["id"]]:
                self.line_store.replace(line)
        obj["currency"] = (
            self.prices.store.require(lines[0]["price"])["currency"] if lines else None
        )

    def _check_terms(self, prices: list[Mapping[str, Any]]) -> None:
        """One currency, and one billing interval among the recurring prices (ours)."""
        if len({price["currency"] for price in prices}) > 1:
            raise invalid("All prices on a quote must have the same currency.", "line_items")
        intervals = {
            (price["recurring"]["interval"], price["recurring"]["interval_count"])
            for price in prices
            if price["recurring"] is not None
        }
        if len(intervals) > 1:
            raise invalid(
                "All recurring prices on a quote must have the same billing interval.",
                "line_items",
            )

    def render(self, obj: Mapping[str, Any], expand: list[str]) -> dict[str, Any]:
        shown = dict(obj)
        with self.store.lock:
            lines = [self.render_line(line) for line in self.line_store.where("quote", obj["id"])]
        total = sum(line["amount_total"] for line in lines)
        recurring = [line for line in lines if line["price"]["recurring"] is not None]
        totals = {"amount_subtotal": total, "amount_total": total,
                  "total_details": dict(obj["total_details"])}  # fmt: skip
        shown.update(amount_subtotal=total, amount_total=total)
        shown["computed"] = {"recurring": None, "upfront": totals}
        if recurring:
            terms = recurring[0]["price"]["recurring"]
            amount = sum(line["amount_total"] for line in recurring)
            shown["computed"]["recurring"] = {
                "amount_subtotal": amount,
                "amount_total": amount,
                "interval": terms["interval"],
                "interval_count": terms["interval_count"],
                "total_details": dict(obj["total_details"]),
            }
        if "line_items" in expand:
            shown["line_items"] = embedded_list(lines, f"/v1/quotes/{obj['id']}/line_items")
        if "customer" in expand and obj["customer"] is not None:
            customer = self.customers.store.get(obj["customer"])
            shown["customer"] = self.customers.render(customer, []) if customer else None
        if "subscription" in expand and obj["subscription"] is not None:
            subscription = self.subscriptions.store.require(obj["subscription"])
            shown["subscription"] = self.subscriptions.render(subscription, [])
        if "invoice" in expand and obj["invoice"] is not None:
            shown["invoice"] = self.invoices.render(self.invoices.store.require(obj["invoice"]), [])
        return shown

    def render_line(self, line: Mapping[str, Any]) -> dict[str, Any]:
        price = self.prices.store.require(line["price"])
        product = self.prices.products.store.get(price["product"])
        amount = line_amount(price["unit_amount_decimal"], line["quantity"])
        return {
            "id": line["id"],
            "object": "item",
            "amount_discount": 0,
            "amount_subtotal": amount,
            "amount_tax": 0,
            "amount_total": amount,
            "currency": price["currency"],
            "description": product["name"] if product else None,
            "price": self.prices.render(price, []),
            "quantity": line["quantity"],
        }

    def list_line_items(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        """Oldest first, as the quote shows them; cursors are line item ids."""
        assert object_id is not None
        self.store.require(object_id)
        check_known(params, {"ending_before", "expand", "limit", "starting_after"})
        expand_names(params, (), "data.")
        one_cursor(params)
        wanted = [(self.line_filter, object_id)]
        page = self.line_store.list_page(params, page_limit(params), wanted, oldest_first=True)
        data = [self.render_line(line) for line in page["data"]]
        return {**page, "data": data, "url": f"/v1/quotes/{object_id}/line_items"}

    # -- the lifecycle: draft -> open -> accepted, draft or open -> canceled

    def _move(
        self, action: str, params: Mapping[str, Any], object_id: str | None, known: set[str]
    ) -> dict[str, Any]:
        """One step of `TRANSITIONS` on a private copy under the lock: its own checks and
        effects (`_on_<action>`) first, then the status and its `status_transitions` time."""
        assert object_id is not None
        check_known(params, known | {"expand"})
        expand = expand_names(params, EXPANDABLE)
        sources, target, moment = TRANSITIONS[action]
        with self.store.lock:
            quote = copy.deepcopy(self.store.require(object_id))
            if quote["status"] not in sources:
                raise wrong_status(quote, action, " or ".join(sources))
            now = int(self.context.clock.now())
            getattr(self, f"_on_{action}")(quote, now, params)
            quote["status"] = target
            quote["status_transitions"][moment] = now
            self.store.replace(quote)
        return self.render(quote, expand)

    def finalize(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        return self._move("finalize", params, object_id, {"expires_at"})

    def accept(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        return self._move("accept", params, object_id, set())

    def cancel(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        return self._move("cancel", params, object_id, set())

    def _on_finalize(self, quote: dict[str, Any], now: int, params: Mapping[str, Any]) -> None:
        """A customer (Stripe's rule), a line (ours) and live terms; then its number."""
        if quote["customer"] is None:
            raise missing_parameter("customer")
        if not self.line_store.where("quote", quote["id"]):
            raise invalid("A quote needs at least one line item to be finalized.")  # ours
        terms = quote["invoice_settings"]["days_until_due"]
        due_terms(quote["collection_method"], terms, "invoice_settings")
        if "expires_at" in params:
            expires_at = timestamp_param(params["expires_at"], "expires_at")
            quote["expires_at"] = future(expires_at, now, "expires_at")
        self._unexpired(quote, now)
        customer = self.customers.store.require(quote["customer"], "customer", 400)
        sequence = self.sequences.get(customer["id"], 1)
        self.sequences[customer["id"]] = sequence + 1
        quote["number"] = f"QT-{customer['invoice_prefix']}-{sequence:04d}"

    def _on_accept(self, quote: dict[str, Any], now: int, params: Mapping[str, Any]) -> None:
        """Creates what the quote sold: a subscription when any line recurs, else an invoice."""
        self._unexpired(quote, now)
        lines = self.line_store.where("quote", quote["id"])
        priced = [(self.prices.store.require(line["price"]), line) for line in lines]
        if any(price["recurring"] is not None for price, _ in priced):
            quote["subscription"] = self._subscribe(quote, priced)
        else:
            quote["invoice"] = self._invoice(quote, priced, now)
        self.accepts[quote["id"]] += 1

    def _on_cancel(self, quote: dict[str, Any], now: int, params: Mapping[str, Any]) -> None:
        """Nothing else changes: a canceled quote keeps its lines."""

    def _unexpired(self, quote: Mapping[str, Any], now: int) -> None:
        if quote["expires_at"] <= now:
            raise invalid(f"Quote `{quote['id']}` has expired.", "expires_at")  # ours

    def _subscribe(self, quote: Mapping[str, Any], priced: list[Any]) -> str:
        """The quote's recurring lines as a subscription; it starts as a subscription created
        with `payment_behavior=default_incomplete` would (no payment method exists here)."""
        lines: list[Line] = []
        for price, line in priced:
            if price["recurring"] is None:
                continue  # Stripe bills these on the first invoice: not emulated
            metered = price["recurring"]["usage_type"] == "metered"
            lines.append((price, None if metered else line["quantity"], {}, None))
        data = quote["subscription_data"]
        changes: dict[str, Any] = {
            "collection_method": quote["collection_method"],
            "days_until_due": quote["invoice_settings"]["days_until_due"],
            "description": data["description"],
            "metadata": metadata_change(data["metadata"] or {}),
            "payment_behavior": "default_incomplete",
            "trial_period_days": data["trial_period_days"] or 0,
        }
        return str(self.subscriptions.start(quote["customer"], lines, changes)["id"])

    def _invoice(self, quote: Mapping[str, Any], priced: list[Any], now: int) -> str:
        """The quote's one-time lines as a draft invoice (auto_advance on, as Stripe's)."""
        invoices = self.invoices
        changes: dict[str, Any] = {
            "customer": quote["customer"],
            "collection_method": quote["collection_method"],
            "auto_advance": True,
            "description": quote["description"],
            "footer": quote["footer"],
        }
        if quote["collection_method"] == "send_invoice":
            changes["days_until_due"] = quote["invoice_settings"]["days_until_due"]
        with invoices.store.lock:
            invoice = invoices.insert(changes)
            for price, line in priced:
                item = new_item(invoices.item_store.new_id(), quote["customer"], invoice, now)
                amount = line_amount(price["unit_amount_decimal"], line["quantity"])
                item.update(pricing=pricing_of(price), currency=price["currency"],
                            quantity=line["quantity"], quantity_decimal=str(line["quantity"]),
                            amount=amount, net_amount=amount)  # fmt: skip
                invoices.item_store.insert(item)
                invoices._attach(item, invoice["id"])
            parent = {"quote_details": {"quote": quote["id"]}, "subscription_details": None,
                      "type": "quote_details"}  # fmt: skip
            invoices.store.replace({**invoices.store.require(invoice["id"]), "parent": parent})
        return str(invoice["id"])
