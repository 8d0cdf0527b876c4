"""(e) start-up: a no-op `dbt-stripe-sync --select <model>` against `dbt ls --select <model>`.

A user who adds the sync after `dbt build` in CI pays its start-up on every run, even when
nothing changed. The yardstick is dbt's own cheapest command over the same selection: both
start Python and dbt, read the project and the profile, and resolve the selection; the sync
then opens the adapter and runs its diff (zero rows to send, zero Stripe requests).

On one DuckDB project (a synced model among `OTHER_MODELS` others), after a first sync that
leaves the state up to date, each command runs `repeats` times, alternating (after one
unmeasured warm-up each): the medians of their wall times and their ratio (target <= 1.2x),
and beside them the CPU times' (the machine may be shared). The emulator must receive no
request at all from the measured syncs.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from stripe_emulator import start_emulator
from tests.customers import rows

from .data import SYNC
from .project import BIN, BenchError, BenchProject, CliRun, run_cli
from .scenarios import BenchConfig, Result, log

MODEL = "stripe_customers"
ROWS = 200
OTHER_MODELS = 40  # a small real project: staging models the sync does not select
TARGET_RATIO = 1.2


def startup_repeats(cfg: BenchConfig) -> int:
    return 3 if cfg.quick else 7


def prepare_startup_project(root: Path) -> BenchProject:
    project = BenchProject.create(root)
    project.write_seed("crm", rows(ROWS))
    project.write_model(MODEL, "select * from {{ ref('crm') }}", sync=SYNC)
    for i in range(OTHER_MODELS):
        project.write_model(f"staging_{i:02d}", "select 1 as id, 'x' as name")
    project.dbt("build")
    return project


def _dbt_ls(project: BenchProject) -> CliRun:
    command = [str(BIN / "dbt"), "ls", "--select", MODEL, "--target", project.target]
    run = run_cli(command, cwd=project.root, env=project.env(), timeout=300)
    if run.code != 0 or MODEL not in run.stdout:
        raise BenchError(f"(e) dbt ls exited {run.code}:\n{run.stdout[-2000:]}\n{run.stderr}")
    return run


def _noop_sync(project: BenchProject, url: str) -> CliRun:
    run = project.sync_cli("--select", MODEL, stripe_url=url, timeout=300)
    counts = run.model(MODEL)["counts"]
    if run.code != 0 or counts.get("unchanged") != ROWS:
        raise BenchError(f"(e) the no-op sync exited {run.code} with counts {counts}:\n"
                         f"{run.stderr[-3000:]}")
    return run


def scenario_e(cfg: BenchConfig) -> Result:
    repeats = startup_repeats(cfg)
    project = prepare_startup_project(cfg.workdir / "startup")
    ls_runs: list[CliRun] = []
    sync_runs: list[CliRun] = []
    with start_emulator(seed=11) as emulator:
        first = project.sync_cli("--select", MODEL, stripe_url=emulator.url)
        if first.code != 0 or first.model(MODEL)["counts"].get("created") != ROWS:
            raise BenchError(f"(e) the first sync failed: {first.stderr[-3000:]}")
        log(f"(e) {repeats} x (dbt ls, no-op sync) --select {MODEL}, after a warm-up each")
        _dbt_ls(project)
        _noop_sync(project, emulator.url)
        emulator.reset(stats_only=True)
        for _ in range(repeats):
            ls_runs.append(_dbt_ls(project))
            sync_runs.append(_noop_sync(project, emulator.url))
        requests = emulator.stats()["requests_total"]
    if requests:
        raise BenchError(f"(e) the no-op syncs sent {requests} Stripe requests, not 0")
    ls, sync = _median(ls_runs, "seconds"), _median(sync_runs, "seconds")
    ls_cpu, sync_cpu = _median(ls_runs, "cpu_seconds"), _median(sync_runs, "cpu_seconds")
    return Result(
        metrics={
            "startup_ratio": round(sync / ls, 2),
            "startup_dbt_ls_seconds": round(ls, 2),
            "startup_sync_seconds": round(sync, 2),
            "startup_cpu_ratio": round(sync_cpu / ls_cpu, 2),
            "startup_dbt_ls_cpu_seconds": round(ls_cpu, 2),
            "startup_sync_cpu_seconds": round(sync_cpu, 2),
            "startup_repeats": repeats,
            "startup_stripe_requests": requests,
        },
        notes=[f"(e) medians of {repeats}: wall time dbt ls {ls:.2f} s, no-op sync {sync:.2f} s "
               f"({_all(ls_runs)}; {_all(sync_runs)}); CPU time dbt ls {ls_cpu:.2f} s, no-op "
               f"sync {sync_cpu:.2f} s ({sync_cpu / ls_cpu:.2f}x)"],
    )


def _median(runs: list[CliRun], measure: str) -> float:
    return float(statistics.median(getattr(run, measure) for run in runs))


def _all(runs: list[CliRun]) -> str:
    return ", ".join(f"{run.seconds:.2f}" for run in runs)
