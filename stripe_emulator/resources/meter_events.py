"""Meter events: `POST /v1/billing/meter_events` (docs.stripe.com/api/billing/meter-event) and
the ingestion both it and the v2 meter event stream (meter_event_stream.py) go through.

An event names its meter by `event_name` (an active meter), its customer by the payload key the
meter's `customer_mapping.event_payload_key` names (default `stripe_customer_id`) and its value
by `value_settings.event_payload_key` (default `value`; whole numbers, as Stripe documents;
not needed by a `count` meter). `timestamp` must be within the past 35 calendar days and at
most 5 minutes in the future; `identifier` (<= 100 characters, generated when absent) is
unique over a rolling 24 hours. Every window is measured on the emulator clock.

The v1 endpoint answers each problem at once (400); the stream accepts the request and records
the problem as an event error (control API), as Stripe reports them later in
`v1.billing.meter.error_report_triggered` events. The codes are the ones that event carries
(`stripe.events.V1BillingMeterErrorReportTriggeredEvent`): `no_meter`, `archived_meter`,
`meter_event_no_customer_defined`, `meter_event_customer_not_found`,
`meter_event_invalid_value`, `timestamp_too_far_in_past`, `timestamp_in_future`.
"""

from __future__ import annotations

import dataclasses
import random
import re
import threading
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ApiError, invalid, missing_parameter
from .base import ObjectLocks, Resource, ResourceContext
from .customers import CustomersResource
from .meters import MetersResource
from .params import check_known, expand_names, integer_param, string_param

DAY = 86_400
PAST_WINDOW = 35 * DAY  # "within the past 35 calendar days"
FUTURE_WINDOW = 5 * 60  # "at most 5 minutes in the future"
IDENTIFIER_WINDOW = DAY  # "uniqueness within a rolling 24 hour period"
IDENTIFIER_MAX = 100
EVENT_NAME_MAX = 100
WHOLE_NUMBER = re.compile(r"^-?\d+$")
CREATE = {"event_name", "expand", "identifier", "payload", "timestamp"}
DUPLICATE_CODE = "duplicate_meter_event"  # ours: Stripe documents no code for this case


@dataclass(frozen=True)
class MeterEventInput:
    event_name: str
    payload: dict[str, str]
    identifier: str | None
    timestamp: int | None  # unix seconds; None: now (emulator clock)


class Rejected(Exception):
    """An event that failed validation: `code` as Stripe's error reports name it."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


class Duplicate(Exception):
    """An event whose identifier was accepted less than 24 h ago (emulator clock)."""

    def __init__(self, identifier: str) -> None:
        super().__init__(identifier)
        self.identifier = identifier


OUTCOMES = ("received", "accepted", "duplicates", "rejected")


# An accepted event's fields, in the order the store keeps them (the payload as its items).
_ACCEPTED = (
    "identifier",
    "event_name",
    "payload",
    "timestamp",
    "created",
    "meter",
    "customer",
    "source",
)


def _accepted_dict(event: tuple[Any, ...]) -> dict[str, Any]:
    accepted = dict(zip(_ACCEPTED, event, strict=True))
    accepted["payload"] = dict(accepted["payload"])
    return accepted


class MeterEventStore:
    """Accepted events in arrival order, the identifier window, event errors and counters."""

    def __init__(self, *, seed: int | None) -> None:
        self.lock = threading.RLock()
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        with self.lock:
            self._rng = random.Random(None if seed is None else f"{seed}/meter_event")
            # Accepted events as tuples of plain values (see _ACCEPTED): a million of them as
            # dicts made the process's full garbage collections pause it for a large part
            # of a second, and requests queued meanwhile met the rate limit together.
            self.events: list[tuple[Any, ...]] = []
            self.seen: dict[str, float] = {}  # identifier -> when accepted (emulator clock)
            self.errors: list[dict[str, Any]] = []
            self._object_locks = ObjectLocks()
            self.reset_counters()

    def reset_counters(self) -> None:
        with self.lock:
            self.by_event_name: dict[str, Counter[str]] = {}
            self.reasons_by_event_name: dict[str, Counter[str]] = {}
            self.by_source: dict[str, Counter[str]] = {}

    @property
    def live_count(self) -> int:
        return len(self.events)

    def object_lock(self, object_id: str) -> threading.Lock:
        return self._object_locks.get(object_id)

    def dump(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        with self.lock:
            events = list(self.events)
        return [_accepted_dict(event) for event in events]

    def new_identifier(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def count(self, source: str, event_name: str, outcome: str, reason: str | None = None) -> None:
        with self.lock:
            for counter in (
                self.by_event_name.setdefault(event_name, Counter()),
                self.by_source.setdefault(source, Counter()),
            ):
                counter["received"] += 1
                counter[outcome] += 1
            if reason is not None:
                self.reasons_by_event_name.setdefault(event_name, Counter())[reason] += 1

    def stats(self) -> dict[str, Any]:
        with self.lock:
            totals: Counter[str] = Counter()
            reasons: Counter[str] = Counter()
            by_name = {}
            for name, counter in self.by_event_name.items():
                totals.update(counter)
                name_reasons = self.reasons_by_event_name.get(name, Counter())
                reasons.update(name_reasons)
                by_name[name] = {
                    **{o: counter[o] for o in OUTCOMES},
                    "rejected_by_reason": dict(name_reasons),
                }
            return {
                **{o: totals[o] for o in OUTCOMES},
                "rejected_by_reason": dict(reasons),
                "by_event_name": by_name,
                "by_source": {
                    source: {o: counter[o] for o in OUTCOMES}
                    for source, counter in self.by_source.items()
                },
                "errors_recorded": len(self.errors),
            }


def payload_param(value: Any, param: str = "payload") -> dict[str, str]:
    if not isinstance(value, dict):
        raise invalid(f"Invalid object: {param} must be a hash", param)
    payload = {}
    for key, item in value.items():
        if not isinstance(item, str):
            raise invalid(f"Invalid string: {param}[{key}] must be a string", f"{param}[{key}]")
        payload[str(key)] = item
    return payload


class MeterEventsResource(Resource):
    name = "billing/meter_events"
    object_name = "billing_meter_event"  # our naming of the permission
    routes = (("POST", "", "create"),)
    own_rate_limit_pool = frozenset({"create"})  # Stripe: its own limit, apart from the global
    control_reads = {"meter_events": "accepted_events", "meter_event_errors": "event_errors"}

    def __init__(self, context: ResourceContext) -> None:
        super().__init__(context)
        self.store = MeterEventStore(seed=context.seed)
        meters = context.resources["billing/meters"]
        customers = context.resources["customers"]
        assert isinstance(meters, MetersResource) and isinstance(customers, CustomersResource)
        self.meters = meters
        self.customers = customers

    # -- the ingestion both APIs share

    def ingest(
        self, event: MeterEventInput, source: str, *, record_errors: bool = False
    ) -> tuple[Any, ...]:
        """Validate and accept one event (raising `Rejected` or `Duplicate`), counting it;
        `record_errors`: keep a rejection as an event error (the asynchronous stream)."""
        if event.identifier is None:
            with self.store.lock:
                event = dataclasses.replace(event, identifier=self.store.new_identifier())
        try:
            accepted = self._accept(event, source)
        except Rejected as exc:
            self.store.count(source, event.event_name, "rejected", exc.code)
            if record_errors:
                self.record_error(event, exc, source)
            raise
        except Duplicate:
            self.store.count(source, event.event_name, "duplicates")
            raise
        self.store.count(source, event.event_name, "accepted")
        return accepted

    def _accept(self, event: MeterEventInput, source: str) -> tuple[Any, ...]:
        now = self.context.clock.now()
        identifier = event.identifier or ""
        with self.store.lock:
            seen_at = self.store.seen.get(identifier)
            if seen_at is not None and now - seen_at < IDENTIFIER_WINDOW:
                raise Duplicate(identifier)
            meter, inactive = self.meters.store.for_event(event.event_name)
            if meter is None:
                if inactive:
                    raise Rejected(
                        "archived_meter",
                        f"The meter for event_name `{event.event_name}` is inactive.",
                        "event_name",
                    )
                raise Rejected(
                    "no_meter",
                    f"No active meter was found for event_name `{event.event_name}`.",
                    "event_name",
                )
            customer_key = meter["customer_mapping"]["event_payload_key"]
            customer_id = event.payload.get(customer_key)
            if not customer_id:
                raise Rejected(
                    "meter_event_no_customer_defined",
                    f"Customer mapping key {customer_key} not found in payload.",  # Stripe's
                    f"payload[{customer_key}]",
                )
            if self.customers.store.get(customer_id) is None:
                raise Rejected(
                    "meter_event_customer_not_found",
                    f"No such customer: '{customer_id}'",
                    f"payload[{customer_key}]",
                )
            if meter["default_aggregation"]["formula"] != "count":
                value_key = meter["value_settings"]["event_payload_key"]
                value = event.payload.get(value_key)
                if value is None:
                    raise Rejected(
                        "meter_event_invalid_value",
                        f"Value key {value_key} not found in payload.",
                        f"payload[{value_key}]",
                    )
                if not WHOLE_NUMBER.match(value):
                    raise Rejected(
                        "meter_event_invalid_value",
                        f"Invalid value `{value}` for payload key {value_key}: meter event "
                        "values must be whole numbers.",
                        f"payload[{value_key}]",
                    )
            timestamp = int(now) if event.timestamp is None else event.timestamp
            if timestamp < now - PAST_WINDOW:
                raise Rejected(
                    "timestamp_too_far_in_past",
                    "The timestamp must be within the past 35 calendar days.",
                    "timestamp",
                )
            if timestamp > now + FUTURE_WINDOW:
                raise Rejected(
                    "timestamp_in_future",
                    "The timestamp cannot be more than 5 minutes in the future.",
                    "timestamp",
                )
            accepted = (  # in _ACCEPTED's order
                identifier,
                event.event_name,
                tuple(event.payload.items()),
                timestamp,
                int(now),
                meter["id"],
                customer_id,
                source,
            )
            self.store.seen[identifier] = now
            self.store.events.append(accepted)
            return accepted

    def record_error(self, event: MeterEventInput, error: Rejected, source: str) -> None:
        """An event error of the asynchronous stream, as the control API shows it."""
        meter, _ = self.meters.store.for_event(event.event_name)
        with self.store.lock:
            self.store.errors.append(
                {
                    "code": error.code,
                    "message": error.message,
                    "identifier": event.identifier,
                    "event_name": event.event_name,
                    "payload": dict(event.payload),
                    "timestamp": event.timestamp,
                    "meter": meter["id"] if meter else None,
                    "received_at": int(self.context.clock.now()),
                    "source": source,
                }
            )

    # -- endpoints

    def create(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        check_known(params, CREATE)
        expand_names(params, ())
        for required in ("event_name", "payload"):
            if required not in params:
                raise missing_parameter(required)
        event_name = string_param(params["event_name"], "event_name", EVENT_NAME_MAX, False)
        payload = payload_param(params["payload"])
        identifier = None
        if "identifier" in params:
            identifier = string_param(params["identifier"], "identifier", IDENTIFIER_MAX, False)
        timestamp = None
        if "timestamp" in params:
            timestamp = integer_param(params["timestamp"], "timestamp")
        event = MeterEventInput(event_name or "", payload, identifier, timestamp)
        try:
            accepted = _accepted_dict(self.ingest(event, "v1"))
        except Rejected as exc:
            raise ApiError(400, exc.message, code=exc.code, param=exc.param) from None
        except Duplicate as exc:
            raise ApiError(
                400,
                f"An event with identifier `{exc.identifier}` was already received in the "
                "last 24 hours.",
                code=DUPLICATE_CODE,
                param="identifier",
            ) from None
        return {
            "object": "billing.meter_event",
            "created": accepted["created"],
            "event_name": accepted["event_name"],
            "identifier": accepted["identifier"],
            "livemode": False,
            "payload": accepted["payload"],
            "timestamp": accepted["timestamp"],
        }

    # -- control API

    def accepted_events(self) -> list[dict[str, Any]]:
        return self.store.dump()

    def event_errors(self) -> list[dict[str, Any]]:
        with self.store.lock:
            return list(self.store.errors)

    def extra_stats(self) -> dict[str, Any]:
        return {"meter_events": self.store.stats()}

    def reset_stats(self) -> None:
        self.store.reset_counters()

    def seed(self, items: list[Mapping[str, Any]]) -> list[str]:
        raise ValueError("meter events cannot be seeded: send them through the API")
