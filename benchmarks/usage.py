"""(d) usage: N new meter events (1,000,000; quick 50,000) through the emulator's v2 stream.

Two runs of the whole `dbt-stripe-sync` command, side by side with their baselines:
- limited: the emulator allows 100 stream requests/s (10,000 events/s); the tool's events/s
  over that limit (target >= 0.9);
- unlimited: the tool's events/s over a raw client's, which posts pre-built 100-event batches
  over keep-alive connections to the same emulator (this machine's ceiling; target >= 0.7).
Then: the emulator holds exactly N distinct identifiers, a re-run sends 0 events, the tool's
peak RSS (target <= 300 MB, issue 21), and the naive loop (one v1 request per event, one at
a time, on a sample, extrapolated) as a ratio.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import requests

from stripe_emulator import start_emulator
from stripe_emulator.handle import EmulatorHandle

from .project import API_KEY, BenchError, BenchProject
from .scenarios import BenchConfig, Result, log

USAGE_MODEL = "stripe_usage"
METER = "api_calls"
CUSTOMERS = [f"cus_bench{i:04d}" for i in range(10)]
STREAM_LIMIT_RPS = 100.0  # 100 requests of 100 events: 10,000 events/s
USAGE_SYNC = {
    "object": "meter_event",
    "behavior": "append",
    "key": {"column": "event_id", "field": "identifier"},
    "fields": {
        "event_name": {"value": METER},
        "timestamp": "occurred_at",
        "payload.stripe_customer_id": "customer_id",
        "payload.value": "calls",
    },
}


def usage_sizes(cfg: BenchConfig) -> tuple[int, int]:
    """(events, naive sample)."""
    return (50_000, 200) if cfg.quick else (1_000_000, 500)


def usage_model_sql() -> str:
    return """
select
    'evt-' || lpad(cast(i as varchar), 8, '0') as event_id,
    'cus_bench' || lpad(cast(i % 10 as varchar), 4, '0') as customer_id,
    cast(current_timestamp as timestamp) - to_seconds(i % 3600) as occurred_at,
    cast(1 + i % 7 as integer) as calls
from range({{ var('usage_rows', 1000) }}) as t(i)
""".lstrip()


def _emulator(limited: bool) -> EmulatorHandle:
    config: dict[str, Any] = {"seed": 7}
    if limited:
        config["endpoint_rate_limits"] = {"POST /v2/billing/meter_event_stream": STREAM_LIMIT_RPS}
    handle = start_emulator(**config)
    handle.seed([{"id": c, "email": f"{c}@example.com"} for c in CUSTOMERS])
    handle.seed_meters([{"display_name": "API calls", "event_name": METER}])
    return handle


def _accepted(emulator: EmulatorHandle) -> int:
    return int(emulator.stats()["meter_events"]["accepted"])


@dataclass
class _Run:
    seconds: float
    peak_rss_mb: float
    sent: int


def _sync(project: BenchProject, emulator: EmulatorHandle, n: int, what: str) -> _Run:
    run = project.sync_cli("sync", "--select", USAGE_MODEL, stripe_url=emulator.url,
                           timeout=3600)
    if run.code != 0:
        raise BenchError(f"(d) {what}: exit {run.code}: {run.stderr[-3000:]}")
    sent = int(run.model(USAGE_MODEL)["counts"]["sent"])
    if sent != n:
        raise BenchError(f"(d) {what}: sent {sent} of {n}")
    identifiers = emulator.stats()["meter_events"]
    if (identifiers["accepted"], identifiers.get("rejected", 0)) != (n, 0):
        raise BenchError(f"(d) {what}: the emulator accepted {identifiers}")
    return _Run(run.seconds, run.peak_rss_mb, sent)


def raw_client(url: str, n: int, threads: int = 32) -> float:
    """Events/s of pre-built 100-event batches over keep-alive connections: the ceiling."""
    session_token = requests.post(
        url + "/v2/billing/meter_event_session", json={},
        headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30,
    ).json()["authentication_token"]
    stamp = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    bodies = [
        json.dumps({"events": [
            {"event_name": METER, "identifier": f"raw-{i + j}", "timestamp": stamp,
             "payload": {"stripe_customer_id": CUSTOMERS[(i + j) % 10], "value": "1"}}
            for j in range(min(100, n - i))
        ]}).encode()
        for i in range(0, n, 100)
    ]
    cursor = iter(range(len(bodies)))
    lock = threading.Lock()

    def worker() -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {session_token}",
                   "Content-Type": "application/json"}
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                return
            answer = session.post(url + "/v2/billing/meter_event_stream", data=bodies[index],
                                  headers=headers, timeout=60)
            answer.raise_for_status()

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return n / (time.perf_counter() - started)


def naive_events_per_second(url: str, sample: int) -> float:
    """One v1 request per event, one at a time, as a hand-written loop sends them."""
    import stripe

    stripe.enable_telemetry = False
    client = stripe.StripeClient(API_KEY, base_addresses={"api": url})
    started = time.perf_counter()
    for i in range(sample):
        client.v1.billing.meter_events.create(params={
            "event_name": METER, "identifier": f"naive-{i}",
            "payload": {"stripe_customer_id": CUSTOMERS[i % 10], "value": "1"},
        })
    return sample / (time.perf_counter() - started)


def scenario_d(cfg: BenchConfig) -> Result:
    n, sample = usage_sizes(cfg)
    result = Result()
    root = cfg.workdir / "usage"
    project = BenchProject.create(root)
    project.write_model(USAGE_MODEL, usage_model_sql(), sync=USAGE_SYNC)
    log(f"(d) building the {n:,}-event model")
    project.dbt("run", "--vars", f"{{usage_rows: {n}}}")

    log(f"(d) limited: {STREAM_LIMIT_RPS:.0f} stream requests/s")
    with _emulator(limited=True) as emulator:
        limited = _sync(project, emulator, n, "limited")
        emulator.reset(stats_only=True)
        again = project.sync_cli("sync", "--select", USAGE_MODEL, stripe_url=emulator.url)
        resent = emulator.stats()["meter_events"]["received"]
        naive = naive_events_per_second(emulator.url, sample)
    limit_events = STREAM_LIMIT_RPS * 100

    log("(d) unlimited: the tool, then the raw client, on fresh emulators")
    _reset_state(project)
    with _emulator(limited=False) as emulator:
        unlimited = _sync(project, emulator, n, "unlimited")
    with _emulator(limited=False) as emulator:
        ceiling = raw_client(emulator.url, n)
        if _accepted(emulator) != n:
            raise BenchError(f"(d) raw client: accepted {_accepted(emulator)} of {n}")
    tool_unlimited = n / unlimited.seconds
    result.metrics.update(
        usage_events=n,
        usage_limited_seconds=round(limited.seconds, 1),
        usage_limited_events_per_second=round(n / limited.seconds),
        usage_limit_events_per_second=limit_events,
        usage_fraction_of_limit=round(n / limited.seconds / limit_events, 3),
        usage_unlimited_events_per_second=round(tool_unlimited),
        usage_raw_client_events_per_second=round(ceiling),
        usage_fraction_of_raw_client=round(tool_unlimited / ceiling, 3),
        usage_peak_rss_mb=round(max(limited.peak_rss_mb, unlimited.peak_rss_mb), 1),
        usage_rerun_events_sent=resent,
        usage_rerun_exit=again.code,
        usage_naive_events_per_second=round(naive, 1),
        usage_speedup_vs_naive=round(n / limited.seconds / naive, 1),
    )
    return result


def _reset_state(project: BenchProject) -> None:
    """Forget the ledger, so the unlimited run sends every event again (to a new emulator)."""
    project.sync_cli("sync", "--reset-state", "--select", USAGE_MODEL,
                     stripe_url="http://127.0.0.1:9")


if __name__ == "__main__":  # quick manual run: python -m benchmarks.usage [workdir]
    import sys
    from pathlib import Path

    workdir = Path(sys.argv[1] if len(sys.argv) > 1 else ".bench/usage").resolve()
    os.makedirs(workdir, exist_ok=True)
    print(json.dumps(scenario_d(BenchConfig.make(True, workdir)).metrics, indent=2))
