"""Connect in the emulator: a platform acting for connected accounts with the stripe SDK's
per-request `stripe_account` option (the `Stripe-Account` header).

Every account has its own objects, idempotency keys, rate-limit budgets and request counts;
an account the platform cannot act for is refused. Reuses test_emulator's module emulator,
per-test reset (which forgets connected accounts) and clients.
"""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from stripe_emulator import EmulatorConfig, EmulatorHandle, start_emulator
from stripe_emulator.__main__ import parse_args
from stripe_emulator.errors import mask_key
from tests.emulator import test_emulator as shared

KEY, RESTRICTED, first_rate_limit = shared.KEY, shared.RESTRICTED, shared.first_rate_limit
# The same fixtures: one emulator subprocess for the module, reset before each test.
emulator, fresh, client = shared.emulator, shared.fresh, shared.client

PLATFORM = EmulatorConfig().account_id
NOT_CONNECTED = "acct_1NotConnected000"


@pytest.fixture
def accounts(emulator: EmulatorHandle) -> tuple[str, str]:
    """Two connected accounts, acct_emu0001 and acct_emu0002 (the reset forgot earlier ones)."""
    first, second = emulator.seed_accounts(2)
    return first, second


def on(account: str) -> dict[str, Any]:
    """Per-request options acting for a connected account, as the project's client sends them."""
    return {"stripe_account": account}


def customer_in(client: stripe.StripeClient, account: str | None, **params: Any) -> str:
    options = on(account) if account else {}
    return str(client.v1.customers.create(params=params, options=options).id)


def test_accounts_are_created_by_the_handle_with_deterministic_ids(
    emulator: EmulatorHandle, accounts: tuple[str, str]
) -> None:
    assert accounts == ("acct_emu0001", "acct_emu0002")
    assert emulator.create_account() == "acct_emu0003"
    assert emulator.create_account("acct_1ChosenByTest00") == "acct_1ChosenByTest00"
    assert emulator.seed_accounts(["acct_emu0001"]) == ["acct_emu0001"]  # kept as it is
    assert emulator.accounts() == [*accounts, "acct_emu0003", "acct_1ChosenByTest00"]
    with pytest.raises(Exception, match="a connected account id is acct_"):
        emulator.create_account("cus_notAnAccount")
    emulator.reset()
    assert emulator.accounts() == []


def test_the_accounts_setting_connects_accounts_at_start_and_after_reset(
    emulator: EmulatorHandle,
) -> None:
    emulator.config(accounts=3)
    assert emulator.accounts() == ["acct_emu0001", "acct_emu0002", "acct_emu0003"]
    emulator.seed([{"email": "kept@example.com"}], account="acct_emu0002")
    emulator.reset()
    assert emulator.accounts() == ["acct_emu0001", "acct_emu0002", "acct_emu0003"]
    assert emulator.customers(account="acct_emu0002") == []  # back, empty

    _, config, _ = parse_args(["--accounts", "2", "--account-rate-limit", "5"])
    assert config.accounts == 2 and config.account_rate_limit == 5
    with start_emulator(in_process=True, accounts=2) as started:
        assert started.accounts() == ["acct_emu0001", "acct_emu0002"]


def test_the_same_email_in_two_accounts_is_two_customers(
    client: stripe.StripeClient, emulator: EmulatorHandle, accounts: tuple[str, str]
) -> None:
    first, second = accounts
    ids = {
        account: customer_in(client, account, email="ada@example.com")
        for account in (first, second, None)
    }
    assert len(set(ids.values())) == 3  # ids are unique across accounts
    for account in (first, second):
        found = client.v1.customers.list(params={"email": "ada@example.com"}, options=on(account))
        assert [c.id for c in found.data] == [ids[account]]
        assert [c["id"] for c in emulator.customers(account=account)] == [ids[account]]
    assert [c.id for c in client.v1.customers.list().data] == [ids[None]]  # the platform's
    assert [c["id"] for c in emulator.customers()] == [ids[None]]
    with pytest.raises(stripe.InvalidRequestError) as raised:  # another account's object
        client.v1.customers.retrieve(ids[first], options=on(second))
    assert raised.value.http_status == 404 and raised.value.code == "resource_missing"


def test_lists_and_search_see_only_their_account(
    client: stripe.StripeClient, emulator: EmulatorHandle, accounts: tuple[str, str]
) -> None:
    first, second = accounts
    seeded = emulator.seed(
        [{"email": "grace@example.com", "metadata": {"crm_id": "7"}}], account=first
    )
    query = {"query": 'metadata["crm_id"]:"7"'}
    assert [c.id for c in client.v1.customers.search(params=query, options=on(first)).data] == (
        seeded
    )
    assert client.v1.customers.search(params=query, options=on(second)).data == []
    assert client.v1.customers.search(params=query).data == []
    assert client.v1.customers.list(options=on(second)).data == []
    assert emulator.stats(account=first)["customers"] == 1
    assert emulator.stats(account=second)["customers"] == 0
    assert emulator.stats()["customers"] == 0


def test_products_and_prices_live_per_account(
    client: stripe.StripeClient, emulator: EmulatorHandle, accounts: tuple[str, str]
) -> None:
    first, second = accounts
    for account in (first, second):  # a chosen id is unique per account, not globally
        client.v1.products.create(params={"id": "plan_gold", "name": "Gold"}, options=on(account))
        client.v1.prices.create(
            params={"product": "plan_gold", "currency": "usd", "unit_amount": 900,
                    "lookup_key": "gold_monthly"},
            options=on(account),
        )  # fmt: skip
    assert [p["id"] for p in emulator.products(account=first)] == ["plan_gold"]
    assert emulator.products() == [] and emulator.prices() == []
    [price_first] = emulator.prices(account=first)
    [price_second] = emulator.prices(account=second)
    assert price_first["id"] != price_second["id"]
    found = client.v1.prices.list(params={"lookup_keys": ["gold_monthly"]}, options=on(second))
    assert [p.id for p in found.data] == [price_second["id"]]
    with pytest.raises(stripe.InvalidRequestError) as raised:  # the platform has no such product
        client.v1.prices.create(
            params={"product": "plan_gold", "currency": "usd", "unit_amount": 1}
        )
    assert raised.value.json_body["error"]["message"] == "No such product: 'plan_gold'"
    seeded = emulator.seed_products([{"id": "plan_seeded", "name": "Seeded"}], account=second)
    assert client.v1.products.retrieve(seeded[0], options=on(second)).name == "Seeded"


@pytest.mark.parametrize("account", [NOT_CONNECTED, "not_an_account_id"])
def test_an_account_the_platform_cannot_act_for_is_403_account_invalid(
    client: stripe.StripeClient,
    emulator: EmulatorHandle,
    accounts: tuple[str, str],
    account: str,
) -> None:
    with pytest.raises(stripe.PermissionError) as raised:
        client.v1.customers.create(params={"email": "x@example.com"}, options=on(account))
    error = raised.value.json_body["error"]
    assert raised.value.http_status == 403
    assert error["type"] == "invalid_request_error" and error["code"] == "account_invalid"
    assert error["message"] == (
        f"The provided key '{mask_key(KEY)}' does not have access to account "
        f"'{account}' (or that account does not exist). Application access may have been "
        "revoked."
    )
    assert emulator.customers() == [] and emulator.accounts() == list(accounts)
    stats = emulator.stats()
    assert stats["by_status"] == {"403": 1} and stats["writes_committed"] == 0
    with pytest.raises(stripe.PermissionError):  # reads too
        client.v1.balance.retrieve(options=on(account))


def test_the_platforms_own_id_acts_on_the_platform(client: stripe.StripeClient) -> None:
    created = customer_in(client, PLATFORM, email="self@example.com")
    assert [c.id for c in client.v1.customers.list().data] == [created]


def test_idempotency_keys_are_scoped_per_account(
    client: stripe.StripeClient, emulator: EmulatorHandle, accounts: tuple[str, str]
) -> None:
    first, second = accounts

    def create(account: str, email: str) -> stripe.Customer:
        return client.v1.customers.create(
            params={"email": email},
            options={"stripe_account": account, "idempotency_key": "sync-row-1"},
        )

    in_first = create(first, "a@example.com")
    in_second = create(second, "b@example.com")  # other parameters: no idempotency_error
    assert in_first.id != in_second.id
    replay = create(first, "a@example.com")
    assert replay.id == in_first.id
    assert replay.last_response.headers["Idempotent-Replayed"] == "true"
    with pytest.raises(stripe.IdempotencyError):  # within one account the rule still holds
        create(first, "changed@example.com")
    assert emulator.stats(account=first)["idempotency_keys"] == 1
    assert emulator.stats(account=second)["idempotent_replays"] == 0
    assert len(emulator.customers(account=first)) == len(emulator.customers(account=second)) == 1


def test_rate_limits_are_measured_per_account(
    client: stripe.StripeClient, emulator: EmulatorHandle, accounts: tuple[str, str]
) -> None:
    first, second = accounts
    emulator.config(rate_limit=3)
    limited = first_rate_limit(lambda: client.v1.balance.retrieve(options=on(first)))
    assert limited.headers["Stripe-Rate-Limited-Reason"] == "global-rate"
    client.v1.balance.retrieve(options=on(second))  # its own budget
    client.v1.balance.retrieve()  # so has the platform
    assert emulator.stats(account=first)["faults"] == {"global_rate_limit": 1}
    assert emulator.stats(account=second)["faults"] == {}

    emulator.reset(stats_only=True)  # fresh windows; `account_rate_limit` for connected ones
    emulator.config(rate_limit=50, account_rate_limit=2)
    limited = first_rate_limit(lambda: client.v1.balance.retrieve(options=on(second)))
    assert emulator.stats(account=second)["by_status"] == {"200": 2, "429": 1}
    for _ in range(5):
        client.v1.balance.retrieve()


def test_request_counts_and_permissions_are_per_account(
    emulator: EmulatorHandle, accounts: tuple[str, str]
) -> None:
    first, second = accounts
    emulator.config(restricted_keys={RESTRICTED: ["rak_customer_write"]})
    restricted = shared.client_for(emulator, RESTRICTED)
    restricted.v1.customers.list(options=on(first))
    restricted.v1.customers.list(options=on(first))
    restricted.v1.customers.list()
    with pytest.raises(stripe.PermissionError) as raised:
        restricted.v1.customers.create(params={}, options=on(second))
    assert f"on account '{second}'" in raised.value.json_body["error"]["message"]
    assert emulator.stats(account=first)["by_endpoint"] == {"GET /v1/customers": 2}
    assert emulator.stats(account=second)["by_status"] == {"403": 1}
    assert emulator.stats()["requests_by_account"] == {PLATFORM: 1, first: 2, second: 1}
    with pytest.raises(Exception, match="no connected account"):
        emulator.stats(account=NOT_CONNECTED)


def test_meter_events_count_per_account(
    client: stripe.StripeClient, emulator: EmulatorHandle, accounts: tuple[str, str]
) -> None:
    first, second = accounts
    [customer] = emulator.seed([{"email": "m@example.com"}], account=first)
    emulator.seed_meters(
        [{"display_name": "Calls", "event_name": "api_call",
          "default_aggregation": {"formula": "sum"}}],
        account=first,
    )  # fmt: skip
    event = {"event_name": "api_call", "payload": {"stripe_customer_id": customer, "value": "3"}}
    client.v1.billing.meter_events.create(params=event, options=on(first))
    with pytest.raises(stripe.InvalidRequestError) as raised:  # no such meter in the other one
        client.v1.billing.meter_events.create(params=event, options=on(second))
    assert raised.value.code == "no_meter"
    session = client.v2.billing.meter_event_session.create(options=on(first))
    stream = stripe.StripeClient(
        api_key=session.authentication_token,
        base_addresses={"api": emulator.url, "meter_events": emulator.url},
        max_network_retries=0,
    )
    stream.v2.billing.meter_event_stream.create(params={"events": [event]}, options=on(first))
    assert [e["source"] for e in emulator.meter_events(account=first)] == ["v1", "stream"]
    assert {e["customer"] for e in emulator.meter_events(account=first)} == {customer}
    assert emulator.meter_events(account=second) == emulator.meter_events() == []
    assert emulator.stats(account=first)["meter_events"]["accepted"] == 2
