"""The price resource (docs.stripe.com/api/prices).

Parameters follow `stripe.params.PriceCreateParams` / `PriceUpdateParams` of the pinned SDK.
An update takes only `active`, `lookup_key`, `metadata`, `nickname`, `tax_behavior`,
`transfer_lookup_key` and `expand`: amount, currency, recurring terms and product are
immutable, and naming one answers "Received unknown parameter", as Stripe does. Prices cannot
be deleted. `lookup_key` is unique among all prices of the account (inactive ones included);
`transfer_lookup_key=true` moves it off the price holding it, atomically with the write.

Not emulated (answer "Received unknown parameter"): `currency_options`, `custom_unit_amount`,
`tiers`, `tiers_mode`; `billing_scheme=tiered` is refused.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ..errors import ApiError, invalid, missing_parameter
from ..forms import as_list
from .base import (
    CRUD_ROUTES,
    Filter,
    ObjectResource,
    ResourceContext,
    choice,
    created_range,
    exact,
    flag,
    one_of,
    text,
)
from .params import (
    boolean_param,
    check_known,
    enum_param,
    expand_names,
    hash_param,
    integer_param,
    metadata_change,
    string_param,
)
from .products import ProductsResource, product_changes

CREATE = {
    "active",
    "billing_scheme",
    "currency",
    "expand",
    "lookup_key",
    "metadata",
    "nickname",
    "product",
    "product_data",
    "recurring",
    "tax_behavior",
    "transfer_lookup_key",
    "transform_quantity",
    "unit_amount",
    "unit_amount_decimal",
}
UPDATE = {
    "active",
    "expand",
    "lookup_key",
    "metadata",
    "nickname",
    "tax_behavior",
    "transfer_lookup_key",
}
INTERVALS = ("day", "week", "month", "year")
# Stripe: "Maximum of three years interval allowed".
MAX_INTERVAL_COUNT = {"day": 1095, "week": 156, "month": 36, "year": 3}
USAGE_TYPES = ("licensed", "metered")
TAX_BEHAVIORS = ("exclusive", "inclusive", "unspecified")
BILLING_SCHEMES = ("per_unit", "tiered")
LOOKUP_KEY_MAX = 200
MAX_LOOKUP_KEYS = 10
EXPANDABLE = frozenset({"product"})
CURRENCY_RE = re.compile(r"^[a-z]{3}$")
DECIMAL_RE = re.compile(r"^\d+(?:\.(\d+))?$")
MAX_DECIMAL_PLACES = 12
TAX_BEHAVIOR_LOCKED = "tax_behavior cannot be changed once set to inclusive or exclusive"


def _currency(value: Any, param: str) -> str:
    """Three letters, any case; Stripe answers in lowercase."""
    code = value.lower() if isinstance(value, str) else ""
    if not CURRENCY_RE.match(code):
        raise invalid(f"Invalid currency: {value}", param)
    return code


def _decimal(value: Any, param: str) -> str:
    text = str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    match = DECIMAL_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise invalid(f"Invalid decimal: {value}", param)
    if match.group(1) and len(match.group(1)) > MAX_DECIMAL_PLACES:
        raise invalid(
            f"Invalid decimal: {value}; must have at most {MAX_DECIMAL_PLACES} decimal places",
            param,
        )
    return format(Decimal(text).normalize(), "f")


def _recurring(value: Any) -> dict[str, Any]:
    parts = ("interval", "interval_count", "meter", "trial_period_days", "usage_type")
    given = hash_param(value, "recurring", parts)
    if "interval" not in given:
        raise missing_parameter("recurring[interval]")
    interval = enum_param(given["interval"], "recurring[interval]", INTERVALS)
    count = 1
    if "interval_count" in given:
        count = integer_param(given["interval_count"], "recurring[interval_count]")
        if not 1 <= count <= MAX_INTERVAL_COUNT[interval]:
            raise invalid(
                "Invalid recurring[interval_count]: must be between 1 and "
                f"{MAX_INTERVAL_COUNT[interval]} for interval {interval} (at most three years)",
                "recurring[interval_count]",
            )
    usage_type = "licensed"
    if "usage_type" in given:
        usage_type = enum_param(given["usage_type"], "recurring[usage_type]", USAGE_TYPES)
    meter = None
    if "meter" in given:
        meter = string_param(given["meter"], "recurring[meter]", 5000, emptyable=False)
    if usage_type == "metered" and meter is None:
        # API versions from 2025-03-31.basil: a metered price is backed by a billing meter.
        raise missing_parameter("recurring[meter]")
    if usage_type == "licensed" and meter is not None:
        raise invalid(
            "recurring[meter] can only be set when recurring[usage_type] is metered",
            "recurring[meter]",
        )
    trial = None
    if "trial_period_days" in given:
        trial = integer_param(given["trial_period_days"], "recurring[trial_period_days]")
        if trial < 0:
            raise invalid(
                "Invalid recurring[trial_period_days]: must be at least 0",
                "recurring[trial_period_days]",
            )
    return {
        "interval": interval,
        "interval_count": count,
        "meter": meter,
        "trial_period_days": trial,
        "usage_type": usage_type,
    }


def _lookup_key(value: Any) -> str | None:
    return string_param(value, "lookup_key", LOOKUP_KEY_MAX)


def price_spec(params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate create params into the fields of a new price plus `_product`/`_product_data`
    and `_transfer`, in Stripe's order: unknown parameters first, then values, then pairs."""
    check_known(params, CREATE)
    if "currency" not in params:
        raise missing_parameter("currency")
    spec: dict[str, Any] = {"_transfer": False}
    for key, value in params.items():
        if key == "currency":
            spec["currency"] = _currency(value, key)
        elif key in ("active", "transfer_lookup_key"):
            flag = boolean_param(value, key)
            spec["_transfer" if key == "transfer_lookup_key" else key] = flag
        elif key == "billing_scheme":
            spec[key] = enum_param(value, key, BILLING_SCHEMES)
        elif key == "tax_behavior":
            spec[key] = enum_param(value, key, TAX_BEHAVIORS)
        elif key == "lookup_key":
            spec[key] = _lookup_key(value)
        elif key == "nickname":
            spec[key] = string_param(value, key, 5000)
        elif key == "metadata":
            spec[key] = metadata_change(value)
        elif key == "product":
            spec["_product"] = string_param(value, key, 5000, emptyable=False)
        elif key == "product_data":
            if not isinstance(value, dict):
                raise invalid(f"Invalid object: {key} must be a hash", key)
            spec["_product_data"] = product_changes(value, creating=True, prefix=key)
        elif key == "recurring":
            spec[key] = _recurring(value)
        elif key == "transform_quantity":
            given = hash_param(value, key, ("divide_by", "round"))
            for part in ("divide_by", "round"):
                if part not in given:
                    raise missing_parameter(f"{key}[{part}]")
            divide_by = integer_param(given["divide_by"], f"{key}[divide_by]")
            if divide_by < 1:
                raise invalid(f"Invalid {key}[divide_by]: must be at least 1", f"{key}[divide_by]")
            rounding = enum_param(given["round"], f"{key}[round]", ("down", "up"))
            spec[key] = {"divide_by": divide_by, "round": rounding}
        elif key == "unit_amount":
            amount = integer_param(value, key)
            if amount < 0:
                raise invalid("Invalid unit_amount: must be at least 0", key)
            spec[key] = amount
        elif key == "unit_amount_decimal":
            spec[key] = _decimal(value, key)
        elif key == "expand":
            expand_names(params, EXPANDABLE)
    if "_product" in spec and "_product_data" in spec:
        raise invalid(
            "You may only specify one of these parameters: product, product_data.", "product"
        )
    if "_product" not in spec and "_product_data" not in spec:
        raise missing_parameter("product")
    if spec.get("billing_scheme") == "tiered":
        raise invalid(
            "Tiered prices are not supported by this emulator (billing_scheme=tiered).",
            "billing_scheme",
        )
    if "unit_amount" in spec and "unit_amount_decimal" in spec:
        raise invalid(
            "You may only specify one of these parameters: unit_amount, unit_amount_decimal.",
            "unit_amount",
        )
    if "unit_amount" not in spec and "unit_amount_decimal" not in spec:
        raise missing_parameter("unit_amount")
    return spec


def price_update_changes(params: Mapping[str, Any]) -> dict[str, Any]:
    check_known(params, UPDATE)
    changes: dict[str, Any] = {"_transfer": False}
    for key, value in params.items():
        if key == "active":
            changes[key] = boolean_param(value, key)
        elif key == "transfer_lookup_key":
            changes["_transfer"] = boolean_param(value, key)
        elif key == "lookup_key":
            changes[key] = _lookup_key(value)
        elif key == "nickname":
            changes[key] = string_param(value, key, 5000)
        elif key == "metadata":
            changes[key] = metadata_change(value)
        elif key == "tax_behavior":
            changes[key] = enum_param(value, key, TAX_BEHAVIORS)
        elif key == "expand":
            expand_names(params, EXPANDABLE)
    return changes


def _lookup_key_taken(holder: str) -> ApiError:
    return invalid(f"A price (`{holder}`) already uses that lookup key.", "lookup_key")


def _recurring_filter(value: Any) -> dict[str, Any]:
    given = hash_param(value, "recurring", ("interval", "meter", "usage_type"))
    wanted: dict[str, Any] = {}
    if "interval" in given:
        wanted["interval"] = enum_param(given["interval"], "recurring[interval]", INTERVALS)
    if "usage_type" in given:
        wanted["usage_type"] = enum_param(given["usage_type"], "recurring[usage_type]", USAGE_TYPES)
    if "meter" in given:
        wanted["meter"] = string_param(given["meter"], "recurring[meter]", 5000, emptyable=False)
    return wanted


def _recurring_matches(obj: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    recurring = obj["recurring"]
    return recurring is not None and all(recurring[k] == v for k, v in wanted.items())


def _lookup_keys(value: Any) -> list[str]:
    """Exact and case-sensitive, answered from the store's index (strongly consistent)."""
    raw = as_list(value, "lookup_keys")
    if len(raw) > MAX_LOOKUP_KEYS:
        raise invalid(
            f"Invalid array: lookup_keys can have at most {MAX_LOOKUP_KEYS} items", "lookup_keys"
        )
    return [
        string_param(k, f"lookup_keys[{i}]", LOOKUP_KEY_MAX, emptyable=False) or ""
        for i, k in enumerate(raw)
    ]


class PricesResource(ObjectResource):
    name = "prices"
    object_name = "price"
    routes = CRUD_ROUTES
    expandable = EXPANDABLE
    filters = (
        exact("active", flag("active")),
        exact("currency", lambda value: _currency(value, "currency")),
        exact("product", text("product")),
        exact("type", choice("type", ("one_time", "recurring"))),
        Filter("recurring", _recurring_filter, test=_recurring_matches),
        created_range(),
        one_of("lookup_keys", _lookup_keys, field="lookup_key"),
    )

    def __init__(self, context: ResourceContext) -> None:
        super().__init__(context)
        products = context.resources["products"]
        assert isinstance(products, ProductsResource)
        self.products = products
        self.catalog = products.catalog
        self.store = self.catalog.prices

    def changes(self, params: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        return price_spec(params) if creating else price_update_changes(params)

    def render(self, obj: Mapping[str, Any], expand: list[str]) -> dict[str, Any]:
        shown = dict(obj)
        if "product" in expand:
            product = self.catalog.products.get(shown["product"])
            if product is not None:
                shown["product"] = dict(product)
        return shown

    def insert(
        self, changes: Mapping[str, Any], *, object_id: str | None = None, created: Any = None
    ) -> dict[str, Any]:
        """A price (and its `product_data` product) from a validated spec: every check that
        can refuse runs before anything is written."""
        spec = changes
        with self.store.lock:
            self.store.check_unused(object_id)
            product_id = spec.get("_product")
            if product_id is not None:
                self.catalog.products.require(product_id, "product", 400)
            inline = spec.get("_product_data")
            if inline is not None:
                self.catalog.products.check_unused(inline.get("id"), "product_data[id]")
            lookup_key = spec.get("lookup_key")
            holder = self._holder(lookup_key) if lookup_key else None
            if holder is not None and not spec["_transfer"]:
                raise _lookup_key_taken(holder)
            if inline is not None:
                product_id = self.products.insert(inline, created=created)["id"]
            if "unit_amount" in spec:
                amount: int | None = spec["unit_amount"]
                decimal = str(spec["unit_amount"])
            else:
                decimal = spec["unit_amount_decimal"]
                amount = int(decimal) if decimal.isdigit() else None
            recurring = spec.get("recurring")
            obj: dict[str, Any] = {
                "id": object_id or self.store.new_id(),
                "object": "price",
                "active": spec.get("active", True),
                "billing_scheme": spec.get("billing_scheme", "per_unit"),
                "created": int(time.time()) if created is None else int(created),
                "currency": spec["currency"],
                "custom_unit_amount": None,
                "livemode": False,
                "lookup_key": None,
                "metadata": spec["metadata"].apply({}) if "metadata" in spec else {},
                "nickname": spec.get("nickname"),
                "product": product_id,
                "recurring": recurring,
                "tax_behavior": spec.get("tax_behavior", "unspecified"),
                "tiers_mode": None,
                "transform_quantity": spec.get("transform_quantity"),
                "type": "recurring" if recurring else "one_time",
                "unit_amount": amount,
                "unit_amount_decimal": decimal,
            }
            self._free_lookup_key(lookup_key, obj["id"], spec["_transfer"])
            obj["lookup_key"] = lookup_key
            return self.store.insert(obj)

    def apply(self, obj: dict[str, Any], changes: Mapping[str, Any]) -> None:
        wanted = changes.get("tax_behavior")
        current = obj["tax_behavior"]
        if wanted is not None and wanted != current and current in ("inclusive", "exclusive"):
            raise invalid(TAX_BEHAVIOR_LOCKED, "tax_behavior")
        if "lookup_key" in changes:
            self._free_lookup_key(changes["lookup_key"], obj["id"], changes["_transfer"])
        for key, value in changes.items():
            if key == "metadata":
                obj["metadata"] = value.apply(obj["metadata"])
            elif not key.startswith("_"):
                obj[key] = value

    # -- lookup keys: unique among the account's prices

    def _holder(self, key: str) -> str | None:
        held = self.store.where("lookup_key", key)
        return str(held[0]["id"]) if held else None

    def _free_lookup_key(self, key: str | None, for_id: str, transfer: bool) -> None:
        """Make `key` usable by `for_id`: 400 when another price holds it, unless `transfer`,
        which takes it off that price (the caller holds the lock and writes right after)."""
        holder = None if key is None else self._holder(key)
        if holder is None or holder == for_id:
            return
        if not transfer:
            raise _lookup_key_taken(holder)
        old = copy.deepcopy(self.store.require(holder))
        old["lookup_key"] = None
        self.store.replace(old)
