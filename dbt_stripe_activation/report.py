"""Reporting: the summary table, the plan preview, the JSON results, the exit code.

Every text that leaves the process passes through `redact`, so an API key that slipped
into an error message from anywhere never reaches stdout, a file or a CI log.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from . import __version__
from .records import OUTCOMES, ModelResult
from .stripe_api import redact

EXIT_OK = 0
EXIT_ROWS_FAILED = 1
EXIT_ERROR = 2


def exit_code(results: Sequence[ModelResult], max_failed_pct: float = 0.0) -> int:
    """0 when every row synced (not_found under update_only is not a failure), 1 when the
    share of rejected+failed rows exceeds --max-failed-pct, 2 when a model errored."""
    if any(r.status == "error" for r in results):
        return EXIT_ERROR
    bad = sum(r.counts["rejected"] + r.counts["failed"] for r in results)
    total = sum(r.total for r in results)
    if bad == 0:
        return EXIT_OK
    pct = 100.0 * bad / total if total else 100.0
    return EXIT_OK if pct <= max_failed_pct else EXIT_ROWS_FAILED


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if hasattr(value, "value") and isinstance(value.value, str):
        return value.value
    return value


def model_to_dict(result: ModelResult) -> dict[str, Any]:
    by_action: dict[str, list[dict[str, Any]]] = {"rejected": [], "failed": [], "not_found": []}
    for row in result.problems:
        by_action[row.action].append(
            {"key": row.key, "stripe_id": row.stripe_id, "reason": row.reason}
        )
    return {
        "model": result.model,
        "unique_id": result.unique_id,
        "object": result.object,
        "behavior": result.behavior,
        "key": result.key_field,
        "status": result.status,
        "error": result.error,
        "counts": dict(result.counts),
        "diff": _jsonable(result.diff) if result.diff else None,
        "lookup": result.lookup,
        "stripe_reads": result.reads,
        "stripe_writes": result.writes,
        "seconds": round(result.seconds, 3),
        **by_action,
        "problems_omitted": result.problems_omitted,
        "samples": [
            {
                "key": s.key,
                "action": s.action,
                "stripe_id": s.stripe_id,
                **({"replaces": s.replaces, "forced_by": list(s.forced_by)}
                   if s.replaces else {}),
                "diffs": [{"field": d.path, "before": _jsonable(d.before),
                           "after": _jsonable(d.after)} for d in s.diffs],
            }
            for s in result.samples
        ],
        "removed_sample": list(result.removed_sample),
    }


def results_document(
    command: str, run_id: str, results: Sequence[ModelResult], code: int,
    stripe: dict[str, Any] | None = None, error: str | None = None,
) -> dict[str, Any]:
    return {
        "command": command,
        "run_id": run_id,
        "tool_version": __version__,
        "dry_run": command == "plan",
        "stripe": stripe or {},
        "exit_code": code,
        "error": error,
        "totals": {o: sum(r.counts[o] for r in results) for o in OUTCOMES},
        "models": [model_to_dict(r) for r in results],
    }


def dumps(document: dict[str, Any]) -> str:
    return redact(json.dumps(_jsonable(document), indent=2, sort_keys=False, default=str))


def write_results_file(target_path: Path, document: dict[str, Any]) -> Path:
    path = target_path / "stripe_sync_results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(document) + "\n")
    return path


_PLAN_HEADINGS = {
    "created": "create", "updated": "update", "replaced": "replace", "unchanged": "unchanged",
    "skipped": "skip", "rejected": "rejected", "not_found": "not found", "failed": "failed",
}


def render_results(console: Console, results: Sequence[ModelResult], dry_run: bool) -> None:
    """One row per model with counts per outcome; then the problems and diff samples."""
    title = "Plan (nothing written to Stripe)" if dry_run else "Sync results"
    table = Table(title=title, title_justify="left")
    table.add_column("model")
    for outcome in OUTCOMES:
        table.add_column(_PLAN_HEADINGS[outcome] if dry_run else outcome.replace("_", " "),
                         justify="right")
    table.add_column("reads", justify="right")
    table.add_column("writes", justify="right")
    for r in results:
        table.add_row(r.model, *(str(r.counts[o]) for o in OUTCOMES), str(r.reads),
                      str(r.writes))
    console.print(table)
    for r in results:
        _render_details(console, r, dry_run)


def _render_details(console: Console, r: ModelResult, dry_run: bool) -> None:
    if r.diff is not None:
        counts = r.diff
        console.print(
            f"[bold]{r.model}[/]: {counts.total} rows; {counts.new} new, {counts.changed} "
            f"changed, {counts.retry} to retry, {counts.unchanged} unchanged since the last "
            f"sync, {counts.unsynced} still rejected or not found, {counts.invalid_key} with "
            f"an invalid key, {counts.removed} removed from the model"
            + (f"; lookup: {r.lookup}" if r.lookup else "")
        )
    if r.error:
        console.print(f"  [red]error:[/] {redact(r.error)}", markup=True)
    if r.removed_sample:
        removed = ", ".join(r.removed_sample[:5])
        console.print(f"  removed keys are left as they are in Stripe (e.g. {removed})")
    for row in r.problems[:20]:
        console.print(f"  [yellow]{row.action}[/] {row.key!r}: {redact(row.reason or '')}",
                      markup=True, highlight=False)
    if len(r.problems) > 20:
        console.print(f"  ... and {len(r.problems) - 20} more in the results file")
    for sample in r.samples:
        if sample.replaces:
            verb = "would replace" if dry_run else "replaced"
            console.print(
                f"  [magenta]{verb}[/] {sample.key!r}: {sample.replaces} -> "
                f"{sample.stripe_id or 'a new ' + r.object} (changed "
                f"{', '.join(sample.forced_by)}, which Stripe never changes on a {r.object}; "
                "the old one is archived)", highlight=False)
    if dry_run and r.samples:
        diff_table = Table(title=f"{r.model}: field changes (sample)", title_justify="left")
        for column in ("key", "action", "stripe id", "field", "before", "after"):
            diff_table.add_column(column)
        for sample in r.samples:
            for i, d in enumerate(sample.diffs):
                diff_table.add_row(
                    str(sample.key) if i == 0 else "", sample.action if i == 0 else "",
                    (sample.stripe_id or "(new)") if i == 0 else "", d.path,
                    "" if d.before is None else str(d.before),
                    "(unset)" if d.after is None else str(d.after),
                )
        console.print(diff_table)
