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
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from .errors import LockHeldError, StripeConnectionError
from .match import LookupStrategy, Matcher
from .plan import desired_values, plan_row, reject
from .records import (
    OUTCOME_OF_ACTION,
    Action,
    DesiredRow,
    DiffRow,
    DiffStatus,
    Match,
    ModelResult,
    Outcome,
    Rejection,
    RowOutcome,
    RowPlan,
    RowReport,
    RunRecord,
)
from .spec import SyncSpec
from .stripe_api import StripeGateway, StripeWriteError, redact
from .warehouse import Warehouse

# Rows named in the report and results file, per model: memory stays bounded however many
# rows a broken model rejects; every row's outcome is in stripe_sync_row_results anyway.
MAX_PROBLEMS_REPORTED = 10_000

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
        # plan only: keys each model would create, for the models others reference.
        self.planned: dict[str, set[str]] = {}
        self.referenced: set[str] = set()

    def expect_references(self, specs: list[SyncSpec]) -> None:
        """Remember which models are referenced by others in this run (plan needs it)."""
        self.referenced = {m.ref.model.unique_id for s in specs for m in s.references
                           if m.ref is not None}

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
            result.status = "success" if not (result.counts[Outcome.REJECTED.value]
                                               or result.counts[Outcome.FAILED.value]) \
                else "partial"
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
        pending: set[Future[_Done]] = set()

        def collect(futures: set[Future[_Done]]) -> None:
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

        def work(desired: DesiredRow) -> _Done:
            if abort.is_set():
                return desired.row, _skipped(desired.row), Outcome.FAILED, "run aborted"
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
                            outcome = Outcome(row.previous.outcome)
                            plan = RowPlan(key_value=row.key_value, action=Action(outcome.value),
                                           row_hash=row.row_hash, status=row.status,
                                           reason=row.previous.error)
                            self._record(spec, result, writer, row, plan, outcome,
                                         row.previous.error, persist=False)
                            done += 1
                            continue
                        prepared = desired_values(spec, row,
                                                  self.planned if opts.dry_run else None)
                        if isinstance(prepared, Rejection):
                            plan = reject(spec, prepared)
                            self._record(spec, result, writer, row, plan, Outcome.REJECTED,
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

    def _process(self, spec: SyncSpec, matcher: Matcher, desired: DesiredRow) -> _Done:
        """Match, plan and (unless dry run) write one row; runs on a worker thread."""
        match = matcher.match(desired)
        plan = plan_row(spec, desired, match)
        if self.options.dry_run or plan.action not in _WRITES:
            return desired.row, plan, OUTCOME_OF_ACTION[plan.action], plan.reason
        try:
            return desired.row, self._write(spec, matcher, desired, plan), \
                OUTCOME_OF_ACTION[plan.action], None
        except StripeWriteError as exc:
            if exc.code == "resource_missing" and match.source == "state":
                # Deleted in Stripe since our last sync: find the key again from Stripe.
                matcher.forget(plan.stripe_id or plan.replaces or "")
                plan = plan_row(spec, desired, matcher.match(desired, ignore_state=True))
                if plan.action not in _WRITES:
                    return desired.row, plan, OUTCOME_OF_ACTION[plan.action], plan.reason
                try:
                    return (desired.row, self._write(spec, matcher, desired, plan),
                            OUTCOME_OF_ACTION[plan.action], None)
                except StripeWriteError as again:
                    exc = again
            outcome = Outcome.FAILED if exc.retryable else Outcome.REJECTED
            return desired.row, plan, outcome, f"Stripe: {exc}"

    def _write(
        self, spec: SyncSpec, matcher: Matcher, desired: DesiredRow, plan: RowPlan
    ) -> RowPlan:
        assert self.gateway is not None and plan.idempotency_key is not None
        service = spec.object.service
        if plan.action is Action.CREATE:
            created = self.gateway.create(service, plan.params, plan.idempotency_key)
            return replace(plan, stripe_id=created["id"])
        if plan.action is Action.REPLACE:
            return self._replace(spec, matcher, desired, plan)
        assert plan.stripe_id is not None
        self.gateway.update(service, plan.stripe_id, plan.params, plan.idempotency_key)
        return plan

    def _replace(
        self, spec: SyncSpec, matcher: Matcher, desired: DesiredRow, plan: RowPlan
    ) -> RowPlan:
        """Create the replacement, then archive the old object.

        A run killed between the two left the replacement in Stripe already, carrying the
        key: one strongly consistent read by the key finds it, so the re-run archives the
        old object instead of creating a second replacement (idempotency keys alone would
        only cover 24 hours).
        """
        assert self.gateway is not None and plan.replaces is not None
        service = spec.object.service
        found = matcher.lookup(desired)
        others = [i for i in found.stripe_ids if i != plan.replaces]
        if len(others) > 1:
            raise StripeWriteError(
                f"key {spec.key.field}={desired.row.key_value!r} matches {len(others)} "
                f"Stripe {spec.object.name}s besides {plan.replaces} ({', '.join(others)}); "
                "refusing to pick one", code="ambiguous", retryable=False, status=None)
        if others:
            new_id = others[0]
            follow = plan_row(spec, desired, Match((new_id,), found.candidates.get(new_id)))
            if follow.action is Action.UPDATE and follow.idempotency_key:
                self.gateway.update(service, new_id, follow.params, follow.idempotency_key)
            elif follow.action is Action.REPLACE:
                raise StripeWriteError(
                    f"{spec.object.name} {new_id} already carries key "
                    f"{spec.key.field}={desired.row.key_value!r} beside {plan.replaces}, with "
                    f"other {', '.join(follow.forced_by)}; archive one of them in Stripe",
                    code="ambiguous", retryable=False, status=None)
        else:
            assert plan.idempotency_key is not None
            new_id = self.gateway.create(service, plan.params, plan.idempotency_key)["id"]
        assert plan.archive_idempotency_key is not None
        try:
            self.gateway.update(service, plan.replaces, plan.archive_params,
                                plan.archive_idempotency_key)
        except StripeWriteError as exc:
            if exc.code != "resource_missing":  # gone already: nothing left to archive
                raise
        return replace(plan, stripe_id=new_id)

    def _record(
        self, spec: SyncSpec, result: ModelResult, writer: _OutcomeWriter, row: DiffRow,
        plan: RowPlan, outcome: Outcome, error: str | None, persist: bool = True,
    ) -> None:
        result.counts[outcome.value] += 1
        if (self.options.dry_run and outcome is Outcome.CREATED and row.key_value is not None
                and spec.model.unique_id in self.referenced):
            self.planned.setdefault(spec.model.unique_id, set()).add(row.key_value)
        if outcome.is_problem:
            if len(result.problems) < MAX_PROBLEMS_REPORTED:
                result.problems.append(
                    RowReport(row.key_value, outcome.value, plan.stripe_id or plan.replaces,
                              error))
            else:
                result.problems_omitted += 1
        elif plan.diffs and len(result.samples) < self.options.sample_size:
            result.samples.append(RowReport(row.key_value, plan.action.value,
                                            plan.stripe_id, diffs=plan.diffs,
                                            forced_by=plan.forced_by, replaces=plan.replaces))
        if self.options.dry_run or not persist:
            return
        # A replace that failed leaves the old object as the key's object.
        stripe_id = plan.stripe_id if outcome.succeeded or outcome is Outcome.SKIPPED else None
        writer.add(RowOutcome(
            key_value=row.key_value,
            action=plan.action.value,
            outcome=outcome.value,
            stripe_id=stripe_id or plan.stripe_id or (
                row.previous.stripe_id if row.previous else None),
            row_hash=row.row_hash,
            synced_values=plan.synced_values if outcome.succeeded else None,
            error=error,
        ))


_WRITES = (Action.CREATE, Action.UPDATE, Action.REPLACE)
_Done = tuple[DiffRow, RowPlan, Outcome, "str | None"]


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


