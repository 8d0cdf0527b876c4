"""One declarative spec per Stripe object type (customer first), and the registry of them."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .base import ObjectSpec
from .customer import CUSTOMER

OBJECT_SPECS: Mapping[str, ObjectSpec] = MappingProxyType({CUSTOMER.name: CUSTOMER})


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


__all__ = ["OBJECT_SPECS", "ObjectSpec", "UnknownObjectError", "get_object_spec"]
