"""The official stripe SDK behind one small, thread-safe client. Knows nothing of dbt.

Adds what the SDK leaves to us: a client-side rate limiter that knows Stripe's published
limits and adapts on 429, backoff with jitter for rate-limited requests (the SDK does not
retry a plain 429), and request counting.

Every HTTP attempt -- SDK network retries included -- goes through one metered HTTP client
(`transport`): that is where requests are paced, counted and watched for 429s, so the counts
are what Stripe saw. The SDK retries 409, 5xx and connection errors itself
(`max_network_retries`, same idempotency key); 429s are retried here (`retries`). Only a rate
429 slows the pace; a concurrency 429, a lock_timeout, a 409 or a 5xx costs a retry after a
short backoff (the retry is paced like any request), so a server that answers a share of
requests that way while it admits its full rate is used at that rate (benchmark (g)).

`gateway` is the object operations the stages call; `listing` reads whole collections in
parallel; `event_stream` is the v2 meter event stream; `settings` and `errors` are what
callers configure and catch.
"""

from .errors import ACCOUNT_INVALID, StripeReadError, StripeWriteError, redact
from .gateway import RAW_REQUEST_NAMES, StripeGateway
from .settings import HEADROOM, STRIPE_API_VERSION, ConnectionCheck, StripeSettings
from .transport import RequestStats, endpoint_of

__all__ = [
    "ACCOUNT_INVALID", "HEADROOM", "RAW_REQUEST_NAMES", "STRIPE_API_VERSION", "ConnectionCheck",
    "RequestStats", "StripeGateway", "StripeReadError", "StripeSettings", "StripeWriteError",
    "endpoint_of", "redact",
]
