"""The baseline: the script a user writes with the stripe SDK instead of using the tool.

One request at a time; for each row, find the customer by email, then update it or create
one. No state and no diff, so every row costs a lookup and a write on every run.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import stripe

from tests.customers import customer_params


@dataclass(frozen=True)
class NaiveRun:
    rows: int
    seconds: float
    creates: int
    updates: int

    @property
    def seconds_per_row(self) -> float:
        return self.seconds / self.rows if self.rows else 0.0


def naive_sync(rows: Sequence[Mapping[str, Any]], api_base: str, api_key: str) -> NaiveRun:
    stripe.enable_telemetry = False
    client = stripe.StripeClient(api_key, base_addresses={"api": api_base}, max_network_retries=2)
    creates = updates = 0
    started = time.perf_counter()
    for row in rows:
        found = client.v1.customers.list(params={"email": row["email"], "limit": 1})
        params = customer_params(row)
        if found.data:
            client.v1.customers.update(found.data[0].id, params=params)  # type: ignore[arg-type]
            updates += 1
        else:
            client.v1.customers.create(params=params)  # type: ignore[arg-type]
            creates += 1
    return NaiveRun(len(rows), time.perf_counter() - started, creates, updates)
