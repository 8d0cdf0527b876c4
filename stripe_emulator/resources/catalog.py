"""The catalog of one account: products and prices, two stores under one lock.

Both resources read both stores (a price names its product; a product's delete is refused while
a price names it, its `default_price` must be one of its prices), so the stores live here and
the resources depend on this module, not on each other.
"""

from __future__ import annotations

import threading

from ..errors import ApiError
from .base import ObjectStore


class ProductStore(ObjectStore):
    def already_exists(self, object_id: str, param: str) -> ApiError:
        """Stripe's answer for a product id: a code of its own, and no id in the message."""
        return ApiError(400, "Product already exists.", param=param, code="resource_already_exists")


class Catalog:
    """A product delete and a price create check each other: one lock makes them atomic."""

    def __init__(self, seed: int | None) -> None:
        lock = threading.RLock()
        self.products = ProductStore(
            kind="product", prefix="prod_", url="/v1/products", seed=seed, lock=lock
        )
        self.prices = ObjectStore(
            kind="price",
            prefix="price_",
            url="/v1/prices",
            seed=seed,
            id_length=24,
            lock=lock,
            indexed=("lookup_key", "product"),
        )
