"""Execution: stream the diff, match, plan and write each row, record outcomes as they land.

Rows flow warehouse -> bounded in-flight set of worker tasks -> outcome buffer -> state
write-back, so memory does not grow with the model and a crash loses at most the rows in
flight and the unflushed buffer (which the next run re-plans; lookups and idempotency keys
keep it from duplicating anything).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from .errors import ConfigError, LockHeldError, StripeConnectionError
from .events import EventSender
from .match import LookupStrategy, Matcher
from .objects.contract import Behavior
from .planner import desired_values, plan_removal, plan_row, reject
from .records import (
    OUTCOME_OF_ACTION,
    Action,
    DesiredRow,
    DiffCounts,
    DiffRow,
    DiffStatus,
    Match,
    ModelResult,
    Outcome,
    Rejection,
    RemovedRow,
    RowOutcome,
    RowPlan,
    RowReport,
    RunRecord,
)
from .spec import SyncSpec
from .stripe_api import ACCOUNT_INVALID, StripeGateway, StripeWriteError, redact
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
    # append (events): the v2 stream (100 events a request) or v1 (one event a request),
    # requests in flight at once, events marked in flight per ledger write, and whether
    # events past the de-duplication window without an acknowledgement are sent again.
    event_transport: str = "stream"
    event_concurrency: int = 32
    event_chunk: int = 2000
    resend_uncertain: bool = False


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
        # (model, field) -> (the values Stripe has, what they name): check_requirements.
        self.allowed_values: dict[tuple[str, str], tuple[set[str], str]] = {}
        # Diff counts check_requirements took of models without references, kept for their
        # sync: no other model's sync changes them (a million-row model: 0.9 s a count).
        self._counted: dict[str, DiffCounts] = {}
        self._group_updates: dict[str, int] = {}  # parent id -> updates in the last hour
        self._group_lock = threading.Lock()
        self.accounts = AccountGate()

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
            problems = sum(result.counts[o.value] for o in Outcome if o.is_problem
                           and o is not Outcome.NOT_FOUND)
            result.status = "partial" if problems else "success"
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

    def check_requirements(self, specs: list[SyncSpec]) -> None:
        """Fields that must name an existing object (a meter event's event_name: an active
        meter's), checked with one list per requirement before any write. A constant that
        names none is a ConfigError (exit 2); column values are checked per row. A model
        with no new or retried row is not checked: a re-run with nothing new reads nothing."""
        assert self.gateway is not None
        due = []
        for spec in specs:
            if spec.object.requires:
                counts = self.warehouse.diff_counts(spec)
                if not spec.references:
                    self._counted[spec.model.unique_id] = counts
                if counts.new + counts.retry:
                    due.append(spec)
        found, problems = required_values(self.gateway, due)
        self.allowed_values.update(found)
        if problems:
            raise ConfigError("\n".join(problems))

    def _unmet(self, spec: SyncSpec, desired: DesiredRow) -> str | None:
        """Why a row's value names no required object, or None."""
        for path in spec.object.requires:
            found = self.allowed_values.get((spec.model.unique_id, path))
            value = desired.values.get(path)
            if found is not None and value is not None and str(value) not in found[0]:
                return f"{path}: {str(value)!r} is not the {path} of {found[1]} in Stripe"
        return None

    def _run(self, spec: SyncSpec, run_id: str, result: ModelResult) -> None:
        opts = self.options
        if spec.behavior is Behavior.APPEND:
            self._run_events(spec, run_id, result)
            return
        diff = self.warehouse.diff_counts(spec, full_resync=opts.full_resync)
        result.diff = diff
        if spec.removal.active:
            self._run_removals(spec, run_id, result)
        elif diff.removed:
            result.removed_sample = self.warehouse.removed_keys(spec)
        to_plan = diff.total - diff.unchanged if not opts.full_resync else diff.total
        result.counts["unchanged"] += 0 if opts.full_resync else diff.unchanged
        if to_plan == 0:
            self.on_progress(spec.model.name, 0, 0)
            return
        assert self.gateway is not None
        self._count_recent_group_updates(spec)
        matcher = Matcher(spec, self.gateway, opts.lookup, use_state=not opts.full_resync)
        unknown = diff.total - diff.invalid_key if opts.full_resync else diff.new + diff.retry
        matcher.prepare(unknown)
        result.lookup = matcher.chosen.value if matcher.chosen else None

        writer = _OutcomeWriter(self.warehouse, spec, run_id, opts)
        abort = threading.Event()
        done = 0
        # Finished rows arrive on a queue (a done-callback each): O(1) per row, where
        # waiting on the set of rows in flight would walk all of them for every one.
        finished_rows: queue.SimpleQueue[Future[_Done]] = queue.SimpleQueue()
        in_flight = 0

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
            account = desired.row.account
            refusal = self.accounts.enter(account)
            if refusal is not None:  # found by an earlier row: no request for this one
                return desired.row, reject(spec, Rejection(desired.row, refusal)), \
                    Outcome.REJECTED, refusal
            refused: str | None = None
            try:
                return self._process(spec, matcher, desired)
            except StripeWriteError as exc:  # a read's or a write's: _process lets it out
                if exc.code != ACCOUNT_INVALID:
                    raise
                refused = f"Stripe: {exc}"
                return desired.row, reject(spec, Rejection(desired.row, refused)), \
                    Outcome.REJECTED, refused
            except StripeConnectionError:
                abort.set()
                raise
            finally:
                self.accounts.done(account, refused)

        def drain(block: bool) -> None:
            """Record the rows that finished (waiting for one when `block`)."""
            nonlocal in_flight
            finished: set[Future[_Done]] = {finished_rows.get()} if block else set()
            while True:
                try:
                    finished.add(finished_rows.get_nowait())
                except queue.Empty:
                    break
            in_flight -= len(finished)
            collect(finished)

        max_in_flight = max(opts.concurrency * 4, 32)
        # Connected accounts: a worker waiting for its account's paced time holds no
        # request slot (ratelimit._slot), so twice the workers keep every account's next
        # request ready while `concurrency` still caps the requests in flight.
        workers = opts.concurrency * (2 if spec.account_column is not None else 1)
        with ThreadPoolExecutor(max_workers=workers,
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
                        prepared = desired_values(spec, row, self.planned_for(opts))
                        if isinstance(prepared, Rejection):
                            plan = reject(spec, prepared)
                            outcome = Outcome.FAILED if prepared.retryable else Outcome.REJECTED
                            self._record(spec, result, writer, row, plan, outcome, plan.reason)
                            done += 1
                            continue
                        pool.submit(work, prepared).add_done_callback(finished_rows.put)
                        in_flight += 1
                        if in_flight >= max_in_flight:
                            drain(block=True)
                        writer.maybe_flush()
                    if abort.is_set():
                        break
                while in_flight:
                    drain(block=True)
            finally:
                if in_flight:
                    abort.set()
                    last: set[Future[_Done]] = set()
                    while in_flight:
                        last.add(finished_rows.get())
                        in_flight -= 1
                    with contextlib.suppress(Exception):  # the first failure is raising
                        collect(last)
                writer.flush()
        self.on_progress(spec.model.name, done, to_plan)

    def _run_removals(self, spec: SyncSpec, run_id: str, result: ModelResult) -> None:
        """on_removed: archive or delete the objects of keys that left the model, before the
        model's own rows (the guard has passed: pipeline.removal_guard). Each outcome lands
        in the state, so a re-run after a crash removes only what is left; a delete sent
        again finds the object gone and counts it done."""
        removed = self.warehouse.removed_rows(spec)
        if not removed:
            return
        writer = _OutcomeWriter(self.warehouse, spec, run_id, self.options)

        def work(row: RemovedRow) -> tuple[RowPlan, Outcome, str | None]:
            plan = plan_removal(spec, row)
            done = OUTCOME_OF_ACTION[plan.action]
            if self.options.dry_run:
                return plan, done, None
            assert self.gateway is not None and plan.idempotency_key is not None
            gateway = self.gateway.for_account(row.account)
            try:
                if plan.action is Action.ARCHIVE:
                    gateway.update(spec.object.service, row.stripe_id, plan.params,
                                   plan.idempotency_key)
                else:
                    gateway.delete(spec.object.service, row.stripe_id, plan.idempotency_key)
            except StripeWriteError as exc:
                if exc.code == "resource_missing":  # deleted already (here or in Stripe)
                    return replace(plan, synced_values=None), Outcome.DELETED, \
                        f"{spec.object.name} {row.stripe_id} no longer exists in Stripe"
                return plan, Outcome.FAILED if exc.retryable else Outcome.REJECTED, \
                    f"Stripe: {exc}"
            return plan, done, None

        with ThreadPoolExecutor(max_workers=self.options.concurrency,
                                thread_name_prefix="stripe-remove") as pool:
            for row, future in [(row, pool.submit(work, row)) for row in removed]:
                plan, outcome, error = future.result()
                self.tally(spec, result, row.key_value, plan, outcome, error)
                if not self.options.dry_run:
                    # No row hash: a key that comes back is planned again (and restored).
                    writer.add(RowOutcome(
                        key_value=row.key_value, action=plan.action.value,
                        outcome=outcome.value, stripe_id=row.stripe_id, row_hash=None,
                        synced_values=plan.synced_values, error=error))
        writer.flush()

    def _run_events(self, spec: SyncSpec, run_id: str, result: ModelResult) -> None:
        """Append: the ledger protocol of events.py; never matched, never updated."""
        diff = self._counted.pop(spec.model.unique_id, None) or self.warehouse.diff_counts(spec)
        result.diff = diff
        to_plan = diff.total - diff.unchanged
        result.counts[Outcome.UNCHANGED.value] += diff.unchanged
        if to_plan == 0:
            self.on_progress(spec.model.name, 0, 0)
            return
        result.lookup = "ledger"
        EventSender(self, spec, run_id, result,
                    allowed=lambda desired: self._unmet(spec, desired)).run(to_plan)

    def _count_recent_group_updates(self, spec: SyncSpec) -> None:
        """Start each parent's count from the updates the last hour's runs recorded."""
        limit = spec.object.group_limit
        self._group_updates = {}
        if limit is None or self.options.dry_run:
            return
        since = datetime.now(timezone.utc) - timedelta(hours=1)
        for _key, count, values in self.warehouse.recent_updates(spec.model, since):
            parent = str(values.get(limit.attribute) or "")
            if parent:
                self._group_updates[parent] = self._group_updates.get(parent, 0) + count

    def _over_group_limit(self, spec: SyncSpec, plan: RowPlan) -> str | None:
        """Count an update against its parent's hourly allowance (a subscription's 200
        quantity changes); why it must wait, once the allowance of this run is used."""
        limit = spec.object.group_limit
        if limit is None or plan.action is not Action.UPDATE:
            return None
        if not any(d.path in limit.fields for d in plan.diffs):
            return None
        parent = str((plan.synced_values or {}).get(limit.attribute) or "")
        with self._group_lock:
            used = self._group_updates.get(parent, 0)
            if parent and used >= limit.per_hour:
                return (f"{limit.attribute} {parent} had {limit.per_hour} "
                        f"{'/'.join(limit.fields)} updates in the last hour, Stripe's "
                        "allowance; retried by a later run")
            self._group_updates[parent] = used + 1
        return None

    def _process(self, spec: SyncSpec, matcher: Matcher, desired: DesiredRow) -> _Done:
        """Match, plan and (unless dry run) write one row; runs on a worker thread. A read
        that fails (after the client's retries) fails this row, retried by the next run,
        not the model: its other rows go on."""
        try:
            match = matcher.match(desired)
        except StripeWriteError as unread:
            if unread.code == ACCOUNT_INVALID:  # the account's, not the row's: work() says so
                raise
            reason = f"Stripe: {unread}"
            return desired.row, _skipped(desired.row, reason), \
                Outcome.FAILED if unread.retryable else Outcome.REJECTED, reason
        plan = plan_row(spec, desired, match)
        if self.options.dry_run or plan.action not in _WRITES:
            return desired.row, plan, OUTCOME_OF_ACTION[plan.action], plan.reason
        waiting = self._over_group_limit(spec, plan)
        if waiting is not None:
            return desired.row, plan, Outcome.FAILED, waiting
        try:
            return desired.row, self._write(spec, matcher, desired, plan), \
                OUTCOME_OF_ACTION[plan.action], None
        except StripeWriteError as exc:
            if exc.code == ACCOUNT_INVALID:  # the account's, not the row's: work() says so
                raise
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
        gateway = self.gateway.for_account(desired.row.account)
        if plan.action is Action.CREATE:
            created = gateway.create(service, plan.params, plan.idempotency_key)
            return replace(plan, stripe_id=created["id"])
        if plan.action is Action.REPLACE:
            return self._replace(spec, matcher, desired, plan)
        assert plan.stripe_id is not None
        gateway.update(service, plan.stripe_id, plan.params, plan.idempotency_key)
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
        gateway = self.gateway.for_account(desired.row.account)
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
                gateway.update(service, new_id, follow.params, follow.idempotency_key)
            elif follow.action is Action.REPLACE:
                raise StripeWriteError(
                    f"{spec.object.name} {new_id} already carries key "
                    f"{spec.key.field}={desired.row.key_value!r} beside {plan.replaces}, with "
                    f"other {', '.join(follow.forced_by)}; archive one of them in Stripe",
                    code="ambiguous", retryable=False, status=None)
        else:
            assert plan.idempotency_key is not None
            new_id = gateway.create(service, plan.params, plan.idempotency_key)["id"]
        assert plan.archive_idempotency_key is not None
        try:
            gateway.update(service, plan.replaces, plan.archive_params,
                           plan.archive_idempotency_key)
        except StripeWriteError as exc:
            if exc.code != "resource_missing":  # gone already: nothing left to archive
                raise
        return replace(plan, stripe_id=new_id)

    def tally(
        self, spec: SyncSpec, result: ModelResult, key_value: str | None, plan: RowPlan,
        outcome: Outcome, error: str | None,
    ) -> None:
        """Count one row's outcome and keep it for the report (bounded)."""
        result.counts[outcome.value] += 1
        if (self.options.dry_run and outcome is Outcome.CREATED and key_value is not None
                and spec.model.unique_id in self.referenced):
            self.planned.setdefault(spec.model.unique_id, set()).add(key_value)
        if plan.status is DiffStatus.REMOVED:  # every removal is listed (the guard bounds them)
            result.removals.append(RowReport(key_value, plan.action.value, plan.stripe_id,
                                             error, diffs=plan.diffs))
        if outcome.is_problem or outcome is Outcome.ALREADY_SENT:
            if len(result.problems) < MAX_PROBLEMS_REPORTED:
                result.problems.append(
                    RowReport(key_value, outcome.value, plan.stripe_id or plan.replaces,
                              error or plan.reason, diffs=plan.diffs))
            else:
                result.problems_omitted += 1
        elif plan.diffs and len(result.samples) < self.options.sample_size:
            result.samples.append(RowReport(key_value, plan.action.value,
                                            plan.stripe_id, diffs=plan.diffs,
                                            forced_by=plan.forced_by, replaces=plan.replaces))

    def planned_for(self, options: SyncOptions) -> dict[str, set[str]] | None:
        """The keys a plan would create, by model (plan only: a sync reads the state)."""
        return self.planned if options.dry_run else None

    def _record(
        self, spec: SyncSpec, result: ModelResult, writer: _OutcomeWriter, row: DiffRow,
        plan: RowPlan, outcome: Outcome, error: str | None, persist: bool = True,
    ) -> None:
        self.tally(spec, result, row.key_value, plan, outcome, error)
        if self.options.dry_run or not persist:
            return
        # A replace that failed leaves the old object as the key's object.
        writer.add(RowOutcome(
            key_value=row.key_value,
            action=plan.action.value,
            outcome=outcome.value,
            stripe_id=plan.stripe_id or (row.previous.stripe_id if row.previous else None),
            row_hash=row.row_hash,
            synced_values=plan.synced_values if outcome.succeeded else None,
            error=error,
        ))


_WRITES = (Action.CREATE, Action.UPDATE, Action.REPLACE)
_Done = tuple[DiffRow, RowPlan, Outcome, "str | None"]


def _skipped(row: DiffRow, reason: str = "run aborted") -> RowPlan:
    """The plan of a row that wrote nothing: the run aborted, or its read failed."""
    return RowPlan(key_value=row.key_value, action=Action.REJECTED, row_hash=row.row_hash,
                   status=row.status, reason=reason)


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


def required_values(
    gateway: StripeGateway, specs: list[SyncSpec]
) -> tuple[dict[tuple[str, str], tuple[set[str], str]], list[str]]:
    """For each spec's required fields: the values Stripe has (one list per requirement),
    by (model, field), and the problems of constants that name none."""
    listed: dict[tuple[str, str], set[str]] = {}
    found: dict[tuple[str, str], tuple[set[str], str]] = {}
    problems: list[str] = []
    for spec in specs:
        for path, need in spec.object.requires.items():
            mapping = next((m for m in spec.fields if m.path == path), None)
            if mapping is None:
                continue
            key = (need.service, json.dumps(dict(need.params), sort_keys=True))
            if key not in listed:
                listed[key] = {str(o.get(need.attribute))
                               for o in gateway.list_where(need.service, dict(need.params))}
            allowed = listed[key]
            found[(spec.model.unique_id, path)] = (allowed, need.what)
            if mapping.is_constant and str(mapping.constant) not in allowed:
                known = ", ".join(sorted(allowed)[:10]) or "none"
                problems.append(
                    f"{spec.model.label}: stripe_activation.fields.{path}: "
                    f"{mapping.constant!r} is not the {path} of {need.what} in this Stripe "
                    f"account (found: {known}). Create it in Stripe, or fix the value."
                )
    return found, problems


class AccountGate:
    """Stripe Connect: an account the platform cannot act for is found by one request, not
    one per row. An account's first row goes alone; the rows behind it wait for its answer,
    then go (the account works) or are rejected with Stripe's reason, without a request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refused: dict[str, str] = {}
        self._first: dict[str, threading.Event] = {}

    def enter(self, account: str | None) -> str | None:
        """Why the account's rows are rejected, or None to go on."""
        if account is None:
            return None
        with self._lock:
            if account in self._refused:
                return self._refused[account]
            first = self._first.get(account)
            if first is None:
                self._first[account] = threading.Event()
                return None  # this row finds out
        first.wait()
        with self._lock:
            return self._refused.get(account)

    def done(self, account: str | None, refusal: str | None) -> None:
        if account is None:
            return
        with self._lock:
            if refusal is not None:
                self._refused.setdefault(account, refusal)
            first = self._first.setdefault(account, threading.Event())
        first.set()


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


