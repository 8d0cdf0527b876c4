"""Execution: stream the diff, match, plan and write each row, record outcomes as they land.

Rows flow warehouse -> bounded in-flight set of worker tasks -> outcome buffer -> state
write-back, so memory does not grow with the model and a crash loses at most the rows in
flight and the unflushed buffer (which the next run re-plans; lookups and idempotency keys
keep it from duplicating anything).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from .errors import LockHeldError, StripeConnectionError
from .match import LookupStrategy, Matcher
from .plan import (
    Action,
    DesiredRow,
    FieldDiff,
    Rejection,
    RowPlan,
    desired_values,
    plan_row,
    reject,
)
from .spec import SyncSpec
from .stripe_api import StripeGateway, StripeWriteError, redact
from .warehouse import DiffCounts, DiffRow, DiffStatus, RowOutcome, RunRecord, Warehouse

# Rows named in the report and results file, per model: memory stays bounded however many
# rows a broken model rejects; every row's outcome is in stripe_sync_row_results anyway.
MAX_PROBLEMS_REPORTED = 10_000

OUTCOMES = ("created", "updated", "unchanged", "rejected", "not_found", "failed")
_OUTCOME_OF_ACTION = {
    Action.CREATE: "created",
    Action.UPDATE: "updated",
    Action.UNCHANGED: "unchanged",
    Action.REJECTED: "rejected",
    Action.NOT_FOUND: "not_found",
}


@dataclass(frozen=True)
class SyncOptions:
    dry_run: bool = False  # `plan`: match and plan, write nothing anywhere
    full_resync: bool = False
    batch_size: int = 500
    lookup: LookupStrategy = LookupStrategy.AUTO
    concurrency: int = 16
    sample_size: int = 20  # rows whose field diffs the report shows
    flush_every: int = 200  # outcomes per state write-back
    flush_seconds: float = 2.0
    lock_ttl_seconds: int = 3600


@dataclass(frozen=True)
class RowReport:
    """A row the report names: rejected, failed or not found (with why), or a diff sample."""

    key: str | None
    action: str
    stripe_id: str | None = None
    reason: str | None = None
    diffs: tuple[FieldDiff, ...] = ()


@dataclass
class ModelResult:
    """What happened (or, for plan, would happen) to one model."""

    model: str
    unique_id: str
    object: str
    behavior: str
    key_field: str
    dry_run: bool
    run_id: str
    diff: DiffCounts | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    problems: list[RowReport] = field(default_factory=list)  # rejected / failed / not_found
    problems_omitted: int = 0  # beyond MAX_PROBLEMS_REPORTED: in stripe_sync_row_results
    samples: list[RowReport] = field(default_factory=list)  # field-level diffs
    removed_sample: list[str] = field(default_factory=list)
    lookup: str | None = None
    reads: int = 0
    writes: int = 0
    seconds: float = 0.0
    status: str = "running"  # success | partial | error
    error: str | None = None
    exception: BaseException | None = field(default=None, repr=False)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


ProgressCallback = Callable[[str, int, int], None]  # (model, rows done, rows to plan)


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]


class Engine:
    """Runs one model at a time; called from one thread, it owns a pool of Stripe workers."""

    def __init__(
        self,
        warehouse: Warehouse,
        gateway: StripeGateway | None,
        options: SyncOptions,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.warehouse = warehouse
        self.gateway = gateway
        self.options = options
        self.on_progress = on_progress or (lambda *_: None)
        self.owner = f"{socket.gethostname()}:{os.getpid()}"

    def run_model(self, spec: SyncSpec, run_id: str) -> ModelResult:
        opts = self.options
        result = ModelResult(
            model=spec.model.name, unique_id=spec.model.unique_id, object=spec.object.name,
            behavior=spec.behavior.value, key_field=spec.key.field, dry_run=opts.dry_run,
            run_id=run_id,
        )
        started = time.monotonic()
        started_at = datetime.now(timezone.utc)
        reads_before = self.gateway.stats.reads if self.gateway else 0
        writes_before = self.gateway.stats.writes if self.gateway else 0
        if not opts.dry_run:
            self._acquire_lock(spec)
        try:
            if not opts.dry_run:
                self.warehouse.record_run(RunRecord(run_id, spec.model.unique_id, "sync",
                                                    started_at))
            self._run(spec, run_id, result)
            result.status = "success" if not (result.counts["rejected"]
                                               or result.counts["failed"]) else "partial"
        except Exception as exc:  # noqa: BLE001 - reported with the partial result
            result.status = "error"
            result.error = redact(str(exc))
            result.exception = exc
        finally:
            result.seconds = time.monotonic() - started
            if self.gateway is not None:
                result.reads = self.gateway.stats.reads - reads_before
                result.writes = self.gateway.stats.writes - writes_before
            if not opts.dry_run:
                self._finish_run(spec, run_id, started_at, result)
        return result

    def _finish_run(
        self, spec: SyncSpec, run_id: str, started_at: datetime, result: ModelResult
    ) -> None:
        """Record the run's end and free the lock. With the warehouse gone this fails too: the
        run is then an error in the result (so the results file still says what happened),
        never an exception that masks the first one; a dead process's lock is taken over."""
        try:
            try:
                self.warehouse.record_run(RunRecord(
                    run_id, spec.model.unique_id, "sync", started_at,
                    finished_at=datetime.now(timezone.utc), counts=dict(result.counts),
                    status=result.status,
                ))
            finally:
                self.warehouse.release_lock(spec.model, self.owner)
        except Exception as exc:  # noqa: BLE001 - reported with the result
            if result.exception is None:
                result.status = "error"
                result.error = redact(str(exc))
                result.exception = exc

    def _acquire_lock(self, spec: SyncSpec) -> None:
        try:
            self.warehouse.acquire_lock(spec.model, self.owner, self.options.lock_ttl_seconds)
        except LockHeldError as exc:
            # A lock left by a process of this machine that no longer exists (killed) is
            # stale: take it over rather than wait for its expiry.
            if not _is_dead_local_owner(exc.owner):
                raise
            self.warehouse.release_lock(spec.model, exc.owner or "")
            self.warehouse.acquire_lock(spec.model, self.owner, self.options.lock_ttl_seconds)

    def _run(self, spec: SyncSpec, run_id: str, result: ModelResult) -> None:
        opts = self.options
        diff = self.warehouse.diff_counts(spec, full_resync=opts.full_resync)
        result.diff = diff
        result.removed_sample = self.warehouse.removed_keys(spec) if diff.removed else []
        to_plan = diff.total - diff.unchanged if not opts.full_resync else diff.total
        result.counts["unchanged"] += 0 if opts.full_resync else diff.unchanged
        if to_plan == 0:
            self.on_progress(spec.model.name, 0, 0)
            return
        assert self.gateway is not None
        matcher = Matcher(spec, self.gateway, opts.lookup, use_state=not opts.full_resync)
        unknown = diff.total - diff.invalid_key if opts.full_resync else diff.new + diff.retry
        matcher.prepare(unknown)
        result.lookup = matcher.chosen.value if matcher.chosen else None

        writer = _OutcomeWriter(self.warehouse, spec, run_id, opts)
        abort = threading.Event()
        done = 0
        pending: set[Future[tuple[DiffRow, RowPlan, str, str | None]]] = set()

        def collect(futures: set[Future[tuple[DiffRow, RowPlan, str, str | None]]]) -> None:
            """Record every finished row (a landed create must reach the state even when a
            sibling failed the run), then raise the first failure."""
            nonlocal done
            failure: BaseException | None = None
            for future in futures:
                if future.exception() is not None:
                    failure = failure or future.exception()
                    continue
                row, plan, outcome, error = future.result()
                self._record(spec, result, writer, row, plan, outcome, error)
                done += 1
            self.on_progress(spec.model.name, done, to_plan)
            if failure is not None:
                raise failure

        def work(desired: DesiredRow) -> tuple[DiffRow, RowPlan, str, str | None]:
            if abort.is_set():
                return desired.row, _skipped(desired.row), "failed", "run aborted"
            try:
                return self._process(spec, matcher, desired)
            except StripeConnectionError:
                abort.set()
                raise

        max_in_flight = max(opts.concurrency * 4, 32)
        with ThreadPoolExecutor(max_workers=opts.concurrency,
                                thread_name_prefix="stripe-sync") as pool:
            try:
                for batch in self.warehouse.stream_diff(spec, opts.full_resync, opts.batch_size):
                    for row in batch:
                        if abort.is_set():
                            break
                        if row.status is DiffStatus.UNSYNCED and row.previous is not None:
                            # Rejected or not found last time, unchanged since: say so
                            # again, without a call; it is retried when its data changes.
                            outcome = row.previous.outcome
                            plan = RowPlan(key_value=row.key_value, action=Action(outcome),
                                           row_hash=row.row_hash, status=row.status,
                                           reason=row.previous.error)
                            self._record(spec, result, writer, row, plan, outcome,
                                         row.previous.error, persist=False)
                            done += 1
                            continue
                        prepared = desired_values(spec, row)
                        if isinstance(prepared, Rejection):
                            plan = reject(spec, prepared)
                            self._record(spec, result, writer, row, plan, "rejected",
                                         plan.reason)
                            done += 1
                            continue
                        pending.add(pool.submit(work, prepared))
                        if len(pending) >= max_in_flight:
                            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                            collect(finished)
                        writer.maybe_flush()
                    if abort.is_set():
                        break
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    collect(finished)
            finally:
                if pending:
                    abort.set()
                    finished, _ = wait(pending)
                    with contextlib.suppress(Exception):  # the first failure is raising
                        collect(finished)
                writer.flush()
        self.on_progress(spec.model.name, done, to_plan)

    def _process(
        self, spec: SyncSpec, matcher: Matcher, desired: DesiredRow
    ) -> tuple[DiffRow, RowPlan, str, str | None]:
        """Match, plan and (unless dry run) write one row; runs on a worker thread."""
        match = matcher.match(desired)
        plan = plan_row(spec, desired, match)
        if self.options.dry_run or plan.action not in (Action.CREATE, Action.UPDATE):
            return desired.row, plan, _OUTCOME_OF_ACTION[plan.action], plan.reason
        try:
            return desired.row, self._write(spec, plan), _OUTCOME_OF_ACTION[plan.action], None
        except StripeWriteError as exc:
            if exc.code == "resource_missing" and match.source == "state":
                # Deleted in Stripe since our last sync: find the key again from Stripe.
                matcher.forget(plan.stripe_id or "")
                plan = plan_row(spec, desired, matcher.match(desired, ignore_state=True))
                if plan.action not in (Action.CREATE, Action.UPDATE):
                    return desired.row, plan, _OUTCOME_OF_ACTION[plan.action], plan.reason
                try:
                    return (desired.row, self._write(spec, plan),
                            _OUTCOME_OF_ACTION[plan.action], None)
                except StripeWriteError as again:
                    exc = again
            outcome = "failed" if exc.retryable else "rejected"
            return desired.row, plan, outcome, f"Stripe: {exc}"

    def _write(self, spec: SyncSpec, plan: RowPlan) -> RowPlan:
        assert self.gateway is not None and plan.idempotency_key is not None
        name = spec.object.name
        if plan.action is Action.CREATE:
            created = self.gateway.create(name, plan.params, plan.idempotency_key)
            return replace(plan, stripe_id=created["id"])
        assert plan.stripe_id is not None
        self.gateway.update(name, plan.stripe_id, plan.params, plan.idempotency_key)
        return plan

    def _record(
        self, spec: SyncSpec, result: ModelResult, writer: _OutcomeWriter, row: DiffRow,
        plan: RowPlan, outcome: str, error: str | None, persist: bool = True,
    ) -> None:
        result.counts[outcome] += 1
        if outcome in ("rejected", "failed", "not_found"):
            if len(result.problems) < MAX_PROBLEMS_REPORTED:
                result.problems.append(RowReport(row.key_value, outcome, plan.stripe_id, error))
            else:
                result.problems_omitted += 1
        elif plan.diffs and len(result.samples) < self.options.sample_size:
            result.samples.append(RowReport(row.key_value, plan.action.value, plan.stripe_id,
                                            diffs=plan.diffs))
        if self.options.dry_run or not persist:
            return
        succeeded = outcome in ("created", "updated", "unchanged")
        writer.add(RowOutcome(
            key_value=row.key_value,
            action=plan.action.value,
            outcome=outcome,
            stripe_id=plan.stripe_id or (row.previous.stripe_id if row.previous else None),
            row_hash=row.row_hash,
            synced_values=plan.synced_values if succeeded else None,
            error=error,
        ))


def _skipped(row: DiffRow) -> RowPlan:
    return RowPlan(key_value=row.key_value, action=Action.REJECTED, row_hash=row.row_hash,
                   status=row.status, reason="run aborted")


class _OutcomeWriter:
    """Buffers outcomes and writes them back in batches, by count or by age."""

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


def _is_dead_local_owner(owner: str | None) -> bool:
    """True when `owner` ("host:pid") names a process of this host that has exited."""
    if not owner or ":" not in owner:
        return False
    host, _, pid_text = owner.partition(":")
    pid_text = pid_text.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


