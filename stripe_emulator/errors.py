"""Stripe's error object and the errors the emulator answers with.

Shape and wording follow docs.stripe.com/api/errors and what Stripe's API sends in practice:
{"error": {"code", "doc_url", "message", "param", "request_log_url", "type"}}, keys left out
when they have no value (a 401 has only "message" and "type").
"""

from __future__ import annotations

from typing import Any

DOCS = "https://stripe.com/docs"
RATE_LIMIT_MESSAGE = (
    "Request rate limit exceeded. Learn more about rate limits here "
    "https://stripe.com/docs/rate-limits."
)
CONCURRENCY_MESSAGE = (
    "Too many concurrent requests. Learn more about rate limits here "
    "https://stripe.com/docs/rate-limits."
)
LOCK_TIMEOUT_MESSAGE = (
    "This object cannot be accessed right now because another API request or Stripe process "
    "is currently accessing it. If you see this error intermittently, retry the request. If "
    "you see this error frequently and are making multiple concurrent requests to a single "
    "object, make your requests serially or at a lower rate."
)
NO_KEY_MESSAGE = (
    "You did not provide an API key. You need to provide your API key in the Authorization "
    "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
    "https://stripe.com/docs/api#authentication for details, or we can help at "
    "https://support.stripe.com/."
)


class ApiError(Exception):
    """An HTTP error answer in Stripe's shape; `headers` are added to the response."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        fault: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})
        self.fault = fault  # name of the injected fault, for stats; None for real errors

    def body(self, request_id: str | None = None, *, v2: bool = False) -> dict[str, Any]:
        if v2:  # v2 endpoints: {"error": {"type", "code", "message"}} (stripe-python reads these)
            v2_error: dict[str, Any] = {"type": self.type}
            if self.code:
                v2_error["code"] = self.code
            v2_error["message"] = self.message
            return {"error": v2_error}
        error: dict[str, Any] = {}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"{DOCS}/error-codes/{self.code.replace('_', '-')}"
        error["message"] = self.message
        if self.param:
            error["param"] = self.param
        if request_id and self.status != 401:
            error["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        error["type"] = self.type
        return {"error": error}


def mask_key(key: str) -> str:
    """Stripe's way of naming a key in a message: prefix, stars, last four characters."""
    prefix = key[: key.index("_", 3) + 1] if key.count("_") >= 2 else key[:3]
    hidden = max(len(key) - len(prefix) - 4, 3)
    return prefix + "*" * hidden + key[-4:]


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def unknown_parameter(param: str) -> ApiError:
    return invalid(f"Received unknown parameter: {param}", param, "parameter_unknown")


def missing_parameter(param: str) -> ApiError:
    return invalid(f"Missing required param: {param}.", param, "parameter_missing")


def invalid_integer(param: str, value: object) -> ApiError:
    return invalid(f"Invalid integer: {value}", param, "parameter_invalid_integer")


def no_such(kind: str, object_id: str, param: str | None = None, status: int = 404) -> ApiError:
    return ApiError(status, f"No such {kind}: '{object_id}'", param=param, code="resource_missing")


def unrecognized_url(method: str, path: str) -> ApiError:
    return ApiError(
        404,
        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or "
        "we can help at https://support.stripe.com/.",
    )


def invalid_api_key(key: str) -> ApiError:
    return ApiError(401, f"Invalid API Key provided: {mask_key(key)}")


def missing_permission(key: str, account_id: str, permission: str) -> ApiError:
    return ApiError(
        403,
        f"The provided key '{mask_key(key)}' does not have the required permissions for this "
        f"endpoint on account '{account_id}'. Having the '{permission}' permission would allow "
        "this request to continue.",
    )


def account_invalid(key: str, account_id: str) -> ApiError:
    """A Stripe-Account the platform cannot act for, unknown or malformed (Stripe does not tell
    them apart): 403, code `account_invalid` (stripe.com/docs/error-codes: "The account ID
    provided as a value for the Stripe-Account header is invalid"); the SDK raises
    PermissionError. Message as Stripe words it (stripe-php's 403 fixture, real answers)."""
    return ApiError(
        403,
        f"The provided key '{mask_key(key)}' does not have access to account '{account_id}' "
        "(or that account does not exist). Application access may have been revoked.",
        code="account_invalid",
    )


def rate_limited(reason: str, fault: str, should_retry: bool) -> ApiError:
    headers = {"Stripe-Rate-Limited-Reason": reason}
    if should_retry:
        headers["Stripe-Should-Retry"] = "true"
    message = CONCURRENCY_MESSAGE if reason.endswith("concurrency") else RATE_LIMIT_MESSAGE
    return ApiError(429, message, code="rate_limit", headers=headers, fault=fault)


def lock_timeout(fault: str) -> ApiError:
    return ApiError(
        429,
        LOCK_TIMEOUT_MESSAGE,
        code="lock_timeout",
        headers={"Stripe-Should-Retry": "true"},
        fault=fault,
    )


def server_error(should_retry: bool) -> ApiError:
    return ApiError(
        500,
        "An unknown error occurred",
        type="api_error",
        headers={"Stripe-Should-Retry": "true" if should_retry else "false"},
        fault="server_error",
    )


def idempotency_mismatch(key: str) -> ApiError:
    return ApiError(
        400,
        "Keys for idempotent requests can only be used with the same parameters they were "
        f"first used with. Try using a key other than '{key}' if you meant to execute a "
        "different request.",
        type="idempotency_error",
    )


def idempotency_other_endpoint(key: str, first_path: str, path: str) -> ApiError:
    return ApiError(
        400,
        "Keys for idempotent requests can only be used for the same endpoint they were first "
        f"used for ('{first_path}' vs '{path}'). Try using a key other than '{key}' if you "
        "meant to execute a different request.",
        type="idempotency_error",
    )


def idempotency_in_use() -> ApiError:
    return ApiError(
        409,
        "There is currently another in-progress request using this Idempotent Key (that "
        "probably means you submitted twice, and the other request is still going through): "
        "Please try again later.",
        code="idempotency_key_in_use",
    )
