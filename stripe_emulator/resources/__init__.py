"""The Stripe objects the emulator serves, one module each, behind the server's one router.

To add a resource: write a module with a `Resource` subclass (its `name`, `object_name`,
`routes` and one method per route, plus a store if it keeps objects) and list the class in
`RESOURCE_TYPES`, after any resource it references. The server derives routing, permissions,
endpoint names for stats and rate limits, object locks, reset, seed and dumps from it.
"""

from __future__ import annotations

from collections.abc import Callable

from ..clock import EmulatorClock
from .balance import BalanceResource
from .base import ListQuirks, ObjectStore, Resource, ResourceContext
from .customers import CustomersResource
from .invoices import InvoiceItemsResource, InvoicesResource
from .meter_event_stream import MeterEventSessionsResource, MeterEventStreamResource
from .meter_events import MeterEventsResource
from .meters import MetersResource
from .prices import PricesResource
from .products import ProductsResource
from .quotes import QuotesResource
from .subscriptions import SubscriptionItemsResource, SubscriptionsResource

# Built in this order: a resource may look up the ones before it in `context.resources`.
RESOURCE_TYPES: tuple[type[Resource], ...] = (
    CustomersResource,
    BalanceResource,
    ProductsResource,
    PricesResource,
    MetersResource,
    MeterEventsResource,
    MeterEventSessionsResource,
    MeterEventStreamResource,
    SubscriptionsResource,
    SubscriptionItemsResource,
    InvoicesResource,
    InvoiceItemsResource,
    QuotesResource,
)
ENDPOINTS: tuple[str, ...] = tuple(e for cls in RESOURCE_TYPES for e in cls.endpoint_names())


def build_resources(
    *,
    seed: int | None = None,
    search_delay: Callable[[], float] = lambda: 0.0,
    list_quirks: Callable[[], ListQuirks] = ListQuirks,
    clock: EmulatorClock | None = None,
) -> dict[str, Resource]:
    """One instance of every resource, keyed by collection name, in `RESOURCE_TYPES` order."""
    context = ResourceContext(
        seed=seed, search_delay=search_delay, list_quirks=list_quirks,
        clock=clock if clock is not None else EmulatorClock(),
    )
    for cls in RESOURCE_TYPES:
        context.resources[cls.name] = cls(context)
    return dict(context.resources)


__all__ = [
    "ENDPOINTS",
    "RESOURCE_TYPES",
    "BalanceResource",
    "CustomersResource",
    "InvoiceItemsResource",
    "InvoicesResource",
    "ListQuirks",
    "MeterEventSessionsResource",
    "MeterEventStreamResource",
    "MeterEventsResource",
    "MetersResource",
    "ObjectStore",
    "PricesResource",
    "ProductsResource",
    "QuotesResource",
    "Resource",
    "ResourceContext",
    "SubscriptionItemsResource",
    "SubscriptionsResource",
    "build_resources",
]
