"""The product resource (docs.stripe.com/api/products).

Parameters follow `stripe.params.ProductCreateParams` / `ProductUpdateParams` of the pinned
SDK; `default_price_data` and `tax_details` are not emulated and answer "Received unknown
parameter". The caller may choose `id` on create; a product some price references cannot be
deleted (Stripe: archive it with `active=false` instead).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ApiError, invalid, missing_parameter, no_such, unknown_parameter
from ..forms import as_list
from .base import ObjectStore, Resource, ResourceContext
from .params import (
    boolean_param,
    check_known,
    created_filter,
    enum_param,
    expand_names,
    hash_param,
    metadata_change,
    name_of,
    string_param,
)

if TYPE_CHECKING:
    from .prices import PricesResource

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
EXPANDABLE = {"default_price"}
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


class ProductsResource(Resource):
    name = "products"
    object_name = "product"
    routes = (
        ("POST", "", "create"),
        ("POST", "/{id}", "update"),
        ("GET", "", "list_all"),
        ("GET", "/{id}", "retrieve"),
        ("DELETE", "/{id}", "delete"),
    )

    def __init__(self, context: ResourceContext) -> None:
        super().__init__(context)
        self.store = ObjectStore(
            kind="product", prefix="prod_", url="/v1/products", seed=context.seed
        )
        self.prices: PricesResource | None = None  # set by the price resource, built after us

    # -- used by prices too

    def insert(self, changes: Mapping[str, Any], *, created: int | None = None) -> dict[str, Any]:
        """Create a product from validated changes; 400 when a caller-chosen id is taken."""
        with self.store.lock:
            product_id = changes.get("id")
            if product_id is not None and self.store.taken(product_id):
                raise ApiError(
                    400, "Product already exists.", param="id", code="resource_already_exists"
                )
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

    def render(self, obj: Mapping[str, Any], expand: list[str]) -> dict[str, Any]:
        shown = dict(obj)
        if "default_price" in expand and shown.get("default_price") and self.prices:
            price = self.prices.store.get(shown["default_price"])
            if price is not None:
                shown["default_price"] = dict(price)
        return shown

    # -- endpoints

    def create(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        changes = product_changes(params, creating=True)
        return self.render(self.insert(changes), expand_names(params, EXPANDABLE))

    def update(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        assert object_id is not None
        changes = product_changes(params, creating=False)
        with self.store.lock:
            obj = copy.deepcopy(self.store.require(object_id))
            price_id = changes.get("default_price")
            if price_id is not None:
                price = self.prices.store.get(price_id) if self.prices else None
                if price is None:
                    raise no_such("price", price_id, "default_price", 400)
                if price["product"] != object_id:
                    raise invalid(
                        f"The price `{price_id}` does not belong to this product.",
                        "default_price",
                    )
            _apply(obj, changes)
            obj["updated"] = max(int(time.time()), obj["created"])
            self.store.replace(obj)
        return self.render(obj, expand_names(params, EXPANDABLE))

    def retrieve(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        assert object_id is not None
        check_known(params, {"expand"})
        expand = expand_names(params, EXPANDABLE)
        return self.render(self.store.require(object_id), expand)

    def delete(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        assert object_id is not None
        for key in params:
            raise unknown_parameter(key)
        with self.store.lock:
            self.store.require(object_id)
            if self.prices is not None and self.prices.store.count_for_product(object_id):
                raise invalid(DELETE_REFUSED)
            self.store.mark_deleted(object_id)
        return {"id": object_id, "object": "product", "deleted": True}

    def list_all(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        check_known(
            params,
            {
                "active",
                "created",
                "ending_before",
                "expand",
                "ids",
                "limit",
                "shippable",
                "starting_after",
                "type",
                "url",
            },
        )
        expand = expand_names(params, EXPANDABLE, "data.")
        tests: list[Callable[[Mapping[str, Any]], bool]] = []
        for flag in ("active", "shippable"):
            if flag in params:
                tests.append(_field_is(flag, boolean_param(params[flag], flag)))
        if "ids" in params:
            ids = {
                string_param(item, f"ids[{i}]", emptyable=False)
                for i, item in enumerate(as_list(params["ids"], "ids"))
            }
            tests.append(lambda obj: obj["id"] in ids)
        if "type" in params:
            kind = enum_param(params["type"], "type", PRODUCT_TYPES)
            tests.append(lambda obj: obj["type"] == kind)
        if "url" in params:
            url = string_param(params["url"], "url", 5000, emptyable=False)
            tests.append(lambda obj: obj["url"] == url)
        if "created" in params:
            created_ok = created_filter(params["created"])
            tests.append(lambda obj: created_ok(obj["created"]))
        result = self.store.list_page(params, keep=lambda obj: all(t(obj) for t in tests))
        result["data"] = [self.render(obj, expand) for obj in result["data"]]
        return result

    # -- control API

    def seed(self, items: list[Mapping[str, Any]]) -> list[str]:
        ids = []
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise ValueError(f"products seed item {index} is not an object")
            params = dict(item)
            created = params.pop("created", None)
            try:
                obj = self.insert(product_changes(params, creating=True), created=created)
            except ApiError as exc:
                raise ValueError(f"products seed item {index}: {exc.message}") from exc
            ids.append(obj["id"])
        return ids


def _field_is(name: str, wanted: Any) -> Callable[[Mapping[str, Any]], bool]:
    return lambda obj: obj[name] is wanted


def _apply(obj: dict[str, Any], changes: Mapping[str, Any]) -> None:
    for key, value in changes.items():
        if key == "metadata":
            obj["metadata"] = value.apply(obj["metadata"])
        elif key != "expand":
            obj[key] = value
