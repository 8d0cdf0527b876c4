"""The product resource (docs.stripe.com/api/products).

Parameters follow `stripe.params.ProductCreateParams` / `ProductUpdateParams` of the pinned
SDK; `default_price_data` and `tax_details` are not emulated and answer "Received unknown
parameter". The caller may choose `id` on create; a product some price references cannot be
deleted (Stripe: archive it with `active=false` instead).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ..errors import invalid, missing_parameter, no_such
from ..forms import as_list
from .base import (
    CRUD_ROUTES,
    DELETE_ROUTE,
    ObjectResource,
    ResourceContext,
    choice,
    created_range,
    exact,
    flag,
    one_of,
    text,
)
from .catalog import Catalog
from .params import (
    boolean_param,
    check_known,
    enum_param,
    expand_names,
    hash_param,
    metadata_change,
    name_of,
    string_param,
)

# Fields a product takes on create and on update; the other sets add to these.
COMMON = {
    "active",
    "description",
    "expand",
    "images",
    "marketing_features",
    "metadata",
    "name",
    "package_dimensions",
    "shippable",
    "statement_descriptor",
    "tax_code",
    "unit_label",
    "url",
}
CREATE_ONLY = {"id", "type"}
UPDATE_ONLY = {"default_price"}
# `product_data` on a price create (PriceCreateParamsProductData).
INLINE = {"active", "id", "metadata", "name", "statement_descriptor", "tax_code", "unit_label"}
STRING_LIMITS = {
    "name": 5000,
    "description": 40000,
    "url": 5000,
    "statement_descriptor": 22,
    "unit_label": 12,
    "tax_code": 5000,
}
MAX_IMAGES = 8
MAX_MARKETING_FEATURES = 15
PRODUCT_TYPES = ("good", "service")
EXPANDABLE = frozenset({"default_price"})
DIMENSIONS = ("height", "length", "weight", "width")
DELETE_REFUSED = "This product cannot be deleted because it has one or more user-created prices."


def _number(value: Any, param: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise invalid(f"Invalid decimal: {value}", param) from None
    if number < 0 or number != number:
        raise invalid(f"Invalid decimal: {value}", param)
    return number


def product_changes(
    params: Mapping[str, Any], *, creating: bool, prefix: str = ""
) -> dict[str, Any]:
    """Validate create/update params (or a price's `product_data`, `prefix="product_data"`)."""
    allowed = INLINE if prefix else COMMON | (CREATE_ONLY if creating else UPDATE_ONLY)
    check_known(params, allowed, prefix)
    if creating and "name" not in params:
        raise missing_parameter(name_of(prefix, "name"))
    changes: dict[str, Any] = {}
    for key, value in params.items():
        param = name_of(prefix, key)
        if key == "name":
            changes[key] = string_param(value, param, STRING_LIMITS[key], emptyable=False)
        elif key == "id":
            changes[key] = string_param(value, param, 5000, emptyable=False)
        elif key in STRING_LIMITS:
            changes[key] = string_param(value, param, STRING_LIMITS[key])
        elif key in ("active", "shippable"):
            changes[key] = boolean_param(value, param)
        elif key == "metadata":
            changes[key] = metadata_change(value)
        elif key == "type":
            changes[key] = enum_param(value, param, PRODUCT_TYPES)
        elif key == "images":
            items = [] if value == "" else as_list(value, param)
            if len(items) > MAX_IMAGES:
                raise invalid(f"Invalid array: {param} can have at most {MAX_IMAGES} items", param)
            changes[key] = [
                string_param(item, f"{param}[{i}]", 2048, emptyable=False)
                for i, item in enumerate(items)
            ]
        elif key == "marketing_features":
            items = [] if value == "" else as_list(value, param)
            if len(items) > MAX_MARKETING_FEATURES:
                raise invalid(
                    f"Invalid array: {param} can have at most {MAX_MARKETING_FEATURES} items",
                    param,
                )
            features = []
            for index, item in enumerate(items):
                item_param = f"{param}[{index}]"
                given = hash_param(item, item_param, ("name",))
                if "name" not in given:
                    raise missing_parameter(f"{item_param}[name]")
                name = string_param(given["name"], f"{item_param}[name]", 80, emptyable=False)
                features.append({"name": name})
            changes[key] = features
        elif key == "package_dimensions":
            if value == "":
                changes[key] = None
            else:
                given = hash_param(value, param, DIMENSIONS)
                for part in DIMENSIONS:
                    if part not in given:
                        raise missing_parameter(f"{param}[{part}]")
                changes[key] = {p: _number(given[p], f"{param}[{p}]") for p in DIMENSIONS}
        elif key == "default_price":
            changes[key] = string_param(value, param, 5000)
        elif key == "expand":
            expand_names(params, EXPANDABLE)
    return changes


def _ids(value: Any) -> set[str | None]:
    return {
        string_param(item, f"ids[{i}]", emptyable=False)
        for i, item in enumerate(as_list(value, "ids"))
    }


class ProductsResource(ObjectResource):
    name = "products"
    object_name = "product"
    routes = (*CRUD_ROUTES, DELETE_ROUTE)
    expandable = EXPANDABLE
    filters = (
        exact("active", flag("active")),
        exact("shippable", flag("shippable")),
        one_of("ids", _ids, field="id"),
        exact("type", choice("type", PRODUCT_TYPES)),
        exact("url", text("url")),
        created_range(),
    )

    def __init__(self, context: ResourceContext) -> None:
        super().__init__(context)
        self.catalog = Catalog(context.seed)
        self.store = self.catalog.products

    def changes(self, params: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        return product_changes(params, creating=creating)

    def insert(
        self, changes: Mapping[str, Any], *, object_id: str | None = None, created: Any = None
    ) -> dict[str, Any]:
        """A product from validated changes (its id among them, if the caller chose one)."""
        with self.store.lock:
            product_id = changes.get("id")
            self.store.check_unused(product_id)
            now = int(time.time()) if created is None else int(created)
            obj: dict[str, Any] = {
                "id": product_id or self.store.new_id(),
                "object": "product",
                "active": True,
                "created": now,
                "default_price": None,
                "description": None,
                "images": [],
                "livemode": False,
                "marketing_features": [],
                "metadata": {},
                "name": None,
                "package_dimensions": None,
                "shippable": None,
                "statement_descriptor": None,
                "tax_code": None,
                "type": "service",
                "unit_label": None,
                "updated": now,
                "url": None,
            }
            _apply(obj, {k: v for k, v in changes.items() if k != "id"})
            return self.store.insert(obj)

    def apply(self, obj: dict[str, Any], changes: Mapping[str, Any]) -> None:
        price_id = changes.get("default_price")
        if price_id is not None:
            price = self.catalog.prices.get(price_id)
            if price is None:
                raise no_such("price", price_id, "default_price", 400)
            if price["product"] != obj["id"]:
                raise invalid(
                    f"The price `{price_id}` does not belong to this product.", "default_price"
                )
        _apply(obj, changes)
        obj["updated"] = max(int(time.time()), obj["created"])

    def render(self, obj: Mapping[str, Any], expand: list[str]) -> dict[str, Any]:
        shown = dict(obj)
        if "default_price" in expand and shown.get("default_price"):
            price = self.catalog.prices.get(shown["default_price"])
            if price is not None:
                shown["default_price"] = dict(price)
        return shown

    def check_delete(self, object_id: str) -> None:
        if self.catalog.prices.where("product", object_id):
            raise invalid(DELETE_REFUSED)

    def seed_one(self, params: dict[str, Any]) -> dict[str, Any]:
        """Create params, the `id` among them, plus an optional `created`."""
        created = params.pop("created", None)
        return self.insert(product_changes(params, creating=True), created=created)


def _apply(obj: dict[str, Any], changes: Mapping[str, Any]) -> None:
    for key, value in changes.items():
        if key == "metadata":
            obj["metadata"] = value.apply(obj["metadata"])
        elif key != "expand":
            obj[key] = value
