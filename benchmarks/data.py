"""The benchmark's data: the CRM rows a user syncs, the Stripe account they sync into, and
the 1M-row model (generated in SQL by DuckDB, so no CSV is ever written for it).

Row i of the CRM model falls in one of four classes (i % 4):
  0 -> its email is already in Stripe with the same values (unchanged)
  2 -> its email is already in Stripe with another name (update)
  1, 3 -> its email is not in Stripe (create)
so half the rows match existing customers, half of those need an update. The account holds
as many customers as the model has rows: the matched half plus unrelated customers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tests import customers
from tests.customers import customer_params

COLUMNS = customers.COLUMNS
ID_DIGITS = 7  # c0000000..c9999999, as big_model_sql pads them

# The sync every scenario runs: key on email, so the tool may choose per-row lookups or a
# list index; four mapped fields, one nested, two in metadata (the rows and the block are the
# tests' own, tests/customers.py).
SYNC: dict[str, Any] = {
    "object": "customer",
    "behavior": "update_or_create",
    "key": customers.SYNC_BY_EMAIL["key"],
    "fields": customers.SYNC_BY_EMAIL["fields"],
}


def row(i: int, renamed: bool = False) -> dict[str, Any]:
    return customers.row(i, renamed, id_digits=ID_DIGITS)


def rows(n: int, changed: Iterable[int] = ()) -> list[dict[str, Any]]:
    return customers.rows(n, changed, id_digits=ID_DIGITS)


def changed_rows(n: int, fraction: float = 0.01) -> list[int]:
    """One row in every 1/fraction, offset so that all four classes are represented."""
    step = round(1 / fraction)
    return [k * step + k % 4 for k in range(n // step)]


def row_class(i: int) -> str:
    return {0: "unchanged", 2: "update"}.get(i % 4, "create")


@dataclass(frozen=True)
class Expected:
    """What the first sync of `rows(n)` into `account(n)` must do."""

    creates: int
    updates: int
    unchanged: int
    account_size: int

    @property
    def writes(self) -> int:
        return self.creates + self.updates


def expected(n: int) -> Expected:
    classes = [row_class(i) for i in range(n)]
    return Expected(
        creates=classes.count("create"),
        updates=classes.count("update"),
        unchanged=classes.count("unchanged"),
        account_size=n,
    )


def account(n: int) -> list[dict[str, Any]]:
    """Create params for the n customers the account holds before the first sync, created
    over the last two years, oldest first, as an account accrues them (a sync's listing
    splits the account by `created`)."""
    held: list[dict[str, Any]] = []
    for i in range(n):
        kind = row_class(i)
        if kind == "create":
            continue
        stale_name = None if kind == "unchanged" else f"Old name {i}"
        held.append(customer_params(row(i), name=stale_name))
    j = 0
    while len(held) < n:
        held.append(
            {
                "email": f"someone{j}@other.example.org",
                "name": f"Someone {j}",
                "metadata": {"source": "checkout"},
            }
        )
        j += 1
    now = int(time.time())
    two_years = 2 * 365 * 86400
    return [{**params, "created": now - ((n - i) * two_years) // n}
            for i, params in enumerate(held)]


def big_model_sql(target: str = "duckdb") -> str:
    """The (c) model: `bench_rows` rows; `bench_changed_pct` percent of them renamed.

    The same shape as `rows()`; the warehouse generates it (DuckDB's range(), PostgreSQL's
    generate_series()), dbt materializes it as a table.
    """
    sql = """
select
    'c' || lpad(cast(i as varchar), 7, '0') as customer_id,
    'user' || cast(i as varchar) || '@example.com' as email,
    'User ' || cast(i as varchar)
        || case when i % 100 < {{ var('bench_changed_pct', 0) }} then ' (renamed)' else '' end
        as full_name,
    case i % 3 when 0 then 'Paris' when 1 then 'Lyon' else 'Nice' end as city,
    case i % 2 when 0 then 'free' else 'pro' end as plan
from range({{ var('bench_rows', 1000) }}) as t(i)
""".lstrip()
    if target == "postgres":
        sql = sql.replace("from range({{ var('bench_rows', 1000) }}) as t(i)",
                          "from generate_series(0, {{ var('bench_rows', 1000) }} - 1) as t(i)")
    return sql
