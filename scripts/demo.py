"""`make demo`: the quickstart on a fresh machine.

Builds integration_tests on DuckDB; when no STRIPE_API_KEY is set, starts a local Stripe
server on a free port; then runs `check`, `plan` and `sync` and prints what landed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ROOT / "integration_tests"
WORK = ROOT / ".demo"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_local_stripe(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The repo's Stripe emulator: behaves as Stripe documents (idempotency, unset, errors)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stripe_emulator", "--port", str(port)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    env["STRIPE_API_BASE"] = f"http://127.0.0.1:{port}"
    env["STRIPE_API_KEY"] = "sk_test_demo_local_emulator"
    print(f"==> no STRIPE_API_KEY set: using the local Stripe emulator at {env['STRIPE_API_BASE']}")
    return proc


def run(args: list[str], env: dict[str, str], check: bool = True) -> int:
    print(f"\n==> {' '.join(Path(args[0]).name if i == 0 else a for i, a in enumerate(args))}",
          flush=True)
    code = subprocess.run(args, cwd=PROJECT, env=env).returncode
    if check and code not in (0, 1):
        sys.exit(code)
    return code


def main() -> None:
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir()
    env = dict(os.environ)
    env.update(
        DBT_PROFILES_DIR=str(PROJECT),
        DBT_DUCKDB_PATH=str(WORK / "demo.duckdb"),
        DBT_TARGET_PATH=str(WORK / "target"),
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
    )
    server = None if env.get("STRIPE_API_KEY") else start_local_stripe(env)
    try:
        prepare_billing(env, local=server is not None)
        dbt = str(BIN / "dbt")
        run([dbt, "deps", "--quiet"], env)
        run([dbt, "build", "--quiet"], env)
        sync = str(BIN / "dbt-stripe-sync")
        run([sync, "check"], env)
        run([sync, "plan"], env)
        run([sync, "sync"], env)
        run([sync, "sync"], env)  # the re-run: nothing changed, nothing sent
        show_landed(env, local=server is not None)
    finally:
        if server is not None:
            server.terminate()


def prepare_billing(env: dict[str, str], *, local: bool) -> None:
    """What the usage and seats models bill against: the api_calls meter (created through
    the API when the account has none) and, on the local emulator only, a subscription whose
    items the seats model names (a real account reports them as not found)."""
    import json
    import urllib.request

    client = _client(env)
    meters = [m.to_dict() for m in client.v1.billing.meters.list({"limit": 100})]
    if not any(m["event_name"] == "api_calls" and m["status"] == "active" for m in meters):
        client.v1.billing.meters.create({
            "display_name": "API calls", "event_name": "api_calls",
            "default_aggregation": {"formula": "sum"},
        })
        print("==> created the api_calls meter")
    if local:
        product = client.v1.products.create({"name": "Team seats"})
        price = client.v1.prices.create({"product": product.id, "currency": "usd",
                                         "unit_amount": 1500,
                                         "recurring": {"interval": "month"}})
        customer = client.v1.customers.create({"email": "teams@example.com"})
        seed = {"subscriptions": [{"customer": customer.id, "items": [
            {"id": "si_demo_team_a", "price": price.id, "quantity": 1},
            {"id": "si_demo_team_b", "price": price.id, "quantity": 1},
        ]}]}
        request = urllib.request.Request(
            env["STRIPE_API_BASE"] + "/_emulator/seed", data=json.dumps(seed).encode(),
            method="POST", headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=30).close()


def _emulator(env: dict[str, str], path: str) -> Any:
    import json
    import urllib.request

    with urllib.request.urlopen(env["STRIPE_API_BASE"] + path, timeout=30) as response:
        return json.loads(response.read())


def _client(env: dict[str, str]) -> Any:
    import stripe

    stripe.enable_telemetry = False
    base = env.get("STRIPE_API_BASE")
    return stripe.StripeClient(env["STRIPE_API_KEY"],
                               base_addresses={"api": base} if base else {})


def show_landed(env: dict[str, str], *, local: bool) -> None:
    from rich.console import Console

    client = _client(env)
    console = Console()
    console.print(_table("Customers in Stripe", ("id", "email", "name", "city", "metadata"), [
        (c["id"], c.get("email") or "", c.get("name") or "",
         (c.get("address") or {}).get("city") or "", _metadata(c))
        for c in _all(client.v1.customers)]))
    console.print(_table("Products in Stripe", ("id", "name", "unit label", "active", "metadata"), [
        (p["id"], p.get("name") or "", p.get("unit_label") or "", str(p.get("active")),
         _metadata(p))
        for p in _all(client.v1.products)]))
    if local:  # what the emulator received (a real account shows it in its meter's summary)
        events = _emulator(env, "/_emulator/meter_events")["data"]
        console.print(_table("Meter events received", ("identifier", "customer", "value"), [
            (e["identifier"], e["payload"].get("stripe_customer_id", ""),
             e["payload"].get("value", "")) for e in events]))
        items = _emulator(env, "/_emulator/subscription_items")["data"]
        console.print(_table("Subscription items", ("id", "quantity"), [
            (i["id"], str(i["quantity"])) for i in items]))
    console.print(_table("Prices in Stripe",
                         ("id", "lookup key", "product", "amount", "interval", "active"), [
        (p["id"], p.get("lookup_key") or "", p.get("product") or "",
         f"{(p.get('unit_amount') or 0) / 100:.2f} {str(p.get('currency', '')).upper()}",
         (p.get("recurring") or {}).get("interval") or "one-time", str(p.get("active")))
        for p in _all(client.v1.prices)]))


def _all(service: Any) -> list[dict[str, Any]]:
    return [obj.to_dict() for obj in service.list({"limit": 100}).auto_paging_iter()]


def _metadata(obj: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((obj.get("metadata") or {}).items()))


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


if __name__ == "__main__":
    main()
