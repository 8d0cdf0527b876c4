"""Execution for update-style models (update_or_create, update_only, create_only): each
changed row is matched to its Stripe object, planned and written on a worker, and its
outcome recorded as it lands; `on_removed` runs first."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from ..errors import StripeConnectionError
from ..match import Matcher
from ..planner import desired_values, plan_removal, plan_row, reject
from ..records import (
    OUTCOME_OF_ACTION,
    Action,
    DesiredRow,
    DiffRow,
    DiffStatus,
    Match,
    Outcome,
    Rejection,
    RemovedRow,
    RowOutcome,
    RowPlan,
)
from ..stripe_api import ACCOUNT_INVALID, StripeWriteError
from .accounts import AccountGate
from .outcomes import ModelExecution, OutcomeWriter, skipped
from .pool import RowPool

_WRITES = (Action.CREATE, Action.UPDATE, Action.REPLACE)
_Done = tuple[DiffRow, RowPlan, Outcome, "str | None"]


class UpsertExecutor:
    """Runs one update-style model; called from the engine's thread, it owns a pool of
    Stripe workers."""

    def __init__(self, run: ModelExecution, accounts: AccountGate) -> None:
        self.run = run
        self.spec = run.spec
        self.options = run.options
        self.accounts = accounts
        self.done = 0
        self._group_updates: dict[str, int] = {}  # parent id -> updates in the last hour
        self._group_lock = threading.Lock()

    def execute(self) -> None:
        run, spec, opts = self.run, self.spec, self.options
        result = run.result
        diff = run.warehouse.diff_counts(spec, full_resync=opts.full_resync)
        result.diff = diff
        if spec.removal.active:
            self._run_removals()
        elif diff.removed:
            result.removed_sample = run.warehouse.removed_keys(spec)
        to_plan = diff.total - diff.unchanged if not opts.full_resync else diff.total
        result.counts["unchanged"] += 0 if opts.full_resync else diff.unchanged
        if to_plan == 0:
            run.progress(0, 0)
            return
        assert run.gateway is not None
        self._count_recent_group_updates()
        matcher = Matcher(spec, run.gateway, opts.lookup, use_state=not opts.full_resync)
        unknown = diff.total - diff.invalid_key if opts.full_resync else diff.new + diff.retry
        matcher.prepare(unknown)
        result.lookup = matcher.chosen.value if matcher.chosen else None

        def finished(done: _Done) -> None:
            run.record(*done)
            self.done += 1

        # Connected accounts: a worker waiting for its account's paced time holds no
        # request slot (ratelimit._slot), so twice the workers keep every account's next
        # request ready while `concurrency` still caps the requests in flight.
        workers = opts.concurrency * (2 if spec.account_column is not None else 1)
        try:
            with RowPool[_Done](workers=workers, max_in_flight=max(opts.concurrency * 4, 32),
                                name="stripe-sync", on_done=finished,
                                on_collected=lambda: run.progress(self.done, to_plan)) as pool:
                for batch in run.warehouse.stream_diff(spec, opts.full_resync, opts.batch_size):
                    for row in batch:
                        if pool.aborted.is_set():
                            break
                        prepared = self._prepare(row)
                        if prepared is None:
                            continue
                        if opts.dry_run and matcher.answers_offline(prepared):
                            # No request to wait for: a worker would only add a future, a
                            # callback and a queue hop per row (a first plan of a million).
                            finished(self._work(matcher, prepared, pool.aborted))
                            if self.done % 10_000 == 0:
                                run.progress(self.done, to_plan)
                            continue
                        pool.submit(self._work, matcher, prepared, pool.aborted)
                        run.writer.maybe_flush()
                    if pool.aborted.is_set():
                        break
        finally:
            run.writer.flush()
        run.progress(self.done, to_plan)

    def _prepare(self, row: DiffRow) -> DesiredRow | None:
        """The row's desired values, or None when its outcome is known without a request
        (recorded here)."""
        run = self.run
        if row.status is DiffStatus.UNSYNCED and row.previous is not None:
            # Rejected or not found last time, unchanged since: say so again, without a
            # call; it is retried when its data changes.
            outcome = Outcome(row.previous.outcome)
            plan = RowPlan(key_value=row.key_value, action=Action(outcome.value),
                           row_hash=row.row_hash, status=row.status, reason=row.previous.error)
            run.record(row, plan, outcome, row.previous.error, persist=False)
            self.done += 1
            return None
        prepared = desired_values(self.spec, row, run.planned)
        if isinstance(prepared, Rejection):
            plan = reject(self.spec, prepared)
            outcome = Outcome.FAILED if prepared.retryable else Outcome.REJECTED
            run.record(row, plan, outcome, plan.reason)
            self.done += 1
            return None
        return prepared

    def _work(self, matcher: Matcher, desired: DesiredRow, aborted: threading.Event) -> _Done:
        """One row on a worker: its account's gate, then match, plan and write."""
        spec = self.spec
        if aborted.is_set():
            return desired.row, skipped(desired.row), Outcome.FAILED, "run aborted"
        account = desired.row.account
        refusal = self.accounts.enter(account)
        if refusal is not None:  # found by an earlier row: no request for this one
            return desired.row, reject(spec, Rejection(desired.row, refusal)), \
                Outcome.REJECTED, refusal
        refused: str | None = None
        try:
            return self._process(matcher, desired)
        except StripeWriteError as exc:  # a read's or a write's: _process lets it out
            if exc.code != ACCOUNT_INVALID:
                raise
            refused = f"Stripe: {exc}"
            return desired.row, reject(spec, Rejection(desired.row, refused)), \
                Outcome.REJECTED, refused
        except StripeConnectionError:
            aborted.set()
            raise
        finally:
            self.accounts.done(account, refused)

    def _run_removals(self) -> None:
        """on_removed: archive or delete the objects of keys that left the model, before the
        model's own rows (the guard has passed: pipeline.removal_guard). Each outcome lands
        in the state, so a re-run after a crash removes only what is left; a delete sent
        again finds the object gone and counts it done."""
        run, spec, opts = self.run, self.spec, self.options
        removed = run.warehouse.removed_rows(spec)
        if not removed:
            return
        writer = OutcomeWriter(run.warehouse, spec, run.run_id, opts)

        def work(row: RemovedRow) -> tuple[RowPlan, Outcome, str | None]:
            plan = plan_removal(spec, row)
            done = OUTCOME_OF_ACTION[plan.action]
            if opts.dry_run:
                return plan, done, None
            assert run.gateway is not None and plan.idempotency_key is not None
            gateway = run.gateway.for_account(row.account)
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
                if exc.code in spec.object.locked_codes:  # final in Stripe: it stays
                    return replace(plan, action=Action.LOCKED), Outcome.LOCKED, \
                        _locked_reason(spec.object.name, plan, exc)
                return plan, Outcome.FAILED if exc.retryable else Outcome.REJECTED, \
                    f"Stripe: {exc}"
            return plan, done, None

        with ThreadPoolExecutor(max_workers=opts.concurrency,
                                thread_name_prefix="stripe-remove") as pool:
            for row, future in [(row, pool.submit(work, row)) for row in removed]:
                plan, outcome, error = future.result()
                run.tally(row.key_value, plan, outcome, error, row.account)
                if not opts.dry_run:
                    # No row hash: a key that comes back is planned again (and restored).
                    writer.add(RowOutcome(
                        key_value=row.key_value, action=plan.action.value,
                        outcome=outcome.value, stripe_id=row.stripe_id, row_hash=None,
                        synced_values=plan.synced_values, error=error))
        writer.flush()

    def _count_recent_group_updates(self) -> None:
        """Start each parent's count from the updates the last hour's runs recorded."""
        limit = self.spec.object.group_limit
        self._group_updates = {}
        if limit is None or self.options.dry_run:
            return
        since = datetime.now(timezone.utc) - timedelta(hours=1)
        for _key, count, values in self.run.warehouse.recent_updates(self.spec.model, since):
            parent = str(values.get(limit.attribute) or "")
            if parent:
                self._group_updates[parent] = self._group_updates.get(parent, 0) + count

    def _over_group_limit(self, plan: RowPlan) -> str | None:
        """Count an update against its parent's hourly allowance (a subscription's 200
        quantity changes); why it must wait, once the allowance of this run is used."""
        limit = self.spec.object.group_limit
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

    def _process(self, matcher: Matcher, desired: DesiredRow) -> _Done:
        """Match, plan and (unless dry run) write one row; runs on a worker thread. A read
        that fails (after the client's retries) fails this row, retried by the next run,
        not the model: its other rows go on."""
        spec = self.spec
        try:
            match = matcher.match(desired)
        except StripeWriteError as unread:
            if unread.code == ACCOUNT_INVALID:  # the account's, not the row's: _work says so
                raise
            reason = f"Stripe: {unread}"
            return desired.row, skipped(desired.row, reason), \
                Outcome.FAILED if unread.retryable else Outcome.REJECTED, reason
        plan = plan_row(spec, desired, match, keys=not self.options.dry_run)
        if self.options.dry_run or plan.action not in _WRITES:
            return desired.row, plan, OUTCOME_OF_ACTION[plan.action], plan.reason
        waiting = self._over_group_limit(plan)
        if waiting is not None:
            return desired.row, plan, Outcome.FAILED, waiting
        try:
            return desired.row, self._write(matcher, desired, plan), \
                OUTCOME_OF_ACTION[plan.action], None
        except StripeWriteError as exc:
            if exc.code == ACCOUNT_INVALID:  # the account's, not the row's: _work says so
                raise
            if exc.code == "resource_missing" and match.source == "state":
                # Deleted in Stripe since our last sync: find the key again from Stripe.
                matcher.forget(plan.stripe_id or plan.replaces or "")
                plan = plan_row(spec, desired, matcher.match(desired, ignore_state=True))
                if plan.action not in _WRITES:
                    return desired.row, plan, OUTCOME_OF_ACTION[plan.action], plan.reason
                try:
                    return (desired.row, self._write(matcher, desired, plan),
                            OUTCOME_OF_ACTION[plan.action], None)
                except StripeWriteError as again:
                    exc = again
            if exc.code in spec.object.locked_codes:
                return desired.row, replace(plan, action=Action.LOCKED), Outcome.LOCKED, \
                    _locked_reason(spec.object.name, plan, exc)
            outcome = Outcome.FAILED if exc.retryable else Outcome.REJECTED
            return desired.row, plan, outcome, f"Stripe: {exc}"

    def _write(self, matcher: Matcher, desired: DesiredRow, plan: RowPlan) -> RowPlan:
        assert self.run.gateway is not None and plan.idempotency_key is not None
        service = self.spec.object.service
        gateway = self.run.gateway.for_account(desired.row.account)
        if plan.action is Action.CREATE:
            created = gateway.create(service, plan.params, plan.idempotency_key)
            return replace(plan, stripe_id=created["id"])
        if plan.action is Action.REPLACE:
            return self._replace(matcher, desired, plan)
        assert plan.stripe_id is not None
        gateway.update(service, plan.stripe_id, plan.params, plan.idempotency_key)
        return plan

    def _replace(self, matcher: Matcher, desired: DesiredRow, plan: RowPlan) -> RowPlan:
        """Create the replacement, then archive the old object.

        A run killed between the two left the replacement in Stripe already, carrying the
        key: one strongly consistent read by the key finds it, so the re-run archives the
        old object instead of creating a second replacement (idempotency keys alone would
        only cover 24 hours).
        """
        spec = self.spec
        assert self.run.gateway is not None and plan.replaces is not None
        service = spec.object.service
        gateway = self.run.gateway.for_account(desired.row.account)
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


def _locked_reason(object_name: str, plan: RowPlan, exc: StripeWriteError) -> str:
    """Why nothing was written to an object Stripe holds final, and what changed."""
    changed = ", ".join(d.path for d in plan.diffs)
    what = f"{changed} changed in the model; " if changed else ""
    return (f"{object_name} {plan.stripe_id} is final in Stripe and keeps its values: "
            f"{what}nothing was written (Stripe: {exc})")
