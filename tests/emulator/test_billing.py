"""Billing meters, meter events (v1 and the v2 stream), the emulator clock, subscriptions and
subscription items, driven through the official stripe SDK.

Reuses test_emulator's module emulator, per-test reset (which also puts the clock back) and
clients.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytest
import stripe

from stripe_emulator import EmulatorHandle
from stripe_emulator.resources import ENDPOINTS
from tests.emulator import test_emulator as shared

KEY = shared.KEY
# The same fixtures: one emulator subprocess for the module, reset before each test.
emulator, fresh, client = shared.emulator, shared.fresh, shared.client

CUSTOMER = "cus_billingTest001"
OTHER_CUSTOMER = "cus_billingTest002"
# Top-level fields of Stripe's own samples (stripe/openapi, openapi/fixtures3.json).
METER_FIELDS = {
    "id", "object", "created", "customer_mapping", "default_aggregation", "display_name",
    "event_name", "event_time_window", "livemode", "status", "status_transitions", "updated",
    "value_settings",
}  # fmt: skip
METER_EVENT_FIELDS = {
    "object", "created", "event_name", "identifier", "livemode", "payload", "timestamp",
}  # fmt: skip
ITEM_FIELDS = {
    "id", "object", "billing_thresholds", "created", "current_period_end",
    "current_period_start", "discounts", "metadata", "plan", "price", "quantity",
    "subscription", "tax_rates",
}  # fmt: skip


def sdk(emulator: EmulatorHandle, key: str = KEY) -> stripe.StripeClient:
    """A client whose `meter_events` base address (the v2 stream) is the emulator too."""
    return stripe.StripeClient(
        api_key=key,
        base_addresses={"api": emulator.url, "meter_events": emulator.url},
        max_network_retries=0,
    )


def error_of(raised: pytest.ExceptionInfo[stripe.StripeError]) -> dict[str, Any]:
    body = raised.value.json_body
    assert body is not None
    return dict(body["error"])


def iso(unix: float) -> str:
    moment = datetime.datetime.fromtimestamp(unix, tz=datetime.timezone.utc)
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def meter(emulator: EmulatorHandle) -> str:
    """Two customers and an active `api_call` sum meter with the default payload keys."""
    emulator.seed([{"id": CUSTOMER}, {"id": OTHER_CUSTOMER}])
    [meter_id] = emulator.seed_meters(
        [{"display_name": "API calls", "event_name": "api_call",
          "default_aggregation": {"formula": "sum"}}]
    )  # fmt: skip
    return meter_id


def event(value: str = "1", customer: str = CUSTOMER, **extra: Any) -> dict[str, Any]:
    return {
        "event_name": "api_call",
        "payload": {"stripe_customer_id": customer, "value": value},
        **extra,
    }


def stream_client(emulator: EmulatorHandle, client: stripe.StripeClient) -> stripe.StripeClient:
    session = client.v2.billing.meter_event_session.create()
    return sdk(emulator, session.authentication_token)


# --- meters ---------------------------------------------------------------------------------


def test_meter_create_list_retrieve_update(client: stripe.StripeClient) -> None:
    created = client.v1.billing.meters.create(
        params={
            "display_name": "Tokens",
            "event_name": "tokens",
            "default_aggregation": {"formula": "sum"},
            "customer_mapping": {"event_payload_key": "account", "type": "by_id"},
            "value_settings": {"event_payload_key": "tokens"},
        }
    )
    data = created.to_dict()
    assert set(data) == METER_FIELDS and data["id"].startswith("mtr_")
    assert data["object"] == "billing.meter" and data["status"] == "active"
    assert data["customer_mapping"] == {"event_payload_key": "account", "type": "by_id"}
    assert data["value_settings"] == {"event_payload_key": "tokens"}
    assert data["event_time_window"] is None and data["livemode"] is False
    assert data["status_transitions"] == {"deactivated_at": None}
    defaults = client.v1.billing.meters.create(
        params={"display_name": "Seats", "event_name": "seats",
                "default_aggregation": {"formula": "last"}}
    ).to_dict()  # fmt: skip
    assert defaults["customer_mapping"] == {"event_payload_key": "stripe_customer_id",
                                            "type": "by_id"}  # fmt: skip
    assert defaults["value_settings"] == {"event_payload_key": "value"}
    assert client.v1.billing.meters.retrieve(created.id).display_name == "Tokens"
    renamed = client.v1.billing.meters.update(created.id, params={"display_name": "LLM tokens"})
    assert renamed.display_name == "LLM tokens"
    page = client.v1.billing.meters.list(params={"limit": 1})
    assert [m.id for m in page.data] == [defaults["id"]] and page.has_more is True
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.billing.meters.retrieve("mtr_nothing")
    assert missing.value.http_status == 404 and error_of(missing)["code"] == "resource_missing"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"event_name": "x", "default_aggregation": {"formula": "sum"}}, "display_name"),
        ({"display_name": "x", "event_name": "x"}, "default_aggregation"),
        ({"display_name": "x", "event_name": "x", "default_aggregation": {"formula": "avg"}},
         "default_aggregation[formula]"),
        ({"display_name": "x", "event_name": "x", "default_aggregation": {"formula": "sum"},
          "customer_mapping": {"event_payload_key": "k", "type": "by_email"}},
         "customer_mapping[type]"),
        ({"display_name": "x", "event_name": "x" * 101, "default_aggregation": {"formula": "sum"}},
         "event_name"),
        ({"display_name": "x", "event_name": "x", "default_aggregation": {"formula": "sum"},
          "colour": "red"}, "colour"),
    ],
)  # fmt: skip
def test_meter_create_validation(
    client: stripe.StripeClient, params: dict[str, Any], param: str
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.billing.meters.create(params=params)  # type: ignore[arg-type]
    assert raised.value.http_status == 400 and error_of(raised)["param"] == param


def test_event_name_is_unique_among_active_meters(client: stripe.StripeClient) -> None:
    params: Any = {"display_name": "A", "event_name": "api_call",
                   "default_aggregation": {"formula": "sum"}}  # fmt: skip
    first = client.v1.billing.meters.create(params=params)
    with pytest.raises(stripe.InvalidRequestError) as taken:
        client.v1.billing.meters.create(params=params)
    assert error_of(taken)["param"] == "event_name" and first.id in error_of(taken)["message"]
    inactive = client.v1.billing.meters.deactivate(first.id)
    assert inactive.status == "inactive" and inactive.status_transitions.deactivated_at
    with pytest.raises(stripe.InvalidRequestError, match="already inactive"):
        client.v1.billing.meters.deactivate(first.id)
    second = client.v1.billing.meters.create(params=params)  # the name is free again
    with pytest.raises(stripe.InvalidRequestError) as clash:
        client.v1.billing.meters.reactivate(first.id)
    assert second.id in error_of(clash)["message"]
    client.v1.billing.meters.deactivate(second.id)
    assert client.v1.billing.meters.reactivate(first.id).status == "active"
    active = client.v1.billing.meters.list(params={"status": "active"}).data
    inactive_list = client.v1.billing.meters.list(params={"status": "inactive"}).data
    assert [m.id for m in active] == [first.id] and [m.id for m in inactive_list] == [second.id]


# --- v1 meter events ------------------------------------------------------------------------


def test_v1_meter_event_is_accepted_and_dumped(
    client: stripe.StripeClient, emulator: EmulatorHandle, meter: str
) -> None:
    now = int(emulator.clock()["now"])
    created = client.v1.billing.meter_events.create(
        params=event("25", identifier="evt-1", timestamp=now - 60)
    )
    data = created.to_dict()
    assert set(data) == METER_EVENT_FIELDS and data["object"] == "billing.meter_event"
    assert data["identifier"] == "evt-1" and data["timestamp"] == now - 60
    assert data["payload"] == {"stripe_customer_id": CUSTOMER, "value": "25"}
    generated = client.v1.billing.meter_events.create(params=event("2"))
    assert len(generated.identifier) == 36  # generated (a UUID) when absent
    assert abs(generated.timestamp - now) <= 2  # defaults to now
    [first, second] = emulator.meter_events()
    assert first["identifier"] == "evt-1" and first["meter"] == meter
    assert first["payload"]["value"] == "25" and first["source"] == "v1"
    assert second["identifier"] == generated.identifier


def test_v1_duplicate_identifier_within_24_hours_is_refused(
    client: stripe.StripeClient, emulator: EmulatorHandle, meter: str
) -> None:
    client.v1.billing.meter_events.create(params=event("1", identifier="dup"))
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.billing.meter_events.create(params=event("1", identifier="dup"))
    error = error_of(raised)
    assert raised.value.http_status == 400 and error["code"] == "duplicate_meter_event"
    assert error["param"] == "identifier" and "dup" in error["message"]
    # The same Idempotency-Key replays the first answer instead.
    options: Any = {"idempotency_key": "same-write"}
    once = client.v1.billing.meter_events.create(params=event("3", identifier="k"), options=options)
    again = client.v1.billing.meter_events.create(
        params=event("3", identifier="k"), options=options
    )
    assert once.to_dict() == again.to_dict()
    emulator.advance_clock(24 * 3600 + 1)
    client.v1.billing.meter_events.create(params=event("1", identifier="dup"))  # window passed
    stats = emulator.stats()["meter_events"]
    assert (stats["received"], stats["accepted"], stats["duplicates"]) == (4, 3, 1)
    assert stats["by_source"]["v1"]["duplicates"] == 1 and stats["rejected"] == 0


@pytest.mark.parametrize(
    ("params", "code", "param"),
    [
        ({**event(), "event_name": "nope"}, "no_meter", "event_name"),
        (event(customer="cus_unknown"), "meter_event_customer_not_found",
         "payload[stripe_customer_id]"),
        ({"event_name": "api_call", "payload": {"value": "1"}},
         "meter_event_no_customer_defined", "payload[stripe_customer_id]"),
        ({"event_name": "api_call", "payload": {"stripe_customer_id": CUSTOMER}},
         "meter_event_invalid_value", "payload[value]"),
        (event("lots"), "meter_event_invalid_value", "payload[value]"),
        (event("2.5"), "meter_event_invalid_value", "payload[value]"),
        (event(timestamp=int(time.time()) - 36 * 86400), "timestamp_too_far_in_past",
         "timestamp"),
        # a day ahead: the params are made at collection, long before a slow suite runs them
        (event(timestamp=int(time.time()) + 86400), "timestamp_in_future", "timestamp"),
        (event(identifier="x" * 101), None, "identifier"),
        ({"payload": {"stripe_customer_id": CUSTOMER, "value": "1"}}, "parameter_missing",
         "event_name"),
        (event(colour="red"), "parameter_unknown", "colour"),
    ],
)  # fmt: skip
def test_v1_meter_event_refusals(
    client: stripe.StripeClient,
    emulator: EmulatorHandle,
    meter: str,
    params: dict[str, Any],
    code: str | None,
    param: str,
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.billing.meter_events.create(params=params)  # type: ignore[arg-type]
    error = error_of(raised)
    assert raised.value.http_status == 400 and error.get("code") == code
    assert error["param"] == param
    assert emulator.meter_events() == []


def test_v1_inactive_meter_is_archived_meter(
    client: stripe.StripeClient, emulator: EmulatorHandle, meter: str
) -> None:
    client.v1.billing.meters.deactivate(meter)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.billing.meter_events.create(params=event())
    assert error_of(raised)["code"] == "archived_meter"
    stats = emulator.stats()["meter_events"]
    assert stats["rejected_by_reason"] == {"archived_meter": 1}
    assert stats["by_event_name"]["api_call"]["rejected"] == 1


def test_timestamp_window_follows_the_emulator_clock(
    client: stripe.StripeClient, emulator: EmulatorHandle, meter: str
) -> None:
    real_now = int(time.time())
    emulator.set_clock(real_now - 10 * 86400)  # the emulator thinks it is ten days ago
    with pytest.raises(stripe.InvalidRequestError) as future:
        client.v1.billing.meter_events.create(params=event(timestamp=real_now))
    assert error_of(future)["code"] == "timestamp_in_future"
    old = real_now - 40 * 86400  # 30 days before the emulator's now: inside the window
    assert client.v1.billing.meter_events.create(params=event(timestamp=old)).timestamp == old
    assert emulator.clock()["offset_seconds"] == pytest.approx(-10 * 86400, abs=5)
    emulator.reset()
    assert emulator.clock()["offset_seconds"] == 0


def test_custom_payload_keys_and_count_meters(
    client: stripe.StripeClient, emulator: EmulatorHandle
) -> None:
    emulator.seed([{"id": CUSTOMER}])
    emulator.seed_meters(
        [{"display_name": "Tokens", "event_name": "tokens", "default_aggregation":
          {"formula": "sum"}, "customer_mapping": {"event_payload_key": "account",
          "type": "by_id"}, "value_settings": {"event_payload_key": "n"}},
         {"display_name": "Logins", "event_name": "login", "default_aggregation":
          {"formula": "count"}}]
    )  # fmt: skip
    client.v1.billing.meter_events.create(
        params={"event_name": "tokens", "payload": {"account": CUSTOMER, "n": "-3"}}
    )
    with pytest.raises(stripe.InvalidRequestError) as wrong_key:
        client.v1.billing.meter_events.create(
            params={"event_name": "tokens", "payload": {"stripe_customer_id": CUSTOMER, "n": "1"}}
        )
    assert error_of(wrong_key)["message"] == "Customer mapping key account not found in payload."
    # A count meter needs no value.
    client.v1.billing.meter_events.create(
        params={"event_name": "login", "payload": {"stripe_customer_id": CUSTOMER}}
    )
    assert [e["event_name"] for e in emulator.meter_events()] == ["tokens", "login"]


# --- the v2 meter event stream --------------------------------------------------------------


def test_session_and_stream_round_trip(
    client: stripe.StripeClient, emulator: EmulatorHandle, meter: str
) -> None:
    session = client.v2.billing.meter_event_session.create()
    data = session.to_dict()
    assert set(data) == {"id", "object", "authentication_token", "created", "expires_at",
                         "livemode"}  # fmt: skip
    assert data["object"] == "v2.billing.meter_event_session" and data["id"].startswith("mes_")
    created = datetime.datetime.fromisoformat(data["created"].replace("Z", "+00:00"))
    expires = datetime.datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00"))
    assert expires - created == datetime.timedelta(minutes=15)
    now = emulator.clock()["now"]
    stream = sdk(emulator, session.authentication_token)
    answer = stream.v2.billing.meter_event_stream.create(
        params={
            "events": [
                {**event("5"), "identifier": "s-1", "timestamp": iso(now - 120)},
                {**event("7", OTHER_CUSTOMER), "identifier": "s-2"},
                event("9"),  # identifier and timestamp generated
            ]
        }
    )
    assert answer is None  # the SDK's answer to `{}`
    accepted = emulator.meter_events()
    assert [e["payload"]["value"] for e in accepted] == ["5", "7", "9"]
    assert accepted[0]["timestamp"] == int(now - 120) and accepted[0]["source"] == "stream"
    assert accepted[1]["customer"] == OTHER_CUSTOMER and len(accepted[2]["identifier"]) == 36
    stats = emulator.stats()
    assert stats["by_endpoint"]["POST /v2/billing/meter_event_stream"] == 1
    assert stats["meter_events"]["by_source"]["stream"]["accepted"] == 3
    assert stats["meter_event_stream"] == {"requests_accepted": 1,
                                           "events_in_accepted_requests": 3}  # fmt: skip
    assert "POST /v2/billing/meter_event_stream" in ENDPOINTS


def test_session_token_expires_after_15_minutes_of_emulator_clock(
    client: stripe.StripeClient, emulator: EmulatorHandle, meter: str
) -> None:
    stream = stream_client(emulator, client)
    emulator.advance_clock(14 * 60 + 50)
    stream.v2.billing.meter_event_stream.create(params={"events": [event()]})
    emulator.advance_clock(10)
    with pytest.raises(stripe.TemporarySessionExpiredError) as expired:
        stream.v2.billing.meter_event_stream.create(params={"events": [event()]})
    assert expired.value.http_status == 401
    assert expired.value.code == "billing_meter_event_session_expired"
    assert error_of(expired) == {
        "type": "temporary_session_expired",
        "code": "billing_meter_event_session_expired",
        "message": "The temporary session token has expired.",
    }
    for key in ("mes_tok_test_unknown", KEY):  # an unknown token, or a secret key
        with pytest.raises(stripe.TemporarySessionExpiredError, match="not valid"):
            sdk(emulator, key).v2.billing.meter_event_stream.create(params={"events": [event()]})
    stream_client(emulator, client).v2.billing.meter_event_stream.create(
        params={"events": [event()]}
    )  # a new session works
    assert len(emulator.meter_events()) == 2
    with pytest.raises(stripe.AuthenticationError):  # the session needs a secret key
        sdk(emulator, "mes_tok_test_x").v2.billing.meter_event_session.create()


def test_stream_refuses_more_than_100_events_and_bad_shapes(
    client: stripe.StripeClient, emulator: EmulatorHandle, meter: str
) -> None:
    stream = stream_client(emulator, client)
    with pytest.raises(stripe.InvalidRequestError) as too_many:
        stream.v2.billing.meter_event_stream.create(
            params={"events": [event(identifier=f"e{n}") for n in range(101)]}
        )
    assert too_many.value.http_status == 400 and "at most 100" in error_of(too_many)["message"]
    assert set(error_of(too_many)) == {"type", "message"}  # a v2 error body
    with pytest.raises(stripe.InvalidRequestError, match="ISO 8601"):
        stream.v2.billing.meter_event_stream.create(
            params={"events": [event(timestamp="yesterday")]}
        )
    with pytest.raises(stripe.InvalidRequestError, match="events\\[0\\].event_name"):
        stream.v2.billing.meter_event_stream.create(
            params={"events": [{"payload": {"value": "1"}}]}  # type: ignore[typeddict-item]
        )
    assert emulator.meter_events() == []
    stream.v2.billing.meter_event_stream.create(
        params={"events": [event(identifier=f"e{n}") for n in range(100)]}
    )
    assert len(emulator.meter_events()) == 100


def test_stream_records_validation_errors_instead_of_answering_them(
    client: stripe.StripeClient, emulator: EmulatorHandle, meter: str
) -> None:
    now = emulator.clock()["now"]
    stream_client(emulator, client).v2.billing.meter_event_stream.create(
        params={
            "events": [
                {**event(), "event_name": "nope", "identifier": "a"},
                event(customer="cus_unknown", identifier="b"),
                event("many", identifier="c"),
                event(identifier="d", timestamp=iso(now - 36 * 86400)),
                event(identifier="e", timestamp=iso(now + 600)),
                {"event_name": "api_call", "payload": {"value": "1"}, "identifier": "f"},
                event(identifier="ok"),
            ]
        }
    )
    assert [e["identifier"] for e in emulator.meter_events()] == ["ok"]
    errors = {e["identifier"]: e["code"] for e in emulator.meter_event_errors()}
    assert errors == {
        "a": "no_meter",
        "b": "meter_event_customer_not_found",
        "c": "meter_event_invalid_value",
        "d": "timestamp_too_far_in_past",
        "e": "timestamp_in_future",
        "f": "meter_event_no_customer_defined",
    }
    stats = emulator.stats()["meter_events"]
    assert (stats["received"], stats["accepted"], stats["rejected"]) == (7, 1, 6)
    assert stats["by_event_name"]["nope"]["rejected_by_reason"] == {"no_meter": 1}
    assert stats["by_event_name"]["api_call"]["rejected"] == 5
    assert stats["errors_recorded"] == 6


def test_stream_drops_duplicates_within_24_hours(
    client: stripe.StripeClient, emulator: EmulatorHandle, meter: str
) -> None:
    stream = stream_client(emulator, client)
    stream.v2.billing.meter_event_stream.create(params={"events": [event("1", identifier="d")]})
    stream.v2.billing.meter_event_stream.create(
        params={"events": [event("2", identifier="d"), event("3", identifier="d")]}
    )
    with pytest.raises(stripe.InvalidRequestError):  # v1 and the stream share identifiers
        client.v1.billing.meter_events.create(params=event("4", identifier="d"))
    assert [e["payload"]["value"] for e in emulator.meter_events()] == ["1"]
    assert emulator.meter_event_errors() == []  # dropped silently, not an error
    emulator.advance_clock(25 * 3600)
    stream = stream_client(emulator, client)  # the old token expired meanwhile
    stream.v2.billing.meter_event_stream.create(params={"events": [event("5", identifier="d")]})
    assert [e["payload"]["value"] for e in emulator.meter_events()] == ["1", "5"]
    stats = emulator.stats()["meter_events"]
    assert (stats["received"], stats["accepted"], stats["duplicates"]) == (5, 2, 3)
    assert stats["by_event_name"]["api_call"]["duplicates"] == 3


def test_dropped_stream_response_leaves_the_events_accepted(
    client: stripe.StripeClient, emulator: EmulatorHandle, meter: str
) -> None:
    stream = stream_client(emulator, client)
    emulator.config(drop_response_rate=1.0)
    with pytest.raises(stripe.APIConnectionError):
        stream.v2.billing.meter_event_stream.create(
            params={"events": [event("1", identifier="x"), event("2", identifier="y")]}
        )
    with pytest.raises(stripe.APIConnectionError):
        client.v1.billing.meter_events.create(params=event("3", identifier="z"))
    assert [e["identifier"] for e in emulator.meter_events()] == ["x", "y", "z"]
    emulator.config(drop_response_rate=0.0)
    # A retry without the same idempotency key resends the identifiers: dropped as duplicates.
    stream.v2.billing.meter_event_stream.create(
        params={"events": [event("1", identifier="x"), event("2", identifier="y")]}
    )
    assert len(emulator.meter_events()) == 3
    stats = emulator.stats()
    assert stats["faults"]["dropped_response"] == 2
    assert stats["meter_events"]["duplicates"] == 2


# --- rate-limit pools -----------------------------------------------------------------------


def test_meter_events_have_their_own_rate_limit_pool(
    client: stripe.StripeClient, emulator: EmulatorHandle, meter: str
) -> None:
    stream = stream_client(emulator, client)
    emulator.config(rate_limit=2)
    client.v1.balance.retrieve()
    client.v1.balance.retrieve()
    with pytest.raises(stripe.RateLimitError) as limited:
        client.v1.balance.retrieve()
    assert limited.value.headers["Stripe-Rate-Limited-Reason"] == "global-rate"
    for n in range(5):  # the global limit does not count meter events
        client.v1.billing.meter_events.create(params=event(identifier=f"v1-{n}"))
        stream.v2.billing.meter_event_stream.create(params={"events": [event(identifier=f"s{n}")]})
    emulator.config(
        rate_limit=None,
        endpoint_rate_limits={"POST /v1/billing/meter_events": 1,
                              "POST /v2/billing/meter_event_stream": 1},
    )  # fmt: skip
    emulator.reset(stats_only=True)  # fresh limiter windows
    client.v1.billing.meter_events.create(params=event(identifier="own-1"))
    with pytest.raises(stripe.RateLimitError) as own:
        client.v1.billing.meter_events.create(params=event(identifier="own-2"))
    assert own.value.headers["Stripe-Rate-Limited-Reason"] == "endpoint-rate"
    stream.v2.billing.meter_event_stream.create(params={"events": [event(identifier="own-3")]})
    with pytest.raises(stripe.RateLimitError):
        stream.v2.billing.meter_event_stream.create(params={"events": [event(identifier="o4")]})
    emulator.config(endpoint_rate_limits={}, rate_limit=1, own_pool_in_global_limit=True)
    emulator.reset(stats_only=True)
    client.v1.billing.meter_events.create(params=event(identifier="global-1"))
    with pytest.raises(stripe.RateLimitError) as counted:
        client.v1.billing.meter_events.create(params=event(identifier="global-2"))
    assert counted.value.headers["Stripe-Rate-Limited-Reason"] == "global-rate"


# --- subscriptions and subscription items ---------------------------------------------------


@pytest.fixture
def subscription(emulator: EmulatorHandle) -> str:
    emulator.seed([{"id": CUSTOMER}])
    emulator.seed_many(
        products=[{"id": "prod_seats", "name": "Seats"}],
        prices=[
            {"id": "price_seat", "product": "prod_seats", "currency": "usd",
             "unit_amount": 1500, "recurring": {"interval": "month"}},
            {"id": "price_api", "product": "prod_seats", "currency": "usd",
             "unit_amount_decimal": "0.5", "recurring": {"interval": "month",
             "usage_type": "metered", "meter": "mtr_x"}},
        ],
    )  # fmt: skip
    [subscription_id] = emulator.seed_subscriptions(
        [{"customer": CUSTOMER, "created": 1_767_225_600, "items": [
            {"id": "si_seats", "price": "price_seat", "quantity": 3,
             "metadata": {"team": "core"}},
            {"id": "si_api", "price": "price_api"}]}]
    )  # fmt: skip
    return subscription_id


def test_subscription_items_read_and_update(
    client: stripe.StripeClient, emulator: EmulatorHandle, subscription: str
) -> None:
    assert subscription.startswith("sub_")
    item = client.v1.subscription_items.retrieve("si_seats")
    data = item.to_dict()
    assert set(data) == ITEM_FIELDS and data["subscription"] == subscription
    assert data["quantity"] == 3 and data["metadata"] == {"team": "core"}
    assert data["price"]["id"] == "price_seat" and data["plan"]["amount"] == 1500
    assert data["current_period_start"] == 1_767_225_600
    assert data["current_period_end"] == 1_769_904_000  # a calendar month later
    listed = client.v1.subscription_items.list(params={"subscription": subscription})
    assert [i.id for i in listed.data] == ["si_api", "si_seats"]  # newest first
    assert "quantity" not in listed.data[0].to_dict()  # a metered item has no quantity
    updated = client.v1.subscription_items.update(
        "si_seats",
        params={"quantity": 5, "metadata": {"team": "", "seats": "5"},
                "proration_behavior": "none", "expand": ["price.product"]},
    )  # fmt: skip
    assert updated.quantity == 5 and updated.metadata.to_dict() == {"seats": "5"}
    assert updated.price.product.id == "prod_seats"
    retrieved = client.v1.subscriptions.retrieve(subscription)
    assert retrieved.customer == CUSTOMER and retrieved.status == "active"
    quantities = {i.id: i.to_dict().get("quantity") for i in retrieved["items"].data}
    assert quantities == {"si_seats": 5, "si_api": None}
    stats = emulator.stats()
    assert stats["subscription_item_updates"]["quantity_changes"] == 1
    assert stats["subscription_item_updates"]["by_proration_behavior"] == {"none": 1}
    assert (stats["subscriptions"], stats["subscription_items"]) == (1, 2)


@pytest.mark.parametrize(
    ("item", "params", "param"),
    [
        ("si_seats", {"quantity": -1}, "quantity"),
        ("si_seats", {"quantity": "many"}, "quantity"),
        ("si_seats", {"proration_behavior": "later"}, "proration_behavior"),
        ("si_seats", {"colour": "red"}, "colour"),
        ("si_seats", {"price": "price_api"}, "price"),  # known to Stripe, not emulated
        ("si_api", {"quantity": 2}, "quantity"),  # metered items have no quantity
    ],
)
def test_subscription_item_update_validation(
    client: stripe.StripeClient, subscription: str, item: str, params: Any, param: str
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.subscription_items.update(item, params=params)
    assert raised.value.http_status == 400 and error_of(raised)["param"] == param


def test_subscription_item_list_needs_a_subscription(
    client: stripe.StripeClient, subscription: str
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.subscription_items.list(params={})  # type: ignore[typeddict-item]
    assert error_of(missing)["code"] == "parameter_missing"
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.subscription_items.list(params={"subscription": "sub_nothing"})
    assert error_of(unknown)["code"] == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as not_found:
        client.v1.subscription_items.retrieve("si_nothing")
    assert not_found.value.http_status == 404


def test_200_quantity_updates_per_subscription_per_hour(
    client: stripe.StripeClient, emulator: EmulatorHandle, subscription: str
) -> None:
    for n in range(200):
        client.v1.subscription_items.update("si_seats", params={"quantity": 10 + n % 2})
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.subscription_items.update("si_seats", params={"quantity": 50})
    error = error_of(raised)
    assert raised.value.http_status == 400 and error["param"] == "quantity"
    assert "200 times per hour" in error["message"] and subscription in error["message"]
    # Updates that do not change a quantity are not counted.
    client.v1.subscription_items.update("si_seats", params={"metadata": {"k": "v"}})
    client.v1.subscription_items.update("si_seats", params={"quantity": 11})  # unchanged
    emulator.advance_clock(3600)
    assert client.v1.subscription_items.update("si_seats", params={"quantity": 50}).quantity == 50
    stats = emulator.stats()["subscription_item_updates"]
    assert stats["quantity_changes"] == 201 and stats["refused_quantity_limit"] == 1
    assert stats["updates"] == 203


def test_subscription_seed_validation(emulator: EmulatorHandle, subscription: str) -> None:
    with pytest.raises(Exception, match="No such customer"):
        emulator.seed_subscriptions([{"customer": "cus_none", "items": [{"price": "price_seat"}]}])
    with pytest.raises(Exception, match="No such price"):
        emulator.seed_subscriptions([{"customer": CUSTOMER, "items": [{"price": "price_x"}]}])
    with pytest.raises(Exception, match="needs 1 to 20 items"):
        emulator.seed_subscriptions([{"customer": CUSTOMER, "items": []}])
    [default_quantity] = emulator.seed_subscriptions(
        [{"customer": CUSTOMER, "items": [{"price": "price_seat"}]}]
    )
    items = [i for i in emulator.subscription_items() if i["subscription"] == default_quantity]
    assert [i["quantity"] for i in items] == [1]


# --- the control API ------------------------------------------------------------------------


def test_clock_control(emulator: EmulatorHandle) -> None:
    before = emulator.clock()
    assert before["offset_seconds"] == 0 and abs(before["now"] - time.time()) < 5
    moved = emulator.advance_clock(3600)
    assert moved["offset_seconds"] == 3600 and moved["now"] - time.time() == pytest.approx(
        3600, abs=5
    )
    assert emulator.set_clock(1_700_000_000)["now"] == pytest.approx(1_700_000_000, abs=5)
    assert emulator.reset_clock()["offset_seconds"] == 0
    with pytest.raises(Exception, match="takes one of"):
        emulator._call("POST", "/_emulator/clock", {"advance_seconds": 1, "now": 2})


def test_seeded_meters_and_dumps(emulator: EmulatorHandle, client: stripe.StripeClient) -> None:
    ids = emulator.seed_meters(
        [{"id": "mtr_chosen", "display_name": "Old", "event_name": "old",
          "default_aggregation": {"formula": "count"}, "status": "inactive"},
         {"display_name": "New", "event_name": "old"}]  # a seed defaults the formula to sum
    )  # fmt: skip
    assert ids[0] == "mtr_chosen" and ids[1].startswith("mtr_")
    assert [m["status"] for m in emulator.meters()] == ["inactive", "active"]
    assert emulator.meters()[1]["default_aggregation"] == {"formula": "sum"}
    with pytest.raises(Exception, match="already uses the event_name"):
        emulator.seed_meters(
            [{"display_name": "X", "event_name": "old", "default_aggregation": {"formula": "sum"}}]
        )
    assert emulator.stats()["requests_total"] == 0
    assert client.v1.billing.meters.retrieve("mtr_chosen").status == "inactive"


def test_the_stream_ignores_idempotency_keys_as_stripe_does(emulator: Any) -> None:
    """The SDK puts an Idempotency-Key on every v2 POST; the stream de-duplicates by event
    identifier instead, so a retried request is processed again (and its events dropped as
    duplicates), never replayed from a saved answer."""
    import json
    import urllib.request

    meter_event_url = emulator.url
    session = urllib.request.Request(
        meter_event_url + "/v2/billing/meter_event_session",
        data=b"{}",
        method="POST",
        headers={"Authorization": "Bearer sk_test_idem", "Content-Type": "application/json"},
    )
    token = json.loads(urllib.request.urlopen(session).read())["authentication_token"]
    emulator.seed_meters([{"display_name": "Calls", "event_name": "calls_idem"}])
    [customer] = emulator.seed([{"email": "idem@example.com"}])
    body = json.dumps(
        {
            "events": [
                {
                    "event_name": "calls_idem",
                    "identifier": "idem-1",
                    "payload": {"stripe_customer_id": customer, "value": "1"},
                }
            ]
        }
    )
    for _ in range(2):
        request = urllib.request.Request(
            meter_event_url + "/v2/billing/meter_event_stream",
            data=body.encode(),
            method="POST",
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Idempotency-Key": "same-key",
            },
        )
        response = urllib.request.urlopen(request)
        assert response.headers.get("Idempotent-Replayed") is None
    stats = emulator.stats()["meter_events"]
    assert (stats["received"], stats["accepted"], stats["duplicates"]) >= (2, 1, 1)
