"""Servers that do not list as Stripe does. The parallel listing (the index a first sync
builds) assumes Stripe's documented lists: newest first, filtered by `created`. localstripe,
which many teams run in CI, lists oldest first and answers `400 Unexpected created`; the
emulator reproduces both (`list_order`, `refuse_created_filter`). Against either, a sync
must neither fail nor miss an existing customer (which would create a duplicate)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stripe_emulator import start_emulator
from stripe_emulator.handle import EmulatorHandle
from tests.customers import customer_params, customers_by_key, rows
from tests.integration.test_incremental import FAST, make_project
from tests.integration.test_stripe_api import gateway

QUIRKS = {
    "oldest-first": {"list_order": "oldest_first"},
    "oldest-first-refusing-created": {"list_order": "oldest_first",
                                      "refuse_created_filter": True},
    "newest-first-refusing-created": {"refuse_created_filter": True},
}


@pytest.fixture(params=list(QUIRKS))
def unlike_stripe(request: pytest.FixtureRequest) -> Iterator[tuple[str, EmulatorHandle]]:
    with start_emulator(seed=3, **QUIRKS[request.param]) as handle:
        yield request.param, handle


def seed_over_years(emulator: EmulatorHandle, params: list[dict[str, Any]]) -> list[str]:
    """The customers oldest first, as an account accrues them, over about three years: the
    first page's span is far over a minute, so the listing would cut `created` ranges."""
    now = int(time.time())
    n = len(params)
    return emulator.seed([{**p, "created": now - (n - i) * 86400} for i, p in enumerate(params)])


def test_the_parallel_listing_reads_every_object_once_from_a_server_unlike_stripe(
    unlike_stripe: tuple[str, EmulatorHandle],
) -> None:
    quirk, emulator = unlike_stripe
    ids = seed_over_years(emulator, [{"email": f"o{i}@example.com"} for i in range(1234)])
    gw = gateway(emulator.url, max_rps=1000, per_endpoint_rps=1000)
    listed = [c["id"] for c in gw.iter_all("customers", workers=8)]
    assert sorted(listed) == sorted(ids)  # each once: none left out, none twice
    notices = gw.take_notices()
    assert len(notices) == 1 and emulator.url in notices[0], notices
    # The order is checked on the first page, before any `created` range is asked for.
    expected = "lists oldest first" if "oldest" in quirk else "refused the `created` filter"
    assert expected in notices[0]
    assert gw.take_notices() == []  # said once


def test_a_first_sync_against_a_server_unlike_stripe_adopts_every_customer_once(
    tmp_path: Path, unlike_stripe: tuple[str, EmulatorHandle],
) -> None:
    """300 customers exist (a dropped state, or customers made before the tool), 100 rows
    are new: every existing one is found in the index, so nothing is created twice."""
    _, emulator = unlike_stripe
    model = rows(400)
    seed_over_years(emulator, [customer_params(row) for row in model[:300]])
    project = make_project(tmp_path, "duckdb", 400)

    result = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
    assert result.code == 0, result.stdout[-2000:] + result.stderr[-2000:]
    counts = result.json["models"][0]["counts"]
    assert (counts["created"], counts["unchanged"]) == (100, 300), counts
    held = customers_by_key(emulator.customers(), "metadata")
    assert len(held) == 400 and all(len(found) == 1 for found in held.values())
    assert "listed one page after another" in " ".join(result.stderr.split())  # rich wraps
