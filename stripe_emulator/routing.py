"""Which resource method serves a request: the router every account builds over its resources.

Each account (the platform, each connected account) has its own resource instances, so its own
router: a route is bound to the objects of the account the request acts on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from .resources import Resource
from .resources.base import Operation


@dataclass(frozen=True)
class Route:
    endpoint: str  # Stripe's name for the operation, e.g. "POST /v1/customers/{id}"
    object_id: str | None = None
    resource: Resource | None = None
    operation: Operation | None = None  # the resource's method for this endpoint
    own_pool: bool = False  # its own rate-limit pool: the global limit does not count it
    token_auth: bool = False  # authenticated by a token its resource checks, not an API key

    @property
    def is_write(self) -> bool:
        return self.endpoint.startswith(("POST", "DELETE"))

    @property
    def is_v2(self) -> bool:
        return self.endpoint.split(" ", 1)[1].startswith("/v2/")

    @property
    def permission(self) -> str:
        """The restricted-key permission this request needs, as its resource names it."""
        assert self.resource is not None
        return self.resource.permission(self.endpoint)

    def run(self, params: dict[str, Any]) -> Any:
        assert self.operation is not None
        return self.operation(params, self.object_id)


class Router:
    """(method, path) -> Route, from the endpoints the resources declare.

    A template segment in braces (`{id}`) matches any non-empty segment and names the object;
    literal segments win over it (`/v1/customers/search` before `/v1/customers/{id}`).
    """

    def __init__(self, resources: Iterable[Resource]) -> None:
        table: dict[tuple[str, int], list[tuple[tuple[str | None, ...], Route]]] = {}
        for resource in resources:
            for method, suffix, attribute in resource.routes:
                endpoint = resource.endpoint_name(method, suffix)
                template = endpoint.split(" ", 1)[1]  # "/v1/..." or "/v2/..."
                segments = tuple(
                    None if s.startswith("{") else s for s in template.strip("/").split("/")
                )
                route = Route(
                    endpoint,
                    None,
                    resource,
                    getattr(resource, attribute),
                    own_pool=attribute in resource.own_rate_limit_pool,
                    token_auth=attribute in resource.token_auth,
                )
                table.setdefault((method, len(segments)), []).append((segments, route))
        for candidates in table.values():
            candidates.sort(key=lambda c: sum(s is None for s in c[0]))
        self._table = table

    def route(self, method: str, path: str) -> Route | None:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        for segments, template in self._table.get((method, len(parts)), ()):
            ids: list[str] = []
            for want, got in zip(segments, parts, strict=True):
                if want is None and got:
                    ids.append(got)
                elif want != got:
                    break
            else:
                return dataclasses.replace(template, object_id=ids[-1] if ids else None)
        return None
