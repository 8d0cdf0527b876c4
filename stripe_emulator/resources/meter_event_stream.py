"""The v2 high-throughput meter event API (docs.stripe.com/api/v2/billing-meter-stream).

`POST /v2/billing/meter_event_session` (secret key) returns a `v2.billing.meter_event_session`
whose `authentication_token` is valid for 15 minutes of the emulator clock.
`POST /v2/billing/meter_event_stream` (JSON `{"events": [...]}`, at most 100 events, each
`event_name`, `payload`, optional `identifier` and ISO-8601 `timestamp`), authenticated with
`Authorization: Bearer <authentication_token>`, answers `{}`: the request's shape is checked
at once, each event's content is not. Events are validated and ingested as the request
commits (meter_events.py); problems become event errors (control API
`GET /_emulator/meter_event_errors`), duplicate identifiers within 24 h are dropped and counted.
stripe-python sends the stream to its `meter_events` base address and the session to `api`.
"""

from __future__ import annotations

import contextlib
import datetime
import threading
from collections.abc import Mapping
from typing import Any

from ..errors import ApiError, invalid, missing_parameter, unknown_parameter
from .base import ObjectStore, Resource, ResourceContext
from .meter_events import (
    EVENT_NAME_MAX,
    IDENTIFIER_MAX,
    Duplicate,
    MeterEventInput,
    MeterEventsResource,
    Rejected,
    payload_param,
)
from .params import check_known, random_id, string_param

SESSION_SECONDS = 15 * 60  # "Authentication tokens are only valid for 15 minutes"
MAX_EVENTS = 100  # "Supports up to 100 events per request"
EVENT_FIELDS = ("event_name", "identifier", "payload", "timestamp")
SESSION_EXPIRED = "billing_meter_event_session_expired"  # Stripe's code and error type
SESSION_ERROR_TYPE = "temporary_session_expired"


def iso8601(unix: float) -> str:
    """`2024-06-01T12:15:00.000Z`, as Stripe's v2 API writes times."""
    moment = datetime.datetime.fromtimestamp(unix, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso8601(value: Any, param: str) -> int:
    """An ISO-8601 date-time with a zone (`Z` or an offset) -> unix seconds."""
    if isinstance(value, str):
        text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return int(moment.timestamp() // 1)
    raise invalid(
        f"Invalid timestamp: {value!r} must be an ISO 8601 date-time with a time zone", param
    )


def session_error(message: str) -> ApiError:
    return ApiError(401, message, type=SESSION_ERROR_TYPE, code=SESSION_EXPIRED)


class SessionStore(ObjectStore):
    def __init__(self, *, seed: int | None) -> None:
        super().__init__(
            kind="meter_event_session",
            prefix="mes_",
            url="/v2/billing/meter_event_session",
            seed=seed,
            id_length=24,
            lock=threading.RLock(),
        )
        self.by_token: dict[str, str] = {}  # authentication_token -> session id
        self.expires: dict[str, float] = {}  # authentication_token -> expiry (emulator clock)

    def reset(self, seed: int | None = None) -> None:
        with self.lock:
            super().reset(seed)
            self.by_token.clear()
            self.expires.clear()

    def new_token(self) -> str:
        while True:
            token = random_id(self._rng, "mes_tok_test_", 40)
            if token not in self.by_token:
                return token


class MeterEventSessionsResource(Resource):
    name = "billing/meter_event_session"
    api_version = "v2"
    object_name = "billing_meter_event"  # our naming of the permission
    routes = (("POST", "", "create"),)

    def __init__(self, context: ResourceContext) -> None:
        super().__init__(context)
        self.store = SessionStore(seed=context.seed)

    def create(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        check_known(params, ())
        now = self.context.clock.now()
        with self.store.lock:
            session_id = self.store.new_id()
            token = self.store.new_token()
            obj = {
                "id": session_id,
                "object": "v2.billing.meter_event_session",
                "authentication_token": token,
                "created": iso8601(now),
                "expires_at": iso8601(now + SESSION_SECONDS),
                "livemode": False,
            }
            self.store.insert(obj)
            self.store.by_token[token] = session_id
            self.store.expires[token] = now + SESSION_SECONDS
        return obj

    def check(self, token: str) -> None:
        """401 `billing_meter_event_session_expired` for an expired or unknown token."""
        with self.store.lock:
            expires = self.store.expires.get(token)
        if expires is None:
            # Our wording; the code is the one Stripe documents for an expired token, so a
            # client's "create a new session" path handles this case too.
            raise session_error("The temporary session token is not valid.")
        if self.context.clock.now() >= expires:
            raise session_error("The temporary session token has expired.")  # Stripe's text


class MeterEventStreamResource(Resource):
    name = "billing/meter_event_stream"
    api_version = "v2"
    object_name = "billing_meter_event"
    routes = (("POST", "", "create"),)
    own_rate_limit_pool = frozenset({"create"})  # Stripe: its own limit (10,000/s live)
    token_auth = frozenset({"create"})

    def __init__(self, context: ResourceContext) -> None:
        super().__init__(context)
        sessions = context.resources["billing/meter_event_session"]
        meter_events = context.resources["billing/meter_events"]
        assert isinstance(sessions, MeterEventSessionsResource)
        assert isinstance(meter_events, MeterEventsResource)
        self.sessions = sessions
        self.meter_events = meter_events
        self._lock = threading.Lock()
        self.reset_stats()

    def check_token(self, token: str) -> None:
        self.sessions.check(token)

    def create(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        check_known(params, ("events",))
        if "events" not in params:
            raise missing_parameter("events")
        raw = params["events"]
        if not isinstance(raw, list):
            raise invalid("Invalid array: events must be an array", "events")
        if not raw:
            raise invalid("Invalid array: events must contain at least 1 event", "events")
        if len(raw) > MAX_EVENTS:
            raise invalid(
                f"Too many events: a request takes at most {MAX_EVENTS} events, got {len(raw)}.",
                "events",
            )
        events = [self._event(item, f"events[{index}]") for index, item in enumerate(raw)]
        # Accepted: from here on nothing is answered to the caller, as Stripe validates the
        # content asynchronously. Duplicates are dropped silently, problems become errors.
        for event in events:
            with contextlib.suppress(Rejected, Duplicate):
                self.meter_events.ingest(event, "stream", record_errors=True)
        with self._lock:
            self.requests_accepted += 1
            self.events_in_accepted_requests += len(events)
        return {}

    def _event(self, item: Any, param: str) -> MeterEventInput:
        if not isinstance(item, Mapping):
            raise invalid(f"Invalid object: {param} must be an object", param)
        for key in item:
            if key not in EVENT_FIELDS:
                raise unknown_parameter(f"{param}.{key}")
        for required in ("event_name", "payload"):
            if required not in item:
                raise missing_parameter(f"{param}.{required}")
        event_name = string_param(item["event_name"], f"{param}.event_name", EVENT_NAME_MAX, False)
        payload = payload_param(item["payload"], f"{param}.payload")
        identifier = None
        if item.get("identifier") is not None:
            identifier = string_param(
                item["identifier"], f"{param}.identifier", IDENTIFIER_MAX, False
            )
        timestamp = None
        if item.get("timestamp") is not None:
            timestamp = parse_iso8601(item["timestamp"], f"{param}.timestamp")
        return MeterEventInput(event_name or "", payload, identifier, timestamp)

    # -- control API

    def extra_stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "meter_event_stream": {
                    "requests_accepted": self.requests_accepted,
                    "events_in_accepted_requests": self.events_in_accepted_requests,
                }
            }

    def reset_stats(self) -> None:
        with self._lock:
            self.requests_accepted = 0
            self.events_in_accepted_requests = 0
