"""Run the benchmark: `python -m benchmarks.run [--quick] [--record]`.

Prints a table (stdout) and, as the last line, one JSON object with the headline numbers.
Progress goes to stderr. `--record` also writes the run into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from stripe_emulator import start_emulator

from .connect import TARGET_FRACTION, scenario_f
from .faults import TARGET_RATIO as FAULTS_RATIO
from .faults import scenario_g
from .project import REPO_ROOT, BenchError, BenchProject
from .scenarios import (
    BenchConfig,
    Result,
    log,
    naive_baseline,
    prepare_project,
    scenario_a,
    scenario_b,
    scenario_c,
    scenario_h,
)
from .startup import TARGET_RATIO, scenario_e
from .usage import scenario_d

RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"
SCENARIOS = ("naive", "a", "b", "c", "d", "e", "f", "g", "h")

# name -> (comparison, bound, description); checked against the JSON's headline numbers.
TARGETS: dict[str, tuple[str, float, str]] = {
    "throughput_fraction_of_limit": (">=", 0.9, "steady writes/s >= 0.9 of the limit"),
    "speedup_vs_naive": (">=", 10.0, "(a) >= 10x faster than the naive loop"),
    "writes_per_changed_row": ("<=", 1.01, "(b) <= 1.01 writes per changed row"),
    "reads_per_row_first_sync": ("<=", 0.02, "(a) <= 0.02 reads per row"),
    "requests_unchanged_resync": ("<=", 0, "(b) 0 requests for unchanged rows"),
    "plan_seconds_1m": ("<=", 5.0, "(c) plan of 1M rows <= 5 s"),
    "peak_rss_mb_1m": ("<=", 500.0, "(c) peak RSS <= 500 MB"),
    "peak_rss_mb_10m": ("<=", 300.0, "(c) plan of 10M rows: peak RSS <= 300 MB"),
    "plan_rss_ratio_10m": ("<=", 1.15, "(c) peak RSS at 10M rows <= 1.15x at 1M"),
    "plan_time_ratio_10m": ("<=", 12.0, "(c) plan time at 10M rows <= 12x at 1M"),
    "first_plan_rows_per_s_duckdb": (">=", 20_000, "(h) first plan >= 20,000 rows/s, DuckDB"),
    "first_plan_rows_per_s_postgres": (">=", 20_000,
                                       "(h) first plan >= 20,000 rows/s, PostgreSQL"),
    "usage_fraction_of_limit": (">=", 0.9, "(d) events/s >= 0.9 of the stream's limit"),
    "usage_fraction_of_raw_client": (">=", 0.7, "(d) events/s >= 0.7 of a raw client's"),
    "usage_peak_rss_mb": ("<=", 300.0, "(d) peak RSS <= 300 MB"),
    "usage_rerun_events_sent": ("<=", 0, "(d) a re-run sends 0 events"),
    "startup_ratio": ("<=", TARGET_RATIO, f"(e) a no-op sync <= {TARGET_RATIO}x `dbt ls`"),
    "connect_fraction_of_limit": (">=", TARGET_FRACTION,
                                  f"(f) writes/s >= {TARGET_FRACTION} of 20 accounts' limits"),
    "connect_rerun_requests": ("<=", 0, "(f) a re-run makes 0 requests"),
    "faults_over_floor": ("<=", FAULTS_RATIO, f"(g) under faults <= {FAULTS_RATIO:g}x the floor"),
    "faults_duplicates": ("<=", 0, "(g) 0 duplicate customers"),
}


def machine() -> dict[str, Any]:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "-"

    cpu = "-"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        memory_gb = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": memory_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "dbt-core": version("dbt-core"),
        "dbt-duckdb": version("dbt-duckdb"),
        "duckdb": version("duckdb"),
        "stripe": version("stripe"),
        "dbt-stripe-activation": version("dbt-stripe-activation"),
    }


def headline(metrics: dict[str, Any], quick: bool) -> dict[str, Any]:
    tool = metrics.get("tool_seconds_first_sync")
    naive = metrics.get("naive_seconds_first_sync")
    out: dict[str, Any] = {
        "quick": quick,
        "speedup_vs_naive": round(naive / tool, 2) if tool and naive else None,
    }
    for name in (
        "throughput_fraction_of_limit",
        "reads_per_row_first_sync",
        "writes_per_changed_row",
        "requests_unchanged_resync",
        "plan_seconds_1m",
        "peak_rss_mb_1m",
        "peak_rss_mb_10m",
        "plan_rss_ratio_10m",
        "plan_time_ratio_10m",
        "first_plan_rows_per_s_duckdb",
        "first_plan_rows_per_s_postgres",
        "usage_fraction_of_limit",
        "usage_fraction_of_raw_client",
        "usage_peak_rss_mb",
        "usage_rerun_events_sent",
        "startup_ratio",
        "connect_fraction_of_limit",
        "connect_rerun_requests",
        "faults_over_floor",
        "faults_duplicates",
    ):
        out[name] = metrics.get(name)
    for name in (
        "rows",
        "big_rows",
        "naive_sample_rows",
        "tool_seconds_first_sync",
        "naive_seconds_first_sync",
        "floor_seconds_first_sync",
        "tool_over_floor_first_sync",
        "steady_writes_per_s",
        "effective_write_limit_rps",
        "rate_limited_first_sync",
        "requests_first_sync",
        "requests_changed_resync",
        "changed_rows",
        "tool_seconds_changed_resync",
        "naive_seconds_resync",
        "stripe_requests_plan_1m",
        "first_write_after_s",
        "write_phase_seconds",
        "tool_cpu_seconds_first_sync",
        "plan_cpu_seconds_1m",
        "huge_rows",
        "plan_seconds_10m",
        "plan_cpu_seconds_10m",
        "first_rows",
        "first_plan_seconds_duckdb",
        "first_plan_seconds_postgres",
        "first_plan_peak_rss_mb_duckdb",
        "first_plan_peak_rss_mb_postgres",
        "usage_events",
        "usage_limited_events_per_second",
        "usage_unlimited_events_per_second",
        "usage_raw_client_events_per_second",
        "usage_naive_events_per_second",
        "usage_speedup_vs_naive",
        "startup_dbt_ls_seconds",
        "startup_sync_seconds",
        "startup_cpu_ratio",
        "faults_seconds",
        "faults_floor_seconds",
        "faults_requests",
        "faults_rate_limited",
    ):
        if name in metrics:
            out[name] = metrics[name]
    resync = metrics.get("tool_seconds_changed_resync")
    if resync and metrics.get("naive_seconds_resync"):
        out["speedup_vs_naive_resync"] = round(metrics["naive_seconds_resync"] / resync, 1)
    return out


def check_targets(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    checked = {}
    for name, (op, bound, text) in TARGETS.items():
        value = summary.get(name)
        met = None if value is None else (value >= bound if op == ">=" else value <= bound)
        checked[name] = {"value": value, "target": f"{op} {bound:g}", "met": met, "what": text}
    return checked


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return text + unit


def table_rows(m: dict[str, Any], cfg: BenchConfig) -> list[tuple[str, str, str, str, str, str]]:
    """(scenario, measure, tool, naive, floor, target) rows, shared by the terminal table and
    RESULTS.md."""
    n, big = cfg.rows, cfg.big_rows
    per_row = m.get("naive_seconds_per_row")
    changed = m.get("changed_rows")
    extrapolated = f" (extrapolated from {m.get('naive_sample_rows')} rows)"
    return [
        (
            f"(a) first sync, {n:,} rows",
            "wall time",
            _fmt(m.get("tool_seconds_first_sync"), " s"),
            _fmt(m.get("naive_seconds_first_sync"), " s") + extrapolated,
            _fmt(m.get("floor_seconds_first_sync"), " s"),
            ">= 10x faster than naive",
        ),
        (
            "",
            "steady writes/s",
            _fmt(m.get("steady_writes_per_s")),
            _fmt(1 / per_row if per_row else None),
            _fmt(m.get("effective_write_limit_rps")),
            ">= 0.9 of the limit",
        ),
        (
            "",
            "first write after / write phase",
            f"{_fmt(m.get('first_write_after_s'), ' s')} / "
            f"{_fmt(m.get('write_phase_seconds'), ' s')}",
            "-",
            "-",
            "",
        ),
        (
            "",
            "CPU time of the CLI",
            _fmt(m.get("tool_cpu_seconds_first_sync"), " s"),
            "-",
            "-",
            "",
        ),
        (
            "",
            "reads per row",
            _fmt(m.get("reads_per_row_first_sync")),
            "1",
            _fmt(math.ceil(n / 100) / n),
            "<= 0.02",
        ),
        (
            "",
            "requests sent",
            _fmt(m.get("requests_first_sync")),
            f"{2 * n:,}",
            _fmt(m.get("writes_needed_first_sync", 0) + math.ceil(n / 100)),
            "",
        ),
        (
            "",
            "writes committed / needed",
            f"{_fmt(m.get('writes_first_sync'))} / {_fmt(m.get('writes_needed_first_sync'))}",
            f"{n:,} / {_fmt(m.get('writes_needed_first_sync'))}",
            _fmt(m.get("writes_needed_first_sync")),
            "",
        ),
        (
            "",
            "429s received",
            _fmt(m.get("rate_limited_first_sync")),
            _fmt(m.get("naive_rate_limited")),
            "0",
            "",
        ),
        (
            "(b) re-sync, nothing changed",
            "requests",
            _fmt(m.get("requests_unchanged_resync")),
            f"{2 * n:,}",
            "0",
            "0",
        ),
        (
            "",
            "wall time",
            _fmt(m.get("tool_seconds_unchanged_resync"), " s"),
            _fmt(m.get("naive_seconds_resync"), " s"),
            "0 s",
            "",
        ),
        (
            f"(b) re-sync, {_fmt(changed)} rows changed",
            "requests",
            _fmt(m.get("requests_changed_resync")),
            f"{2 * n:,}",
            _fmt(changed),
            "",
        ),
        (
            "",
            "writes per changed row",
            _fmt(m.get("writes_per_changed_row")),
            _fmt(n / changed if changed else None),
            "1",
            "<= 1.01",
        ),
        (
            "",
            "wall time",
            _fmt(m.get("tool_seconds_changed_resync"), " s"),
            _fmt(m.get("naive_seconds_resync"), " s"),
            _fmt(m.get("floor_seconds_changed_resync"), " s"),
            "",
        ),
        (
            f"(c) plan, {big:,} rows, 1% changed",
            "wall time",
            _fmt(m.get("plan_seconds_1m"), " s"),
            "-",
            "-",
            "<= 20 s",
        ),
        ("", "CPU time of the CLI", _fmt(m.get("plan_cpu_seconds_1m"), " s"), "-", "-", ""),
        ("", "peak RSS", _fmt(m.get("peak_rss_mb_1m"), " MB"), "-", "-", "<= 500 MB"),
        ("", "Stripe requests", _fmt(m.get("stripe_requests_plan_1m")), "-", "0", "0"),
        (f"(c) plan, {_fmt(m.get('huge_rows'))} rows, 1% changed", "wall time (x the 1M plan)",
         f"{_fmt(m.get('plan_seconds_10m'), ' s')} ({_fmt(m.get('plan_time_ratio_10m'), 'x')})",
         "-", "-", "<= 12x"),
        ("", "peak RSS (x the 1M plan)",
         f"{_fmt(m.get('peak_rss_mb_10m'), ' MB')} ({_fmt(m.get('plan_rss_ratio_10m'), 'x')})",
         "-", "-", "<= 300 MB, <= 1.15x"),
        (f"(h) first plan, {_fmt(m.get('first_rows'))} new rows", "rows/s, DuckDB",
         _fmt(m.get("first_plan_rows_per_s_duckdb")), "-", "-", ">= 20,000"),
        ("", "rows/s, PostgreSQL", _fmt(m.get("first_plan_rows_per_s_postgres")), "-", "-",
         ">= 20,000"),
        (
            f"(d) usage, {_fmt(m.get('usage_events'))} new meter events",
            "events/s, stream limited to 100 req/s",
            _fmt(m.get("usage_limited_events_per_second")),
            _fmt(m.get("usage_naive_events_per_second")),
            _fmt(m.get("usage_limit_events_per_second")),
            ">= 0.9 of the limit",
        ),
        (
            "",
            "events/s, unlimited (floor: raw client)",
            _fmt(m.get("usage_unlimited_events_per_second")),
            "-",
            _fmt(m.get("usage_raw_client_events_per_second")),
            ">= 0.7 of the raw client",
        ),
        ("", "peak RSS", _fmt(m.get("usage_peak_rss_mb"), " MB"), "-", "-", "<= 300 MB"),
        ("", "events sent by a re-run", _fmt(m.get("usage_rerun_events_sent")), "-", "0",
         "0"),
        ("", "speedup vs naive (v1, one at a time)", _fmt(m.get("usage_speedup_vs_naive"), "x"),
         "1x", "-", ""),
        ("(e) start-up, no-op sync of one model", "median wall time (floor: `dbt ls`)",
         _fmt(m.get("startup_sync_seconds"), " s"), "-",
         _fmt(m.get("startup_dbt_ls_seconds"), " s"), f"<= {TARGET_RATIO}x `dbt ls`"),
        ("", "sync / dbt ls", _fmt(m.get("startup_ratio"), "x"), "-", "1x",
         f"<= {TARGET_RATIO}x"),
    ]


HEADERS = ("scenario", "measure", "dbt-stripe-sync", "naive loop", "floor", "target")


def render(
    console: Console,
    m: dict[str, Any],
    cfg: BenchConfig,
    notes: list[str],
    targets: dict[str, dict[str, Any]],
) -> None:
    title = (
        f"dbt-stripe-sync benchmark{' (quick)' if cfg.quick else ''}: emulator at "
        f"{cfg.latency_ms[0]}-{cfg.latency_ms[1]} ms, {cfg.rate_limit:g} req/s global, "
        f"{cfg.endpoint_rate_limit:g} req/s per endpoint"
    )
    table = Table(title=title, title_justify="left")
    for header in HEADERS:
        table.add_column(header, justify="left" if header in ("scenario", "measure") else "right")
    for row in table_rows(m, cfg):
        table.add_row(*row)
    console.print(table)
    for note in notes:
        console.print(f"- {note}", highlight=False)
    missed = [t["what"] for t in targets.values() if t["met"] is False]
    unknown = [t["what"] for t in targets.values() if t["met"] is None]
    if missed:
        console.print("[yellow]targets missed:[/] " + "; ".join(missed), highlight=False)
    if unknown:
        console.print("[yellow]not measured:[/] " + "; ".join(unknown), highlight=False)


def markdown(
    m: dict[str, Any],
    cfg: BenchConfig,
    notes: list[str],
    summary: dict[str, Any],
    targets: dict[str, dict[str, Any]],
    info: dict[str, Any],
    seconds: float,
) -> str:
    lines = [
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {seconds:.0f} s in all. "
        f"Machine: {info['nproc']} cores ({info['cpu']}), {info['memory_gb']} GB, "
        f"{info['os']}; Python {info['python']}, dbt-core {info['dbt-core']}, dbt-duckdb "
        f"{info['dbt-duckdb']}, duckdb {info['duckdb']}, stripe {info['stripe']}. Load "
        f"average (1 min) at the start {summary.get('load_average_start', '-')}, at the end "
        f"{summary.get('load_average_end', '-')}: other work on the machine skews timings.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "| " + " | ".join("---" for _ in HEADERS) + " |",
    ]
    for row in table_rows(m, cfg):
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |")
    lines.append("")
    for _name, t in targets.items():
        mark = {True: "met", False: "**missed**", None: "not measured"}[t["met"]]
        lines.append(f"- {t['what']}: {_fmt(t['value'])} -- {mark}")
    for note in notes:
        lines.append(f"- {note}")
    lines += ["", "```json", json.dumps(summary), "```"]
    return "\n".join(lines)


def record(section: str, text: str) -> None:
    """Replace the RESULTS.md block between `<!-- {section}:start -->` and its end marker."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    doc = RESULTS_MD.read_text() if RESULTS_MD.exists() else ""
    block = f"{start}\n{text}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    doc = pattern.sub(lambda _: block, doc) if pattern.search(doc) else doc + "\n" + block + "\n"
    RESULTS_MD.write_text(doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, under 2 minutes")
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--record", action="store_true", help="write this run into benchmarks/RESULTS.md"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the throwaway dbt projects go (default .bench/)",
    )
    parser.add_argument(
        "--sync-arg",
        action="append",
        default=[],
        help="an extra flag for every `dbt-stripe-sync sync` (experiments only; not with "
        "--record), e.g. --sync-arg=--concurrency=32",
    )
    args = parser.parse_args(argv)
    if args.sync_arg and args.record:
        parser.error("--record keeps the results of the tool's defaults: drop --sync-arg")
    chosen = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = chosen - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")

    workdir = args.workdir or REPO_ROOT / ".bench" / ("quick" if args.quick else "full")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    cfg = replace(BenchConfig.make(args.quick, workdir.resolve()), sync_args=tuple(args.sync_arg))
    started = time.perf_counter()
    load_start = round(os.getloadavg()[0], 2)
    metrics: dict[str, Any] = {"rows": cfg.rows, "big_rows": cfg.big_rows}
    notes: list[str] = []
    errors: dict[str, str] = {}

    def run(name: str, step: Callable[[], Result]) -> bool:
        if name not in chosen:
            return False
        try:
            result = step()
        except (BenchError, OSError, RuntimeError, ValueError) as exc:
            errors[name] = str(exc)[-3000:]
            log(f"scenario {name} failed: {exc}")
            return False
        metrics.update(result.metrics)
        notes.extend(result.notes)
        return True

    with start_emulator(**cfg.emulator_config()) as emulator:
        log(f"emulator at {emulator.url}; work dir {workdir}")
        project: BenchProject | None = None
        if chosen & {"a", "b"}:
            try:
                project = prepare_project(cfg)
            except BenchError as exc:
                errors["setup"] = str(exc)[-3000:]
        run("naive", lambda: naive_baseline(cfg, emulator))
        a_ok = project is not None and run("a", lambda: scenario_a(cfg, emulator, project))
        if "b" in chosen:
            if a_ok and project is not None:
                synced = project
                run("b", lambda: scenario_b(cfg, emulator, synced))
            else:
                errors["b"] = "skipped: (b) re-syncs the state (a) leaves"
        run("c", lambda: scenario_c(cfg, emulator))
        run("h", lambda: scenario_h(cfg, emulator))
    run("d", lambda: scenario_d(cfg))  # its own emulators: limited, unlimited
    run("e", lambda: scenario_e(cfg))  # its own emulator: no latency, no limits
    run("f", lambda: scenario_f(cfg))  # its own emulator: 20 connected accounts
    run("g", lambda: scenario_g(cfg))  # its own emulator, behind a faulty front

    seconds = time.perf_counter() - started
    summary = headline(metrics, cfg.quick)
    targets = check_targets(summary)
    summary["targets_missed"] = [n for n, t in targets.items() if t["met"] is False]
    summary["seconds"] = round(seconds, 1)
    summary["load_average_start"] = load_start
    summary["load_average_end"] = round(os.getloadavg()[0], 2)
    if cfg.sync_args:
        summary["sync_args"] = list(cfg.sync_args)
        notes.append(f"not the defaults: every sync ran with {' '.join(cfg.sync_args)}")
    if errors:
        summary["errors"] = errors
        notes += [
            f"scenario {k} failed: {v.splitlines()[0] if v else ''}" for k, v in errors.items()
        ]
    console = Console(width=160)
    render(console, metrics, cfg, notes, targets)
    if args.record:
        record(
            "quick" if cfg.quick else "full",
            markdown(metrics, cfg, notes, summary, targets, machine(), seconds),
        )
    print(json.dumps(summary), flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
