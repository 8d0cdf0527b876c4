"""(g) Speed under faults (issue 21): 2,000 new customers (quick: 200) through the CLI against a
server that admits 100 requests/s and answers 30% of them 429 `global-concurrency` and 10%
500, whatever the pace; the rate limit itself is never reached.

The emulator answers (500s included, with (a)'s latency) behind tests/faults/front.py, which
holds the limit and sends the concurrency 429s the emulator cannot. Only 0.6 of the requests
can succeed, so the floor is the requests that succeeded / (100 x 0.6); the whole command's
time is compared with it (target: within 2x). Every key must be held by exactly one customer.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from stripe_emulator import start_emulator
from tests.faults.front import FaultFront

from .project import BenchError, BenchProject
from .scenarios import BenchConfig, Result, log

MODEL = "stripe_faulty_customers"
LIMIT_RPS = 100.0
CONCURRENCY_429_SHARE = 0.3
SERVER_ERROR_SHARE = 0.1
SUCCEEDING_SHARE = 1.0 - CONCURRENCY_429_SHARE - SERVER_ERROR_SHARE
TARGET_RATIO = 2.0
SYNC = {
    "object": "customer",
    "key": {"column": "customer_id", "field": "metadata.crm_id"},
    "fields": {"email": "email", "name": "full_name"},
}
MODEL_SQL = """
select
    'c' || lpad(cast(i as varchar), 6, '0') as customer_id,
    'user' || cast(i as varchar) || '@example.com' as email,
    'User ' || cast(i as varchar) as full_name
from range({{ var('faults_rows', 100) }}) as t(i)
""".lstrip()


def faults_rows(cfg: BenchConfig) -> int:
    return 200 if cfg.quick else 2000


def scenario_g(cfg: BenchConfig) -> Result:
    n = faults_rows(cfg)
    project = BenchProject.create(cfg.workdir / "faults")
    project.write_model(MODEL, MODEL_SQL, sync=SYNC)
    log(f"(g) {n} new customers at {LIMIT_RPS:g} requests/s, "
        f"{CONCURRENCY_429_SHARE:.0%} concurrency 429s, {SERVER_ERROR_SHARE:.0%} 500s")
    project.dbt("run", "--vars", f"{{faults_rows: {n}}}")
    emulator_config: dict[str, Any] = {
        "seed": cfg.seed, "latency_ms": cfg.latency_ms, "server_error_rate": SERVER_ERROR_SHARE,
    }
    with start_emulator(**emulator_config) as emulator, FaultFront(
        emulator.url, rate_limit=LIMIT_RPS, refuse_rate=CONCURRENCY_429_SHARE,
        latency_ms=cfg.latency_ms, seed=cfg.seed,
    ) as front:
        # Stripe's live-mode figures: the key is a test key, whose default is 25/s.
        run = project.sync_cli("sync", "--select", MODEL, "--max-rps", f"{LIMIT_RPS:g}",
                               "--max-endpoint-rps", f"{LIMIT_RPS:g}", *cfg.sync_args,
                               stripe_url=front.url, timeout=3600)
        if run.code != 0:
            raise BenchError(f"(g) exit {run.code}: {run.stdout[-2000:]} {run.stderr[-3000:]}")
        counts = run.model(MODEL)["counts"]
        if counts["created"] != n:
            raise BenchError(f"(g) created {counts['created']} of {n}: {counts}")
        stats = emulator.stats()
        keys = Counter(c["metadata"].get("crm_id") for c in emulator.customers())
    duplicates = sum(count - 1 for count in keys.values() if count > 1)
    missing = n - len(keys)
    if duplicates or missing:
        raise BenchError(f"(g) {duplicates} duplicate and {missing} missing customers")
    requests = front.counts["forwarded"] + front.counts["refused"] + front.counts["rate_limited"]
    succeeded = stats["by_status"].get("200", 0)
    floor = succeeded / (LIMIT_RPS * SUCCEEDING_SHARE)
    log(f"(g) {run.seconds:.1f} s (the model's own {run.model(MODEL).get('seconds')} s), floor "
        f"{floor:.1f} s: {run.seconds / floor:.2f}x; {requests} requests, {succeeded} succeeded, "
        f"{front.counts['refused']} concurrency 429s, {stats['by_status'].get('500', 0)} 500s, "
        f"{front.counts['rate_limited']} over the limit; {duplicates} duplicates")
    result = Result()
    result.metrics.update(
        faults_rows=n,
        faults_seconds=round(run.seconds, 1),
        faults_model_seconds=run.model(MODEL).get("seconds"),
        faults_floor_seconds=round(floor, 1),
        faults_over_floor=round(run.seconds / floor, 3),
        faults_requests=requests,
        faults_requests_succeeded=succeeded,
        faults_concurrency_429s=front.counts["refused"],
        faults_500s=stats["by_status"].get("500", 0),
        faults_rate_limited=front.counts["rate_limited"],
        faults_requests_per_second=round(requests / run.seconds, 1),
        faults_duplicates=duplicates,
        faults_peak_rss_mb=round(run.peak_rss_mb, 1),
    )
    return result
