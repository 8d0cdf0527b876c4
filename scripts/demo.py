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
        dbt = str(BIN / "dbt")
        run([dbt, "deps", "--quiet"], env)
        run([dbt, "build", "--quiet"], env)
        sync = str(BIN / "dbt-stripe-sync")
        run([sync, "check"], env)
        run([sync, "plan"], env)
        run([sync, "sync"], env)
        run([sync, "sync"], env)  # the re-run: nothing changed, nothing sent
        show_customers(env)
    finally:
        if server is not None:
            server.terminate()


def show_customers(env: dict[str, str]) -> None:
    import stripe
    from rich.console import Console
    from rich.table import Table

    stripe.enable_telemetry = False
    base = env.get("STRIPE_API_BASE")
    client = stripe.StripeClient(env["STRIPE_API_KEY"],
                                 base_addresses={"api": base} if base else {})
    table = Table(title="What landed in Stripe", title_justify="left")
    for column in ("id", "email", "name", "city", "locales", "metadata"):
        table.add_column(column)
    for c in client.v1.customers.list({"limit": 100}).auto_paging_iter():
        d = c.to_dict()
        table.add_row(d["id"], d.get("email") or "", d.get("name") or "",
                      (d.get("address") or {}).get("city") or "",
                      ",".join(d.get("preferred_locales") or []),
                      ", ".join(f"{k}={v}" for k, v in sorted((d.get("metadata") or {}).items())))
    Console().print(table)


if __name__ == "__main__":
    main()
