"""The scenarios of the benchmark, each a function of (config, emulator) -> measurements.

  naive  the baseline loop on a sample of the (a) rows, extrapolated to all of them
  a      first sync of N rows into an account of N customers, half of them matching
  b      re-sync: nothing changed, then 1% of the rows changed
  c      a 1M-row model with 1% changed: `dbt-stripe-sync plan`, warehouse side only; the
         same at 10M rows (full size only), memory and time against the 1M plan's
  g      a first plan of 1M new customers (no state), on DuckDB and on PostgreSQL: rows/s

Every scenario checks the outcome it measures (counts, what Stripe holds) and raises
BenchError when the tool did something else: a fast wrong answer is not a result.
"""

from __future__ import annotations

import math
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stripe_emulator.handle import EmulatorHandle
from tests.customers import stripe_differences

from . import data
from .measure import StatsSampler, write_timeline
from .naive import naive_sync
from .project import API_KEY, REPO_ROOT, BenchError, BenchProject, CliRun

MODEL = "stripe_customers"
BIG_MODEL = "big_customers"


@dataclass(frozen=True)
class BenchConfig:
    quick: bool
    rows: int  # (a), (b)
    naive_sample: int  # rows the naive loop really runs, extrapolated to `rows`
    big_rows: int  # (c)
    huge_rows: int  # (c) at scale: the same plan, memory within 1.15x (0: not run)
    first_rows: int  # (h) first plan of new rows, per warehouse
    workdir: Path
    latency_ms: tuple[int, int] = (100, 300)
    rate_limit: float = 25.0  # Stripe test mode, global
    endpoint_rate_limit: float = 25.0  # Stripe, per endpoint
    changed_fraction: float = 0.01
    seed: int = 1
    # Extra `dbt-stripe-sync sync` flags, for experiments only: the benchmark's numbers are
    # for the tool's defaults.
    sync_args: tuple[str, ...] = ()

    @classmethod
    def make(cls, quick: bool, workdir: Path) -> BenchConfig:
        if quick:
            return cls(quick=True, rows=500, naive_sample=40, big_rows=100_000, huge_rows=0,
                       first_rows=100_000, workdir=workdir)
        return cls(quick=False, rows=5000, naive_sample=1000, big_rows=1_000_000,
                   huge_rows=10_000_000, first_rows=1_000_000, workdir=workdir)

    def emulator_config(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "latency_ms": self.latency_ms,
            "rate_limit": self.rate_limit,
            "endpoint_rate_limit": self.endpoint_rate_limit,
        }


@dataclass
class Floor:
    """The least time Stripe's limits allow for these requests, whatever the client does."""

    creates: int
    updates: int
    reads: int
    global_rps: float
    endpoint_rps: float

    @property
    def seconds(self) -> float:
        return max(
            self.creates / self.endpoint_rps,
            self.updates / self.endpoint_rps,
            self.reads / self.endpoint_rps,
            (self.creates + self.updates + self.reads) / self.global_rps,
        )

    @property
    def write_limit_rps(self) -> float:
        """The best sustained write rate for this mix: creates and updates are separate
        endpoints, both under the global limit."""
        writes = self.creates + self.updates
        if writes == 0:
            return 0.0
        return writes / max(
            self.creates / self.endpoint_rps,
            self.updates / self.endpoint_rps,
            writes / self.global_rps,
        )


@dataclass
class Result:
    """One scenario's numbers; `notes` are shown under the table."""

    metrics: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def fresh_account(emulator: EmulatorHandle, cfg: BenchConfig) -> None:
    """The (a) account: forget everything, then insert N customers outside the API."""
    emulator.reset()
    emulator.seed(data.account(cfg.rows))
    emulator.reset(stats_only=True)


def _endpoint_counts(stats: dict[str, Any]) -> tuple[int, int, int]:
    """(creates, updates) committed, and read requests sent (429s included: they count)."""
    committed = stats["writes_by_endpoint"]
    creates = committed.get("POST /v1/customers", 0)
    updates = committed.get("POST /v1/customers/{id}", 0)
    reads = sum(v for k, v in stats["by_endpoint"].items() if k.startswith("GET "))
    return creates, updates, reads


def _check_cli(run: CliRun, what: str) -> None:
    if run.code != 0:
        raise BenchError(
            f"{what}: dbt-stripe-sync exited {run.code}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        )


def _check_counts(model: dict[str, Any], what: str, **expected: int) -> None:
    counts = model["counts"]
    wrong = {k: (counts.get(k), v) for k, v in expected.items() if counts.get(k) != v}
    if wrong:
        raise BenchError(f"{what}: counts (got, expected) {wrong}; all counts {counts}")


def _check_stripe_holds(emulator: EmulatorHandle, rows: list[dict[str, Any]], what: str) -> None:
    """Exactly one customer per row's email, holding the row's values (the account's other
    customers are left alone)."""
    problems = stripe_differences(emulator.customers(), rows, "email", others=True)
    if problems:
        raise BenchError(f"{what}: " + "; ".join(problems))


# -- the naive loop ---------------------------------------------------------------------------


def naive_baseline(cfg: BenchConfig, emulator: EmulatorHandle) -> Result:
    """The SDK loop on a random sample of the (a) rows, in the (a) account; its time per row
    is extrapolated linearly (every row costs the same two requests)."""
    fresh_account(emulator, cfg)
    rows = data.rows(cfg.rows)
    picked = sorted(random.Random(cfg.seed).sample(range(cfg.rows), cfg.naive_sample))
    sample = [rows[i] for i in picked]
    log(f"naive loop: {len(sample)} of {cfg.rows} rows, one request at a time")
    run = naive_sync(sample, emulator.url, API_KEY)
    stats = emulator.stats()
    per_row = run.seconds / run.rows
    result = Result()
    result.metrics.update(
        naive_sample_rows=run.rows,
        naive_seconds_sample=round(run.seconds, 2),
        naive_seconds_per_row=round(per_row, 4),
        naive_requests_per_row=round(stats["requests_total"] / run.rows, 3),
        naive_rate_limited=stats["faults_total"],
        naive_seconds_first_sync=round(per_row * cfg.rows, 1),
        # No diff: a re-sync costs the same lookup + write for every row.
        naive_seconds_resync=round(per_row * cfg.rows, 1),
    )
    result.notes.append(
        f"naive loop: ran {run.rows} of {cfg.rows} rows ({run.seconds:.1f} s, "
        f"{per_row * 1000:.0f} ms/row, {stats['requests_total']} requests); the times for "
        f"{cfg.rows} rows are extrapolated linearly from this sample."
    )
    return result


# -- (a) first sync ---------------------------------------------------------------------------


def prepare_project(cfg: BenchConfig) -> BenchProject:
    root = cfg.workdir / "crm"
    shutil.rmtree(root, ignore_errors=True)
    project = BenchProject.create(root)
    project.write_seed("crm", data.rows(cfg.rows), data.COLUMNS)
    project.write_model(MODEL, "select * from {{ ref('crm') }}", sync=data.SYNC)
    project.dbt("build")
    return project


def scenario_a(cfg: BenchConfig, emulator: EmulatorHandle, project: BenchProject) -> Result:
    expect = data.expected(cfg.rows)
    fresh_account(emulator, cfg)
    log(
        f"(a) first sync of {cfg.rows} rows into an account of {expect.account_size} customers "
        f"(expect {expect.creates} creates, {expect.updates} updates, "
        f"{expect.unchanged} unchanged)"
    )
    with StatsSampler(emulator) as sampler:
        run = project.sync_cli("sync", *cfg.sync_args, stripe_url=emulator.url)
    _check_cli(run, "(a) first sync")
    model = run.model(MODEL)
    _check_counts(
        model,
        "(a) first sync",
        created=expect.creates,
        updated=expect.updates,
        unchanged=expect.unchanged,
        rejected=0,
        failed=0,
    )
    _check_stripe_holds(emulator, data.rows(cfg.rows), "(a) first sync")
    stats = emulator.stats()
    creates, updates, reads = _endpoint_counts(stats)
    floor = Floor(
        expect.creates,
        expect.updates,
        math.ceil(expect.account_size / 100),
        cfg.rate_limit,
        cfg.endpoint_rate_limit,
    )
    timeline = write_timeline(sampler.samples)
    result = Result()
    result.metrics.update(
        tool_seconds_first_sync=round(run.seconds, 2),
        tool_cpu_seconds_first_sync=round(run.cpu_seconds, 2),
        tool_engine_seconds_first_sync=model.get("seconds"),
        floor_seconds_first_sync=round(floor.seconds, 2),
        tool_over_floor_first_sync=round(run.seconds / floor.seconds, 3),
        lookup_first_sync=model.get("lookup"),
        reads_first_sync=reads,
        reads_per_row_first_sync=round(reads / cfg.rows, 4),
        writes_first_sync=creates + updates,
        writes_needed_first_sync=expect.writes,
        requests_first_sync=stats["requests_total"],
        rate_limited_first_sync=stats["faults"].get("global_rate_limit", 0)
        + stats["faults"].get("endpoint_rate_limit", 0),
        effective_write_limit_rps=round(floor.write_limit_rps, 2),
        steady_writes_per_s=round(timeline.steady_writes_per_s, 2),
        throughput_fraction_of_limit=round(timeline.steady_writes_per_s / floor.write_limit_rps, 3),
        first_write_after_s=round(timeline.first_write_s, 2),
        write_phase_seconds=round(timeline.last_write_s - timeline.first_write_s, 2),
        max_in_flight_first_sync=stats.get("max_in_flight"),
    )
    if run.seconds > 600:
        result.notes.append(f"(a) took {run.seconds / 60:.1f} minutes (> 10 minutes).")
    return result


# -- (b) re-syncs -----------------------------------------------------------------------------


def scenario_b(cfg: BenchConfig, emulator: EmulatorHandle, project: BenchProject) -> Result:
    """Runs after (a), on the same project, account and state."""
    result = Result()
    log("(b) re-sync with nothing changed")
    emulator.reset(stats_only=True)
    same = project.sync_cli("sync", *cfg.sync_args, stripe_url=emulator.url)
    _check_cli(same, "(b) unchanged re-sync")
    _check_counts(
        same.model(MODEL), "(b) unchanged re-sync", unchanged=cfg.rows, created=0, updated=0
    )
    result.metrics.update(
        requests_unchanged_resync=emulator.stats()["requests_total"],
        tool_seconds_unchanged_resync=round(same.seconds, 2),
    )

    changed = data.changed_rows(cfg.rows, cfg.changed_fraction)
    log(f"(b) re-sync with {len(changed)} of {cfg.rows} rows changed")
    rows = data.rows(cfg.rows, changed)
    project.write_seed("crm", rows, data.COLUMNS)
    project.dbt("build")
    emulator.reset(stats_only=True)
    run = project.sync_cli("sync", *cfg.sync_args, stripe_url=emulator.url)
    _check_cli(run, "(b) 1% changed re-sync")
    _check_counts(
        run.model(MODEL),
        "(b) 1% changed re-sync",
        updated=len(changed),
        unchanged=cfg.rows - len(changed),
        created=0,
        rejected=0,
        failed=0,
    )
    _check_stripe_holds(emulator, rows, "(b) 1% changed re-sync")
    stats = emulator.stats()
    creates, updates, reads = _endpoint_counts(stats)
    result.metrics.update(
        changed_rows=len(changed),
        requests_changed_resync=stats["requests_total"],
        writes_changed_resync=creates + updates,
        reads_changed_resync=reads,
        writes_per_changed_row=round((creates + updates) / len(changed), 4),
        requests_for_unchanged_rows=stats["requests_total"] - len(changed),
        tool_seconds_changed_resync=round(run.seconds, 2),
        floor_seconds_changed_resync=round(
            Floor(0, len(changed), 0, cfg.rate_limit, cfg.endpoint_rate_limit).seconds, 2
        ),
        requests_by_endpoint_changed_resync=dict(stats["by_endpoint"]),
    )
    return result


# -- (c) 1M rows, warehouse side --------------------------------------------------------------


def prepare_big_project(cfg: BenchConfig, rows: int | None = None, name: str = "big",
                        target: str = "duckdb") -> BenchProject:
    root = cfg.workdir / name
    shutil.rmtree(root, ignore_errors=True)
    project = BenchProject.create(root, target=target)
    project.write_model(BIG_MODEL, data.big_model_sql(target), sync=data.SYNC)
    rows = cfg.big_rows if rows is None else rows
    project.dbt("run", "--vars", f"{{bench_rows: {rows}, bench_changed_pct: 0}}",
                timeout=1800)
    return project


def write_synced_state(project: BenchProject) -> float:
    """State as if every row had been created by a sync (see benchmarks/state.py)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.state", str(project.root), str(project.duckdb_path)],
        cwd=REPO_ROOT,
        env=project.env(),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise BenchError(
            f"writing the (c) state failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    return time.perf_counter() - started


def _plan_changed(cfg: BenchConfig, emulator: EmulatorHandle, rows: int, name: str
                  ) -> tuple[CliRun, float]:
    """A model of `rows` with the state a first sync left, then 1% renamed: the plan run."""
    log(f"(c) building the {rows:,}-row model")
    project = prepare_big_project(cfg, rows, name)
    log("(c) writing the sync state as a first sync would have")
    state_seconds = write_synced_state(project)
    changed = rows // 100
    project.dbt("run", "--vars", f"{{bench_rows: {rows}, bench_changed_pct: 1}}",
                timeout=1800)
    emulator.reset()
    log(f"(c) dbt-stripe-sync plan with {changed:,} of {rows:,} rows changed")
    run = project.sync_cli("plan", stripe_url=emulator.url, timeout=3600)
    _check_cli(run, f"(c) plan of {rows:,} rows")
    _check_counts(
        run.model(BIG_MODEL),
        f"(c) plan of {rows:,} rows",
        updated=changed,
        unchanged=rows - changed,
        created=0,
        rejected=0,
        failed=0,
    )
    requests = emulator.stats()["requests_total"]
    if requests:
        raise BenchError(f"(c) plan of {rows:,} rows made {requests} Stripe requests")
    return run, state_seconds


def scenario_c(cfg: BenchConfig, emulator: EmulatorHandle) -> Result:
    result = Result()
    run, state_seconds = _plan_changed(cfg, emulator, cfg.big_rows, "big")
    result.metrics.update(
        big_rows=cfg.big_rows,
        big_changed_rows=cfg.big_rows // 100,
        plan_seconds_1m=round(run.seconds, 2),
        plan_cpu_seconds_1m=round(run.cpu_seconds, 2),
        plan_engine_seconds_1m=run.model(BIG_MODEL).get("seconds"),
        peak_rss_mb_1m=round(run.peak_rss_mb, 1),
        stripe_requests_plan_1m=0,
        state_setup_seconds_1m=round(state_seconds, 1),
    )
    if cfg.huge_rows:
        shutil.rmtree(cfg.workdir / "big", ignore_errors=True)  # 10M rows: disk, not memory
        huge, huge_state_seconds = _plan_changed(cfg, emulator, cfg.huge_rows, "huge")
        shutil.rmtree(cfg.workdir / "huge", ignore_errors=True)
        result.metrics.update(
            huge_rows=cfg.huge_rows,
            plan_seconds_10m=round(huge.seconds, 2),
            plan_cpu_seconds_10m=round(huge.cpu_seconds, 2),
            peak_rss_mb_10m=round(huge.peak_rss_mb, 1),
            plan_rss_ratio_10m=round(huge.peak_rss_mb / run.peak_rss_mb, 3),
            plan_time_ratio_10m=round(huge.seconds / run.seconds, 2),
            state_setup_seconds_10m=round(huge_state_seconds, 1),
        )
    return result


# -- (h) first plan of new rows, per warehouse -------------------------------------------------


def _postgres_up() -> bool:
    import socket

    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", 5432)) == 0


def scenario_h(cfg: BenchConfig, emulator: EmulatorHandle) -> Result:
    """`dbt-stripe-sync plan` of a model of new customers (no sync state) into an empty
    account: one listing request, every row a create. Rows/s over the whole command."""
    result = Result()
    n = cfg.first_rows
    for target in ("duckdb", "postgres"):
        if target == "postgres" and not _postgres_up():
            result.notes.append("(h) PostgreSQL: no server on 127.0.0.1:5432, not measured")
            continue
        log(f"(h) first plan of {n:,} new customers on {target}")
        project = prepare_big_project(cfg, n, f"first_{target}", target)
        emulator.reset()
        run = project.sync_cli("plan", stripe_url=emulator.url, timeout=3600)
        _check_cli(run, f"(h) first plan on {target}")
        _check_counts(run.model(BIG_MODEL), f"(h) first plan on {target}", created=n,
                      updated=0, unchanged=0, rejected=0, failed=0)
        result.metrics.update({
            f"first_plan_seconds_{target}": round(run.seconds, 2),
            f"first_plan_cpu_seconds_{target}": round(run.cpu_seconds, 2),
            f"first_plan_rows_per_s_{target}": round(n / run.seconds),
            f"first_plan_peak_rss_mb_{target}": round(run.peak_rss_mb, 1),
        })
        if target == "postgres":
            project.drop_postgres_schemas()
        shutil.rmtree(project.root, ignore_errors=True)
    result.metrics["first_rows"] = n
    return result
