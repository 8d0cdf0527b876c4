"""The CRM customers a sync reads in the end-to-end tests, the fault matrix and the benchmark:
the model's rows, the sync blocks that map them onto Stripe customers, the create params of a
customer holding a row, and the comparison of what Stripe holds with the rows.

The benchmark imports this module: it must not import pytest, nor any module that does.

Row i: customer_id c00000i (zero-padded to `id_digits`), email user{i}@example.com, name
"User i" (" (renamed)" appended when changed), city by i % 3, plan by i % 2.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

CITIES = ("Paris", "Lyon", "Nice")
PLANS = ("free", "pro")
RENAMED = " (renamed)"
COLUMNS = ("customer_id", "email", "full_name", "city", "plan")

# Stripe field -> row column: the five values a customer holds for a row.
MAPPED = {
    "email": "email",
    "name": "full_name",
    "address.city": "city",
    "metadata.plan": "plan",
    "metadata.crm_id": "customer_id",
}


def keyed_on(field: str) -> dict[str, Any]:
    """The sync block keyed on `field` (its column is the key), mapping the other four."""
    return {
        "object": "customer",
        "key": {"column": MAPPED[field], "field": field},
        "fields": {f: column for f, column in MAPPED.items() if f != field},
    }


# The two ways the rows are keyed: the CRM id in metadata (email is a mapped field), or the
# email (the CRM id is mapped into metadata). Either way Stripe holds the same five values.
SYNC_BY_METADATA = keyed_on("metadata.crm_id")
SYNC_BY_EMAIL = keyed_on("email")
SYNCS = {"metadata": SYNC_BY_METADATA, "email": SYNC_BY_EMAIL}  # by key kind


def row(i: int, renamed: bool = False, id_digits: int = 5) -> dict[str, Any]:
    return {
        "customer_id": f"c{i:0{id_digits}d}",
        "email": f"user{i}@example.com",
        "full_name": f"User {i}" + (RENAMED if renamed else ""),
        "city": CITIES[i % 3],
        "plan": PLANS[i % 2],
    }


def rows(n: int, changed: Iterable[int] = (), id_digits: int = 5) -> list[dict[str, Any]]:
    """Rows 0..n-1; those in `changed` renamed."""
    changed_set = set(changed)
    return [row(i, i in changed_set, id_digits) for i in range(n)]


def customer_params(
    row: Mapping[str, Any],
    name: str | None = None,
    city: str | None = None,
    plan: str | None = None,
) -> dict[str, Any]:
    """Create (or update) params of a customer holding `row`'s values; `name`, `city` or
    `plan` replace the row's (a stale customer a sync must update)."""
    return {
        "email": row["email"],
        "name": row["full_name"] if name is None else name,
        "address": {"city": row["city"] if city is None else city},
        "metadata": {
            "plan": row["plan"] if plan is None else plan,
            "crm_id": row["customer_id"],
        },
    }


# -- what Stripe holds ---------------------------------------------------------------------------


def row_key(row: Mapping[str, Any], key_kind: str) -> str:
    """The key of a row: its email, or its CRM id (key_kind "metadata")."""
    return str(row["email"] if key_kind == "email" else row["customer_id"])


def customer_key(customer: Mapping[str, Any], key_kind: str) -> str:
    """The key a customer holds, normalized as the sync compares keys."""
    if key_kind == "email":
        return str(customer.get("email") or "").strip().lower()
    return str((customer.get("metadata") or {}).get("crm_id"))


def customers_by_key(
    customers: Iterable[Mapping[str, Any]], key_kind: str
) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for customer in customers:
        out.setdefault(customer_key(customer, key_kind), []).append(dict(customer))
    return out


def held_values(customer: Mapping[str, Any]) -> tuple[Any, ...]:
    """The values a sync maps onto a customer: email, name, city, metadata."""
    return (
        customer.get("email"),
        customer.get("name"),
        (customer.get("address") or {}).get("city"),
        customer.get("metadata"),
    )


def row_values(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """What `held_values` is for a customer that holds `row`."""
    return held_values(customer_params(row))


def stripe_differences(
    customers: Iterable[Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    key_kind: str,
    others: bool = False,
) -> list[str]:
    """Why the `customers` Stripe holds are not the `rows`: a key held by several customers,
    a row without a customer, a customer without a row (unless `others` allows unrelated
    customers in the account), a customer whose values differ from its row. Empty when each
    row is held by exactly one customer with the row's values."""
    by_key = customers_by_key(customers, key_kind)
    wanted = {row_key(r, key_kind): r for r in rows}
    problems = []
    duplicated = {
        key: [c.get("id") for c in held]
        for key, held in by_key.items()
        if len(held) > 1 and (not others or key in wanted)
    }
    if duplicated:
        problems.append(f"keys with several customers: {duplicated}")
    missing = sorted(set(wanted) - set(by_key))
    if missing:
        problems.append(f"{len(missing)} rows without a customer, e.g. {missing[:5]}")
    extra = [] if others else sorted(set(by_key) - set(wanted))
    if extra:
        problems.append(f"{len(extra)} customers without a row, e.g. {extra[:5]}")
    wrong = []
    for key, wanted_row in wanted.items():
        held = by_key.get(key, [])
        if len(held) == 1 and held_values(held[0]) != row_values(wanted_row):
            wrong.append((key, held_values(held[0]), row_values(wanted_row)))
    if wrong:
        problems.append(f"{len(wrong)} customers differ from their row, e.g. {wrong[:3]}")
    return problems
