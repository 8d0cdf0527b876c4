"""Runs one model at a time: its lock, its run record, and the executor its behavior calls
for. What a model's rows do is the executors'; what holds across models of one run (the
keys a plan would create, the required objects listed once, the refused accounts) is here.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime, timezone

from ..errors import ConfigError, LockHeldError
from ..objects.contract import Behavior
from ..records import DiffCounts, ModelResult, Outcome, RunRecord
from ..spec import SyncSpec
from ..stripe_api import StripeGateway, redact
from ..warehouse import Warehouse
from .accounts import AccountGate
from .events import EventSender
from .options import ProgressCallback, SyncOptions
from .outcomes import ModelExecution
from .requirements import required_values, unmet
from .upsert import UpsertExecutor


class Engine:
    """Runs the models of one command, one at a time, from one thread."""

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
        self.accounts = AccountGate()

    def expect_references(self, specs: list[SyncSpec]) -> None:
        """Remember which models are referenced by others in this run (plan needs it)."""
        self.referenced = {m.ref.model.unique_id for s in specs for m in s.references
                           if m.ref is not None}

    def check_requirements(self, specs: list[SyncSpec]) -> None:
        """Required objects listed once before any write; a constant that names none is a
        ConfigError (exit 2), column values are checked per row. A model with no new or
        retried row is not checked: a re-run with nothing new reads nothing."""
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
            self._run(self._execution(spec, run_id, result))
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

    def _execution(self, spec: SyncSpec, run_id: str, result: ModelResult) -> ModelExecution:
        dry_run, uid = self.options.dry_run, spec.model.unique_id
        return ModelExecution(
            spec=spec, run_id=run_id, result=result, options=self.options,
            warehouse=self.warehouse, gateway=self.gateway, on_progress=self.on_progress,
            planned=self.planned if dry_run else None,
            planned_here=(self.planned.setdefault(uid, set())
                          if dry_run and uid in self.referenced else None),
        )

    def _run(self, run: ModelExecution) -> None:
        spec = run.spec
        if spec.behavior is not Behavior.APPEND:
            UpsertExecutor(run, self.accounts).execute()
            return
        # Append: the ledger protocol of events.py; never matched, never updated.
        diff = self._counted.pop(spec.model.unique_id, None) or self.warehouse.diff_counts(spec)
        run.result.diff = diff
        to_plan = diff.total - diff.unchanged
        run.result.counts[Outcome.UNCHANGED.value] += diff.unchanged
        if to_plan == 0:
            run.progress(0, 0)
            return
        run.result.lookup = "ledger"
        EventSender(run, allowed=lambda desired: unmet(self.allowed_values, spec, desired)
                    ).execute(to_plan)

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
