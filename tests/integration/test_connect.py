"""Stripe Connect end to end against the repo's emulator (localstripe ignores
`Stripe-Account`): a model's `account` column writes each row to its connected account;
the same key in two accounts is two objects; references resolve per account; an account
the platform cannot act for is found with one request; a re-run makes none; `--shard K/N`
processes side by side end with the state one process leaves."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stripe_emulator import start_emulator
from stripe_emulator.handle import EmulatorHandle
from tests.conftest import drop_postgres_schema
from tests.customers import COLUMNS, SYNC_BY_METADATA, row
from tests.integration.dbtproj import BIN, DbtProject, new_project
from tests.integration.test_sync_catalogue import PRICES, PRICES_SYNC, PRODUCTS, PRODUCTS_SYNC

FAST = ("--max-rps", "1000", "--max-endpoint-rps", "1000", "--max-account-rps", "1000")
ACCOUNTS = ("acct_emu0001", "acct_emu0002")
UNKNOWN = "acct_notconnected"
CONNECTED_SYNC = {**SYNC_BY_METADATA, "account": "account_id"}


@pytest.fixture
def emulator() -> Iterator[EmulatorHandle]:
    with start_emulator(seed=17, accounts=len(ACCOUNTS)) as handle:
        yield handle


def account_rows(accounts: tuple[str | None, ...], n: int) -> list[dict[str, Any]]:
    """The same n CRM rows in each account (None: the platform)."""
    return [{**row(i), "account_id": account or ""} for account in accounts for i in range(n)]


def connected_project(root: Path, target: str, rows: list[dict[str, Any]]) -> DbtProject:
    project = new_project(root, target)
    project.write_seed("crm", rows, columns=[*COLUMNS, "account_id"])
    project.write_model("stripe_customers", "select * from {{ ref('crm') }}",
                        sync=CONNECTED_SYNC)
    project.build()
    return project


def sync(project: DbtProject, emulator: EmulatorHandle, *args: str) -> Any:
    return project.sync(*args, *FAST, "--output", "json", stripe_url=emulator.url)


def crm_ids(emulator: EmulatorHandle, account: str | None) -> list[str]:
    return sorted(c["metadata"]["crm_id"] for c in emulator.customers(account=account))


def test_each_row_goes_to_its_account_and_an_unknown_account_costs_one_request(
    tmp_path: Path, emulator: EmulatorHandle
) -> None:
    rows = account_rows((*ACCOUNTS, None, UNKNOWN), 3)
    project = connected_project(tmp_path / "proj", "duckdb", rows)
    first = sync(project, emulator)
    assert first.code == 1, first.stdout + first.stderr  # the unknown account's rows
    [model] = first.json["models"]
    assert (model["counts"]["created"], model["counts"]["rejected"]) == (9, 3)
    # The same CRM ids (and emails) in each account are distinct customers.
    for account in (*ACCOUNTS, None):
        assert crm_ids(emulator, account) == ["c00000", "c00001", "c00002"]
    ids = {c["id"] for a in (*ACCOUNTS, None) for c in emulator.customers(account=a)}
    assert len(ids) == 9
    reasons = {r["key"]: r["reason"] for r in model["rejected"]}
    assert set(reasons) == {f"{UNKNOWN}/c0000{i}" for i in range(3)}
    assert all("does not have access to account 'acct_notconnected'" in r
               for r in reasons.values())
    # One refused request found the account; its other rows were rejected without one.
    assert emulator.stats()["by_status"].get("403", 0) == 1

    emulator.reset(stats_only=True)
    again = sync(project, emulator)
    assert again.code == 1 and again.json["models"][0]["counts"]["unchanged"] == 9
    requests = emulator.stats()["requests_by_account"]
    assert sum(requests.values()) == 0, requests


def test_a_read_that_fails_fails_its_rows_not_the_run(
    tmp_path: Path, emulator: EmulatorHandle
) -> None:
    """Stripe answers 500 to every request (the SDK retries, then gives up): each row's
    lookup fails that row, retried by the next run; the model is not an error."""
    accounts = tuple(emulator.seed_accounts(2))
    project = connected_project(tmp_path / "proj", "duckdb", account_rows(accounts, 2))
    emulator.config(server_error_rate=1.0)
    try:
        failed = sync(project, emulator)
    finally:
        emulator.config(server_error_rate=0.0)
    assert failed.code == 1, failed.stdout + failed.stderr
    [model] = failed.json["models"]
    assert (model["status"], model["counts"]["failed"]) == ("partial", 4)
    assert all(r["reason"].startswith("Stripe: list customer: 500 api_error")
               for r in model["failed"]), model["failed"]
    again = sync(project, emulator)
    assert again.code == 0 and again.json["models"][0]["counts"]["created"] == 4
    for account in accounts:
        assert crm_ids(emulator, account) == ["c00000", "c00001"]


def test_references_resolve_in_the_rows_own_account(
    tmp_path: Path, emulator: EmulatorHandle
) -> None:
    project = new_project(tmp_path / "proj", "duckdb")
    products = [{**p, "account_id": a} for a in ACCOUNTS for p in PRODUCTS]
    prices = [{**p, "account_id": a} for a in ACCOUNTS for p in PRICES]
    project.write_seed("catalogue", products)
    project.write_seed("plans", prices, types={"amount": "integer"})
    project.write_model("stripe_products", "select * from {{ ref('catalogue') }}",
                        sync={**PRODUCTS_SYNC, "account": "account_id"})
    project.write_model("stripe_prices", "select * from {{ ref('plans') }}",
                        sync={**PRICES_SYNC, "account": "account_id"})
    project.build()
    # plan resolves a reference to the product its upstream model would create, per account.
    planned = sync(project, emulator, "plan")
    assert planned.code == 0, planned.stdout + planned.stderr
    assert [m["counts"]["created"] for m in planned.json["models"]] == [4, 4]
    result = sync(project, emulator)
    assert result.code == 0, result.stdout + result.stderr
    for account in ACCOUNTS:
        assert sorted(p["id"] for p in emulator.products(account=account)) == [
            "prod_pro", "prod_starter"]
        assert sorted((p["lookup_key"], p["product"])
                      for p in emulator.prices(account=account)) == [
            ("pro_setup_fee", "prod_pro"), ("starter_monthly", "prod_starter")]
    assert emulator.products() == []  # nothing on the platform
    # A named object links to its page in its own account's Dashboard.
    samples = result.json["models"][0]["samples"]
    assert samples and all(
        s["dashboard_url"] == f"https://dashboard.stripe.com/{s['key'].split('/')[0]}/test/"
        f"products/{s['stripe_id']}" for s in samples), samples


def test_a_reference_across_scopes_is_a_config_error(
    tmp_path: Path, emulator: EmulatorHandle
) -> None:
    project = new_project(tmp_path / "proj", "duckdb")
    project.write_seed("catalogue", PRODUCTS)
    project.write_seed("plans", PRICES, types={"amount": "integer"})
    project.write_model("stripe_products", "select * from {{ ref('catalogue') }}",
                        sync=PRODUCTS_SYNC)
    project.write_model("stripe_prices", "select *, 'acct_emu0001' as account_id from "
                        "{{ ref('plans') }}", sync={**PRICES_SYNC, "account": "account_id"})
    project.build()
    result = sync(project, emulator)
    assert result.code == 2
    assert result.json["error"] == (
        "model 'stripe_prices' (models/stripe_prices.sql): stripe_activation.fields.product: "
        "references model 'stripe_products', but this model names an `account` column and "
        "stripe_products does not: an object can only name objects of its own Stripe "
        "account. Give both models the account column, or neither.")


@pytest.mark.postgres
def test_three_shards_at_once_leave_the_state_one_process_leaves(
    tmp_path: Path, emulator: EmulatorHandle, postgres_target: str
) -> None:
    accounts = tuple(emulator.seed_accounts(6))
    rows = account_rows(accounts, 4)
    sharded = connected_project(tmp_path / "sharded", "postgres", rows)
    single = connected_project(tmp_path / "single", "postgres", rows)
    try:
        procs = [subprocess.Popen(
            [str(BIN / "dbt-stripe-sync"), "--shard", f"{k}/3", *FAST, "--output", "json",
             "--target", "postgres"],
            cwd=sharded.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=sharded.env(STRIPE_API_KEY="sk_test_dsa", STRIPE_API_BASE=emulator.url),
        ) for k in (1, 2, 3)]
        outputs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], [
            [m.get("error") for m in json.loads(out).get("models", [])] if out.strip() else err
            for out, err in outputs]
        created = [sum(m["counts"]["created"] for m in json.loads(out)["models"])
                   for out, _ in outputs]
        assert sum(created) == 24 and sum(1 for c in created if c) >= 2  # spread over shards
        for account in accounts:
            assert crm_ids(emulator, account) == [f"c0000{i}" for i in range(4)]

        # One process over the same rows, against the same accounts (now all synced there
        # by the shards): it finds every customer, so the two states must agree.
        assert sync(single, emulator).code == 0
        assert state_of(sharded) == state_of(single)
        emulator.reset(stats_only=True)
        for k in (1, 2, 3):
            assert sync(sharded, emulator, "--shard", f"{k}/3").code == 0
        assert sum(emulator.stats()["requests_by_account"].values()) == 0
    finally:
        drop_postgres_schema(sharded.schema)
        drop_postgres_schema(single.schema)


def state_of(project: DbtProject) -> set[tuple[str, str]]:
    """(key, Stripe id) of every state row: outcomes differ (the shards created what the
    single process then found unchanged)."""
    import psycopg2

    with psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test") as conn:
        cur = conn.cursor()
        cur.execute(f'select key_value, stripe_id from "{project.schema}_stripe_activation"'
                    ".stripe_sync_state")
        return {(key, stripe_id) for key, stripe_id in cur.fetchall()}
