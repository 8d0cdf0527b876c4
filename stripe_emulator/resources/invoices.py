"""Invoices, their lines, and invoice items (docs.stripe.com/api/invoices,
docs.stripe.com/api/invoice-line-item, docs.stripe.com/api/invoiceitems).

An invoice item is what is billed; a line is an item as it appears on one invoice. So the item
store holds the amounts, and the line store only ties a line id (`il_`) to its item and invoice:
`remove_lines` with `behavior=unassign` drops the line and makes the item pending again, and a
pending item gets a new line when an invoice takes it. All three stores share one lock, so a
sweep, a line edit and an item edit are atomic together.

Lifecycle (Stripe's): draft -> open (finalize; paid at once when nothing is due) -> paid, void
or uncollectible; uncollectible -> paid or void. Lines and amounts change only on a draft.
Nothing is charged and no email goes out: `send` counts the emails it would send per invoice
(`GET /_emulator/invoice_emails`). Objects carry the top-level fields of Stripe's samples
(stripe/openapi `fixtures3.json`); unmodelled ones are null, zero or empty.
"""

from __future__ import annotations

import copy
import threading
from collections import Counter
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeVar

from ..errors import ApiError, invalid, missing_parameter, no_such
from ..forms import as_list
from .base import (
    CRUD_ROUTES,
    DELETE_ROUTE,
    Filter,
    ObjectResource,
    ObjectStore,
    Resource,
    ResourceContext,
    choice,
    created_range,
    exact,
    one_cursor,
    text,
)
from .customers import CustomersResource
from .params import MetadataChange, check_known, expand_names, metadata_change, page_limit
from .params import boolean_param as _boolean
from .params import enum_param as _enum
from .params import hash_param as _hash
from .params import integer_param as _integer
from .params import string_param as _string
from .prices import PricesResource, price_spec

Built = TypeVar("Built", bound=Resource)
MAX_LINES = 250  # Stripe: at most 250 invoice items (lines) per invoice
DAY = 86400
STATUSES = ("draft", "open", "paid", "uncollectible", "void")
FINAL = ("open", "paid", "uncollectible", "void")
COLLECTION_METHODS = ("charge_automatically", "send_invoice")
EXPANDABLE = frozenset({"customer"})
# Parameters Stripe takes on items and lines that this emulator does not model.
ITEM_UNSUPPORTED = {
    "customer_account",
    "discounts",
    "invoicing_rules",
    "quantity_decimal",
    "subscription",
    "tax_amounts",
    "tax_behavior",
    "tax_code",
    "unit_amount_decimal",
}
ITEM_FIELDS = {
    "amount",
    "description",
    "discountable",
    "metadata",
    "period",
    "price",
    "price_data",
    "pricing",
    "quantity",
    "tax_rates",
}
INVOICE_UNSUPPORTED = {
    "account_tax_ids",
    "application_fee_amount",
    "automatic_tax",
    "automatically_finalizes_at",
    "customer_account",
    "default_payment_method",
    "default_source",
    "default_tax_rates",
    "discounts",
    "effective_at",
    "from_invoice",
    "issuer",
    "number",
    "on_behalf_of",
    "payment_settings",
    "rendering",
    "shipping_cost",
    "shipping_details",
    "subscription",
    "transfer_data",
}
INVOICE_FIELDS = {
    "auto_advance",
    "collection_method",
    "custom_fields",
    "days_until_due",
    "description",
    "due_date",
    "expand",
    "footer",
    "metadata",
    "statement_descriptor",
}
# What a finalized invoice still takes: Stripe freezes amounts and `collection_method`.
FINALIZED_EDITABLE = INVOICE_FIELDS - {"collection_method"}
# POST /v1/invoices/{id}/<action>: the lines of a draft, then the lifecycle.
ACTIONS = (
    "add_lines",
    "update_lines",
    "remove_lines",
    "finalize",
    "send",
    "pay",
    "void",
    "mark_uncollectible",
)

# Stripe's wording; the others marked "ours" are close to, not copied from, Stripe's.
REFINALIZE = "This invoice is already finalized, you can't re-finalize a non-draft invoice."
SEND_NOT_SEND_INVOICE = (
    "You can only manually send an invoice if its collection method is 'send_invoice'."
)
INACTIVE_PRICE = "The price specified is inactive. This field only accepts active prices."
RECURRING_PRICE = (
    "The price specified is set to `type=recurring` but this field only accepts prices with "
    "`type=one_time`."
)
NO_PAYMENT_METHOD = "This customer has no attached payment source or default payment method."


def not_editable(message: str, param: str | None = None) -> ApiError:
    return invalid(message, param, "invoice_not_editable")


def wrong_status(invoice: Mapping[str, Any], action: str, allowed: str) -> ApiError:
    """Ours: Stripe refuses these with a 400 naming the status; we did not find its wording."""
    return invalid(
        f"You can only {action} an invoice that is {allowed}; invoice `{invoice['id']}` is "
        f"{invoice['status']}.",
        None,
        "invoice_not_editable" if invoice["status"] != "draft" else None,
    )


def draft_only(invoice: Mapping[str, Any]) -> None:
    """Lines and amounts change only while the invoice is a draft (ours)."""
    if invoice["status"] != "draft":
        raise not_editable(
            f"Invoice `{invoice['id']}` is {invoice['status']}: its lines can only change "
            "while it is a draft."
        )


def too_many_lines(invoice_id: str) -> ApiError:
    return invalid(f"An invoice can have at most {MAX_LINES} lines: `{invoice_id}` is full.")


def _currency(value: Any, param: str) -> str:
    code = value.lower() if isinstance(value, str) else ""
    if len(code) != 3 or not code.isalpha():
        raise invalid(f"Invalid currency: {value}", param)
    return code


def _timestamp(value: Any, param: str) -> int:
    moment = _integer(value, param)
    if moment < 0:
        raise invalid(f"Invalid {param}: must be a unix timestamp", param)
    return moment


def _period(value: Any, param: str) -> dict[str, int]:
    given = _hash(value, param, ("end", "start"))
    for part in ("end", "start"):
        if part not in given:
            raise missing_parameter(f"{param}[{part}]")
    start = _timestamp(given["start"], f"{param}[start]")
    end = _timestamp(given["end"], f"{param}[end]")
    if end < start:
        raise invalid(f"Invalid {param}: end must be at or after start", f"{param}[end]")
    return {"end": end, "start": start}


def _tax_rates(value: Any, param: str) -> list[str]:
    """No tax rates exist here: an empty list (or "") is all a request may name."""
    rates = [] if value == "" else as_list(value, param)
    if rates:
        raise no_such("tax_rate", str(rates[0]), f"{param}[0]", 400)
    return []


def _custom_fields(value: Any) -> list[dict[str, str]] | None:
    if value == "":
        return None
    fields = as_list(value, "custom_fields")
    if len(fields) > 4:
        raise invalid("Invalid array: custom_fields can have at most 4 items", "custom_fields")
    result = []
    for index, raw in enumerate(fields):
        param = f"custom_fields[{index}]"
        given = _hash(raw, param, ("name", "value"))
        pair = {}
        for part, limit in (("name", 40), ("value", 140)):
            if part not in given:
                raise missing_parameter(f"{param}[{part}]")
            pair[part] = _string(given[part], f"{param}[{part}]", limit, False) or ""
        result.append(pair)
    return result or None


def unsupported(params: Mapping[str, Any], names: set[str], prefix: str = "") -> None:
    for key in params:
        if key in names:
            param = f"{prefix}[{key}]" if prefix else key
            raise invalid(f"{param} is not supported by this emulator.", param)


# -- items: validation, then pricing against the catalog


def item_changes(raw: Any, prefix: str, extra: AbstractSet[str] = frozenset()) -> dict[str, Any]:
    """The billing fields of an item or a line (`lines[0]`), validated; `_price`, `_price_data`
    and `amount` are resolved later, under the lock, by `price_item`."""
    if not isinstance(raw, Mapping):
        raise invalid(f"Invalid object: {prefix or 'params'} must be a hash", prefix or None)

    def name(key: str) -> str:
        return f"{prefix}[{key}]" if prefix else key

    unsupported(raw, ITEM_UNSUPPORTED, prefix)
    check_known(raw, ITEM_FIELDS | extra, prefix)
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "amount":
            changes[key] = _integer(value, name(key))
        elif key == "description":
            changes[key] = _string(value, name(key), 5000)
        elif key == "discountable":
            changes[key] = _boolean(value, name(key))
        elif key == "metadata":
            changes[key] = metadata_change(value)
        elif key == "period":
            changes[key] = _period(value, name(key))
        elif key == "price":  # the form before `pricing[price]`
            changes["_price"] = (_string(value, name(key), 5000, False), name(key))
        elif key == "pricing":
            given = _hash(value, name(key), ("price",))
            if "price" in given:
                param = f"{name(key)}[price]"
                if "_price" in changes:
                    raise invalid(
                        "You may only specify one of these parameters: price, pricing[price].",
                        param,
                    )
                changes["_price"] = (_string(given["price"], param, 5000, False), param)
        elif key == "price_data":
            changes["_price_data"] = (value, name(key))
        elif key == "quantity":
            quantity = _integer(value, name(key))
            if quantity < 0:
                raise invalid(f"Invalid {name(key)}: must be at least 0", name(key))
            changes[key] = quantity
        elif key == "tax_rates":
            changes[key] = _tax_rates(value, name(key))
        elif key in extra:
            changes[key] = value
    sources = [k for k in ("_price", "_price_data", "amount") if k in changes]
    if len(sources) > 1:
        names = ", ".join(source.lstrip("_") for source in sources)
        raise invalid(f"You may only specify one of these parameters: {names}.", name("amount"))
    if "amount" in changes and changes.get("quantity", 1) != 1:
        # ours: an amount is the line's total; a per-unit charge names a price
        raise invalid(
            "`quantity` can only be 1 with `amount`; give `pricing[price]` or `price_data` to "
            "charge per unit.",
            name("quantity"),
        )
    return changes


def built(context: ResourceContext, name: str, kind: type[Built]) -> Built:
    """A resource built before this one, as its class."""
    resource = context.resources[name]
    assert isinstance(resource, kind)
    return resource


def line_amount(unit_amount_decimal: str, quantity: int) -> int:
    exact_amount = Decimal(unit_amount_decimal) * quantity
    return int(exact_amount.to_integral_value(rounding=ROUND_HALF_UP))


class InvoicesResource(ObjectResource):
    name = "invoices"
    object_name = "invoice"
    routes = (
        *CRUD_ROUTES,
        DELETE_ROUTE,
        ("GET", "/{id}/lines", "list_lines"),
        *(("POST", f"/{{id}}/{action}", action) for action in ACTIONS),
    )
    control_reads = {"invoice_emails": "invoice_emails"}
    expandable = EXPANDABLE
    filters = (
        exact("customer", text("customer")),
        exact("status", choice("status", STATUSES)),
        exact("collection_method", choice("collection_method", COLLECTION_METHODS)),
        created_range(),
    )

    def __init__(self, context: ResourceContext) -> None:
        super().__init__(context)
        # Invoices, their items and lines: three stores under one lock.
        lock = threading.RLock()
        stores = {
            name: ObjectStore(kind=kind, prefix=prefix, url=url, seed=context.seed, id_length=24,
                              indexed=indexed, lock=lock)
            for name, kind, prefix, url, indexed in (
                ("store", "invoice", "in_", "/v1/invoices", ("customer", "status")),
                ("item_store", "invoiceitem", "ii_", "/v1/invoiceitems", ("customer", "invoice")),
                ("line_store", "invoice line item", "il_", "/v1/invoices",
                 ("invoice", "invoice_item")),
            )
        }  # fmt: skip
        self.store, self.item_store = stores["store"], stores["item_store"]
        self.line_store = stores["line_store"]
        self.customers = built(context, "customers", CustomersResource)
        self.prices = built(context, "prices", PricesResource)
        self.emails: Counter[str] = Counter()  # invoice id -> emails `send` would have sent
        self.sequences: dict[str, int] = {}  # customer id -> its next invoice number

    def reset(self, seed: int | None) -> None:
        with self.store.lock:
            super().reset(seed)
            self.item_store.reset(seed)
            self.line_store.reset(seed)
            self.emails.clear()
            self.sequences.clear()

    def seed(self, items: list[Mapping[str, Any]]) -> list[str]:
        raise ValueError(
            "cannot seed invoices: create them through the API (POST /v1/invoices, add_lines), "
            "or seed pending `invoiceitems` and create an invoice that includes them"
        )

    def invoice_emails(self) -> dict[str, int]:
        """`GET /_emulator/invoice_emails`: invoice id -> emails sent (`send` calls)."""
        with self.store.lock:
            return dict(self.emails)

    def extra_stats(self) -> dict[str, Any]:
        with self.store.lock:
            return {"invoice_emails_sent": sum(self.emails.values())}

    def dump(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        """As the API shows them (lines and totals), each with `emails_sent` added."""
        shown = []
        for obj in self.store.dump(include_deleted):
            if obj.get("deleted"):
                shown.append(obj)
                continue
            invoice = self.render(obj, [])
            invoice["emails_sent"] = self.emails[obj["id"]]
            shown.append(invoice)
        return shown

    # -- the invoice object

    def changes(self, params: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        unsupported(params, INVOICE_UNSUPPORTED)
        known = INVOICE_FIELDS | ({"customer", "currency", "pending_invoice_items_behavior"}
                                  if creating else set())  # fmt: skip
        check_known(params, known)
        if creating and "customer" not in params:
            raise missing_parameter("customer")
        changes: dict[str, Any] = {}
        for key, value in params.items():
            if key == "customer":
                changes[key] = _string(value, key, 5000, False)
            elif key == "currency":
                changes[key] = _currency(value, key)
            elif key == "pending_invoice_items_behavior":
                changes[key] = _enum(value, key, ("exclude", "include"))
            elif key == "auto_advance":
                changes[key] = _boolean(value, key)
            elif key == "collection_method":
                changes[key] = _enum(value, key, COLLECTION_METHODS)
            elif key == "custom_fields":
                changes[key] = _custom_fields(value)
            elif key == "days_until_due":
                days = _integer(value, key)
                if not 0 <= days <= 3650:  # ours
                    raise invalid("Invalid days_until_due: must be between 0 and 3650", key)
                changes[key] = days
            elif key == "due_date":
                changes[key] = _timestamp(value, key)
            elif key in ("description", "footer"):
                changes[key] = _string(value, key, 5000)
            elif key == "statement_descriptor":
                changes[key] = _string(value, key, 22)
            elif key == "metadata":
                changes[key] = metadata_change(value)
            elif key == "expand":
                expand_names(params, EXPANDABLE)
        return changes

    def insert(
        self, changes: Mapping[str, Any], *, object_id: str | None = None, created: Any = None
    ) -> dict[str, Any]:
        with self.store.lock:
            customer = self.creating(self.store, object_id, changes)
            include = changes.get("pending_invoice_items_behavior", "exclude") == "include"
            pending = [
                item
                for item in self.item_store.where("customer", customer["id"])
                if item["invoice"] is None
            ]
            currency = (
                changes.get("currency")
                or customer["currency"]
                or (pending[0]["currency"] if include and pending else "usd")
            )
            swept = [item for item in pending if include and item["currency"] == currency]
            now = int(self.context.clock.now()) if created is None else int(created)
            obj = invoice_object(object_id or self.store.new_id(), customer, currency, now, changes)
            self._check_terms(obj)
            if len(swept) > MAX_LINES:
                raise too_many_lines(obj["id"])
            self.store.insert(obj)
            for item in swept:
                self._attach(item, obj["id"])
            return obj

    def creating(
        self, store: ObjectStore, object_id: str | None, changes: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The customer of a new invoice or item, once its id is known to be free."""
        store.check_unused(object_id)
        return self.customers.store.require(changes["customer"], "customer", 400)

    def _check_terms(self, obj: Mapping[str, Any]) -> None:
        """Stripe's rule (our wording): `send_invoice` needs a due date, and only it has one."""
        send = obj["collection_method"] == "send_invoice"
        terms = obj["days_until_due"] is not None or obj["due_date"] is not None
        if send and not terms:
            raise invalid(
                "Invoices with collection_method=send_invoice need days_until_due or due_date.",
                "days_until_due",
            )
        if not send and terms:
            param = "days_until_due" if obj["days_until_due"] is not None else "due_date"
            raise invalid(f"{param} can only be set when collection_method is send_invoice.", param)

    def apply(self, obj: dict[str, Any], changes: Mapping[str, Any]) -> None:
        if obj["status"] != "draft":
            for key in changes:
                if key not in FINALIZED_EDITABLE:
                    raise not_editable(
                        f"You can't change `{key}` on invoice `{obj['id']}`: it is finalized "
                        f"({obj['status']}), and finalized invoices keep their amounts and "
                        "collection method.",  # ours
                        key,
                    )
        if obj["status"] in ("paid", "void") and set(changes) - {"metadata", "expand"}:
            raise not_editable(  # ours
                f"Invoice `{obj['id']}` is {obj['status']}: only its metadata can change.",
                next(iter(set(changes) - {"metadata", "expand"})),
            )
        for key, value in changes.items():
            if key == "metadata":
                obj["metadata"] = value.apply(obj["metadata"])
            elif key == "collection_method" and value == "charge_automatically":
                obj.update(collection_method=value, days_until_due=None, due_date=None)
            elif key == "days_until_due" and "due_date" not in changes:
                obj.update(days_until_due=value, due_date=None)
            elif key == "due_date" and "days_until_due" not in changes:
                obj.update(due_date=value, days_until_due=None)
            elif key != "expand":
                obj[key] = value
        self._check_terms(obj)
        finalized_at = obj["status_transitions"]["finalized_at"]
        if finalized_at is not None and obj["due_date"] is None and obj["days_until_due"]:
            obj["due_date"] = finalized_at + DAY * obj["days_until_due"]

    def check_delete(self, object_id: str) -> None:
        """A draft goes with its items (our choice: we did not find Stripe documenting it)."""
        invoice = self.store.require(object_id)
        if invoice["status"] != "draft":
            raise wrong_status(invoice, "delete", "a draft")
        for line in self.line_store.where("invoice", object_id):
            self.line_store.mark_deleted(line["id"])
            self.item_store.mark_deleted(line["invoice_item"])

    def render(self, obj: Mapping[str, Any], expand: list[str]) -> dict[str, Any]:
        shown = dict(obj)
        del shown["days_until_due"]  # kept for `due_date` at finalization; not in the object
        with self.store.lock:
            lines = [self.render_line(line) for line in self.line_store.where("invoice", obj["id"])]
        subtotal = sum(line["amount"] for line in lines)
        due = max(subtotal, 0)
        paid = due if obj["status"] == "paid" else 0
        for total in ("subtotal", "subtotal_excluding_tax", "total", "total_excluding_tax"):
            shown[total] = subtotal  # no discounts or taxes here
        shown.update(amount_due=due, amount_paid=paid, amount_remaining=due - paid)
        url = f"/v1/invoices/{obj['id']}/lines"
        first = lines[:10]
        shown["lines"] = {"object": "list", "data": first, "has_more": len(lines) > 10, "url": url}
        if "customer" in expand:
            customer = self.customers.store.get(obj["customer"])
            if customer is not None:
                shown["customer"] = self.customers.render(customer, [])
        return shown

    # -- lines

    def render_line(self, line: Mapping[str, Any]) -> dict[str, Any]:
        item = self.item_store.require(line["invoice_item"])
        return {
            "id": line["id"],
            "object": "line_item",
            "amount": item["amount"],
            "currency": item["currency"],
            "description": item["description"],
            "discount_amounts": [],
            "discountable": item["discountable"],
            "discounts": [],
            "invoice": line["invoice"],
            "livemode": False,
            "metadata": item["metadata"],
            "parent": {
                "invoice_item_details": {
                    "invoice_item": item["id"],
                    "proration": False,
                    "proration_details": {"credited_items": None},
                    "subscription": None,
                },
                "subscription_item_details": None,
                "type": "invoice_item_details",
            },
            "period": item["period"],
            "pretax_credit_amounts": [],
            "pricing": item["pricing"],
            "quantity": item["quantity"],
            "quantity_decimal": item["quantity_decimal"],
            "subscription": None,
            "subtotal": item["amount"],
            "taxes": [],
        }

    def list_lines(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        """Oldest first, as the invoice shows them; cursors are line ids."""
        assert object_id is not None
        check_known(params, {"ending_before", "expand", "limit", "starting_after"})
        expand_names(params, (), "data.")
        limit = page_limit(params)
        one_cursor(params)
        with self.store.lock:
            self.store.require(object_id)
            lines = self.line_store.where("invoice", object_id)
            ids = [line["id"] for line in lines]
            start, end = 0, len(lines)
            for name in ("starting_after", "ending_before"):
                if name in params:
                    cursor = _string(params[name], name, emptyable=False) or ""
                    if cursor not in ids:
                        raise no_such("invoice line item", cursor, name, 400)
                    if name == "starting_after":
                        start = ids.index(cursor) + 1
                    else:
                        end = ids.index(cursor)
                        start = max(end - limit, 0)
            page = lines[start : min(start + limit, end)]
            more = start + limit < end if "ending_before" not in params else start > 0
            data = [self.render_line(line) for line in page]
        return {
            "object": "list",
            "data": data,
            "has_more": more,
            "url": f"/v1/invoices/{object_id}/lines",
        }

    def _lines_request(
        self, params: Mapping[str, Any], object_id: str | None, entry: set[str]
    ) -> tuple[list[Any], MetadataChange | None, list[str]]:
        """The `lines[]` of add/update/remove_lines, `invoice_metadata`, and `expand`."""
        check_known(params, {"expand", "invoice_metadata", "lines"})
        if "lines" not in params:
            raise missing_parameter("lines")
        raw_lines = as_list(params["lines"], "lines")
        if not raw_lines:
            raise invalid("Invalid array: lines must contain at least one line", "lines")
        metadata = None
        if "invoice_metadata" in params:
            metadata = metadata_change(params["invoice_metadata"])
        expand = expand_names(params, EXPANDABLE)
        for index, raw in enumerate(raw_lines):
            if not isinstance(raw, Mapping):
                raise invalid(f"Invalid object: lines[{index}] must be a hash", f"lines[{index}]")
            for required in entry:
                if required not in raw:
                    raise missing_parameter(f"lines[{index}][{required}]")
        return raw_lines, metadata, expand

    def _edit_lines(
        self,
        object_id: str | None,
        metadata: MetadataChange | None,
        expand: list[str],
        edit: Any,
    ) -> dict[str, Any]:
        """Run `edit(invoice)` on a draft and apply `invoice_metadata`, atomically."""
        assert object_id is not None
        with self.store.lock:
            invoice = copy.deepcopy(self.store.require(object_id))
            draft_only(invoice)
            edit(invoice)
            if metadata is not None:
                invoice["metadata"] = metadata.apply(invoice["metadata"])
                self.store.replace(invoice)
        return self.render(self.store.require(object_id), expand)

    def add_lines(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        raw_lines, metadata, expand = self._lines_request(params, object_id, set())
        specs = [
            item_changes(raw, f"lines[{index}]", {"invoice_item"})
            for index, raw in enumerate(raw_lines)
        ]

        def edit(invoice: dict[str, Any]) -> None:
            count = len(self.line_store.where("invoice", invoice["id"]))
            if count + len(specs) > MAX_LINES:
                raise too_many_lines(invoice["id"])
            priced = []
            for index, spec in enumerate(specs):
                param = f"lines[{index}]"
                if "invoice_item" in spec:
                    item = self._pending_item(spec, invoice, param)
                    priced.append(self.price_item(item, spec, invoice["currency"], param))
                else:
                    now = int(self.context.clock.now())
                    item = new_item(self.item_store.new_id(), invoice["customer"], invoice, now)
                    priced.append(self.price_item(item, spec, invoice["currency"], param))
            for item in priced:  # every check passed: now write
                if self.item_store.taken(item["id"]):
                    self.item_store.replace(item)
                else:
                    self.item_store.insert(item)
                self._attach(item, invoice["id"])

        return self._edit_lines(object_id, metadata, expand, edit)

    def _pending_item(
        self, spec: Mapping[str, Any], invoice: Mapping[str, Any], param: str
    ) -> dict[str, Any]:
        item_id = _string(spec["invoice_item"], f"{param}[invoice_item]", 5000, False) or ""
        item = self.item_store.require(item_id, f"{param}[invoice_item]", 400)
        if item["invoice"] is not None or item["customer"] != invoice["customer"]:
            raise invalid(  # ours
                f"Invoice item `{item_id}` is not a pending item of customer "
                f"`{invoice['customer']}`.",
                f"{param}[invoice_item]",
            )
        return copy.deepcopy(item)

    def update_lines(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        raw_lines, metadata, expand = self._lines_request(params, object_id, {"id"})
        specs = [item_changes(raw, f"lines[{i}]", {"id"}) for i, raw in enumerate(raw_lines)]

        def edit(invoice: dict[str, Any]) -> None:
            updated = []
            for index, spec in enumerate(specs):
                param = f"lines[{index}]"
                line = self._line_of(invoice, spec["id"], f"{param}[id]")
                item = copy.deepcopy(self.item_store.require(line["invoice_item"]))
                updated.append(self.price_item(item, spec, invoice["currency"], param))
            for item in updated:
                self.item_store.replace(item)

        return self._edit_lines(object_id, metadata, expand, edit)

    def remove_lines(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        raw_lines, metadata, expand = self._lines_request(params, object_id, {"behavior", "id"})
        removals = []
        for index, raw in enumerate(raw_lines):
            check_known(raw, {"behavior", "id"}, f"lines[{index}]")
            behavior = _enum(raw["behavior"], f"lines[{index}][behavior]",
                                  ("delete", "unassign"))  # fmt: skip
            removals.append((raw["id"], behavior, f"lines[{index}][id]"))

        def edit(invoice: dict[str, Any]) -> None:
            found = [(self._line_of(invoice, i, p), b) for i, b, p in removals]
            for line, behavior in found:
                self.line_store.mark_deleted(line["id"])
                if behavior == "delete":
                    self.item_store.mark_deleted(line["invoice_item"])
                else:
                    item = copy.deepcopy(self.item_store.require(line["invoice_item"]))
                    item["invoice"] = None
                    self.item_store.replace(item)

        return self._edit_lines(object_id, metadata, expand, edit)

    def _line_of(self, invoice: Mapping[str, Any], line_id: Any, param: str) -> dict[str, Any]:
        line_id = _string(line_id, param, 5000, False) or ""
        line = self.line_store.get(line_id)
        if line is None or line["invoice"] != invoice["id"]:
            raise no_such("invoice line item", line_id, param, 400)
        return line

    def _attach(self, item: Mapping[str, Any], invoice_id: str) -> None:
        """Put a stored item on an invoice as a new line (stored dicts are never mutated)."""
        self.item_store.replace({**item, "invoice": invoice_id})
        line = {"id": self.line_store.new_id(), "object": "line_item", "invoice": invoice_id,
                "invoice_item": item["id"]}  # fmt: skip
        self.line_store.insert(line)

    def price_item(
        self, item: dict[str, Any], spec: Mapping[str, Any], currency: str | None, param: str
    ) -> dict[str, Any]:
        """Apply validated item changes to a private copy: its price (from the catalog, or made
        from `price_data`) or amount, quantity and the rest; the amount is unit x quantity."""
        if "_price" in spec:
            price_id, price_param = spec["_price"]
            price = self.prices.store.require(price_id, price_param, 400)
            self._usable(price, price_param)
            item["pricing"] = pricing_of(price)
            item["currency"] = price["currency"]
        elif "_price_data" in spec:
            raw, data_param = spec["_price_data"]
            given = _hash(raw, data_param, ("currency", "product", "product_data",
                                                 "tax_behavior", "unit_amount",
                                                 "unit_amount_decimal"))  # fmt: skip
            price = self.prices.insert(price_spec({**given, "active": False}))
            item["pricing"] = pricing_of(price)
            item["currency"] = price["currency"]
        elif "amount" in spec:
            item["pricing"] = {"price_details": None, "type": "price_details",
                               "unit_amount_decimal": str(spec["amount"])}  # fmt: skip
            item["quantity"] = 1
            if currency is not None:
                item["currency"] = currency
        elif item["pricing"] is None:
            raise invalid(  # ours
                f"Give {param}[pricing][price], {param}[price_data] or {param}[amount].",
                f"{param}[amount]" if param else "amount",
            )
        if currency is not None and item["currency"] != currency:
            raise invalid(  # ours
                f"The currency of this line ({item['currency']}) must be the invoice's "
                f"({currency}).",
                param or "currency",
            )
        for key in ("description", "discountable", "period", "quantity", "tax_rates"):
            if key in spec:
                item[key] = spec[key]
        if "metadata" in spec:
            item["metadata"] = spec["metadata"].apply(item["metadata"])
        item["quantity_decimal"] = str(item["quantity"])
        item["amount"] = line_amount(item["pricing"]["unit_amount_decimal"], item["quantity"])
        item["net_amount"] = item["amount"]
        return item

    def _usable(self, price: Mapping[str, Any], param: str) -> None:
        if not price["active"]:
            raise invalid(INACTIVE_PRICE, param)
        if price["type"] != "one_time":
            raise invalid(RECURRING_PRICE, param)

    # -- the lifecycle

    def _transition(
        self, params: Mapping[str, Any], object_id: str | None, known: set[str], step: Any
    ) -> dict[str, Any]:
        """Check params, then run `step(invoice, now)` on a private copy under the lock."""
        assert object_id is not None
        check_known(params, known | {"expand"})
        expand = expand_names(params, EXPANDABLE)
        with self.store.lock:
            invoice = copy.deepcopy(self.store.require(object_id))
            step(invoice, int(self.context.clock.now()))
            self.store.replace(invoice)
        return self.render(invoice, expand)

    def _finalize(self, invoice: dict[str, Any], now: int) -> None:
        if invoice["status"] != "draft":
            raise not_editable(REFINALIZE)
        customer = self.customers.store.get(invoice["customer"])
        sequence = self.sequences.get(invoice["customer"])
        if sequence is None:
            sequence = customer["next_invoice_sequence"] if customer else 1
        self.sequences[invoice["customer"]] = sequence + 1
        prefix = customer["invoice_prefix"] if customer else "EMULATOR"
        invoice.update(
            status="open",
            number=f"{prefix}-{sequence:04d}",
            effective_at=now,
            ending_balance=0,
        )
        invoice["status_transitions"]["finalized_at"] = now
        if invoice["collection_method"] == "send_invoice" and invoice["due_date"] is None:
            invoice["due_date"] = now + DAY * invoice["days_until_due"]
        if self.render(invoice, [])["amount_due"] == 0:  # nothing to collect: paid at once
            self._mark_paid(invoice, now)

    def _mark_paid(self, invoice: dict[str, Any], now: int, out_of_band: bool = False) -> None:
        if out_of_band:
            invoice["amount_paid_off_stripe"] = self.render(invoice, [])["amount_remaining"]
        invoice["status"] = "paid"
        invoice["status_transitions"]["paid_at"] = now

    def finalize(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        auto_advance = None
        if "auto_advance" in params:
            auto_advance = _boolean(params["auto_advance"], "auto_advance")

        def step(invoice: dict[str, Any], now: int) -> None:
            self._finalize(invoice, now)
            if auto_advance is not None:
                invoice["auto_advance"] = auto_advance

        return self._transition(params, object_id, {"auto_advance"}, step)

    def send(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        """Counts an email; a paid invoice can be sent again (Stripe: without the payment)."""

        def step(invoice: dict[str, Any], now: int) -> None:
            if invoice["collection_method"] != "send_invoice":
                raise invalid(SEND_NOT_SEND_INVOICE)
            if invoice["status"] in ("draft", "void"):
                raise wrong_status(invoice, "send", "finalized and not void")
            self.emails[invoice["id"]] += 1

        return self._transition(params, object_id, set(), step)

    def pay(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        """Only `paid_out_of_band=true` can pay: there are no payment methods here. A draft is
        finalized first, as Stripe does."""
        unsupported(params, {"forgive", "mandate", "off_session", "payment_method", "source"})
        out_of_band = False
        if "paid_out_of_band" in params:
            out_of_band = _boolean(params["paid_out_of_band"], "paid_out_of_band")

        def step(invoice: dict[str, Any], now: int) -> None:
            if invoice["status"] == "paid":
                raise invalid("Invoice is already paid", None, "invoice_not_editable")
            if invoice["status"] == "void":
                raise wrong_status(invoice, "pay", "open or uncollectible")
            if not out_of_band and self.render(invoice, [])["amount_due"] > 0:
                raise invalid(NO_PAYMENT_METHOD)
            if invoice["status"] == "draft":
                self._finalize(invoice, now)  # a zero invoice is paid by this alone
            if invoice["status"] != "paid":
                self._mark_paid(invoice, now, out_of_band=True)

        return self._transition(params, object_id, {"paid_out_of_band"}, step)

    def void(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        def step(invoice: dict[str, Any], now: int) -> None:
            if invoice["status"] not in ("open", "uncollectible"):
                raise wrong_status(invoice, "void", "open or uncollectible")
            invoice["status"] = "void"
            invoice["status_transitions"]["voided_at"] = now

        return self._transition(params, object_id, set(), step)

    def mark_uncollectible(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        def step(invoice: dict[str, Any], now: int) -> None:
            if invoice["status"] != "open":
                raise wrong_status(invoice, "mark uncollectible", "open")
            invoice["status"] = "uncollectible"
            invoice["status_transitions"]["marked_uncollectible_at"] = now

        return self._transition(params, object_id, set(), step)


def pricing_of(price: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "price_details": {"price": price["id"], "product": price["product"]},
        "type": "price_details",
        "unit_amount_decimal": price["unit_amount_decimal"],
    }


def new_item(
    item_id: str, customer: str, invoice: Mapping[str, Any] | None, now: int
) -> dict[str, Any]:
    """An invoice item before pricing (`price_item` sets amount, currency, pricing)."""
    return {
        "id": item_id,
        "object": "invoiceitem",
        "amount": 0,
        "currency": invoice["currency"] if invoice else None,
        "customer": customer,
        "customer_account": None,
        "date": now,
        "description": None,
        "discountable": True,
        "discounts": [],
        "invoice": None,
        "livemode": False,
        "metadata": {},
        "net_amount": 0,
        "parent": None,
        "period": {"end": now, "start": now},
        "pricing": None,
        "proration": False,
        "quantity": 1,
        "quantity_decimal": "1",
        "tax_rates": [],
        "test_clock": None,
    }


def invoice_object(
    invoice_id: str,
    customer: Mapping[str, Any],
    currency: str,
    created: int,
    changes: Mapping[str, Any],
) -> dict[str, Any]:
    """A new draft: Stripe's sample's fields; totals and `lines` are rendered from its lines."""
    days = changes.get("days_until_due")
    return {
        "id": invoice_id,
        "object": "invoice",
        "account_country": "US",
        "account_name": None,
        "account_tax_ids": None,
        "amount_overpaid": 0,
        "amount_paid_off_stripe": 0,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": changes.get("auto_advance", False),
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        "automatically_finalizes_at": None,
        "billing_reason": "manual",
        "collection_method": changes.get("collection_method", "charge_automatically"),
        "created": created,
        "currency": currency,
        "custom_fields": changes.get("custom_fields"),
        "customer": customer["id"],
        "customer_account": None,
        "customer_address": customer["address"],
        "customer_email": customer["email"],
        "customer_name": customer["name"],
        "customer_phone": customer["phone"],
        "customer_shipping": customer["shipping"],
        "customer_tax_exempt": customer.get("tax_exempt", "none"),
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": changes.get("description"),
        "discounts": [],
        "due_date": changes.get("due_date") if days is None else None,
        "effective_at": None,
        "ending_balance": None,
        "footer": changes.get("footer"),
        "from_invoice": None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "livemode": False,
        "metadata": changes["metadata"].apply({}) if "metadata" in changes else {},
        "next_payment_attempt": None,
        "number": None,
        "on_behalf_of": None,
        "parent": None,
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": created,
        "period_start": created,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": changes.get("statement_descriptor"),
        "status": "draft",
        "status_transitions": {
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "test_clock": None,
        "total_discount_amounts": [],
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": None,
        "days_until_due": days,  # stored only: `render` leaves it out, as Stripe's object does
    }


def _pending(value: Any) -> bool:
    return _boolean(value, "pending")


class InvoiceItemsResource(ObjectResource):
    """`/v1/invoiceitems`: pending items (no invoice) wait for the customer's next invoice
    created with `pending_invoice_items_behavior=include`; an item on a draft can change."""

    name = "invoiceitems"
    object_name = "invoice"  # invoice items are part of invoicing: rak_invoice_*
    routes = (*CRUD_ROUTES, DELETE_ROUTE)
    expandable = frozenset({"invoice"})

    def __init__(self, context: ResourceContext) -> None:
        super().__init__(context)
        self.invoices = built(context, "invoices", InvoicesResource)
        self.store = self.invoices.item_store
        self.filters = (
            exact("customer", text("customer")),
            exact("invoice", text("invoice")),
            Filter("pending", _pending, test=lambda obj, want: (obj["invoice"] is None) == want),
            Filter("created", created_range().parse, test=lambda obj, ok: ok(obj["date"])),
        )

    def reset(self, seed: int | None) -> None:
        """The invoices resource resets this store with its own."""

    def render(self, obj: Mapping[str, Any], expand: list[str]) -> dict[str, Any]:
        shown = dict(obj)
        if "invoice" in expand and obj["invoice"] is not None:
            shown["invoice"] = self.invoices.render(self.invoices.store.require(obj["invoice"]), [])
        return shown

    def changes(self, params: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        extra = {"expand"} | ({"currency", "customer", "invoice"} if creating else set())
        changes = item_changes(params, "", extra)
        expand_names(params, self.expandable)
        if creating and "customer" not in changes:
            raise missing_parameter("customer")
        for key in ("customer", "invoice"):
            if key in changes:
                changes[key] = _string(changes[key], key, 5000, False)
        if "currency" in changes:
            changes["currency"] = _currency(changes["currency"], "currency")
        return changes

    def insert(
        self, changes: Mapping[str, Any], *, object_id: str | None = None, created: Any = None
    ) -> dict[str, Any]:
        with self.store.lock:
            customer = self.invoices.creating(self.store, object_id, changes)
            invoice = None
            if changes.get("invoice") is not None:
                invoice = self.invoices.store.require(changes["invoice"], "invoice", 400)
                self._check_invoice(invoice, customer["id"])
            currency = invoice["currency"] if invoice else changes.get("currency")
            if "amount" in changes and currency is None:
                raise missing_parameter("currency")
            if invoice and changes.get("currency") not in (None, currency):
                raise invalid(f"The invoice's currency is {currency}.", "currency")  # ours
            now = int(self.context.clock.now()) if created is None else int(created)
            item = new_item(object_id or self.store.new_id(), customer["id"], invoice, now)
            priced = self.invoices.price_item(item, changes, currency, "")
            self.store.insert(priced)
            if invoice is not None:
                self.invoices._attach(priced, invoice["id"])
            return self.store.require(priced["id"])

    def _check_invoice(self, invoice: Mapping[str, Any], customer: str) -> None:
        if invoice["customer"] != customer:
            raise invalid(  # ours
                f"Invoice `{invoice['id']}` belongs to customer `{invoice['customer']}`.",
                "invoice",
            )
        draft_only(invoice)
        if len(self.invoices.line_store.where("invoice", invoice["id"])) >= MAX_LINES:
            raise too_many_lines(invoice["id"])

    def _editable(self, item: Mapping[str, Any]) -> None:
        """Pending, or on a draft: once its invoice is finalized, an item is fixed."""
        if item["invoice"] is not None:
            invoice = self.invoices.store.get(item["invoice"])
            if invoice is not None and invoice["status"] != "draft":
                raise not_editable(  # ours
                    f"Invoice item `{item['id']}` is on invoice `{invoice['id']}`, which is "
                    f"{invoice['status']}: it can no longer change."
                )

    def apply(self, obj: dict[str, Any], changes: Mapping[str, Any]) -> None:
        self._editable(obj)
        invoice = self.invoices.store.get(obj["invoice"]) if obj["invoice"] else None
        currency = invoice["currency"] if invoice else obj["currency"]
        self.invoices.price_item(obj, changes, currency, "")

    def check_delete(self, object_id: str) -> None:
        """An item goes with its line (the store lock is held through the delete)."""
        self._editable(self.store.require(object_id))
        for line in self.invoices.line_store.where("invoice_item", object_id):
            self.invoices.line_store.mark_deleted(line["id"])
