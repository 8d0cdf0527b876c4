"""Warehouse access through the user's own dbt adapter: streaming reads, bookkeeping, diff.

The SQL lives in the dbt package's macros (`macros/`), called through `adapter.dispatch`, so
every dbt adapter works; this module renders them, runs them and streams the results.
CONTRACT STUB: the signatures and dataclasses below are fixed; bodies are being written.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from .project import DbtModel, Manifest, ProjectSettings
from .spec import SyncSpec


class DiffStatus(str, Enum):
    """Why a row came out of the diff query."""

    NEW = "new"  # key not in state
    CHANGED = "changed"  # in state, hash differs
    RETRY = "retry"  # in state with outcome 'failed' (same hash)
    RESYNC = "resync"  # --full-resync: in state, unchanged, re-planned anyway
    INVALID_KEY = "invalid_key"  # null/empty key, or key shared by several rows


@dataclass(frozen=True)
class StateRecord:
    """What the last successful (or failed) sync stored for one key."""

    stripe_id: str | None
    row_hash: str
    synced_values: Mapping[str, Any]  # Stripe field path -> value last written (JSON)
    outcome: str  # created | updated | unchanged | rejected | not_found | failed
    error: str | None


@dataclass(frozen=True)
class DiffRow:
    """One model row that needs planning."""

    key_value: str | None  # normalized key (email: lower(trim)), None when null/empty
    values: Mapping[str, Any]  # model column -> python value, for spec.columns
    row_hash: str
    status: DiffStatus
    previous: StateRecord | None
    duplicate_count: int  # rows in the model sharing this normalized key (1 = unique)


@dataclass(frozen=True)
class DiffCounts:
    """Counts from the diff, computed in SQL over the whole model."""

    total: int
    new: int
    changed: int
    unchanged: int
    retry: int
    removed: int  # keys in state that are no longer in the model
    invalid_key: int


@dataclass(frozen=True)
class RowOutcome:
    """The result for one row, written to the state and row-results tables."""

    key_value: str | None
    action: str  # create | update | unchanged | rejected | not_found
    outcome: str  # created | updated | unchanged | rejected | not_found | failed
    stripe_id: str | None
    row_hash: str
    synced_values: Mapping[str, Any] | None  # None: keep what the state had
    error: str | None


@dataclass(frozen=True)
class RunRecord:
    """One row of the runs table: one run of one model."""

    run_id: str
    model_unique_id: str
    command: str  # sync | plan
    started_at: datetime
    finished_at: datetime | None = None
    counts: Mapping[str, int] | None = None
    status: str = "running"  # running | success | partial | error


class Warehouse:
    """One open connection set to the warehouse of the user's dbt profile."""

    @classmethod
    def open(cls, settings: ProjectSettings, manifest: Manifest) -> Warehouse:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def adapter_type(self) -> str:
        raise NotImplementedError

    def check(self) -> str:
        """Run `select 1`; return a one-line description (adapter, database, schema)."""
        raise NotImplementedError

    def relation_columns(self, model: DbtModel) -> list[str]:
        """Column names of the built relation; WarehouseError if it does not exist."""
        raise NotImplementedError

    def ensure_bookkeeping(self) -> None:
        """Create the bookkeeping schema and tables if missing (idempotent)."""
        raise NotImplementedError

    def acquire_lock(self, model: DbtModel, owner: str, ttl_seconds: int) -> None:
        """Take the model's sync lock or raise LockHeldError naming the holder and expiry."""
        raise NotImplementedError

    def release_lock(self, model: DbtModel, owner: str) -> None:
        raise NotImplementedError

    def diff_counts(self, spec: SyncSpec, full_resync: bool = False) -> DiffCounts:
        raise NotImplementedError

    def stream_diff(
        self, spec: SyncSpec, full_resync: bool = False, batch_size: int = 500
    ) -> Iterator[list[DiffRow]]:
        """Rows needing action, in batches; memory bounded by batch_size."""
        raise NotImplementedError

    def removed_keys(self, spec: SyncSpec, limit: int = 20) -> list[str]:
        """A sample of keys in state that are gone from the model."""
        raise NotImplementedError

    def record_run(self, run: RunRecord) -> None:
        """Insert or update (by run_id and model) the runs-table row."""
        raise NotImplementedError

    def write_outcomes(self, run_id: str, spec: SyncSpec, outcomes: Sequence[RowOutcome]) -> None:
        """Upsert state by (model, key) and append row results; one transaction per call."""
        raise NotImplementedError

    def reset_state(self, model: DbtModel) -> int:
        """Delete the model's state rows; return how many."""
        raise NotImplementedError
