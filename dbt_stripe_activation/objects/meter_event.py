"""The Stripe meter event: one row is one usage event, sent once (`behavior: append`).

Fields are read from `stripe.params.billing.MeterEventCreateParams`: event_name, timestamp
and the open `payload.<key>` map (the meter's customer key, `stripe_customer_id` by default,
and its value key, `value` by default). The identifier is the key: Stripe de-duplicates it
over a rolling 24 hours at least, and the sync state is the ledger of what was sent, so
events are never looked up in Stripe.

Stripe's rules, checked before sending (docs.stripe.com/api/billing/meter-event/create):
timestamp within the past 35 calendar days and at most 5 minutes in the future; identifier
at most 100 characters; the payload's values are strings and the value a whole number.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Mapping
from typing import Any

from stripe.params.billing import MeterEventCreateParams

from .catalogue import catalogue_from_sdk
from .contract import (
    Behavior,
    CheckRequest,
    EventDelivery,
    KeyLookup,
    KeySpec,
    ObjectSpec,
    RatePool,
    RemovalPolicy,
    Requirement,
    RowIssue,
    ValueKind,
)

PAST_WINDOW_SECONDS = 35 * 24 * 3600
FUTURE_WINDOW_SECONDS = 5 * 60
IDENTIFIER_MAX_LENGTH = 100
# Stripe de-duplicates identifiers "within a rolling period of at least 24 hours": an event
# whose acknowledgement was lost is re-sent under its identifier only well inside it.
DEDUPLICATION_WINDOW_SECONDS = 24 * 3600
RESEND_WINDOW_SECONDS = DEDUPLICATION_WINDOW_SECONDS - 3600
STREAM_BATCH = 100  # events per meter_event_stream request (the API's maximum)

OVERRIDES: Mapping[str, Mapping[str, Any]] = {
    "timestamp": {"kind": ValueKind.TIMESTAMP},
    "identifier": {"max_length": IDENTIFIER_MAX_LENGTH},
}

# Stripe's usage guide: a meter event's value is a whole number (negative ones correct usage
# on a sum meter).
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")


def _row_rules(flat: Mapping[str, Any], now: float | None = None) -> list[RowIssue]:
    """Stripe's windows, measured at send time, and a numeric value."""
    issues: list[RowIssue] = []
    now = time.time() if now is None else now
    stamp = flat.get("timestamp")
    if isinstance(stamp, int):
        if stamp < now - PAST_WINDOW_SECONDS:
            issues.append(RowIssue(
                "timestamp", f"{_shown(stamp)} is more than 35 days ago; Stripe accepts meter "
                "events from the past 35 calendar days only"))
        elif stamp > now + FUTURE_WINDOW_SECONDS:
            issues.append(RowIssue(
                "timestamp", f"{_shown(stamp)} is more than 5 minutes ahead; it is sent once it "
                "is due", retryable=True))
    value = flat.get("payload.value")
    if value is not None and not _WHOLE_NUMBER.fullmatch(str(value)):
        issues.append(RowIssue("payload.value",
                               f"is {str(value)!r}; a meter event's value is a whole number"))
    return issues


def _shown(stamp: int) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.timezone.utc).isoformat()


def stream_event(params: Mapping[str, Any]) -> dict[str, Any]:
    """A v1 create's params as one event of the v2 stream (ISO 8601 timestamps)."""
    event = dict(params)
    stamp = event.get("timestamp")
    if isinstance(stamp, int):
        text = _ISO_TEXTS.get(stamp)
        if text is None:
            if len(_ISO_TEXTS) >= _ISO_TEXTS_MAX:
                _ISO_TEXTS.clear()
            moment = dt.datetime.fromtimestamp(stamp, dt.timezone.utc)
            text = _ISO_TEXTS[stamp] = moment.isoformat().replace("+00:00", "Z")
        event["timestamp"] = text
    return event


# Unix seconds -> ISO text: usage rows share timestamps (a day's, an hour's), and the
# conversion was a tenth of an event's cost on the sending threads.
_ISO_TEXTS: dict[int, str] = {}
_ISO_TEXTS_MAX = 65536


METER_EVENT = ObjectSpec(
    name="meter_event",
    service="billing.meter_events",
    fields=catalogue_from_sdk(
        MeterEventCreateParams, MeterEventCreateParams,
        exclude={"expand": "a request option"}, overrides=OVERRIDES,
    ),
    keys={
        "identifier": KeySpec(
            "identifier",
            KeyLookup.LEDGER,
            max_length=IDENTIFIER_MAX_LENGTH,
            description="the event's unique identifier (Stripe de-duplicates it for 24 h)",
        ),
    },
    behaviors=(Behavior.APPEND,),
    removal=RemovalPolicy(never="a meter event is never removed: usage already sent is "
                          "billed; correct it with a new event or a meter event adjustment"),
    open_map="payload",
    required_on_create=("event_name",),
    check=CheckRequest(service="billing.meters", permission="rak_billing_meter_read"),
    validate_row=_row_rules,
    requires={
        "event_name": Requirement(
            service="billing.meters", params={"status": "active"}, attribute="event_name",
            what="an active meter",
        ),
    },
    # docs.stripe.com/api/billing/meter-event: "a separate rate limit" from the global API
    # limit, 1,000 calls a second in live mode; the v2 stream (docs changelog 2024-09-30)
    # 10,000 requests a second in live mode. Sandbox figures are not published: the
    # defaults assume the live figures' tenth; --max-event-rps overrides.
    rate_pool=RatePool(
        endpoints={
            "POST /v1/billing/meter_events": (1000.0, 100.0),
            "POST /v2/billing/meter_event_stream": (10000.0, 1000.0),
        },
        source="docs.stripe.com/api/billing/meter-event; the SDK's meter_event_stream docs",
    ),
    delivery=EventDelivery(resend_window_seconds=RESEND_WINDOW_SECONDS, batch=STREAM_BATCH,
                           as_stream_event=stream_event),
)
