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
import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from ..errors import ApiError, invalid, missing_parameter
from ..forms import as_list
from .base import ObjectStore, Resource, ResourceContext
from .params import (
    boolean_param,
    check_known,
    created_filter,
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
LIST = {
    "active",
    "created",
    "currency",
    "ending_before",
    "expand",
    "limit",
    "lookup_keys",
    "product",
    "recurring",
    "starting_after",
    "type",
}
INTERVALS = ("day", "week", "month", "year")
# Stripe: "Maximum of three years interval allowed".
MAX_INTERVAL_COUNT = {"day": 1095, "week": 156, "month": 36, "year": 3}
USAGE_TYPES = ("licensed", "metered")
TAX_BEHAVIORS = ("exclusive", "inclusive", "unspecified")
BILLING_SCHEMES = ("per_unit", "tiered")
LOOKUP_KEY_MAX = 200
MAX_LOOKUP_KEYS = 10
EXPANDABLE = {"product"}
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


class PriceStore(ObjectStore):
    """Prices, with the lookup-key index (key -> price id) and a count of prices per product."""

    def __init__(self, *, seed: int | None, lock: threading.RLock) -> None:
        super().__init__(
            kind="price", prefix="price_", url="/v1/prices", seed=seed, id_length=24, lock=lock
        )
        self.by_lookup_key: dict[str, str] = {}
        self._per_product: dict[str, int] = {}

    def reset(self, seed: int | None = None) -> None:
        with self.lock:
            super().reset(seed)
            self.by_lookup_key.clear()
            self._per_product.clear()

    def count_for_product(self, product_id: str) -> int:
        return self._per_product.get(product_id, 0)

    def insert(self, obj: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            super().insert(obj)
            self._per_product[obj["product"]] = self._per_product.get(obj["product"], 0) + 1
            if obj["lookup_key"] is not None:
                self.by_lookup_key[obj["lookup_key"]] = obj["id"]
            return obj

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            old = self.get(obj["id"])
            if old is not None and old["lookup_key"] != obj["lookup_key"]:
                if self.by_lookup_key.get(old["lookup_key"]) == obj["id"]:
                    del self.by_lookup_key[old["lookup_key"]]
                if obj["lookup_key"] is not None:
                    self.by_lookup_key[obj["lookup_key"]] = obj["id"]
            return super().replace(obj)

    def free_lookup_key(self, key: str | None, for_id: str | None, transfer: bool) -> None:
        """Make `key` usable by `for_id`: 400 when another price holds it, unless `transfer`,
        which takes it off that price (the caller holds the lock and writes right after)."""
        if key is None:
            return
        holder = self.by_lookup_key.get(key)
        if holder is None or holder == for_id:
            return
        if not transfer:
            raise _lookup_key_taken(holder)
        old = copy.deepcopy(self._entries[holder].obj)
        old["lookup_key"] = None
        self.replace(old)


class PricesResource(Resource):
    name = "prices"
    object_name = "price"
    routes = (
        ("POST", "", "create"),
        ("POST", "/{id}", "update"),
        ("GET", "", "list_all"),
        ("GET", "/{id}", "retrieve"),
    )

    def __init__(self, context: ResourceContext) -> None:
        super().__init__(context)
        products = context.resources["products"]
        assert isinstance(products, ProductsResource)
        self.products = products
        # One lock for the catalog: a product delete and a price create check each other.
        self.store = PriceStore(seed=context.seed, lock=products.store.lock)
        products.prices = self

    def render(self, obj: Mapping[str, Any], expand: list[str]) -> dict[str, Any]:
        shown = dict(obj)
        if "product" in expand:
            product = self.products.store.get(shown["product"])
            if product is not None:
                shown["product"] = dict(product)
        return shown

    def insert(
        self, spec: Mapping[str, Any], *, price_id: str | None = None, created: int | None = None
    ) -> dict[str, Any]:
        """Create a price (and its `product_data` product) from a validated spec: every check
        that can refuse runs before anything is written."""
        with self.store.lock:
            if price_id is not None and self.store.taken(price_id):
                raise invalid(f"Price already exists: '{price_id}'", "id")
            product_id = spec.get("_product")
            if product_id is not None:
                self.products.store.require(product_id, "product", 400)
            inline = spec.get("_product_data")
            if inline is not None and inline.get("id") and self.products.store.taken(inline["id"]):
                raise ApiError(
                    400,
                    "Product already exists.",
                    param="product_data[id]",
                    code="resource_already_exists",
                )
            lookup_key = spec.get("lookup_key")
            holder = self.store.by_lookup_key.get(lookup_key) if lookup_key else None
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
                "id": price_id or self.store.new_id(),
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
            self.store.free_lookup_key(lookup_key, obj["id"], spec["_transfer"])
            obj["lookup_key"] = lookup_key
            return self.store.insert(obj)

    # -- endpoints

    def create(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        spec = price_spec(params)
        return self.render(self.insert(spec), expand_names(params, EXPANDABLE))

    def update(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        assert object_id is not None
        changes = price_update_changes(params)
        with self.store.lock:
            obj = copy.deepcopy(self.store.require(object_id))
            wanted = changes.get("tax_behavior")
            current = obj["tax_behavior"]
            if wanted is not None and wanted != current and current in ("inclusive", "exclusive"):
                raise invalid(TAX_BEHAVIOR_LOCKED, "tax_behavior")
            if "lookup_key" in changes:
                self.store.free_lookup_key(changes["lookup_key"], object_id, changes["_transfer"])
            for key, value in changes.items():
                if key == "metadata":
                    obj["metadata"] = value.apply(obj["metadata"])
                elif not key.startswith("_"):
                    obj[key] = value
            self.store.replace(obj)
        return self.render(obj, expand_names(params, EXPANDABLE))

    def retrieve(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        assert object_id is not None
        check_known(params, {"expand"})
        expand = expand_names(params, EXPANDABLE)
        return self.render(self.store.require(object_id), expand)

    def list_all(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        check_known(params, LIST)
        expand = expand_names(params, EXPANDABLE, "data.")
        tests: list[Callable[[Mapping[str, Any]], bool]] = []
        if "active" in params:
            active = boolean_param(params["active"], "active")
            tests.append(lambda obj: obj["active"] is active)
        if "currency" in params:
            currency = _currency(params["currency"], "currency")
            tests.append(lambda obj: obj["currency"] == currency)
        if "product" in params:
            product = string_param(params["product"], "product", 5000, emptyable=False)
            tests.append(lambda obj: obj["product"] == product)
        if "type" in params:
            kind = enum_param(params["type"], "type", ("one_time", "recurring"))
            tests.append(lambda obj: obj["type"] == kind)
        if "recurring" in params:
            parts = ("interval", "meter", "usage_type")
            given = hash_param(params["recurring"], "recurring", parts)
            wanted: dict[str, Any] = {}
            if "interval" in given:
                wanted["interval"] = enum_param(given["interval"], "recurring[interval]", INTERVALS)
            if "usage_type" in given:
                wanted["usage_type"] = enum_param(
                    given["usage_type"], "recurring[usage_type]", USAGE_TYPES
                )
            if "meter" in given:
                wanted["meter"] = string_param(
                    given["meter"], "recurring[meter]", 5000, emptyable=False
                )
            tests.append(
                lambda obj: (
                    obj["recurring"] is not None
                    and all(obj["recurring"][k] == v for k, v in wanted.items())
                )
            )
        if "created" in params:
            created_ok = created_filter(params["created"])
            tests.append(lambda obj: created_ok(obj["created"]))
        keys: list[str] | None = None
        if "lookup_keys" in params:
            raw = as_list(params["lookup_keys"], "lookup_keys")
            if len(raw) > MAX_LOOKUP_KEYS:
                raise invalid(
                    f"Invalid array: lookup_keys can have at most {MAX_LOOKUP_KEYS} items",
                    "lookup_keys",
                )
            keys = [
                string_param(k, f"lookup_keys[{i}]", LOOKUP_KEY_MAX, emptyable=False) or ""
                for i, k in enumerate(raw)
            ]
        with self.store.lock:
            seqs = None
            if keys is not None:  # exact and case-sensitive, from the index
                held = {self.store.by_lookup_key.get(k) for k in keys} - {None}
                seqs = sorted(s for s in (self.store.seq_of(str(i)) for i in held) if s is not None)
            result = self.store.list_page(
                params, keep=lambda obj: all(t(obj) for t in tests), seqs=seqs
            )
        result["data"] = [self.render(obj, expand) for obj in result["data"]]
        return result

    # -- control API

    def seed(self, items: list[Mapping[str, Any]]) -> list[str]:
        ids = []
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise ValueError(f"prices seed item {index} is not an object")
            params = dict(item)
            price_id = params.pop("id", None)
            created = params.pop("created", None)
            try:
                obj = self.insert(price_spec(params), price_id=price_id, created=created)
            except ApiError as exc:
                raise ValueError(f"prices seed item {index}: {exc.message}") from exc
            ids.append(obj["id"])
        return ids
