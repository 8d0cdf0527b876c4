"""The v2 meter event stream: up to 100 events a request under a session token, no
idempotency key (Stripe de-duplicates events by identifier)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import stripe

from .errors import code_of, v2_error
from .retries import Retrier
from .settings import STRIPE_API_VERSION, StripeSettings
from .transport import MeteredHTTPClient

_USER_AGENT = f"Stripe/v2 PythonBindings/{stripe.VERSION} dbt-stripe-activation"
# A session lasts 15 minutes: it is counted as 14 and renewed with a minute of those left.
_SESSION_SECONDS = 14 * 60
_RENEW_BEFORE_SECONDS = 60


class MeterEventStream:
    """One account's stream and its session; thread-safe."""

    def __init__(self, client: stripe.StripeClient, http: MeteredHTTPClient,
                 settings: StripeSettings, retrier: Retrier,
                 to_error: Callable[[stripe.StripeError, str], Exception]) -> None:
        self._client = client
        self._http = http
        self._settings = settings
        self._retrier = retrier
        self._to_error = to_error  # the gateway's error for a failed request
        self._session: tuple[str, float] | None = None  # (token, expires at: monotonic)
        self._session_lock = threading.Lock()

    def send(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Post up to 100 events under a session token.

        A batch whose answer was lost is sent again as it is. A session is opened on first
        use, renewed a minute before it expires, and once more if Stripe says it expired.
        Validation is asynchronous: the answer says nothing of single events.

        Not made through the SDK's service: it would form-encode every event before sending
        it as JSON (about 60 us an event, more than the rest of the sync's work for it). The
        body is encoded once here and goes through the same HTTP client (pacing, counting,
        the SDK's network retries); an error answer becomes the SDK's own error class, as
        the SDK would raise it.
        """
        body = json.dumps({"events": list(events)}, separators=(",", ":")).encode()
        url = self._settings.resolved_meter_events_base + "/v2/billing/meter_event_stream"
        for attempt in (1, 2):
            token = self._token(renew=attempt == 2)
            headers = {
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Stripe-Version": STRIPE_API_VERSION,
                "User-Agent": _USER_AGENT,
            }
            try:
                self._retrier.rate_limited(partial(self._post, url, headers, body))
                return
            except stripe.StripeError as exc:
                expired = exc.http_status == 401 and "session" in (code_of(exc) or "") + str(
                    getattr(exc.error, "code", "") or "")
                if expired and attempt == 1:
                    continue
                raise self._to_error(exc, "send meter events") from None

    def _post(self, url: str, headers: Mapping[str, str], body: bytes) -> None:
        content, status, answer_headers = self._http.request_with_retries(
            "post", url, headers, body, self._settings.max_network_retries)
        if status >= 400:
            raise v2_error(content, status, answer_headers)

    def _token(self, *, renew: bool) -> str:
        with self._session_lock:
            now = time.monotonic()
            if (renew or self._session is None
                    or self._session[1] - now < _RENEW_BEFORE_SECONDS):
                try:
                    session = self._retrier.rate_limited(
                        lambda: self._client.v2.billing.meter_event_session.create())
                except stripe.StripeError as exc:
                    raise self._to_error(exc, "open a meter event session") from None
                self._session = (session.authentication_token, now + _SESSION_SECONDS)
            return self._session[0]

