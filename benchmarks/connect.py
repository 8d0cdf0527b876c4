"""(f) Stripe Connect: 20 connected accounts x 500 new customers (quick: 20 x 50), each
account at test-mode limits of its own (25 requests/s, 25/s per endpoint), on the
emulator with the same latency as (a).

Stripe measures rate limits per account, so the floor is one account's rows at one
account's limit: the aggregate write rate is compared with 20 times one account's limit
(target >= 0.8). The rate is over the model's own seconds (listing each account,
planning, writing); the whole command's, start-up included, is reported beside it. A
re-run must make no request.
"""

from __future__ import annotations

from typing import Any

from stripe_emulator import start_emulator

from .project import BenchError, BenchProject
from .scenarios import BenchConfig, Result, log

MODEL = "stripe_connected_customers"
ACCOUNT_RPS = 25.0
TARGET_FRACTION = 0.8
SYNC = {
    "object": "customer",
    "key": {"column": "customer_id", "field": "metadata.crm_id"},
    "account": "account_id",
    "fields": {"email": "email", "name": "full_name"},
}


def connect_sizes(cfg: BenchConfig) -> tuple[int, int]:
    """(accounts, rows per account)."""
    return (20, 50) if cfg.quick else (20, 500)


def model_sql(per_account: int) -> str:
    return f"""
select
    'acct_emu' || lpad(cast(1 + cast(floor(i / {per_account}) as integer) as varchar), 4, '0')
        as account_id,
    'c' || lpad(cast(i % {per_account} as varchar), 5, '0') as customer_id,
    'user' || cast(i % {per_account} as varchar) || '@example.com' as email,
    'User ' || cast(i as varchar) as full_name
from range({{{{ var('connect_rows', 100) }}}}) as t(i)
""".lstrip()


def scenario_f(cfg: BenchConfig) -> Result:
    accounts, per_account = connect_sizes(cfg)
    n = accounts * per_account
    root = cfg.workdir / "connect"
    project = BenchProject.create(root)
    project.write_model(MODEL, model_sql(per_account), sync=SYNC)
    log(f"(f) {accounts} accounts x {per_account} customers")
    project.dbt("run", "--vars", f"{{connect_rows: {n}}}")
    config: dict[str, Any] = {
        "seed": 5, "latency_ms": cfg.latency_ms, "accounts": accounts,
        "account_rate_limit": ACCOUNT_RPS, "endpoint_rate_limit": ACCOUNT_RPS,
    }
    with start_emulator(**config) as emulator:
        # Requests in flight: each account's limit times the latency (25/s x 0.3 s at
        # most = 7.5), with room, for all accounts.
        concurrency = str(min(256, accounts * 12))
        run = project.sync_cli("sync", "--select", MODEL, "--concurrency", concurrency,
                               stripe_url=emulator.url, timeout=3600)
        if run.code != 0:
            raise BenchError(f"(f) exit {run.code}: {run.stderr[-3000:]}")
        counts = run.model(MODEL)["counts"]
        if counts["created"] != n:
            raise BenchError(f"(f) created {counts['created']} of {n}")
        stats = emulator.stats()
        rate_limited = stats["by_status"].get("429", 0)
        emulator.reset(stats_only=True)
        again = project.sync_cli("sync", "--select", MODEL, stripe_url=emulator.url)
        rerun_requests = sum(emulator.stats()["requests_by_account"].values())
    # The model's own seconds (its listing, plans and writes): the write rate Stripe sees;
    # the whole command adds Python's and dbt's start-up.
    aggregate = n / float(run.model(MODEL)["seconds"])
    limit = accounts * ACCOUNT_RPS
    result = Result()
    result.metrics.update(
        connect_accounts=accounts,
        connect_rows=n,
        connect_seconds=round(run.seconds, 1),
        connect_whole_command_writes_per_second=round(n / run.seconds, 1),
        connect_writes_per_second=round(aggregate, 1),
        connect_limit_per_second=limit,
        connect_fraction_of_limit=round(aggregate / limit, 3),
        connect_429s=rate_limited,
        connect_rerun_requests=rerun_requests,
        connect_rerun_exit=again.code,
        connect_peak_rss_mb=round(run.peak_rss_mb, 1),
    )
    return result
