"""What can go wrong with a request, as callers catch it: one request's error (a later run may
succeed, or not), and the key refused (no request can). Stripe's codes and messages are read
here, and anything shaped like a key is masked before it is shown."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import stripe

from ..errors import StripeConnectionError

_KEY_SHAPE = re.compile(r"(sk|rk|pk)_(test|live)_[A-Za-z0-9]+")
_PERMISSION = re.compile(r"\brak_[a-z0-9_]+")

# Stripe's code for a Stripe-Account the platform cannot act for (unknown, not connected).
ACCOUNT_INVALID = "account_invalid"


def redact(text: str) -> str:
    """Mask anything shaped like a Stripe key, keeping its prefix: 'sk_test_***'."""
    return _KEY_SHAPE.sub(lambda m: f"{m.group(1)}_{m.group(2)}_***", text)


class StripeWriteError(Exception):
    """A write Stripe refused or that failed after retries; `retryable` tells which."""

    def __init__(self, message: str, *, code: str | None, retryable: bool, status: int | None):
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.status = status


class StripeReadError(StripeWriteError):
    """A lookup that failed after retries (or was refused as invalid).

    A StripeWriteError, so a worker that catches write errors marks the row failed
    (retryable) or rejected instead of ending the run.
    """


def code_of(exc: stripe.StripeError) -> str | None:
    """Stripe's error code; `e.code` is None on some error classes (429, idempotency)."""
    error = exc.error  # an ErrorObject: attributes, not a dict (v15+)
    code = exc.code or (getattr(error, "code", None) if error is not None else None)
    if code:
        return str(code)
    if error is not None and getattr(error, "type", None) == "idempotency_error":
        return "idempotency_error"
    if exc.http_status == 404:  # an object path that does not exist is resource_missing
        return "resource_missing"
    return None


def message_of(exc: stripe.StripeError) -> str:
    """Stripe's message as one redacted sentence; for a network error, its cause only."""
    text = " ".join((exc.user_message or "").split())
    if isinstance(exc, stripe.APIConnectionError) and "(Network error:" in text:
        text = text.rsplit("(Network error:", 1)[1].strip(") ")
        errno = re.search(r"\[Errno -?\d+\][^\"')]*", text)
        text = errno.group(0).strip() if errno else text
    text = redact(text) or type(exc).__name__
    return text if text.endswith((".", "!", "?")) else text + "."


def v2_error(content: Any, status: int, answer_headers: Mapping[str, str]) -> stripe.StripeError:
    """A v2 error answer as the SDK's error class for its status, as the SDK raises it."""
    headers = dict(answer_headers)
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)
    try:
        body = json.loads(text)
        error = body.get("error") if isinstance(body, dict) else None
    except ValueError:
        body, error = None, None
    if not isinstance(error, dict):
        return stripe.APIError(f"Invalid response object from API: {text[:200]!r} (HTTP "
                               f"response code was {status})", text, status, body, headers)
    kind: type[stripe.StripeError] = {
        400: stripe.InvalidRequestError, 401: stripe.AuthenticationError,
        403: stripe.PermissionError, 404: stripe.InvalidRequestError,
        429: stripe.RateLimitError,
    }.get(status, stripe.APIError)
    if kind is stripe.InvalidRequestError:
        return stripe.InvalidRequestError(error.get("message"), error.get("param"),
                                          error.get("code"), text, status, body, headers)
    return kind(error.get("message"), text, status, body, headers, error.get("code"))


def is_retryable(exc: stripe.StripeError) -> bool:
    status = exc.http_status
    if isinstance(exc, stripe.APIConnectionError):
        return True
    return status is not None and (status in (409, 429) or status >= 500)


def refused(exc: stripe.StripeError, api_key_env: str) -> StripeConnectionError:
    """A 401 or 403: the key, not the request. Names the variable the key came from (never
    the key) and, for a restricted key, the permission it lacks."""
    env = api_key_env
    message = message_of(exc)
    if isinstance(exc, stripe.PermissionError):
        found = _PERMISSION.search(message)
        if found:
            permission = found.group(0)
            return StripeConnectionError(
                f"The key in ${env} lacks the '{permission}' permission (403): {message} "
                f"Grant '{permission}' to the restricted key in the Stripe dashboard "
                "(Developers > API keys), or use a key that has it."
            )
        return StripeConnectionError(
            f"Stripe refused a permission to the key in ${env} (403): {message} Grant the "
            "restricted key read and write access to the synced objects."
        )
    return StripeConnectionError(
        f"Stripe refused the API key in ${env} (401): {message} Set ${env} to a valid "
        "secret (sk_) or restricted (rk_) key from the Stripe dashboard "
        "(Developers > API keys)."
    )
