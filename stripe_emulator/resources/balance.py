"""The balance resource: what a connection test reads."""

from __future__ import annotations

from typing import Any

from ..errors import unknown_parameter
from .base import Resource


class BalanceResource(Resource):
    """`GET /v1/balance`: a zero USD balance, the cheapest authenticated read."""

    name = "balance"
    object_name = "balance"
    routes = (("GET", "", "retrieve"),)

    def retrieve(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        for key in params:
            if key != "expand":
                raise unknown_parameter(key)
        zero = [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}]
        return {
            "object": "balance",
            "available": zero,
            "connect_reserved": [{"amount": 0, "currency": "usd"}],
            "livemode": False,
            "pending": zero,
        }
