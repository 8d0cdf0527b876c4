"""Moved to `stripe_emulator.resources.customers`; kept so old imports keep working."""

from __future__ import annotations

from .resources.customers import (
    CustomersResource,
    CustomerStore,
    customer_changes,
    expand_list,
    render,
)
from .resources.params import MetadataChange

__all__ = [
    "CustomerStore",
    "CustomersResource",
    "MetadataChange",
    "customer_changes",
    "expand_list",
    "render",
]
