"""`python -m stripe_emulator --port 0 [--latency-ms 100:300] [--rate-limit 25] ...`

Prints one line, `listening on http://127.0.0.1:PORT`, then serves until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from typing import Any

from .config import STRIPE_TEST_LIMITS, EmulatorConfig
from .server import EmulatorServer


def _endpoint_limit(text: str) -> tuple[str, float]:
    endpoint, sep, rate = text.rpartition("=")
    if not sep:
        raise argparse.ArgumentTypeError("use 'METHOD /path=RATE', e.g. 'GET /v1/customers=10'")
    return endpoint.strip(), float(rate)


def _restricted_key(text: str) -> tuple[str, list[str]]:
    key, _, lacking = text.partition("=")
    return key, [p for p in lacking.split(",") if p]


def parse_args(argv: list[str] | None = None) -> tuple[int, EmulatorConfig, bool]:
    parser = argparse.ArgumentParser(
        prog="python -m stripe_emulator",
        description=(
            "A local Stripe API emulator (customers, products, prices, balance, billing "
            "meters, meter events, subscription items, connected accounts) with fault "
            "injection."
        ),
    )
    add = parser.add_argument
    add("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    add("--seed", type=int, help="make ids and fault draws reproducible")
    add("--latency-ms", help="per-request latency, MIN:MAX or N milliseconds")
    add("--rate-limit", type=float, help="global requests per second")
    add("--endpoint-rate-limit", type=float, help="requests per second for each endpoint")
    add(
        "--endpoint-limit",
        type=_endpoint_limit,
        action="append",
        default=[],
        metavar="'METHOD /path=RATE'",
        help="one endpoint's requests per second (repeatable)",
    )
    add("--rate-limit-algorithm", choices=("sliding_window", "token_bucket"))
    add("--stripe-test-limits", action="store_true", help="Stripe's sandbox limits: 25/25/20")
    add("--concurrency-limit", type=int, help="API requests in flight at once")
    add("--random-429-rate", type=float, help="fraction answered 429 rate_limit")
    add("--server-error-rate", type=float, help="fraction answered 500 api_error")
    add("--server-error-saved", action="store_true", help="save 500s under idempotency keys")
    add("--lock-timeout-rate", type=float, help="fraction of object writes: 429 lock_timeout")
    add("--lock-wait-ms", type=float, help="wait for a busy object before lock_timeout")
    add("--connection-reset-rate", type=float, help="fraction reset before executing")
    add("--drop-response-rate", type=float, help="fraction of committed writes left unanswered")
    add("--slow-response-rate", type=float, help="fraction answered late")
    add("--slow-response-seconds", type=float, help="how late a slow response is")
    add("--search-delay", type=float, dest="search_delay_seconds", help="search index lag, s")
    add(
        "--no-should-retry-on-rate-limit",
        action="store_true",
        help="leave Stripe-Should-Retry out of rate-limit 429s",
    )
    add("--api-key", action="append", dest="api_keys", help="accept only these keys")
    add(
        "--restricted-key",
        type=_restricted_key,
        action="append",
        default=[],
        metavar="rk_test_...=rak_customer_write,...",
        help="a restricted key and the permissions it lacks (repeatable)",
    )
    add("--account-id", help="the platform's own account id")
    add("--accounts", type=int, help="connected accounts acct_emu0001.. (Stripe-Account header)")
    add(
        "--account-rate-limit",
        type=float,
        help="each connected account's global requests per second (default: --rate-limit)",
    )
    add("--config-json", help="a JSON object of config keys, applied last")
    add("--verbose", action="store_true", help="log requests to stderr")
    args = parser.parse_args(argv)

    values: dict[str, Any] = {}
    if args.stripe_test_limits:
        values.update(STRIPE_TEST_LIMITS)
    for name in (
        "seed",
        "latency_ms",
        "rate_limit",
        "endpoint_rate_limit",
        "rate_limit_algorithm",
        "concurrency_limit",
        "random_429_rate",
        "server_error_rate",
        "lock_timeout_rate",
        "lock_wait_ms",
        "connection_reset_rate",
        "drop_response_rate",
        "slow_response_rate",
        "slow_response_seconds",
        "search_delay_seconds",
        "api_keys",
        "account_id",
        "accounts",
        "account_rate_limit",
    ):
        value = getattr(args, name)
        if value is not None:
            values[name] = value
    if args.endpoint_limit:
        values["endpoint_rate_limits"] = {
            **values.get("endpoint_rate_limits", {}),
            **dict(args.endpoint_limit),
        }
    if args.server_error_saved:
        values["server_error_saved"] = True
    if args.no_should_retry_on_rate_limit:
        values["should_retry_on_rate_limit"] = False
    if args.restricted_key:
        values["restricted_keys"] = dict(args.restricted_key)
    if args.config_json:
        values.update(json.loads(args.config_json))
    try:
        config = EmulatorConfig.from_dict(values)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    return args.port, config, args.verbose


def main(argv: list[str] | None = None) -> None:
    port, config, verbose = parse_args(argv)
    server = EmulatorServer(config, port=port, verbose=verbose)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"listening on {server.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        server.serve_forever()


if __name__ == "__main__":
    main()
