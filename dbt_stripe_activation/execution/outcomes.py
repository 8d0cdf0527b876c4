"""What a row's outcome does: counted in the model's result (with bounded samples for the
report) and written back to the sync state in batches. Both executors record through here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..records import (
    Action,
    DiffRow,
    DiffStatus,
    ModelResult,
    Outcome,
    RowOutcome,
    RowPlan,
    RowReport,
)
from ..spec import SyncSpec
from ..stripe_api import StripeGateway
from ..warehouse import Warehouse
from .options import ProgressCallback, SyncOptions

# Rows named in the report and results file, per model: memory stays bounded however many
# rows a broken model rejects; every row's outcome is in stripe_sync_row_results anyway.
MAX_PROBLEMS_REPORTED = 10_000


class OutcomeWriter:
    """Buffers outcomes and writes them back in batches, by count or by age: a crash loses
    at most the unflushed buffer, which the next run plans again."""

    def __init__(self, warehouse: Warehouse, spec: SyncSpec, run_id: str, opts: SyncOptions):
        self.warehouse, self.spec, self.run_id, self.opts = warehouse, spec, run_id, opts
        self.buffer: list[RowOutcome] = []
        self.last_flush = time.monotonic()

    def add(self, outcome: RowOutcome) -> None:
        self.buffer.append(outcome)
        self.maybe_flush()

    def maybe_flush(self) -> None:
        if len(self.buffer) >= self.opts.flush_every or (
            self.buffer and time.monotonic() - self.last_flush >= self.opts.flush_seconds
        ):
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.warehouse.write_outcomes(self.run_id, self.spec, self.buffer)
            self.buffer = []
        self.last_flush = time.monotonic()


@dataclass
class ModelExecution:
    """One model being executed, as its executor sees it: the model, where its writes and
    outcomes go, and the keys other models' plans wait on."""

    spec: SyncSpec
    run_id: str
    result: ModelResult
    options: SyncOptions
    warehouse: Warehouse
    gateway: StripeGateway | None
    on_progress: ProgressCallback
    # plan only: the keys each upstream model would create (references resolve to them),
    # and where this model's go when another model references it.
    planned: dict[str, set[str]] | None = None
    planned_here: set[str] | None = None
    writer: OutcomeWriter = field(init=False)

    def __post_init__(self) -> None:
        self.writer = OutcomeWriter(self.warehouse, self.spec, self.run_id, self.options)

    def progress(self, done: int, to_plan: int) -> None:
        self.on_progress(self.spec.model.name, done, to_plan)

    def tally(self, key_value: str | None, plan: RowPlan, outcome: Outcome,
              error: str | None, account: str | None = None) -> None:
        """Count one row's outcome and keep it for the report (bounded), with its object's
        Dashboard page (in `account`'s Dashboard for a connected account)."""
        result = self.result
        result.counts[outcome.value] += 1
        if self.planned_here is not None and outcome is Outcome.CREATED and key_value is not None:
            self.planned_here.add(key_value)
        if plan.status is DiffStatus.REMOVED:  # every removal is listed (the guard bounds them)
            result.removals.append(RowReport(
                key_value, plan.action.value, plan.stripe_id, error, diffs=plan.diffs,
                dashboard_url=self._dashboard_url(plan.stripe_id, plan, account)))
        if outcome.is_problem or outcome is Outcome.ALREADY_SENT:
            if len(result.problems) < MAX_PROBLEMS_REPORTED:
                shown = plan.stripe_id or plan.replaces
                result.problems.append(RowReport(
                    key_value, outcome.value, shown, error or plan.reason, diffs=plan.diffs,
                    dashboard_url=self._dashboard_url(shown, plan, account)))
            else:
                result.problems_omitted += 1
        elif plan.diffs and len(result.samples) < self.options.sample_size:
            result.samples.append(RowReport(
                key_value, plan.action.value, plan.stripe_id, diffs=plan.diffs,
                forced_by=plan.forced_by, replaces=plan.replaces,
                dashboard_url=self._dashboard_url(plan.stripe_id, plan, account)))

    def _dashboard_url(self, stripe_id: str | None, plan: RowPlan,
                       account: str | None) -> str | None:
        mode = self.gateway.settings.mode if self.gateway is not None else "test"
        return self.spec.object.dashboard_url(mode, stripe_id, account, plan.synced_values)

    def record(self, row: DiffRow, plan: RowPlan, outcome: Outcome, error: str | None,
               persist: bool = True) -> None:
        """Tally the row and (unless a plan, or told not to) queue it for the state."""
        self.tally(row.key_value, plan, outcome, error, row.account)
        if self.options.dry_run or not persist:
            return
        # A replace that failed leaves the old object as the key's object.
        self.writer.add(RowOutcome(
            key_value=row.key_value,
            action=plan.action.value,
            outcome=outcome.value,
            stripe_id=plan.stripe_id or (row.previous.stripe_id if row.previous else None),
            row_hash=row.row_hash,
            synced_values=plan.synced_values if outcome.succeeded else None,
            error=error,
        ))


def skipped(row: DiffRow, reason: str = "run aborted") -> RowPlan:
    """The plan of a row that wrote nothing: the run aborted, or its read failed."""
    return RowPlan(key_value=row.key_value, action=Action.REJECTED, row_hash=row.row_hash,
                   status=row.status, reason=reason)
