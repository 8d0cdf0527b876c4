"""Products and prices in the emulator, driven through the official stripe SDK.

Reuses test_emulator's module emulator, per-test reset and clients.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
import stripe

from stripe_emulator import EmulatorHandle
from stripe_emulator.resources import ENDPOINTS
from tests.emulator import test_emulator as shared

KEY, RESTRICTED, client_for = shared.KEY, shared.RESTRICTED, shared.client_for
# The same fixtures: one emulator subprocess for the module, reset before each test.
emulator, fresh, client = shared.emulator, shared.fresh, shared.client

# Top-level fields of Stripe's own samples (stripe/openapi, openapi/fixtures3.json).
PRODUCT_FIELDS = {
    "id", "object", "active", "created", "default_price", "description", "images", "livemode",
    "marketing_features", "metadata", "name", "package_dimensions", "shippable",
    "statement_descriptor", "tax_code", "type", "unit_label", "updated", "url",
}  # fmt: skip
PRICE_FIELDS = {
    "id", "object", "active", "billing_scheme", "created", "currency", "custom_unit_amount",
    "livemode", "lookup_key", "metadata", "nickname", "product", "recurring", "tax_behavior",
    "tiers_mode", "transform_quantity", "type", "unit_amount", "unit_amount_decimal",
}  # fmt: skip


def error_of(raised: pytest.ExceptionInfo[stripe.StripeError]) -> dict[str, Any]:
    body = raised.value.json_body
    assert body is not None
    return dict(body["error"])


def make_price(sdk: stripe.StripeClient, product: str, /, **params: Any) -> stripe.Price:
    return sdk.v1.prices.create(
        params={"product": product, "currency": "usd", "unit_amount": 1000, **params}
    )


# --- products -------------------------------------------------------------------------------


def test_product_with_a_chosen_id_and_a_duplicate(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(
        params={"id": "plan_gold", "name": "Gold", "metadata": {"tier": "1"}, "images": ["a"]}
    )
    data = product.to_dict()
    assert set(data) == PRODUCT_FIELDS
    assert data["id"] == "plan_gold" and data["object"] == "product" and data["active"] is True
    assert data["type"] == "service" and data["default_price"] is None
    assert data["updated"] == data["created"] and data["livemode"] is False
    assert data["images"] == ["a"] and data["marketing_features"] == []
    generated = client.v1.products.create(params={"name": "Silver"})
    assert generated.id.startswith("prod_")
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.products.create(params={"id": "plan_gold", "name": "Again"})
    error = error_of(raised)
    assert raised.value.http_status == 400 and error["code"] == "resource_already_exists"
    assert error["message"] == "Product already exists." and error["param"] == "id"


@pytest.mark.parametrize(
    ("params", "param", "code"),
    [
        ({}, "name", "parameter_missing"),
        ({"name": "x", "statement_descriptor": "x" * 23}, "statement_descriptor", None),
        ({"name": "x", "unit_label": "x" * 13}, "unit_label", None),
        ({"name": "x", "images": [f"i{n}" for n in range(9)]}, "images", None),
        ({"name": "x", "default_price_data": {"currency": "usd"}}, "default_price_data",
         "parameter_unknown"),
        ({"name": "x", "colour": "red"}, "colour", "parameter_unknown"),
    ],
)  # fmt: skip
def test_invalid_product_params(
    client: stripe.StripeClient, params: dict[str, Any], param: str, code: str | None
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.products.create(params=params)
    assert raised.value.http_status == 400
    assert error_of(raised)["param"] == param and error_of(raised).get("code") == code


def test_product_update_unset_archive_and_list_filters(client: stripe.StripeClient) -> None:
    gold = client.v1.products.create(
        params={"name": "Gold", "description": "d", "metadata": {"a": "1", "b": "2"}}
    )
    silver = client.v1.products.create(params={"name": "Silver"})
    bronze = client.v1.products.create(params={"name": "Bronze"})
    updated = client.v1.products.update(
        gold.id, params={"description": "", "metadata": {"a": "", "c": "3"}, "active": False}
    )
    assert updated.description is None and updated.active is False
    assert updated.to_dict()["metadata"] == {"b": "2", "c": "3"}
    cleared = client.v1.products.update(gold.id, params={"metadata": ""})
    assert cleared.to_dict()["metadata"] == {}
    assert client.v1.products.retrieve(gold.id).active is False

    def ids(**params: Any) -> list[str]:
        return [p.id for p in client.v1.products.list(params=params).data]

    assert ids() == [bronze.id, silver.id, gold.id]
    assert ids(active=True) == [bronze.id, silver.id]
    assert ids(active=False) == [gold.id]
    assert ids(ids=[gold.id, bronze.id]) == [bronze.id, gold.id]
    assert ids(limit=1, starting_after=bronze.id) == [silver.id]
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.products.update(gold.id, params={"type": "good"})  # create-only
    assert error_of(raised)["message"] == "Received unknown parameter: type"


def test_product_delete_is_refused_while_prices_reference_it(
    client: stripe.StripeClient,
) -> None:
    product = client.v1.products.create(params={"name": "Priced"})
    price = make_price(client, product.id)
    client.v1.prices.update(price.id, params={"active": False})  # archived still counts
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.products.delete(product.id)
    assert raised.value.http_status == 400
    assert error_of(raised)["message"] == (
        "This product cannot be deleted because it has one or more user-created prices."
    )
    bare = client.v1.products.create(params={"name": "Bare"})
    deleted = client.v1.products.delete(bare.id).to_dict()
    assert deleted == {"id": bare.id, "object": "product", "deleted": True}
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.products.retrieve(bare.id)
    assert missing.value.http_status == 404
    assert error_of(missing)["message"] == f"No such product: '{bare.id}'"


# --- prices ---------------------------------------------------------------------------------


def test_one_time_and_recurring_prices(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "Plan"})
    one_time = make_price(client, product.id, currency="EUR", nickname="once")
    data = one_time.to_dict()
    assert set(data) == PRICE_FIELDS
    assert data["id"].startswith("price_") and data["object"] == "price"
    assert data["type"] == "one_time" and data["recurring"] is None
    assert data["currency"] == "eur" and data["unit_amount"] == 1000
    assert str(data["unit_amount_decimal"]) == "1000" and data["product"] == product.id
    assert data["tax_behavior"] == "unspecified" and data["billing_scheme"] == "per_unit"
    assert data["lookup_key"] is None and data["active"] is True

    monthly = client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount_decimal": "12.5",
            "recurring": {"interval": "month", "interval_count": 3},
            "expand": ["product"],
        }
    ).to_dict()
    assert monthly["type"] == "recurring" and monthly["unit_amount"] is None
    assert str(monthly["unit_amount_decimal"]) == "12.5"
    assert monthly["recurring"] == {
        "interval": "month",
        "interval_count": 3,
        "meter": None,
        "trial_period_days": None,
        "usage_type": "licensed",
    }
    assert monthly["product"]["id"] == product.id  # expanded
    metered = make_price(
        client, product.id, recurring={"interval": "month", "usage_type": "metered", "meter": "m"}
    )
    assert metered.recurring is not None and metered.recurring.usage_type == "metered"

    inline = client.v1.prices.create(
        params={"currency": "usd", "unit_amount": 5, "product_data": {"name": "Inline"}}
    )
    assert client.v1.products.retrieve(inline.product).name == "Inline"


@pytest.mark.parametrize(
    ("params", "param", "message"),
    [
        ({"product": "prod_nope"}, "product", "No such product: 'prod_nope'"),
        ({"unit_amount_decimal": "1"}, "unit_amount", "You may only specify one of"),
        ({"unit_amount": -1}, "unit_amount", "must be at least 0"),
        ({"currency": "dollars"}, "currency", "Invalid currency"),
        ({"recurring": {"interval": "fortnight"}}, "recurring[interval]", "must be one of"),
        ({"recurring": {"interval": "month", "usage_type": "metered"}}, "recurring[meter]",
         "Missing required param"),
        ({"lookup_key": "k" * 201}, "lookup_key", "at most 200 characters"),
        ({"tiers_mode": "graduated"}, "tiers_mode", "Received unknown parameter"),
    ],
)  # fmt: skip
def test_invalid_price_params(
    client: stripe.StripeClient, params: dict[str, Any], param: str, message: str
) -> None:
    product = client.v1.products.create(params={"name": "P"})
    with pytest.raises(stripe.InvalidRequestError) as raised:
        make_price(client, product.id, **params)
    assert raised.value.http_status == 400
    assert error_of(raised)["param"] == param and message in error_of(raised)["message"]


def test_lookup_key_is_unique_and_transfer_moves_it(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    product = client.v1.products.create(params={"name": "Plan"})
    old = make_price(client, product.id, lookup_key="pro_monthly")
    with pytest.raises(stripe.InvalidRequestError) as raised:
        make_price(client, product.id, unit_amount=1200, lookup_key="pro_monthly")
    assert error_of(raised)["message"] == f"A price (`{old.id}`) already uses that lookup key."
    assert error_of(raised)["param"] == "lookup_key"
    other = make_price(client, product.id, unit_amount=900)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.prices.update(other.id, params={"lookup_key": "pro_monthly"})

    new = make_price(
        client, product.id, unit_amount=1200, lookup_key="pro_monthly", transfer_lookup_key=True
    )
    assert new.lookup_key == "pro_monthly"
    assert client.v1.prices.retrieve(old.id).lookup_key is None
    client.v1.prices.update(old.id, params={"active": False})
    by_key = client.v1.prices.list(params={"lookup_keys": ["pro_monthly"]}).data
    assert [p.id for p in by_key] == [new.id]
    moved = client.v1.prices.update(
        other.id, params={"lookup_key": "pro_monthly", "transfer_lookup_key": True}
    )
    assert moved.lookup_key == "pro_monthly"
    dumped = {p["id"]: p["lookup_key"] for p in emulator.prices()}
    assert dumped == {old.id: None, other.id: "pro_monthly", new.id: None}


def test_lookup_keys_filter_is_exact_and_other_filters(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "Plan"})
    other_product = client.v1.products.create(params={"name": "Other"})
    basic = make_price(client, product.id, lookup_key="basic")
    pro = make_price(client, product.id, lookup_key="Pro", recurring={"interval": "year"})
    make_price(client, other_product.id, currency="eur", lookup_key="basic_eur")

    def ids(**params: Any) -> list[str]:
        return [p.id for p in client.v1.prices.list(params=params).data]

    assert ids(lookup_keys=["basic", "Pro", "missing"]) == [pro.id, basic.id]
    assert ids(lookup_keys=["pro"]) == []  # case-sensitive
    assert ids(lookup_keys=["basic", "Pro"], type="recurring") == [pro.id]
    assert ids(product=product.id, currency="usd") == [pro.id, basic.id]
    assert ids(recurring={"interval": "year"}) == [pro.id]
    assert ids(type="one_time", product=product.id) == [basic.id]
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.prices.list(params={"lookup_keys": [f"k{i}" for i in range(11)]})
    assert error_of(raised)["param"] == "lookup_keys"


def test_price_update_rejects_immutable_fields_and_locks_tax_behavior(
    client: stripe.StripeClient,
) -> None:
    product = client.v1.products.create(params={"name": "Plan"})
    price = make_price(client, product.id)
    for params in ({"unit_amount": 2000}, {"currency": "eur"}, {"product": product.id}):
        with pytest.raises(stripe.InvalidRequestError) as raised:
            client.v1.prices.update(price.id, params=params)
        name = next(iter(params))
        assert error_of(raised)["message"] == f"Received unknown parameter: {name}"
        assert error_of(raised)["code"] == "parameter_unknown"

    updated = client.v1.prices.update(
        price.id, params={"nickname": "n", "metadata": {"k": "v"}, "tax_behavior": "exclusive"}
    )
    assert updated.tax_behavior == "exclusive" and updated.nickname == "n"
    assert client.v1.prices.update(price.id, params={"tax_behavior": "exclusive"}).active
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.prices.update(price.id, params={"tax_behavior": "inclusive"})
    assert error_of(raised)["param"] == "tax_behavior"
    assert "cannot be changed once set" in error_of(raised)["message"]
    unset = client.v1.prices.update(price.id, params={"nickname": "", "metadata": {"k": ""}})
    assert unset.nickname is None and unset.to_dict()["metadata"] == {}


def test_prices_cannot_be_deleted(client: stripe.StripeClient, emulator: EmulatorHandle) -> None:
    product = client.v1.products.create(params={"name": "Plan"})
    price = make_price(client, product.id)
    request = urllib.request.Request(
        f"{emulator.url}/v1/prices/{price.id}",
        method="DELETE",
        headers={"Authorization": f"Bearer {KEY}"},
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=10)
    assert raised.value.code == 404
    body = json.loads(raised.value.read())
    assert body["error"]["message"].startswith("Unrecognized request URL (DELETE: /v1/prices/")
    assert client.v1.prices.retrieve(price.id).id == price.id


# --- shared machinery -----------------------------------------------------------------------


def test_idempotent_price_create_replays_and_mismatch_is_refused(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    product = client.v1.products.create(params={"name": "Plan"})
    params = {"product": product.id, "currency": "usd", "unit_amount": 700}
    options = {"idempotency_key": "price-row-1"}
    first = client.v1.prices.create(params=params, options=options)
    again = client.v1.prices.create(params=params, options=options)
    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    with pytest.raises(stripe.IdempotencyError):
        client.v1.prices.create(
            params={**params, "unit_amount": 800},
            options=options,
        )
    assert len(emulator.prices()) == 1 and emulator.stats()["idempotent_replays"] == 1


def test_dropped_price_create_commits_and_the_retry_replays(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    [product] = emulator.seed_products([{"name": "Plan"}])
    emulator.config(drop_response_rate=1.0)
    params = {"product": product, "currency": "usd", "unit_amount": 1, "lookup_key": "k"}
    options = {"idempotency_key": "lost-price"}
    with pytest.raises(stripe.APIConnectionError):
        client.v1.prices.create(params=params, options=options)
    emulator.config(drop_response_rate=0.0)
    retried = client.v1.prices.create(params=params, options=options)
    assert retried.last_response.headers["Idempotent-Replayed"] == "true"
    assert [p["id"] for p in emulator.prices()] == [retried.id]


def test_restricted_key_without_price_write(emulator: EmulatorHandle) -> None:
    emulator.config(restricted_keys={RESTRICTED: ["rak_price_write"]})
    restricted = client_for(emulator, RESTRICTED)
    product = restricted.v1.products.create(params={"name": "Allowed"})
    assert restricted.v1.prices.list(params={"limit": 1}).data == []
    with pytest.raises(stripe.PermissionError) as raised:
        make_price(restricted, product.id)
    message = error_of(raised)["message"]
    assert raised.value.http_status == 403
    assert "Having the 'rak_price_write' permission would allow" in message
    emulator.config(restricted_keys={RESTRICTED: ["rak_product_read"]})
    with pytest.raises(stripe.PermissionError, match="rak_product_read"):
        restricted.v1.products.retrieve(product.id)


def test_locks_and_limits_apply_per_price_endpoint(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    product = client.v1.products.create(params={"name": "Plan"})
    price = make_price(client, product.id)
    emulator.config(lock_timeout_rate=1.0)
    with pytest.raises(stripe.RateLimitError) as locked:
        client.v1.prices.update(price.id, params={"nickname": "x"})
    assert locked.value.error is not None and locked.value.error.code == "lock_timeout"
    make_price(client, product.id)  # a create touches no existing object
    emulator.config(lock_timeout_rate=0.0, endpoint_rate_limits={"POST /v1/prices/{id}": 1})
    client.v1.prices.update(price.id, params={"nickname": "y"})
    with pytest.raises(stripe.RateLimitError) as limited:
        client.v1.prices.update(price.id, params={"nickname": "z"})
    assert limited.value.headers is not None
    assert limited.value.headers["Stripe-Rate-Limited-Reason"] == "endpoint-rate"
    client.v1.prices.retrieve(price.id)  # another endpoint, its own budget
    faults = emulator.stats()["faults"]
    assert faults == {"random_lock_timeout": 1, "endpoint_rate_limit": 1}


def test_stats_count_product_and_price_endpoints(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    product = client.v1.products.create(params={"name": "S"})
    client.v1.products.update(product.id, params={"name": "T"})
    price = make_price(client, product.id)
    client.v1.prices.update(price.id, params={"active": False})
    client.v1.prices.retrieve(price.id)
    client.v1.prices.list()
    client.v1.products.list()
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.prices.retrieve("price_nothing")
    stats = emulator.stats()
    assert stats["by_endpoint"] == {
        "POST /v1/products": 1,
        "POST /v1/products/{id}": 1,
        "POST /v1/prices": 1,
        "POST /v1/prices/{id}": 1,
        "GET /v1/prices/{id}": 2,
        "GET /v1/prices": 1,
        "GET /v1/products": 1,
    }
    assert stats["by_status"] == {"200": 7, "404": 1} and stats["writes_committed"] == 4
    assert (stats["customers"], stats["products"], stats["prices"]) == (0, 1, 1)
    assert {e for e in ENDPOINTS if "/v1/p" in e} >= set(stats["by_endpoint"])


# --- control API ----------------------------------------------------------------------------


def test_seed_dump_and_reset(client: stripe.StripeClient, emulator: EmulatorHandle) -> None:
    [gold, hidden] = emulator.seed_products(
        [
            {"id": "prod_gold", "name": "Gold", "created": 1_700_000_000},
            {"name": "Old", "active": False},  # dumps include archived products
        ]
    )
    assert gold == "prod_gold" and hidden.startswith("prod_")
    [monthly] = emulator.seed_prices(
        [{"product": gold, "currency": "usd", "unit_amount": 900, "lookup_key": "gold_m",
          "recurring": {"interval": "month"}}]
    )  # fmt: skip
    both = emulator.seed_many(
        customers=[{"email": "a@example.com"}],
        products=[{"id": "prod_new", "name": "New"}],
        prices=[{"id": "price_chosen", "product": "prod_new", "currency": "eur",
                 "unit_amount": 1}],
    )  # fmt: skip
    assert both["products"] == ["prod_new"] and both["prices"] == ["price_chosen"]
    assert emulator.seed([{"email": "legacy@example.com"}])[0].startswith("cus_")
    assert emulator.stats()["requests_total"] == 0
    assert [p["id"] for p in emulator.products()] == [gold, hidden, "prod_new"]
    assert emulator.products()[0]["created"] == 1_700_000_000
    assert [p["id"] for p in emulator.prices()] == [monthly, "price_chosen"]
    found = client.v1.prices.list(params={"lookup_keys": ["gold_m"]}).data
    assert [p.id for p in found] == [monthly]
    with pytest.raises(Exception, match="No such product"):
        emulator.seed_prices([{"product": "prod_missing", "currency": "usd", "unit_amount": 1}])
    with pytest.raises(Exception, match="cannot seed"):
        emulator.seed_many(invoices=[{}])
    stats = emulator.stats()
    assert (stats["customers"], stats["products"], stats["prices"]) == (2, 3, 2)
    emulator.reset()
    assert emulator.products() == [] and emulator.prices() == [] and emulator.customers() == []
