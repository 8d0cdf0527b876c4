"""Run the emulator in a subprocess and drive it through its control API.

A subprocess, because a benchmark client and an in-process server would share one GIL and the
measured throughput would be the emulator's, not the tool's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .config import EmulatorConfig

_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


class EmulatorError(RuntimeError):
    """The emulator did not start, or its control API refused a call."""


class EmulatorHandle:
    """A running emulator: its `url` for the SDK, and the control API as methods."""

    def __init__(
        self,
        url: str,
        process: subprocess.Popen[str] | None = None,
        server: Any = None,
    ) -> None:
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self._process = process
        self._server = server  # an in-process EmulatorServer, when not a subprocess

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise EmulatorError(f"{method} {path}: {exc.code} {exc.read().decode()}") from exc

    def config(self, **changes: Any) -> dict[str, Any]:
        """Change settings at run time (see EmulatorConfig); returns the whole config."""
        if not changes:
            return dict(self._call("GET", "/_emulator/config"))
        return dict(self._call("POST", "/_emulator/config", changes))

    def stats(self, *, account: str | None = None) -> dict[str, Any]:
        """Request counters, live object counts and resource counters of one account (the
        platform unless `account` names a connected one); `requests_by_account` covers all."""
        return dict(self._call("GET", _at("/_emulator/stats", account)))

    def reset(self, *, stats_only: bool = False) -> None:
        """Forget every object (customers, products, prices, meters, meter events,
        subscriptions, ...) of every account, the connected accounts themselves (those of the
        `accounts` setting come back empty), idempotency keys, stats and limiter windows, and
        put the clock back to real time (or only stats and counters)."""
        self._call("POST", "/_emulator/reset", {"stats_only": stats_only})

    # -- Connect: the platform acts for a connected account with `Stripe-Account: acct_...`

    def create_account(self, account_id: str | None = None) -> str:
        """Connect one account (None: the next free `acct_emuNNNN`); its id."""
        return self.seed_accounts([account_id] if account_id is not None else 1)[0]

    def seed_accounts(self, accounts: int | Iterable[str]) -> list[str]:
        """Connect `accounts` new accounts (a count) or these ids (already connected ones are
        kept as they are); their ids."""
        payload: dict[str, Any] = (
            {"count": accounts} if isinstance(accounts, int) else {"ids": list(accounts)}
        )
        return list(self._call("POST", "/_emulator/accounts", payload)["ids"])

    def accounts(self) -> list[str]:
        """The connected accounts' ids, oldest first (the platform is not among them)."""
        return list(self._call("GET", "/_emulator/accounts")["data"])

    # -- objects and seeds: the platform's, or a connected account's with `account=`

    def seed(
        self, customers: Iterable[Mapping[str, Any]], *, account: str | None = None
    ) -> list[str]:
        """Insert customers (create params, plus optional id/created) outside the API."""
        return list(self._call("POST", _at("/_emulator/seed", account), list(customers))["ids"])

    def seed_products(
        self, products: Iterable[Mapping[str, Any]], *, account: str | None = None
    ) -> list[str]:
        """Insert products (create params, `id` optional, plus optional `created`)."""
        return self.seed_many(products=products, account=account)["products"]

    def seed_prices(
        self, prices: Iterable[Mapping[str, Any]], *, account: str | None = None
    ) -> list[str]:
        """Insert prices (create params: `product` must exist; plus optional id/created)."""
        return self.seed_many(prices=prices, account=account)["prices"]

    def seed_many(
        self, *, account: str | None = None, **items: Iterable[Mapping[str, Any]]
    ) -> dict[str, list[str]]:
        """Seed several resources in one call (customers, then products, then prices):
        `seed_many(products=[...], prices=[...])` -> ids by resource name."""
        payload = {name: list(values) for name, values in items.items()}
        answer = self._call("POST", _at("/_emulator/seed", account), payload)
        return {name: list(answer[name]) for name in payload}

    def seed_meters(
        self, meters: Iterable[Mapping[str, Any]], *, account: str | None = None
    ) -> list[str]:
        """Insert billing meters (create params, plus optional id/created/status)."""
        return self.seed_many(account=account, **{"billing/meters": meters})["billing/meters"]

    def seed_subscriptions(
        self, subscriptions: Iterable[Mapping[str, Any]], *, account: str | None = None
    ) -> list[str]:
        """Insert subscriptions: `{"customer", "items": [{"price", "quantity", "metadata"}]}`
        plus optional id/created/metadata/status; their ids (items: `subscription_items()`)."""
        return self.seed_many(subscriptions=subscriptions, account=account)["subscriptions"]

    def clock(self) -> dict[str, float]:
        """The emulator clock: `{"now": unix seconds, "offset_seconds": from real time}`."""
        return dict(self._call("GET", "/_emulator/clock"))

    def advance_clock(self, seconds: float) -> dict[str, float]:
        """Move the emulator clock forward (token expiry, identifier and timestamp windows,
        the subscription quantity-update hour); latency and rate limits are not affected."""
        return dict(self._call("POST", "/_emulator/clock", {"advance_seconds": seconds}))

    def set_clock(self, now: float) -> dict[str, float]:
        return dict(self._call("POST", "/_emulator/clock", {"now": now}))

    def reset_clock(self) -> dict[str, float]:
        return dict(self._call("POST", "/_emulator/clock", {"reset": True}))

    def meter_events(self, *, account: str | None = None) -> list[dict[str, Any]]:
        """Every accepted meter event (v1 and stream), in arrival order: identifier,
        event_name, payload, timestamp, created, meter, customer, source."""
        return self._dump("meter_events", account)

    def meter_event_errors(self, *, account: str | None = None) -> list[dict[str, Any]]:
        """The meter event stream's event errors (what Stripe reports later in
        `v1.billing.meter.error_report_triggered` events): code, message, identifier, ..."""
        return self._dump("meter_event_errors", account)

    def meters(self, *, account: str | None = None) -> list[dict[str, Any]]:
        """Every billing meter, oldest first, inactive ones included."""
        return self._dump("billing/meters", account)

    def subscriptions(self, *, account: str | None = None) -> list[dict[str, Any]]:
        """Every subscription, oldest first (as stored: `items` is not rendered)."""
        return self._dump("subscriptions", account)

    def subscription_items(self, *, account: str | None = None) -> list[dict[str, Any]]:
        """Every subscription item, oldest first (as stored: `price` is the price id)."""
        return self._dump("subscription_items", account)

    def invoices(
        self, *, include_deleted: bool = False, account: str | None = None
    ) -> list[dict[str, Any]]:
        """Every invoice, oldest first, as the API shows it (lines, totals) plus
        `emails_sent` (how many emails `send` would have sent for it)."""
        return self._dump("invoices", account, include_deleted)

    def invoice_items(
        self, *, include_deleted: bool = False, account: str | None = None
    ) -> list[dict[str, Any]]:
        """Every invoice item, oldest first, pending ones (`invoice` null) included."""
        return self._dump("invoiceitems", account, include_deleted)

    def invoice_emails(self, invoice_id: str, *, account: str | None = None) -> int:
        """How many times `POST /v1/invoices/{id}/send` emailed this invoice."""
        sent = self._call("GET", _at("/_emulator/invoice_emails", account))["data"]
        return int(sent.get(invoice_id, 0))

    def subscription_updates(
        self, subscription_id: str, *, account: str | None = None
    ) -> list[dict[str, Any]]:
        """What each `POST /v1/subscriptions/{id}` of this subscription asked for, oldest
        first: `proration_behavior`, `payment_behavior`, `fields`, and the item ids `added`,
        `updated` and `deleted`."""
        updates = self._call("GET", _at("/_emulator/subscription_updates", account))["data"]
        return list(updates.get(subscription_id, []))

    def quotes(self, *, account: str | None = None) -> list[dict[str, Any]]:
        """Every quote, oldest first, as the API shows it with `line_items`, plus `accepts`
        (how many `accept` calls succeeded on it)."""
        return self._dump("quotes", account)

    def quote_accepts(self, quote_id: str, *, account: str | None = None) -> int:
        """How many times `POST /v1/quotes/{id}/accept` succeeded on this quote."""
        accepts = self._call("GET", _at("/_emulator/quote_accepts", account))["data"]
        return int(accepts.get(quote_id, 0))

    def customers(
        self, *, include_deleted: bool = False, account: str | None = None
    ) -> list[dict[str, Any]]:
        """Every customer, oldest first, as the API shows them."""
        return self._dump("customers", account, include_deleted)

    def products(
        self, *, include_deleted: bool = False, account: str | None = None
    ) -> list[dict[str, Any]]:
        """Every product, oldest first, archived ones included."""
        return self._dump("products", account, include_deleted)

    def prices(self, *, account: str | None = None) -> list[dict[str, Any]]:
        """Every price, oldest first, inactive ones included (prices cannot be deleted)."""
        return self._dump("prices", account)

    def _dump(
        self, name: str, account: str | None, include_deleted: bool = False
    ) -> list[dict[str, Any]]:
        path = _at(f"/_emulator/{name}", account, include_deleted=include_deleted)
        return list(self._call("GET", path)["data"])

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)

    def __enter__(self) -> EmulatorHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _at(path: str, account: str | None, **flags: bool) -> str:
    """A control path for one account (`?account=`; none: the platform), with flags."""
    query = {name: "true" for name, on in flags.items() if on}
    if account is not None:
        query["account"] = account
    return f"{path}?{urllib.parse.urlencode(query)}" if query else path


def start_emulator(
    *,
    port: int = 0,
    in_process: bool = False,
    startup_timeout: float = 20.0,
    verbose: bool = False,
    **config: Any,
) -> EmulatorHandle:
    """Start an emulator on 127.0.0.1 and wait until it listens.

    `config` takes EmulatorConfig's fields (latency_ms=(100, 300), rate_limit=25, ...),
    checked here so a typo fails in the caller, not in the child.
    """
    checked = EmulatorConfig.from_dict(config)
    if in_process:
        from .server import EmulatorServer

        server = EmulatorServer(checked, port=port, verbose=verbose).start()
        return EmulatorHandle(server.url, server=server)
    command = [
        sys.executable,
        "-m",
        "stripe_emulator",
        "--port",
        str(port),
        "--config-json",
        json.dumps(config),
    ]
    if verbose:
        command.append("--verbose")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH", "")) if p
    )
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=None if verbose else subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    line = _first_line(process, startup_timeout)
    if not line.startswith("listening on "):
        process.kill()
        stderr = process.stderr.read() if process.stderr else ""
        raise EmulatorError(f"emulator did not start: {line!r} {stderr[-2000:]}")
    # Keep draining stderr so a chatty child never blocks on a full pipe.
    if process.stderr is not None:
        threading.Thread(target=process.stderr.read, daemon=True).start()
    return EmulatorHandle(line.removeprefix("listening on ").strip(), process=process)


def _first_line(process: subprocess.Popen[str], timeout: float) -> str:
    result: list[str] = []
    reader = threading.Thread(
        target=lambda: result.append(process.stdout.readline() if process.stdout else ""),
        daemon=True,
    )
    reader.start()
    deadline = time.monotonic() + timeout
    reader.join(timeout=max(0.0, deadline - time.monotonic()))
    if not result:
        process.kill()
        raise EmulatorError(f"emulator did not print its address within {timeout} s")
    return result[0]
