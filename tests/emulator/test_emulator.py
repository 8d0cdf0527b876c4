"""The Stripe emulator, driven through the official stripe SDK as the tool drives Stripe.

One emulator subprocess for the module; each test resets its data, stats and config.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import stripe

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # the emulator lives beside the product, not inside it
    sys.path.insert(0, str(REPO_ROOT))

from stripe_emulator import EmulatorConfig, EmulatorHandle, start_emulator  # noqa: E402
from stripe_emulator.__main__ import parse_args  # noqa: E402
from stripe_emulator.faults import FaultPlanner, RateLimiter  # noqa: E402
from stripe_emulator.forms import decode  # noqa: E402

KEY = "sk_test_emulatorTestKey0000001"
RESTRICTED = "rk_test_emulatorRestricted00001"
stripe.enable_telemetry = False


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorHandle]:
    handle = start_emulator(seed=7)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(autouse=True)
def fresh(emulator: EmulatorHandle) -> EmulatorHandle:
    emulator.config(**EmulatorConfig(seed=7).to_dict())
    emulator.reset()
    return emulator


@pytest.fixture
def client(emulator: EmulatorHandle) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key=KEY, base_addresses={"api": emulator.url}, max_network_retries=0
    )


def client_for(emulator: EmulatorHandle, key: str, **kwargs: Any) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key=key, base_addresses={"api": emulator.url}, max_network_retries=0, **kwargs
    )


def wait_until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def in_background(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run `call` in a thread; the list receives its result or exception."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:  # noqa: BLE001 - handed to the test to assert on
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


# --- customers: shape and writes ------------------------------------------------------------


def test_create_returns_a_stripe_shaped_customer(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(
        params={
            "email": "ada@example.com",
            "name": "Ada",
            "metadata": {"external_id": "42"},
            "address": {"city": "London", "country": "GB"},
            "preferred_locales": ["en", "fr"],
            "invoice_settings": {"custom_fields": [{"name": "VAT", "value": "GB1"}]},
            "tax_exempt": "exempt",
            "balance": -500,
        }
    )
    data = customer.to_dict()
    assert data["id"].startswith("cus_") and data["object"] == "customer"
    assert data["livemode"] is False and isinstance(data["created"], int)
    assert data["address"] == {
        "city": "London",
        "country": "GB",
        "line1": None,
        "line2": None,
        "postal_code": None,
        "state": None,
    }
    assert data["metadata"] == {"external_id": "42"}
    assert data["preferred_locales"] == ["en", "fr"]
    assert data["tax_exempt"] == "exempt" and data["balance"] == -500
    assert data["invoice_settings"] == {
        "custom_fields": [{"name": "VAT", "value": "GB1"}],
        "default_payment_method": None,
        "footer": None,
        "rendering_options": None,
    }
    assert data["next_invoice_sequence"] == 1 and data["invoice_prefix"]
    assert data["shipping"] is None and data["phone"] is None
    assert customer.last_response.headers["Request-Id"].startswith("req_")


def test_update_merges_metadata_and_empty_strings_unset(client: stripe.StripeClient) -> None:
    created = client.v1.customers.create(
        params={"email": "a@example.com", "name": "A", "metadata": {"a": "1", "b": "2"}}
    )
    updated = client.v1.customers.update(
        created.id,
        params={
            "name": "",
            "metadata": {"a": "", "c": "3"},
            "shipping": {"name": "Home", "address": {"line1": "1 Main St"}},
        },
    )
    assert updated.name is None
    assert updated.to_dict()["metadata"] == {"b": "2", "c": "3"}
    assert updated.shipping.address.line1 == "1 Main St"
    cleared = client.v1.customers.update(created.id, params={"metadata": "", "shipping": ""})
    assert cleared.to_dict()["metadata"] == {} and cleared.shipping is None
    assert client.v1.customers.retrieve(created.id).email == "a@example.com"


def test_deleted_customer_retrieves_as_a_stub_and_cannot_be_updated(
    client: stripe.StripeClient,
) -> None:
    customer = client.v1.customers.create(params={"email": "gone@example.com"})
    client.v1.customers.delete(customer.id)
    stub = client.v1.customers.retrieve(customer.id).to_dict()
    assert stub == {"id": customer.id, "object": "customer", "deleted": True}
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.customers.update(customer.id, params={"name": "x"})
    assert raised.value.http_status == 404
    assert client.v1.customers.list(params={"email": "gone@example.com"}).data == []


def test_unknown_customer_is_404_resource_missing(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.customers.retrieve("cus_missing")
    error = raised.value.json_body["error"]
    assert raised.value.http_status == 404
    assert error["code"] == "resource_missing" and error["type"] == "invalid_request_error"
    assert error["message"] == "No such customer: 'cus_missing'"
    assert error["doc_url"].endswith("/error-codes/resource-missing")
    assert raised.value.headers["Request-Id"].startswith("req_")


# --- list and the email filter --------------------------------------------------------------


def test_list_is_newest_first_and_paginates_both_ways(client: stripe.StripeClient) -> None:
    ids = [client.v1.customers.create(params={"name": f"c{i}"}).id for i in range(7)]
    newest_first = list(reversed(ids))
    first = client.v1.customers.list(params={"limit": 3})
    assert first.object == "list" and first.url == "/v1/customers" and first.has_more
    assert [c.id for c in first.data] == newest_first[:3]
    second = client.v1.customers.list(params={"limit": 3, "starting_after": first.data[-1].id})
    assert [c.id for c in second.data] == newest_first[3:6] and second.has_more
    last = client.v1.customers.list(params={"limit": 3, "starting_after": second.data[-1].id})
    assert [c.id for c in last.data] == newest_first[6:] and not last.has_more
    back = client.v1.customers.list(params={"limit": 3, "ending_before": second.data[0].id})
    assert [c.id for c in back.data] == newest_first[:3] and not back.has_more
    assert [c.id for c in first.auto_paging_iter()] == newest_first


def test_email_filter_is_exact_and_case_sensitive(client: stripe.StripeClient) -> None:
    one = client.v1.customers.create(params={"email": "dup@example.com"}).id
    two = client.v1.customers.create(params={"email": "dup@example.com"}).id
    client.v1.customers.create(params={"email": "Dup@example.com"})
    client.v1.customers.create(params={"email": "dup@example.com.au"})
    found = client.v1.customers.list(params={"email": "dup@example.com"})
    assert [c.id for c in found.data] == [two, one]
    client.v1.customers.update(one, params={"email": "moved@example.com"})
    assert [c.id for c in client.v1.customers.list(params={"email": "dup@example.com"}).data] == [
        two
    ]


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "param", "code"),
    [
        ({"favourite_colour": "blue"}, "favourite_colour", "parameter_unknown"),
        ({"address": {"town": "x"}}, "address[town]", "parameter_unknown"),
        ({"metadata": {f"k{i}": "v" for i in range(51)}}, "metadata", None),
        ({"metadata": {"k" * 41: "v"}}, "metadata", None),
        ({"metadata": {"k": "v" * 501}}, "metadata", None),
        ({"email": "a" * 510 + "@example.com"}, "email", None),
        ({"email": "not-an-email"}, "email", "email_invalid"),
        ({"tax_exempt": "sometimes"}, "tax_exempt", None),
        ({"shipping": {"address": {"line1": "x"}}}, "shipping[name]", "parameter_missing"),
        ({"balance": "lots"}, "balance", "parameter_invalid_integer"),
    ],
)
def test_invalid_params_are_400_naming_the_param(
    client: stripe.StripeClient, params: dict[str, Any], param: str, code: str | None
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.customers.create(params=params)
    error = raised.value.json_body["error"]
    assert raised.value.http_status == 400
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert error.get("code") == code


def test_metadata_limit_counts_merged_keys_on_update(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"metadata": {f"a{i}": "v" for i in range(30)}})
    with pytest.raises(stripe.InvalidRequestError, match="up to 50 keys"):
        client.v1.customers.update(
            customer.id, params={"metadata": {f"b{i}": "v" for i in range(21)}}
        )


def test_list_rejects_limit_over_100(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.customers.list(params={"limit": 101})
    assert raised.value.json_body["error"]["param"] == "limit"


# --- idempotency ----------------------------------------------------------------------------


def test_idempotent_replay_and_parameter_mismatch(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    params = {"email": "idem@example.com", "metadata": {"row": "1"}}
    first = client.v1.customers.create(params=params, options={"idempotency_key": "row-1"})
    again = client.v1.customers.create(params=params, options={"idempotency_key": "row-1"})
    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.last_response.headers
    with pytest.raises(stripe.IdempotencyError) as raised:
        client.v1.customers.create(
            params={**params, "name": "other"}, options={"idempotency_key": "row-1"}
        )
    assert raised.value.http_status == 400
    assert raised.value.json_body["error"]["type"] == "idempotency_error"
    assert "same parameters they were first used with" in raised.value.user_message
    assert len(emulator.customers()) == 1
    assert emulator.stats()["idempotent_replays"] == 1


def test_failed_validation_is_not_saved_under_the_key(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.create(
            params={"tax_exempt": "bad"}, options={"idempotency_key": "fix-me"}
        )
    fixed = client.v1.customers.create(
        params={"tax_exempt": "none"}, options={"idempotency_key": "fix-me"}
    )
    assert "Idempotent-Replayed" not in fixed.last_response.headers
    assert [c["id"] for c in emulator.customers()] == [fixed.id]


def test_same_key_in_flight_is_409_idempotency_key_in_use(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    emulator.config(latency_ms=600)
    params = {"email": "race@example.com"}
    options = {"idempotency_key": "race"}
    thread, outcome = in_background(lambda: client.v1.customers.create(params, options))
    wait_until(lambda: emulator.stats()["executing"] == 1, "the first request to execute")
    with pytest.raises(stripe.APIError) as raised:
        client.v1.customers.create(params=params, options=options)
    thread.join()
    assert raised.value.http_status == 409
    assert raised.value.error.code == "idempotency_key_in_use"
    assert isinstance(outcome[0], stripe.Customer)
    assert len(emulator.customers()) == 1


# --- auth -----------------------------------------------------------------------------------


def test_live_or_malformed_keys_are_401(emulator: EmulatorHandle) -> None:
    live = "sk_live_" + "notAllowedHere000000001234"
    with pytest.raises(stripe.AuthenticationError) as raised:
        client_for(emulator, live).v1.customers.list()
    assert raised.value.http_status == 401
    message = raised.value.json_body["error"]["message"]
    assert message.startswith("Invalid API Key provided: sk_live_*") and message.endswith("1234")
    assert live not in message
    request = urllib.request.Request(emulator.url + "/v1/customers")
    with pytest.raises(urllib.error.HTTPError) as no_key:
        urllib.request.urlopen(request, timeout=10)
    assert no_key.value.code == 401
    assert "did not provide an API key" in json.loads(no_key.value.read())["error"]["message"]


def test_restricted_key_without_write_permission_is_403(emulator: EmulatorHandle) -> None:
    emulator.config(restricted_keys={RESTRICTED: ["rak_customer_write"]})
    restricted = client_for(emulator, RESTRICTED)
    assert restricted.v1.customers.list(params={"limit": 1}).data == []
    with pytest.raises(stripe.PermissionError) as raised:
        restricted.v1.customers.create(params={"email": "x@example.com"})
    message = raised.value.json_body["error"]["message"]
    assert raised.value.http_status == 403
    assert "Having the 'rak_customer_write' permission would allow" in message
    assert "on account 'acct_" in message and RESTRICTED not in message


# --- rate limits and faults -----------------------------------------------------------------


def first_rate_limit(call: Callable[[], Any], attempts: int = 200) -> stripe.RateLimitError:
    for _ in range(attempts):
        try:
            call()
        except stripe.RateLimitError as exc:
            return exc
    raise AssertionError(f"no 429 in {attempts} requests")


def test_global_and_endpoint_rate_limits_answer_429_with_stripe_headers(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    emulator.config(endpoint_rate_limits={"GET /v1/customers": 2})
    limited = first_rate_limit(lambda: client.v1.customers.list(params={"limit": 1}))
    assert limited.http_status == 429 and limited.error.code == "rate_limit"
    assert limited.headers["Stripe-Rate-Limited-Reason"] == "endpoint-rate"
    assert limited.headers["Stripe-Should-Retry"] == "true"
    client.v1.balance.retrieve()  # another endpoint has its own budget

    emulator.config(endpoint_rate_limits={}, rate_limit=3)
    limited = first_rate_limit(lambda: client.v1.balance.retrieve())
    assert limited.headers["Stripe-Rate-Limited-Reason"] == "global-rate"
    faults = emulator.stats()["faults"]
    assert faults["endpoint_rate_limit"] >= 1 and faults["global_rate_limit"] >= 1
    assert emulator.stats()["by_status"]["429"] >= 2


def test_concurrency_limit_answers_429(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    emulator.config(concurrency_limit=1, latency_ms=600)
    thread, _ = in_background(lambda: client.v1.balance.retrieve())
    wait_until(lambda: emulator.stats()["in_flight"] == 1, "one request in flight")
    with pytest.raises(stripe.RateLimitError) as raised:
        client.v1.balance.retrieve()
    thread.join()
    assert raised.value.headers["Stripe-Rate-Limited-Reason"] == "global-concurrency"


def test_many_requests_are_in_flight_at_once(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    emulator.config(latency_ms=(300, 400))
    threads = [in_background(lambda: client.v1.balance.retrieve()) for _ in range(30)]
    for thread, _ in threads:
        thread.join()
    assert all(isinstance(outcome[0], stripe.Balance) for _, outcome in threads)
    assert emulator.stats()["max_in_flight"] >= 5


def test_server_error_is_500_api_error_and_writes_nothing(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    emulator.config(server_error_rate=1.0)
    with pytest.raises(stripe.APIError) as raised:
        client.v1.customers.create(params={"email": "x@example.com"})
    assert raised.value.http_status == 500
    assert raised.value.json_body["error"]["type"] == "api_error"
    assert raised.value.headers["Stripe-Should-Retry"] == "true"
    assert emulator.customers() == [] and emulator.stats()["faults"]["server_error"] == 1


def test_dropped_response_commits_and_the_retry_replays(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    emulator.config(drop_response_rate=1.0)
    params, options = {"email": "lost@example.com"}, {"idempotency_key": "lost-1"}
    with pytest.raises(stripe.APIConnectionError):
        client.v1.customers.create(params=params, options=options)
    committed = emulator.customers()
    assert [c["email"] for c in committed] == ["lost@example.com"]
    emulator.config(drop_response_rate=0.0)
    retried = client.v1.customers.create(params=params, options=options)
    assert retried.id == committed[0]["id"]
    assert retried.last_response.headers["Idempotent-Replayed"] == "true"
    stats = emulator.stats()
    assert stats["faults"]["dropped_response"] == 1 and stats["writes_committed"] == 1
    assert stats["by_status"]["dropped_response"] == 1 and len(emulator.customers()) == 1


def test_connection_reset_happens_before_anything_is_written(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    emulator.config(connection_reset_rate=1.0)
    with pytest.raises(stripe.APIConnectionError):
        client.v1.customers.create(params={"email": "reset@example.com"})
    assert emulator.customers() == []
    assert emulator.stats()["faults"]["connection_reset"] == 1


def test_slow_response_times_out_after_commit_and_replays(emulator: EmulatorHandle) -> None:
    emulator.config(slow_response_rate=1.0, slow_response_seconds=2.0)
    impatient = client_for(emulator, KEY, http_client=stripe.RequestsClient(timeout=0.5))
    options = {"idempotency_key": "slow-1"}
    with pytest.raises(stripe.APIConnectionError):
        impatient.v1.customers.create(params={"name": "Slow"}, options=options)
    emulator.config(slow_response_rate=0.0)
    replayed = impatient.v1.customers.create(params={"name": "Slow"}, options=options)
    assert replayed.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(emulator.customers()) == 1


def test_concurrent_writes_to_one_customer_hit_lock_timeout(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    customer = client.v1.customers.create(params={"name": "Busy"})
    emulator.config(latency_ms=600)
    thread, outcome = in_background(
        lambda: client.v1.customers.update(customer.id, params={"name": "First"})
    )
    wait_until(lambda: emulator.stats()["executing"] == 1, "the first write to hold the lock")
    with pytest.raises(stripe.RateLimitError) as raised:
        client.v1.customers.update(customer.id, params={"name": "Second"})
    thread.join()
    assert raised.value.error.code == "lock_timeout"
    assert raised.value.headers["Stripe-Should-Retry"] == "true"
    assert outcome[0].name == "First"
    assert client.v1.customers.retrieve(customer.id).name == "First"


def test_random_lock_timeouts_hit_writes_to_existing_objects_only(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    customer = client.v1.customers.create(params={"name": "A"})
    emulator.config(lock_timeout_rate=1.0)
    with pytest.raises(stripe.RateLimitError) as raised:
        client.v1.customers.update(customer.id, params={"name": "B"})
    assert raised.value.error.code == "lock_timeout"
    client.v1.customers.create(params={"name": "C"})
    assert emulator.stats()["faults"]["random_lock_timeout"] == 1


def test_random_429_rate(client: stripe.StripeClient, emulator: EmulatorHandle) -> None:
    emulator.config(random_429_rate=1.0)
    with pytest.raises(stripe.RateLimitError) as raised:
        client.v1.customers.list()
    assert raised.value.error.code == "rate_limit"
    assert emulator.stats()["faults"]["random_429"] == 1


# --- search ---------------------------------------------------------------------------------


def search_ids(client: stripe.StripeClient, query: str) -> list[str]:
    return [c.id for c in client.v1.customers.search(params={"query": query}).data]


def test_search_sees_a_write_only_after_the_indexing_delay(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    emulator.config(search_delay_seconds=3600)
    customer = client.v1.customers.create(
        params={"email": "Late@Example.com", "metadata": {"crm": "X-1"}}
    )
    assert search_ids(client, 'email:"late@example.com"') == []
    assert client.v1.customers.list(params={"email": "Late@Example.com"}).data[0].id == customer.id
    emulator.config(search_delay_seconds=0)
    assert search_ids(client, 'email:"late@example.com"') == [customer.id]
    assert search_ids(client, 'metadata["crm"]:"x-1"') == [customer.id]


def test_search_shows_the_indexed_version_until_the_delay_passes(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    [seeded] = emulator.seed([{"email": "old@example.com", "metadata": {"tier": "gold"}}])
    emulator.config(search_delay_seconds=3600)
    client.v1.customers.update(seeded, params={"metadata": {"tier": "silver"}})
    assert search_ids(client, 'metadata["tier"]:"gold"') == [seeded]
    assert search_ids(client, 'metadata["tier"]:"silver"') == []
    emulator.config(search_delay_seconds=0)
    assert search_ids(client, 'metadata["tier"]:"silver"') == [seeded]


def test_search_pages_with_next_page_and_no_total_count(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    ids = emulator.seed([{"metadata": {"batch": "b7"}} for _ in range(5)])
    page = client.v1.customers.search(params={"query": 'metadata["batch"]:"b7"', "limit": 2})
    assert page.object == "search_result" and page.has_more and page.next_page
    assert "total_count" not in page.to_dict()
    seen = [c.id for c in page.auto_paging_iter()]
    assert seen == list(reversed(ids))


def test_search_rejects_an_unparseable_query(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.customers.search(params={"query": 'email:"a" AND name:"b" OR phone:"c"'})
    assert raised.value.json_body["error"]["param"] == "query"


# --- control API ----------------------------------------------------------------------------


def test_seed_inserts_without_counting_requests(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    ids = emulator.seed(
        [{"id": "cus_seeded0000001", "email": "s1@example.com"}, {"email": "s2@example.com"}]
    )
    assert ids[0] == "cus_seeded0000001" and ids[1].startswith("cus_")
    assert emulator.stats()["requests_total"] == 0
    assert [c["email"] for c in emulator.customers()] == ["s1@example.com", "s2@example.com"]
    assert [c.id for c in client.v1.customers.list().data] == list(reversed(ids))


def test_stats_count_requests_by_endpoint_and_status(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    customer = client.v1.customers.create(params={"name": "S"})
    client.v1.customers.update(customer.id, params={"name": "T"})
    client.v1.customers.retrieve(customer.id)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.retrieve("cus_nothing")
    stats = emulator.stats()
    assert stats["by_endpoint"] == {
        "POST /v1/customers": 1,
        "POST /v1/customers/{id}": 1,
        "GET /v1/customers/{id}": 2,
    }
    assert stats["by_status"] == {"200": 3, "404": 1}
    assert stats["writes_committed"] == 2 and stats["customers"] == 1


def test_a_request_in_flight_across_a_reset_is_not_counted_after_it(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    """Counted on arrival before the reset, it must not reach the fresh counts when it
    ends (a neighbouring test's slow request once added a status to this file's counts)."""
    emulator.config(latency_ms=[600, 600])
    slow = threading.Thread(target=lambda: client.v1.customers.list())
    slow.start()
    time.sleep(0.3)  # arrived, still in its latency
    emulator.reset(stats_only=True)
    slow.join()
    stats = emulator.stats()
    assert (stats["requests_total"], stats["by_status"], stats["in_flight"]) == (0, {}, 0)


def test_config_rejects_unknown_keys(emulator: EmulatorHandle) -> None:
    with pytest.raises(Exception, match="unknown config keys: latency"):
        emulator.config(latency=5)


# --- pieces that need no server -------------------------------------------------------------


def test_form_decoding_matches_the_sdk_encoding() -> None:
    params = decode(
        "metadata[a]=1&metadata[b]=&address[city]=Paris&preferred_locales[1]=fr"
        "&preferred_locales[0]=en&expand[]=tax&expand[]=test_clock&email="
    )
    assert params == {
        "metadata": {"a": "1", "b": ""},
        "address": {"city": "Paris"},
        "preferred_locales": {"1": "fr", "0": "en"},
        "expand": {"0": "tax", "1": "test_clock"},
        "email": "",
    }


def test_rate_limiters_count_only_admitted_requests() -> None:
    now = [0.0]
    for algorithm in ("sliding_window", "token_bucket"):
        limiter = RateLimiter(clock=lambda: now[0])
        now[0] = 100.0
        limits = [("global", 2.0)]
        assert [limiter.admit(limits, algorithm) for _ in range(3)] == [None, None, "global"]
        now[0] = 101.01
        assert limiter.admit(limits, algorithm) is None


def test_seeded_fault_draws_repeat_for_the_same_traffic() -> None:
    config = EmulatorConfig(seed=3, server_error_rate=0.5, latency_ms=(10, 90))
    first, second = FaultPlanner(), FaultPlanner()
    requests = [f"POST /v1/customers|email={i}" for i in range(20)]
    assert [first.draw(config, r) for r in requests] == [second.draw(config, r) for r in requests]
    assert first.draw(config, requests[0]) != second.draw(config, requests[1])


def test_cli_flags_build_the_config() -> None:
    port, config, _ = parse_args(
        [
            "--port",
            "0",
            "--latency-ms",
            "100:300",
            "--rate-limit",
            "25",
            "--endpoint-rate-limit",
            "25",
            "--endpoint-limit",
            "GET /v1/customers/search=20",
            "--restricted-key",
            f"{RESTRICTED}=rak_customer_write",
            "--drop-response-rate",
            "0.1",
        ]
    )
    assert port == 0 and config.latency_ms == (100.0, 300.0)
    assert config.rate_limit == 25 and config.endpoint_limit("GET /v1/customers") == 25
    assert config.endpoint_limit("GET /v1/customers/search") == 20
    assert config.restricted_keys == {RESTRICTED: ("rak_customer_write",)}
    assert config.drop_response_rate == 0.1


def test_module_entry_point_prints_its_address() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "stripe_emulator", "--port", "0", "--rate-limit", "7"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.split()[-1]
        with urllib.request.urlopen(url + "/_emulator/config", timeout=10) as response:
            assert json.loads(response.read())["rate_limit"] == 7
    finally:
        process.terminate()
        process.wait(timeout=10)
