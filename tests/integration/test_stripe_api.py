"""The Stripe gateway against real servers: localstripe for the happy paths, the Stripe
emulator for faults (429, lock_timeout, 5xx, dropped responses, 401/403), and a scripted
server for the answers neither sends (Retry-After, `Stripe-Should-Retry: false`).

Request counts are exact: they are what the engine reports and the benchmark compares.
"""

from __future__ import annotations

import math
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import stripe

from dbt_stripe_activation.errors import StripeConnectionError
from dbt_stripe_activation.ratelimit import GLOBAL
from dbt_stripe_activation.stripe_api import (
    HEADROOM,
    StripeGateway,
    StripeReadError,
    StripeSettings,
    StripeWriteError,
    endpoint_of,
    redact,
)
from tests.faults.front import FaultFront
from tests.integration import stripe_fixtures
from tests.integration.stripe_fixtures import (
    KEY,
    LIVE_KEY,
    NO_READ_KEY,
    NO_WRITE_KEY,
    Answer,
    LocalStripeServer,
    ScriptedStripe,
    customer,
    rate_limited,
)

# Real servers, shared by the module (see stripe_fixtures).
localstripe_server = stripe_fixtures.localstripe_server
emulator = stripe_fixtures.emulator
fresh_emulator = stripe_fixtures.fresh_emulator
scripted = stripe_fixtures.scripted

CREATE = "POST /v1/customers"
UPDATE = "POST /v1/customers/{id}"
LIST = "GET /v1/customers"
RETRIEVE = "GET /v1/customers/{id}"
BALANCE = "GET /v1/balance"

pytestmark = pytest.mark.timeout(120)

CUSTOMER_PROBE = [("customers", "list", {"limit": 1})]


def gateway(url: str, key: str = KEY, **settings: Any) -> StripeGateway:
    settings.setdefault("rate_limit_backoff_seconds", 0.01)
    return StripeGateway(StripeSettings(api_key=key, api_base=url, **settings))


def unique_email(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


@pytest.fixture
def ls(localstripe_server: LocalStripeServer) -> StripeGateway:
    return gateway(localstripe_server.url)


# -- localstripe: the happy paths ---------------------------------------------------------


def test_check_reads_the_balance_with_a_secret_key(ls: StripeGateway) -> None:
    result = ls.check(CUSTOMER_PROBE)
    assert (result.mode, result.key_kind, result.method) == ("test", "secret", "balance")
    assert result.api_base == ls.settings.api_base
    stats = ls.stats
    assert stats.by_endpoint == {BALANCE: 1}
    assert (stats.reads, stats.writes, stats.retries, stats.rate_limited) == (1, 0, 0, 0)


def test_check_reports_live_mode_from_the_key_prefix(localstripe_server: LocalStripeServer) -> None:
    result = gateway(localstripe_server.url, LIVE_KEY).check(CUSTOMER_PROBE)
    assert result.mode == "live"
    assert gateway(localstripe_server.url, LIVE_KEY).settings.rate_limits == (
        100 * HEADROOM,
        25 * HEADROOM,
    )


def test_create_update_retrieve_return_plain_dicts_and_count_each_request(
    ls: StripeGateway,
) -> None:
    email = unique_email("ada")
    created = ls.create(
        "customers",
        {"email": email, "name": "Ada", "metadata": {"plan": "pro"}, "address": {"city": "Paris"}},
        idempotency_key=f"create-{email}",
    )
    assert type(created) is dict and type(created["metadata"]) is dict
    assert type(created["address"]) is dict
    assert created["id"].startswith("cus_")
    assert (created["email"], created["name"], created["metadata"]) == (
        email,
        "Ada",
        {"plan": "pro"},
    )

    updated = ls.update("customers", created["id"], {"name": "Ada L."}, f"update-{email}")
    assert updated["name"] == "Ada L."
    fetched = ls.retrieve("customers", created["id"])
    assert fetched is not None
    assert (fetched["name"], fetched["email"], fetched["address"]["city"]) == (
        "Ada L.",
        email,
        "Paris",
    )
    stats = ls.stats
    assert stats.by_endpoint == {CREATE: 1, UPDATE: 1, RETRIEVE: 1}
    assert (stats.reads, stats.writes, stats.retries) == (1, 2, 0)


def test_retrieve_answers_none_for_a_missing_or_deleted_customer(
    ls: StripeGateway,
    localstripe_server: LocalStripeServer,
) -> None:
    assert ls.retrieve("customers", "cus_doesNotExist0001") is None
    created = ls.create("customers", {"email": unique_email("gone")}, "create-gone")
    localstripe_server.sdk.v1.customers.delete(created["id"])
    assert ls.retrieve("customers", created["id"]) is None
    assert ls.stats.by_endpoint == {RETRIEVE: 2, CREATE: 1}


def test_list_by_email_is_exact_and_case_sensitive(
    ls: StripeGateway,
    localstripe_server: LocalStripeServer,
) -> None:
    email = unique_email("grace")
    ids = {ls.create("customers", {"email": email}, f"c{i}-{email}")["id"] for i in range(2)}
    ls.create("customers", {"email": email.upper()}, f"upper-{email}")
    found = ls.list_where("customers", {"email": email})
    assert {c["id"] for c in found} == ids
    assert all(type(c) is dict and c["email"] == email for c in found)
    assert ls.list_where("customers", {"email": "nobody-" + email}) == []
    assert ls.stats.by_endpoint[LIST] == 2  # one read per lookup under 100 matches


def test_list_by_email_follows_pagination(
    ls: StripeGateway,
    localstripe_server: LocalStripeServer,
) -> None:
    email = unique_email("many")
    for _ in range(105):
        localstripe_server.sdk.v1.customers.create(params={"email": email})
    found = ls.list_where("customers", {"email": email})
    assert len(found) == 105 and len({c["id"] for c in found}) == 105
    assert ls.stats.by_endpoint == {LIST: 2}


def test_iter_all_reads_every_customer_100_per_page(
    ls: StripeGateway,
    localstripe_server: LocalStripeServer,
) -> None:
    for _ in range(3):
        localstripe_server.sdk.v1.customers.create(params={"email": unique_email("all")})
    expected = {
        c.id
        for c in localstripe_server.sdk.v1.customers.list(params={"limit": 100}).auto_paging_iter()
    }
    seen = [c["id"] for c in ls.iter_all("customers")]
    assert len(seen) == len(set(seen)) and set(seen) == expected
    assert ls.stats.by_endpoint == {LIST: max(1, math.ceil(len(expected) / 100))}


def test_a_pool_of_threads_shares_one_gateway(
    ls: StripeGateway,
    localstripe_server: LocalStripeServer,
) -> None:
    domain = f"pool-{uuid.uuid4().hex[:8]}.example.com"

    def create(i: int) -> str:
        return str(ls.create("customers", {"email": f"u{i}@{domain}"}, f"{domain}-{i}")["id"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(create, range(40)))
    assert len(set(ids)) == 40
    stored = [
        c
        for c in localstripe_server.sdk.v1.customers.list(params={"limit": 100}).auto_paging_iter()
        if (c.email or "").endswith("@" + domain)
    ]
    assert sorted(c.id for c in stored) == sorted(ids)
    assert ls.stats.by_endpoint == {CREATE: 40}
    assert ls.stats.writes == 40
    assert ls.limiter.max_in_flight <= ls.settings.concurrency


def test_an_invalid_request_is_rejected_without_a_retry(ls: StripeGateway) -> None:
    with pytest.raises(StripeWriteError) as caught:
        ls.create("customers", {"no_such_field": "x"}, "create-invalid")
    assert (caught.value.status, caught.value.retryable) == (400, False)
    with pytest.raises(StripeWriteError) as missing:
        ls.update("customers", "cus_doesNotExist0001", {"name": "x"}, "update-missing")
    assert (missing.value.status, missing.value.code) == (404, "resource_missing")
    assert missing.value.retryable is False
    assert ls.stats.by_endpoint == {CREATE: 1, UPDATE: 1}
    assert ls.stats.retries == 0


def test_unknown_object_names_are_a_programming_error(ls: StripeGateway) -> None:
    with pytest.raises(ValueError, match="subscription"):
        ls.retrieve("subscription", "sub_1")


# -- the emulator: faults ------------------------------------------------------------------


def test_the_idempotency_key_makes_a_repeated_create_a_replay(fresh_emulator: Any) -> None:
    gw = gateway(fresh_emulator.url)
    first = gw.create("customers", {"email": "once@example.com"}, "create-once")
    again = gw.create("customers", {"email": "once@example.com"}, "create-once")
    assert again["id"] == first["id"]
    assert len(fresh_emulator.customers()) == 1
    assert fresh_emulator.stats()["idempotent_replays"] == 1
    with pytest.raises(StripeWriteError) as caught:
        gw.create("customers", {"email": "other@example.com"}, "create-once")
    assert (caught.value.code, caught.value.status, caught.value.retryable) == (
        "idempotency_error",
        400,
        False,
    )


def test_an_sdk_retry_after_a_lost_answer_reuses_the_key(fresh_emulator: Any) -> None:
    fresh_emulator.config(drop_response_rate=1.0)  # commit, then reset the socket
    gw = gateway(fresh_emulator.url, max_network_retries=2)
    created = gw.create("customers", {"email": "dropped@example.com"}, "create-dropped")
    assert [c["id"] for c in fresh_emulator.customers()] == [created["id"]]
    stats = fresh_emulator.stats()
    assert (stats["writes_committed"], stats["idempotent_replays"]) == (1, 1)
    assert gw.stats.by_endpoint == {CREATE: 2}
    assert gw.stats.retries == 1


def test_429_is_retried_with_backoff_up_to_the_limit(fresh_emulator: Any) -> None:
    fresh_emulator.config(random_429_rate=1.0)
    sleeps: list[float] = []
    gw = StripeGateway(
        StripeSettings(
            api_key=KEY,
            api_base=fresh_emulator.url,
            max_rate_limit_retries=3,
            rate_limit_backoff_seconds=0.01,
        ),
        sleep=sleeps.append,
    )
    ceiling = gw.limiter.rate()
    with pytest.raises(StripeWriteError) as caught:
        gw.create("customers", {"email": "busy@example.com"}, "create-busy")
    assert (caught.value.code, caught.value.status, caught.value.retryable) == (
        "rate_limit",
        429,
        True,
    )
    stats = gw.stats
    assert stats.by_endpoint == {CREATE: 4}
    assert (stats.rate_limited, stats.retries) == (4, 3)
    assert fresh_emulator.stats()["by_endpoint"] == {CREATE: 4}
    # Full jitter: retry n waits somewhere in [0, base * 2**(n-1)].
    assert len(sleeps) == 3
    assert all(0 <= s <= 0.01 * 2**n for n, s in enumerate(sleeps))
    # The emulator names global-rate: the global bucket was cut (once: one congestion event).
    assert gw.limiter.rate(GLOBAL) == pytest.approx(ceiling * 0.85)
    assert fresh_emulator.customers() == []


def test_lock_timeout_is_retried_but_does_not_slow_the_limiter(fresh_emulator: Any) -> None:
    gw = gateway(fresh_emulator.url, max_rate_limit_retries=2)
    created = gw.create("customers", {"email": "locked@example.com"}, "create-locked")
    fresh_emulator.config(lock_timeout_rate=1.0)
    with pytest.raises(StripeWriteError) as caught:
        gw.update("customers", created["id"], {"name": "x"}, "update-locked")
    assert (caught.value.code, caught.value.status, caught.value.retryable) == (
        "lock_timeout",
        429,
        True,
    )
    assert gw.stats.by_endpoint == {CREATE: 1, UPDATE: 3}
    assert (gw.stats.rate_limited, gw.stats.retries) == (3, 2)
    assert gw.limiter.rate(GLOBAL) == gw.limiter.state(GLOBAL).ceiling
    assert gw.limiter.rate(UPDATE) == gw.limiter.state(UPDATE).ceiling


def test_concurrent_writes_to_one_customer_do_not_collide(fresh_emulator: Any) -> None:
    fresh_emulator.config(latency_ms=[150, 150])  # a write holds the customer 150 ms
    gw = gateway(fresh_emulator.url, max_rate_limit_retries=0)
    customer_id = gw.create("customers", {"email": "shared@example.com"}, "create-shared")["id"]
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(
            pool.map(
                lambda i: gw.update(
                    "customers", customer_id, {"metadata": {f"k{i}": "v"}}, f"u{i}"
                ),
                range(6),
            )
        )
    assert gw.stats.rate_limited == 0
    assert fresh_emulator.stats()["faults"].get("lock_timeout", 0) == 0
    assert fresh_emulator.customers()[0]["metadata"] == {f"k{i}": "v" for i in range(6)}


def test_server_errors_are_retried_by_the_sdk_then_reported_retryable(fresh_emulator: Any) -> None:
    fresh_emulator.config(server_error_rate=1.0)
    gw = gateway(fresh_emulator.url, max_network_retries=2)
    with pytest.raises(StripeWriteError) as caught:
        gw.create("customers", {"email": "down@example.com"}, "create-down")
    assert (caught.value.status, caught.value.retryable) == (500, True)
    assert gw.stats.by_endpoint == {CREATE: 3}
    assert gw.stats.retries == 2
    assert fresh_emulator.stats()["by_endpoint"] == {CREATE: 3}
    assert fresh_emulator.customers() == []


def test_a_failed_lookup_is_a_retryable_read_error(fresh_emulator: Any) -> None:
    fresh_emulator.config(server_error_rate=1.0)
    gw = gateway(fresh_emulator.url, max_network_retries=0)
    with pytest.raises(StripeReadError) as caught:
        gw.list_where("customers", {"email": "x@example.com"})
    assert isinstance(caught.value, StripeWriteError)  # what the engine's workers catch
    assert (caught.value.status, caught.value.retryable) == (500, True)
    with pytest.raises(StripeReadError):
        gw.retrieve("customers", "cus_anything0000001")
    assert gw.stats.by_endpoint == {LIST: 1, RETRIEVE: 1}


def test_pacing_stays_under_stripe_test_mode_limits(fresh_emulator: Any) -> None:
    fresh_emulator.config(rate_limit=25, endpoint_rate_limit=25)  # sliding one-second window
    gw = gateway(fresh_emulator.url, max_rate_limit_retries=0)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: gw.create("customers", {"name": f"n{i}"}, f"pace-{i}"), range(45)))
    assert gw.stats.rate_limited == 0
    assert fresh_emulator.stats()["by_endpoint"] == {CREATE: 45}


def test_a_stream_limit_far_under_the_default_is_learned_from_one_second_of_answers(
    fresh_emulator: Any,
) -> None:
    # Stripe does not publish the sandbox's meter event limits: the default pace for a test
    # key (1,000 stream requests/s) may be far above the account's. Cutting by 0.85 per
    # second would take 14 s of 429s to come down; the limiter learns the limit instead.
    stream = "POST /v2/billing/meter_event_stream"
    fresh_emulator.config(endpoint_rate_limits={stream: 20})
    gw = gateway(fresh_emulator.url, rate_limit_backoff_seconds=0.1,
                 separate_pools={stream: 1000.0})  # the pipeline's default for a test key
    assert gw.limiter.rate(stream) == pytest.approx(1000 * HEADROOM)  # paced just under it

    def send(i: int) -> None:
        gw.send_event_stream([{"event_name": "api_calls", "identifier": f"learn-{i}",
                               "payload": {"stripe_customer_id": "cus_x", "value": "1"}}])

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(send, range(50)))  # the first second floods, then a 429 is measured
        state = gw.limiter.state(stream)
        assert state.learned is not None and 18 <= state.learned <= 22
        assert state.rate <= 1.1 * state.learned  # probing above it slowly, not at 950
        refused = gw.stats.rate_limited
        list(pool.map(send, range(50, 90)))  # two seconds at the learned pace
    assert fresh_emulator.stats()["meter_events"]["received"] == 90
    assert gw.stats.rate_limited - refused <= 3


def create_all(gw: StripeGateway, n: int, tag: str) -> None:
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda i: gw.create("customers", {"email": f"{tag}{i}@example.com"},
                                          f"{tag}-{i}"), range(n)))


def test_429s_that_do_not_follow_the_pace_and_500s_leave_it_at_the_limit(
    fresh_emulator: Any,
) -> None:
    # Issue 21: 30% of the requests answered 429 (the emulator names global-rate) and 10%
    # 500, whatever the pace, under a limit never reached. Each second used to take the pace
    # to 0.69 of itself (a 429 read as a limit of what was admitted), down to 1 request/s.
    # The server's own limit sits above the client's 100/s: a loaded machine wakes paced
    # threads late and in bunches, and those bursts must not reach a real limit here.
    fresh_emulator.config(rate_limit=150, random_429_rate=0.3, server_error_rate=0.1)
    gw = gateway(fresh_emulator.url, max_rps=100, per_endpoint_rps=100)
    done: list[int] = []
    states = []

    def create(i: int) -> None:
        gw.create("customers", {"email": f"share{i}@example.com"}, f"share-{i}")
        done.append(i)
        if len(done) == 300:  # under way for seconds, not yet the last few requests
            states.append(gw.limiter.state(GLOBAL))

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(create, range(400)))
    assert states[0].learned is None and states[0].rate >= 0.9 * states[0].ceiling
    assert gw.limiter.rate(CREATE) == gw.limiter.state(CREATE).ceiling
    emails = [c["email"] for c in fresh_emulator.customers()]
    assert sorted(emails) == sorted(f"share{i}@example.com" for i in range(400))
    faults = fresh_emulator.stats()["faults"]
    assert faults.get("random_429", 0) > 50 and faults.get("global_rate_limit", 0) == 0


def test_concurrency_429s_cost_a_retry_never_the_rate(fresh_emulator: Any) -> None:
    fresh_emulator.config(server_error_rate=0.1)
    # No rate limit: a 429 for the rate (arrival jitter at 0.99 of one) would rightly cut it.
    with FaultFront(fresh_emulator.url, refuse_rate=0.3) as front:
        gw = gateway(front.url, max_rps=100, per_endpoint_rps=100)
        create_all(gw, 200, "busy")
    assert front.counts["refused"] > 20
    for scope in (GLOBAL, CREATE):
        assert gw.limiter.rate(scope) == gw.limiter.state(scope).ceiling
    assert len(fresh_emulator.customers()) == 200
    assert gw.stats.rate_limited == front.counts["refused"]


@pytest.mark.parametrize(
    "answer",
    [
        rate_limited(**{"Stripe-Rate-Limited-Reason": "global-concurrency"}),
        rate_limited(**{"Stripe-Rate-Limited-Reason": "endpoint-concurrency"}),
        Answer(429, {"error": {"type": "invalid_request_error", "code": "lock_timeout",
                               "message": "This object cannot be accessed right now"}}),
    ],
    ids=["global-concurrency", "endpoint-concurrency", "lock_timeout"],
)
def test_a_429_that_is_not_about_the_rate_is_retried_soon(
    scripted: ScriptedStripe, answer: Answer
) -> None:
    scripted.answer(answer, customer())
    sleeps: list[float] = []
    gw = StripeGateway(StripeSettings(api_key=KEY, api_base=scripted.url), sleep=sleeps.append)
    gw.update("customers", "cus_1", {"name": "x"}, "k")
    assert len(sleeps) == 1 and sleeps[0] <= gw.settings.retry_backoff_seconds
    for scope in (GLOBAL, UPDATE):
        assert gw.limiter.rate(scope) == gw.limiter.state(scope).ceiling
    assert (gw.stats.rate_limited, gw.stats.retries) == (1, 1)


def test_the_sdk_retries_a_500_soon_and_a_lost_connection_as_it_always_did(
    scripted: ScriptedStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    server_error = Answer(500, {"error": {"type": "api_error", "message": "An unknown error"}})
    scripted.answer(server_error, server_error, customer())
    gw = gateway(scripted.url)
    waits: list[float] = []
    chosen = gw._http._sleep_time_seconds
    monkeypatch.setattr(gw._http, "_sleep_time_seconds",
                        lambda n: waits.append(chosen(n)) or waits[-1])
    gw.create("customers", {}, "k")
    # The SDK's own wait is at least 0.5 s, doubling: ours is full jitter from 0.1 s.
    assert len(waits) == 2 and all(0 <= w <= 0.1 * 2**n for n, w in enumerate(waits))
    assert gw.stats.retries == 2
    lost = stripe.APIConnectionError("reset", should_retry=True)
    assert gw._http._should_retry(None, lost, 0, 4)
    assert gw._http._sleep_time_seconds(1) >= 0.5  # no answer: the SDK's wait


def test_a_restricted_key_is_checked_with_a_customer_list(fresh_emulator: Any) -> None:
    gw = gateway(fresh_emulator.url, NO_WRITE_KEY)
    result = gw.check(CUSTOMER_PROBE)
    assert (result.key_kind, result.method, result.mode) == ("restricted", "customers.list", "test")
    assert gw.stats.by_endpoint == {LIST: 1}


def test_a_missing_write_permission_stops_the_run_naming_it(fresh_emulator: Any) -> None:
    gw = gateway(fresh_emulator.url, NO_WRITE_KEY)
    with pytest.raises(StripeConnectionError) as caught:
        gw.create("customers", {"email": "x@example.com"}, "create-403")
    message = str(caught.value)
    assert "rak_customer_write" in message and "403" in message
    assert NO_WRITE_KEY not in message and "$STRIPE_API_KEY" in message
    assert gw.stats.by_endpoint == {CREATE: 1}


def test_a_missing_read_permission_fails_the_check(fresh_emulator: Any) -> None:
    with pytest.raises(StripeConnectionError) as caught:
        gateway(fresh_emulator.url, NO_READ_KEY).check(CUSTOMER_PROBE)
    assert "rak_customer_read" in str(caught.value)
    assert NO_READ_KEY not in str(caught.value)


def test_a_refused_key_is_named_by_its_variable_never_by_its_value(fresh_emulator: Any) -> None:
    gw = gateway(fresh_emulator.url, LIVE_KEY, api_key_env="ACME_STRIPE_KEY")
    with pytest.raises(StripeConnectionError) as caught:
        gw.check(CUSTOMER_PROBE)
    message = str(caught.value)
    assert message.startswith("Stripe refused the API key in $ACME_STRIPE_KEY (401)")
    assert LIVE_KEY not in message and LIVE_KEY[-6:] not in message
    with pytest.raises(StripeConnectionError, match=r"\(401\)"):
        gw.update("customers", "cus_x", {"name": "x"}, "update-401")


def test_an_unreachable_api_base_is_named(fresh_emulator: Any) -> None:
    fresh_emulator.config(connection_reset_rate=1.0)
    gw = gateway(fresh_emulator.url, max_network_retries=1)
    with pytest.raises(StripeConnectionError) as caught:
        gw.check(CUSTOMER_PROBE)
    assert f"Cannot reach Stripe at {fresh_emulator.url}" in str(caught.value)
    assert gw.stats.by_endpoint == {BALANCE: 2}
    with pytest.raises(StripeWriteError) as write:
        gw.create("customers", {"email": "x@example.com"}, "create-reset")
    assert (write.value.status, write.value.retryable) == (None, True)
    assert fresh_emulator.customers() == []


# -- a scripted server: headers the emulator does not send ---------------------------------


def test_429_retries_reuse_the_idempotency_key_until_success(scripted: ScriptedStripe) -> None:
    scripted.answer(rate_limited(), rate_limited(), customer("cus_third0000000001"))
    gw = gateway(scripted.url)
    assert (
        gw.create("customers", {"email": "x@example.com"}, "the-key")["id"] == "cus_third0000000001"
    )
    assert [s.headers.get("Idempotency-Key") for s in scripted.seen] == ["the-key"] * 3
    assert [s.body for s in scripted.seen] == ["email=x%40example.com"] * 3
    assert (gw.stats.by_endpoint, gw.stats.retries, gw.stats.rate_limited) == ({CREATE: 3}, 2, 2)


def test_should_retry_false_is_honoured(scripted: ScriptedStripe) -> None:
    scripted.answer(rate_limited(**{"Stripe-Should-Retry": "false"}))
    sleeps: list[float] = []
    gw = StripeGateway(StripeSettings(api_key=KEY, api_base=scripted.url), sleep=sleeps.append)
    with pytest.raises(StripeWriteError) as caught:
        gw.update("customers", "cus_1", {"name": "x"}, "k")
    assert (caught.value.status, caught.value.retryable) == (429, True)
    assert len(scripted.seen) == 1 and sleeps == []
    assert gw.stats.retries == 0


def test_retry_after_is_a_floor_for_the_backoff(scripted: ScriptedStripe) -> None:
    scripted.answer(rate_limited(**{"Retry-After": "7"}), customer())
    sleeps: list[float] = []
    gw = StripeGateway(StripeSettings(api_key=KEY, api_base=scripted.url), sleep=sleeps.append)
    gw.create("customers", {}, "k")
    assert len(sleeps) == 1 and sleeps[0] >= 7


def test_the_reason_header_picks_the_bucket_to_slow(scripted: ScriptedStripe) -> None:
    scripted.answer(rate_limited(**{"Stripe-Rate-Limited-Reason": "endpoint-rate"}), customer())
    gw = gateway(scripted.url)
    gw.update("customers", "cus_1", {"name": "x"}, "k")
    assert gw.limiter.rate(UPDATE) == pytest.approx(gw.limiter.state(UPDATE).ceiling * 0.85)
    assert gw.limiter.rate(GLOBAL) == gw.limiter.state(GLOBAL).ceiling


def test_the_sdk_does_not_retry_a_429_behind_our_back(scripted: ScriptedStripe) -> None:
    # Stripe-Should-Retry: true would make the SDK retry it: our budget must stay exact.
    scripted.answer(*[rate_limited(**{"Stripe-Should-Retry": "true"})] * 3)
    gw = gateway(scripted.url, max_network_retries=4, max_rate_limit_retries=1)
    with pytest.raises(StripeWriteError):
        gw.create("customers", {}, "k")
    assert len(scripted.seen) == 2


def test_a_long_idempotency_key_is_hashed_not_truncated(scripted: ScriptedStripe) -> None:
    scripted.answer(customer())
    gateway(scripted.url).create("customers", {}, "k" * 300)
    sent = scripted.seen[0].headers["Idempotency-Key"]
    assert len(sent) <= 255 and sent.startswith("sha256-")


def test_the_pinned_api_version_is_sent(scripted: ScriptedStripe) -> None:
    from dbt_stripe_activation.stripe_api import STRIPE_API_VERSION

    scripted.answer(customer())
    gateway(scripted.url).retrieve("customers", "cus_1")
    assert scripted.seen[0].headers["Stripe-Version"] == STRIPE_API_VERSION
    assert "X-Stripe-Client-Telemetry" not in scripted.seen[0].headers


# -- pure helpers --------------------------------------------------------------------------


def test_redact_masks_every_key_shape() -> None:
    text = "keys sk_test_abc123 rk_live_XYZ9 pk_test_1 and 'sk_test_***4242' stay masked"
    assert redact(text) == (
        "keys sk_test_*** rk_live_*** pk_test_*** and 'sk_test_***4242' stay masked"
    )


@pytest.mark.parametrize(
    ("method", "url", "endpoint"),
    [
        ("post", "https://api.stripe.com/v1/customers", CREATE),
        ("post", "https://api.stripe.com/v1/customers/cus_123", UPDATE),
        ("get", "http://127.0.0.1:9/v1/customers?email=a%40b.c&limit=100", LIST),
        ("get", "http://127.0.0.1:9/v1/customers/search?query=x", "GET /v1/customers/search"),
        ("get", "http://proxy/stripe/v1/balance", BALANCE),
        (
            "get",
            "https://api.stripe.com/v1/customers/cus_1/tax_ids",
            "GET /v1/customers/{id}/tax_ids",
        ),
    ],
)
def test_endpoint_names(method: str, url: str, endpoint: str) -> None:
    assert endpoint_of(method, url) == endpoint


# -- listing a whole account in parallel --------------------------------------------------


@pytest.mark.parametrize("spread_days", [1000, 0])
def test_parallel_listing_returns_every_object_once(fresh_emulator: Any, spread_days: int) -> None:
    """By `created` ranges measured from the first page: every customer exactly once, in
    about as many reads as a sequential listing; objects that share a second still page."""
    import time

    now = int(time.time())
    n = 1234
    ids = fresh_emulator.seed([  # oldest first, as an account accrues them
        {"email": f"p{i}@example.com", "created": now - ((n - i) * spread_days * 86400) // n}
        for i in range(n)
    ])
    fresh_emulator.config(latency_ms=[20, 20])  # so that requests overlap when parallel
    gw = gateway(fresh_emulator.url, max_rps=1000, per_endpoint_rps=1000)
    listed = [c["id"] for c in gw.iter_all("customers", workers=8)]
    assert sorted(listed) == sorted(ids)
    reads = gw.stats.by_endpoint["GET /v1/customers"]
    assert reads <= n // 100 + 2 + 33  # the pages, the first again, one per piece at most
    if spread_days:
        assert fresh_emulator.stats()["max_in_flight"] > 1  # really in parallel
