"""Usage-based billing end to end, on DuckDB and PostgreSQL, against the repo's emulator
(localstripe has no meters): meter events sent exactly once through the v2 stream (and v1),
Stripe's windows, lost acknowledgements inside and beyond the 24-hour de-duplication window,
a crash mid-stream; and seat quantities on subscription items."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from stripe_emulator import start_emulator
from stripe_emulator.handle import EmulatorHandle
from tests.conftest import drop_postgres_schema
from tests.integration.dbtproj import BIN, DbtProject, new_project

FAST = ("--max-rps", "1000", "--max-endpoint-rps", "1000", "--max-event-rps", "1000")

CUSTOMERS_SYNC = {
    "object": "customer",
    "key": {"column": "customer_key", "field": "metadata.account"},
    "fields": {"email": "email"},
}
USAGE_SYNC = {
    "object": "meter_event",
    "behavior": "append",
    "key": {"column": "event_id", "field": "identifier"},
    "fields": {
        "event_name": {"value": "api_calls"},
        "timestamp": "occurred_at",
        "payload.stripe_customer_id": {"ref": "stripe_customers", "column": "customer_key"},
        "payload.value": "quantity",
    },
}


@pytest.fixture
def emulator() -> Iterator[EmulatorHandle]:
    with start_emulator(seed=13) as handle:
        handle.seed_meters([{"display_name": "API calls", "event_name": "api_calls"}])
        yield handle


# Fixed for the whole test run: the same rows hash the same in every sync of a test.
MOMENT = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)


def usage_rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    moment = MOMENT
    return [
        {"event_id": f"evt-{i:06d}", "customer_key": f"acct-{i % 3}",
         "occurred_at": (moment + timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S"),
         "quantity": str(1 + i % 7)}
        for i in range(start, start + n)
    ]


def write_usage(project: DbtProject, rows: list[dict[str, Any]]) -> None:
    project.write_seed("usage", rows, types={"occurred_at": "timestamp"})


def usage_project(root: Path, target: str, n: int) -> DbtProject:
    project = new_project(root, target)
    project.write_seed("accounts", [{"customer_key": f"acct-{i}",
                                     "email": f"acct{i}@example.com"} for i in range(3)])
    write_usage(project, usage_rows(n))
    project.write_model("stripe_customers", "select * from {{ ref('accounts') }}",
                        sync=CUSTOMERS_SYNC)
    project.write_model("stripe_usage", "select * from {{ ref('usage') }}", sync=USAGE_SYNC)
    project.build()
    return project


@pytest.fixture
def project(tmp_path: Path, warehouse_target: str) -> Iterator[DbtProject]:
    proj = usage_project(tmp_path / "proj", warehouse_target, 250)
    yield proj
    if warehouse_target == "postgres":
        drop_postgres_schema(proj.schema)


def identifiers(emulator: EmulatorHandle) -> Counter[str]:
    return Counter(e["identifier"] for e in emulator.meter_events())


def model(result: Any, name: str = "stripe_usage") -> dict[str, Any]:
    return next(m for m in result.json["models"] if m["model"] == name)


def test_append_sends_each_identifier_once_and_only_new_rows_later(
    project: DbtProject, emulator: EmulatorHandle
) -> None:
    first = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
    assert first.code == 0, first.stdout + first.stderr
    assert model(first)["counts"]["sent"] == 250
    sent = identifiers(emulator)
    assert len(sent) == 250 and set(sent.values()) == {1}
    customers = {c["metadata"]["account"]: c["id"] for c in emulator.customers()}
    by_id = {e["identifier"]: e for e in emulator.meter_events()}
    assert by_id["evt-000004"]["payload"] == {"stripe_customer_id": customers["acct-1"],
                                             "value": "5"}
    stats = emulator.stats()
    # 250 events in 3 stream requests of at most 100, under one session.
    assert stats["by_endpoint"].get("POST /v2/billing/meter_event_stream") == 3
    assert stats["by_endpoint"].get("POST /v2/billing/meter_event_session") == 1

    emulator.reset(stats_only=True)
    again = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
    assert again.code == 0
    assert emulator.stats()["requests_total"] == 0
    assert model(again)["counts"]["unchanged"] == 250

    write_usage(project, usage_rows(250) + usage_rows(10, start=250))
    project.build()
    emulator.reset(stats_only=True)
    more = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
    assert more.code == 0, more.stdout
    assert model(more)["counts"]["sent"] == 10
    assert len(identifiers(emulator)) == 260


def test_a_changed_sent_row_is_reported_not_sent_again(
    project: DbtProject, emulator: EmulatorHandle
) -> None:
    assert project.sync(*FAST, stripe_url=emulator.url).code == 0
    rows = usage_rows(250)
    rows[7]["quantity"] = "100"
    write_usage(project, rows)
    project.build()
    emulator.reset(stats_only=True)
    result = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
    assert result.code == 0, result.stdout
    usage = model(result)
    assert usage["counts"]["already_sent"] == 1 and usage["counts"]["sent"] == 0
    [reported] = usage["already_sent"]
    assert reported["key"] == "evt-000007"
    assert reported["reason"].startswith("sent before; payload.value changed since")
    assert emulator.stats()["requests_total"] == 0
    assert {e["identifier"]: e for e in emulator.meter_events()}["evt-000007"][
        "payload"]["value"] == "1"
    quiet = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
    assert model(quiet)["counts"]["unchanged"] == 250  # reported once, then settled


def test_stripe_windows_and_bad_values_reject_only_their_rows(
    tmp_path: Path, emulator: EmulatorHandle
) -> None:
    project = usage_project(tmp_path / "proj", "duckdb", 3)
    now = datetime.now(timezone.utc)
    rows = usage_rows(3) + [
        {"event_id": "too-old", "customer_key": "acct-0", "quantity": "1",
         "occurred_at": (now - timedelta(days=36)).strftime("%Y-%m-%d %H:%M:%S")},
        {"event_id": "ahead", "customer_key": "acct-0", "quantity": "1",
         "occurred_at": (now + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")},
        {"event_id": "not-a-number", "customer_key": "acct-0", "quantity": "lots",
         "occurred_at": now.strftime("%Y-%m-%d %H:%M:%S")},
        {"event_id": "x" * 101, "customer_key": "acct-0", "quantity": "1",
         "occurred_at": now.strftime("%Y-%m-%d %H:%M:%S")},
        {"event_id": "unknown-account", "customer_key": "acct-9", "quantity": "1",
         "occurred_at": now.strftime("%Y-%m-%d %H:%M:%S")},
    ]
    write_usage(project, rows)
    project.build()
    result = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
    assert result.code == 1
    usage = model(result)
    assert usage["counts"]["sent"] == 3
    reasons = {r["key"]: r["reason"] for r in usage["rejected"] + usage["failed"]}
    assert "is more than 35 days ago" in reasons["too-old"]
    assert "is more than 5 minutes ahead; it is sent once it is due" in reasons["ahead"]
    assert reasons["not-a-number"] == (
        "payload.value: is 'lots'; a meter event's value is a whole number")
    assert reasons["x" * 101] == "identifier (column event_id): is 101 characters; Stripe " \
        "allows at most 100"
    assert "key 'acct-9' has no Stripe customer in stripe_customers's sync state" in reasons[
        "unknown-account"]
    assert [r["key"] for r in usage["failed"]] == ["ahead"]  # retried: it becomes due
    assert len(identifiers(emulator)) == 3


def test_an_event_name_without_an_active_meter_stops_before_any_write(
    tmp_path: Path, emulator: EmulatorHandle
) -> None:
    sync = {**USAGE_SYNC, "fields": {**USAGE_SYNC["fields"], "event_name": {"value": "gb"}}}
    project = new_project(tmp_path / "proj")
    project.write_seed("accounts", [{"customer_key": "acct-0", "email": "a@example.com"}])
    write_usage(project, usage_rows(3))
    project.write_model("stripe_customers", "select * from {{ ref('accounts') }}",
                        sync=CUSTOMERS_SYNC)
    project.write_model("stripe_usage", "select * from {{ ref('usage') }}", sync=sync)
    project.build()
    for command in ("plan", "sync"):
        result = project.sync(command, *FAST, "--output", "json", stripe_url=emulator.url)
        assert result.code == 2
        assert result.json["error"] == (
            "model 'stripe_usage' (models/stripe_usage.sql): stripe_activation.fields."
            "event_name: 'gb' is not the event_name of an active meter in this Stripe account "
            "(found: api_calls). Create it in Stripe, or fix the value."
        )
    checked = project.sync("check", "--output", "json", stripe_url=emulator.url)
    assert checked.code == 2
    assert "'gb' is not the event_name of an active meter" in checked.json["stripe"]["error"]
    assert emulator.stats()["writes_committed"] == 0


def test_lost_acknowledgements_are_resent_inside_the_window_and_uncertain_beyond(
    tmp_path: Path, emulator: EmulatorHandle
) -> None:
    project = usage_project(tmp_path / "proj", "duckdb", 300)
    assert project.sync(*FAST, "--select", "stripe_customers", stripe_url=emulator.url).code == 0
    # Every stream answer is lost after Stripe accepted the events.
    emulator.config(drop_response_rate=1.0)
    lost = project.sync(*FAST, "--output", "json", "--select", "stripe_usage",
                        stripe_url=emulator.url)
    assert lost.code == 1
    assert model(lost)["counts"]["failed"] == 300
    assert len(identifiers(emulator)) == 300  # they landed

    # Inside the window: sent again under the same identifiers; Stripe drops the duplicates.
    emulator.config(drop_response_rate=0.0)
    inside = project.sync(*FAST, "--output", "json", "--select", "stripe_usage",
                          stripe_url=emulator.url)
    assert inside.code == 0, inside.stdout
    assert model(inside)["counts"]["sent"] == 300
    assert identifiers(emulator) == Counter({f"evt-{i:06d}": 1 for i in range(300)})

    # Beyond it: an unacknowledged event is uncertain, and sent only when asked.
    write_usage(project, usage_rows(300) + usage_rows(5, start=300))
    project.build()
    emulator.config(drop_response_rate=1.0)
    assert project.sync(*FAST, "--select", "stripe_usage", stripe_url=emulator.url).code == 1
    emulator.config(drop_response_rate=0.0)
    _age_in_flight_marks(project, hours=25)
    emulator.advance_clock(25 * 3600)  # Stripe has forgotten the identifiers
    beyond = project.sync(*FAST, "--output", "json", "--select", "stripe_usage",
                          stripe_url=emulator.url)
    assert beyond.code == 1
    usage = model(beyond)
    assert usage["counts"]["uncertain"] == 5 and usage["counts"]["sent"] == 0
    assert "past Stripe's 24-hour de-duplication window" in usage["uncertain"][0]["reason"]
    again = project.sync(*FAST, "--output", "json", "--select", "stripe_usage",
                         stripe_url=emulator.url)
    assert model(again)["counts"]["uncertain"] == 5  # reported again, never sent
    resent = project.sync(*FAST, "--output", "json", "--select", "stripe_usage",
                          "--resend-uncertain", stripe_url=emulator.url)
    assert resent.code == 0, resent.stdout
    assert model(resent)["counts"]["sent"] == 5
    # The emulator forgot them (25 h later), so it counts each of the 5 twice: exactly the
    # risk the flag names.
    assert sum(identifiers(emulator).values()) == 310


def _age_in_flight_marks(project: DbtProject, hours: int) -> None:
    _sql(project, f'update "{project.schema}_stripe_activation".stripe_sync_state '
                  f"set synced_at = synced_at - interval {hours} hour "
                  "where last_outcome = 'in_flight'")


def test_sigkill_mid_stream_then_rerun_sends_every_identifier_once(
    tmp_path: Path, warehouse_target: str, emulator: EmulatorHandle
) -> None:
    project = usage_project(tmp_path / "proj", warehouse_target, 3000)
    try:
        assert project.sync(*FAST, "--select", "stripe_customers",
                            stripe_url=emulator.url).code == 0
        emulator.config(latency_ms=[30, 60])
        proc = subprocess.Popen(
            [str(BIN / "dbt-stripe-sync"), *FAST, "--event-concurrency", "2",
             "--target", warehouse_target, "--select", "stripe_usage"],
            cwd=project.root,
            env=project.env(STRIPE_API_KEY="sk_test_dsa", STRIPE_API_BASE=emulator.url),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while len(emulator.meter_events()) < 800:
            assert proc.poll() is None, "the sync finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        landed = len(emulator.meter_events())
        assert 800 <= landed < 3000

        emulator.config(latency_ms=[0, 0])
        rerun = project.sync(*FAST, "--output", "json", "--select", "stripe_usage",
                             stripe_url=emulator.url)
        assert rerun.code == 0, rerun.stdout + rerun.stderr
        assert identifiers(emulator) == Counter({f"evt-{i:06d}": 1 for i in range(3000)})
        emulator.reset(stats_only=True)
        assert project.sync(*FAST, "--select", "stripe_usage",
                            stripe_url=emulator.url).code == 0
        assert emulator.stats()["requests_total"] == 0
    finally:
        if warehouse_target == "postgres":
            drop_postgres_schema(project.schema)


def test_v1_transport_sends_each_event_once_with_an_idempotency_key(
    tmp_path: Path, emulator: EmulatorHandle
) -> None:
    project = usage_project(tmp_path / "proj", "duckdb", 20)
    result = project.sync(*FAST, "--event-transport", "v1", "--output", "json",
                          stripe_url=emulator.url)
    assert result.code == 0, result.stdout + result.stderr
    assert model(result)["counts"]["sent"] == 20
    assert emulator.stats()["by_endpoint"].get("POST /v1/billing/meter_events") == 20
    assert identifiers(emulator) == Counter({f"evt-{i:06d}": 1 for i in range(20)})


# -- seats: subscription item quantities -------------------------------------------------

SEATS_SYNC = {
    "object": "subscription_item",
    "behavior": "update_only",
    "proration_behavior": "none",
    "key": {"column": "item_id", "field": "id"},
    "fields": {"quantity": "seats"},
}


def test_seat_quantities_update_once_and_unchanged_costs_nothing(
    tmp_path: Path, warehouse_target: str, emulator: EmulatorHandle
) -> None:
    [customer] = emulator.seed([{"email": "seats@example.com"}])
    [product] = emulator.seed_products([{"name": "Seats"}])
    [price] = emulator.seed_prices([{"product": product, "currency": "usd",
                                     "unit_amount": 1000,
                                     "recurring": {"interval": "month"}}])
    [subscription] = emulator.seed_subscriptions([
        {"customer": customer, "items": [{"price": price, "quantity": 1}] * 3},
    ])
    items = [i["id"] for i in emulator.subscription_items() if i["subscription"] == subscription]
    assert len(items) == 3
    project = new_project(tmp_path / "proj", warehouse_target)
    try:
        project.write_seed("seats", [{"item_id": i, "seats": str(5 + n)}
                                     for n, i in enumerate(items)], types={"seats": "integer"})
        project.write_model("stripe_seats", "select * from {{ ref('seats') }}", sync=SEATS_SYNC)
        project.build()
        first = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
        assert first.code == 0, first.stdout + first.stderr
        assert model(first, "stripe_seats")["counts"]["updated"] == 3
        stats = emulator.stats()
        assert stats["writes_by_endpoint"] == {"POST /v1/subscription_items/{id}": 3}
        emulator.reset(stats_only=True)
        again = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
        assert emulator.stats()["requests_total"] == 0
        assert model(again, "stripe_seats")["counts"]["unchanged"] == 3
        quantities = {i["id"]: i["quantity"] for i in emulator.subscription_items()}
        assert [quantities[i] for i in items] == [5, 6, 7]
    finally:
        if warehouse_target == "postgres":
            drop_postgres_schema(project.schema)


def test_quantity_updates_are_paced_per_subscription(
    tmp_path: Path, emulator: EmulatorHandle
) -> None:
    """Stripe allows 200 quantity updates per subscription per hour: the runs of the last
    hour are counted from the row results, the rest wait for a later run with the reason."""
    [customer] = emulator.seed([{"email": "many@example.com"}])
    [product] = emulator.seed_products([{"name": "Seats"}])
    [price] = emulator.seed_prices([{"product": product, "currency": "usd", "unit_amount": 1,
                                     "recurring": {"interval": "month"}}])
    [subscription] = emulator.seed_subscriptions([
        {"customer": customer, "items": [{"price": price, "quantity": 1}] * 20},
    ])
    items = [i["id"] for i in emulator.subscription_items() if i["subscription"] == subscription]
    project = new_project(tmp_path / "proj")

    def seats(n: int) -> None:
        project.write_seed("seats", [{"item_id": i, "seats": str(n)} for i in items],
                           types={"seats": "integer"})
        project.build()

    project.write_model("stripe_seats", "select * from {{ ref('seats') }}", sync=SEATS_SYNC)
    seats(3)
    assert model(project.sync(*FAST, "--output", "json", stripe_url=emulator.url),
                 "stripe_seats")["counts"]["updated"] == 20
    # 180 more updates in the last hour (as nine earlier runs would have recorded them).
    results = f'"{project.schema}_stripe_activation".stripe_sync_row_results'
    _sql(project, f"insert into {results} select run_id || '-' || n, model_unique_id, "
                  "key_value, action, outcome, stripe_id, error, recorded_at "
                  f"from {results}, range(9) as t(n)")
    seats(4)
    paced = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
    assert paced.code == 1
    counts = model(paced, "stripe_seats")["counts"]
    assert (counts["updated"], counts["failed"]) == (0, 20)
    assert model(paced, "stripe_seats")["failed"][0]["reason"] == (
        f"subscription {subscription} had 200 quantity updates in the last hour, Stripe's "
        "allowance; retried by a later run"
    )
    assert emulator.stats()["writes_by_endpoint"].get("POST /v1/subscription_items/{id}") == 20
    _sql(project, f"update {results} set recorded_at = recorded_at - interval 2 hour")
    later = project.sync(*FAST, "--output", "json", stripe_url=emulator.url)
    assert later.code == 0, later.stdout
    assert model(later, "stripe_seats")["counts"]["updated"] == 20
    assert {i["quantity"] for i in emulator.subscription_items()} == {4}


def _sql(project: DbtProject, query: str) -> None:
    import duckdb

    with duckdb.connect(str(project.root / "warehouse.duckdb")) as con:
        con.execute(query)


def test_stripe_meter_events_base_names_another_host_for_the_stream(
    tmp_path: Path, emulator: EmulatorHandle
) -> None:
    """STRIPE_API_BASE serves every host the SDK uses unless STRIPE_METER_EVENTS_BASE names
    another: with it naming an address where nothing listens, the session still comes
    from the API base and no stream request reaches it; the events wait, in flight."""
    project = usage_project(tmp_path / "proj", "duckdb", 5)
    result = project.sync(*FAST, "--output", "json", stripe_url=emulator.url,
                          env={"STRIPE_METER_EVENTS_BASE": "http://127.0.0.1:9"})
    assert result.code == 1
    assert model(result)["counts"]["failed"] == 5
    by_endpoint = emulator.stats()["by_endpoint"]
    assert by_endpoint.get("POST /v2/billing/meter_event_session") == 1
    assert "POST /v2/billing/meter_event_stream" not in by_endpoint
