"""One declarative spec per Stripe object type, and the registry of them.

The registry is the one list every other part reads: the spec parser, the CLI's help, the
`validate()` macro's generated registry (macros/registry.sql) and the conformance tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .contract import ObjectSpec
from .customer import CUSTOMER
from .invoice_item import INVOICE_ITEM
from .meter_event import METER_EVENT
from .price import PRICE
from .product import PRODUCT
from .subscription_item import SUBSCRIPTION_ITEM

OBJECT_SPECS: Mapping[str, ObjectSpec] = MappingProxyType(
    {spec.name: spec for spec in (CUSTOMER, PRODUCT, PRICE, METER_EVENT, SUBSCRIPTION_ITEM,
                                  INVOICE_ITEM)}
)

# The object `check` probes, and whose keys messages list, when no model says which.
DEFAULT_OBJECT = CUSTOMER


class UnknownObjectError(KeyError):
    """A `stripe_activation.object` this package has no spec for."""

    def __init__(self, name: object) -> None:
        super().__init__(name)
        self.name = name
        self.known = tuple(OBJECT_SPECS)

    def __str__(self) -> str:
        return f"unknown Stripe object {self.name!r}; supported: {', '.join(self.known)}"


def get_object_spec(name: str) -> ObjectSpec:
    """The spec of a Stripe object type by its API name ("customer")."""
    try:
        return OBJECT_SPECS[name]
    except (KeyError, TypeError):
        raise UnknownObjectError(name) from None


__all__ = ["DEFAULT_OBJECT", "OBJECT_SPECS", "ObjectSpec", "UnknownObjectError", "get_object_spec"]
