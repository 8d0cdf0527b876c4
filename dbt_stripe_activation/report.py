"""Reporting: the summary table, the plan preview, the JSON results, the exit code.

Every text that leaves the process passes through `redact`, so an API key that slipped
into an error message from anywhere never reaches stdout, a file or a CI log.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.style import Style
from rich.table import Table
from rich.text import Text

from . import __version__
from .records import OUTCOMES, ModelResult, Outcome
from .results import PROBLEM_OUTCOMES
from .stripe_api import redact

logger = logging.getLogger("dbt_stripe_activation")

EXIT_OK = 0
EXIT_ROWS_FAILED = 1
EXIT_ERROR = 2


def exit_code(results: Sequence[ModelResult], max_failed_pct: float = 0.0) -> int:
    """0 when every row synced (not_found under update_only is not a failure), 1 when the
    share of rejected, failed and uncertain rows exceeds --max-failed-pct, 2 when a model
    errored."""
    if any(r.status == "error" for r in results):
        return EXIT_ERROR
    bad = sum(r.counts[name] for r in results for name in PROBLEM_OUTCOMES)
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
    by_action: dict[str, list[dict[str, Any]]] = {
        o.value: [] for o in Outcome if o.is_problem or o is Outcome.ALREADY_SENT
    }
    for row in result.problems:
        entry: dict[str, Any] = {"key": row.key, "stripe_id": row.stripe_id,
                                 "dashboard_url": row.dashboard_url, "reason": row.reason}
        if row.diffs:
            entry["diffs"] = [{"field": d.path, "before": _jsonable(d.before),
                               "after": _jsonable(d.after)} for d in row.diffs]
        by_action.setdefault(row.action, []).append(entry)
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
                "dashboard_url": s.dashboard_url,
                **({"replaces": s.replaces, "forced_by": list(s.forced_by)}
                   if s.replaces else {}),
                "diffs": [{"field": d.path, "before": _jsonable(d.before),
                           "after": _jsonable(d.after)} for d in s.diffs],
            }
            for s in result.samples
        ],
        "removed_sample": list(result.removed_sample),
        "removals": [{"key": r.key, "stripe_id": r.stripe_id, "dashboard_url": r.dashboard_url,
                      "action": r.action, "reason": r.reason} for r in result.removals],
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


def json_safe(document: dict[str, Any]) -> dict[str, Any]:
    """The document as its file holds it: redacted, plain JSON types."""
    result: dict[str, Any] = json.loads(dumps(document))
    return result


def results_path(target_path: Path, shard: tuple[int, int] | None = None) -> Path:
    """`stripe_sync_results.json`; a shard's own file, as shards run side by side."""
    suffix = f".shard-{shard[0]}-of-{shard[1]}" if shard else ""
    return target_path / f"stripe_sync_results{suffix}.json"


def write_results_file(target_path: Path, document: dict[str, Any],
                       shard: tuple[int, int] | None = None) -> Path:
    path = results_path(target_path, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(document) + "\n")
    return path


_PLAN_HEADINGS = {
    "created": "create", "updated": "update", "replaced": "replace", "unchanged": "unchanged",
    "skipped": "skip", "sent": "send", "already_sent": "already sent",
    "rejected": "rejected", "not_found": "not found", "failed": "failed",
    "uncertain": "uncertain", "archived": "archive", "deleted": "delete",
}
# Shown for every run; the others only when some model has them.
_ALWAYS_SHOWN = ("created", "updated", "unchanged", "rejected", "not_found", "failed")


def render_results(console: Console, results: Sequence[ModelResult], dry_run: bool) -> None:
    """The removals first (what leaves Stripe is what a reviewer must see), then one row
    per model with counts per outcome, then the problems and diff samples."""
    for r in results:
        _render_removals(console, r, dry_run)
    title = "Plan (nothing written to Stripe)" if dry_run else "Sync results"
    table = Table(title=title, title_justify="left")
    table.add_column("model")
    shown = [o for o in OUTCOMES if o in _ALWAYS_SHOWN or any(r.counts[o] for r in results)]
    for outcome in shown:
        table.add_column(_PLAN_HEADINGS[outcome] if dry_run else outcome.replace("_", " "),
                         justify="right")
    table.add_column("reads", justify="right")
    table.add_column("writes", justify="right")
    for r in results:
        table.add_row(r.model, *(str(r.counts[o]) for o in shown), str(r.reads),
                      str(r.writes))
    console.print(table)
    for r in results:
        _render_details(console, r, dry_run)


def _linked(stripe_id: str | None, url: str | None, missing: str = "None") -> Text:
    """An id as a hyperlink to its Dashboard page, where the terminal supports it."""
    return Text(stripe_id or missing, style=Style(link=url) if url and stripe_id else "")


def _link_markup(stripe_id: str | None, url: str | None) -> str | None:
    return f"[link={url}]{stripe_id}[/link]" if stripe_id and url else stripe_id


def _render_removals(console: Console, r: ModelResult, dry_run: bool) -> None:
    """on_removed, listed before anything else: every key that left the model, its Stripe
    id and what happens (or happened) to it."""
    if not r.removals:
        return
    verb = "would be" if dry_run else "were"
    table = Table(title=f"{r.model}: {len(r.removals)} keys left the model and {verb} "
                  "removed from Stripe", title_justify="left")
    for column in ("key", "stripe id", "action", "outcome"):
        table.add_column(column)
    for row in r.removals:
        table.add_row(str(row.key), _linked(row.stripe_id, row.dashboard_url), row.action,
                      redact(row.reason) if row.reason else ("planned" if dry_run else "done"))
    console.print(table)


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
                f"{_link_markup(sample.stripe_id, sample.dashboard_url) or 'a new ' + r.object} "
                "(changed "
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
                    _linked(sample.stripe_id, sample.dashboard_url, "(new)") if i == 0 else "",
                    d.path,
                    "" if d.before is None else str(d.before),
                    "(unset)" if d.after is None else str(d.after),
                )
        console.print(diff_table)


# --- the screen ---------------------------------------------------------------------------


def console(stderr: bool = False) -> Console:
    """Rich console; CI logs (not a terminal) get 120 columns instead of rich's 80."""
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=120)


def warn(text: str, output: str = "text") -> None:
    """A warning for people: stderr, so `--output json` keeps stdout machine-readable; the
    Python API (output "none") hands it to logging, where the orchestrator's log takes it."""
    if output == "none":
        logger.warning(redact(text))
        return
    console(stderr=True).print(f"[yellow]Warning:[/] {redact(text)}", highlight=False)


def warn_api_base(api_base: str | None, output: str = "text") -> None:
    if not api_base:
        return
    host = urlparse(api_base).hostname or ""
    if host != "api.stripe.com":
        warn(f"STRIPE_API_BASE points at {api_base}, not Stripe: nothing written there "
             "reaches your Stripe account.", output)


def render_error(message: str, error_type: str, code: int, *, json_mode: bool) -> None:
    """A run that could not start: the JSON document on stdout, or one line on stderr."""
    if json_mode:
        print(dumps({"error": message, "error_type": error_type, "exit_code": code}))
    else:
        Console(stderr=True).print(f"[bold red]Error:[/] {redact(message)}", highlight=False)


def render_check(checked: dict[str, Any], *, output: str) -> None:
    if output == "none":
        return
    if output == "json":
        print(dumps(checked))
        return
    out = console()
    for name in ("stripe", "warehouse"):
        part = checked[name]
        if part and part.get("ok"):
            out.print(f"[green]OK[/]   {name}: {redact(str(part.get('detail')))}", highlight=False)
        else:
            out.print(f"[red]FAIL[/] {name}: {redact(str((part or {}).get('error')))}",
                      highlight=False)


def render_reset(cleared: dict[str, int], *, output: str) -> None:
    if output == "none":
        return
    if output == "json":
        print(dumps({"command": "reset-state", "cleared": cleared, "exit_code": 0}))
        return
    for name, count in cleared.items():
        console().print(f"{name}: cleared {count} state rows (nothing sent to Stripe)")


def render_run(document: dict[str, Any], results: Sequence[ModelResult], dry_run: bool,
               path: Path, error: str | None, *, output: str) -> None:
    """stdout: the JSON document, or the summary for people; stderr: the error, if any.
    Output "none" (the Python API) prints nothing: the caller has the result."""
    if output == "none":
        return
    if output == "json":
        print(dumps(document))
    else:
        out = console()
        render_results(out, results, dry_run)
        out.print(f"Results written to {path}", highlight=False)
    if error:
        console(stderr=True).print(f"[bold red]Error:[/] {redact(error)}", highlight=False)


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.1f} rows/s" if speed else "", style="progress.data.speed")


class ModelProgress:
    """A rich progress bar per model (rows done, rate, ETA), on stderr; off for JSON output
    and when stderr is not a terminal."""

    def __init__(self, disabled: bool) -> None:
        err = console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            _RateColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), console=err, disable=disabled or not err.is_terminal,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}

    def update_model(self, model: str, done: int, total: int) -> None:
        if model not in self.tasks:
            self.tasks[model] = self.progress.add_task(model, total=max(total, 1))
        self.progress.update(self.tasks[model], completed=done if total else 1,
                             total=max(total, 1))

    def __enter__(self) -> ModelProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)
