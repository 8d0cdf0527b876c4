"""What flows between the stages: typed, immutable records, and the enums of actions
and outcomes.

warehouse (DiffRow, DiffCounts, StateRecord) -> match (Match) -> plan (DesiredRow, RowPlan)
-> engine (RowOutcome, RunRecord, ModelResult) -> report. Every stage imports its inputs and
outputs from here, so no stage needs another stage's module for its types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any


class Action(str, Enum):
    """What the plan does to Stripe for one row."""

    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"  # an immutable field changed: create a new object, archive the old
    UNCHANGED = "unchanged"
    SKIP = "skip"  # create_only: a match exists, left alone
    SEND = "send"  # append: an event never sent
    ARCHIVE = "archive"  # on_removed: the key left the model
    DELETE = "delete"  # on_removed: the key left the model (permanent)
    REJECTED = "rejected"
    NOT_FOUND = "not_found"
    LOCKED = "locked"  # Stripe holds the object final (a finalized invoice's): left as it is


class Outcome(str, Enum):
    """What happened to one row (for `plan`: what would)."""

    CREATED = "created"
    UPDATED = "updated"
    REPLACED = "replaced"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    SENT = "sent"  # append: the event is acknowledged
    ALREADY_SENT = "already_sent"  # append: sent before; its changed values are not re-sent
    REJECTED = "rejected"
    NOT_FOUND = "not_found"
    FAILED = "failed"
    # append: sent, never acknowledged, and now past Stripe's de-duplication window: re-sent
    # only when asked (it may have landed).
    UNCERTAIN = "uncertain"
    # on_removed: the key left the model and its object was archived or deleted.
    ARCHIVED = "archived"
    DELETED = "deleted"
    # A change Stripe refuses because the object is final (an item of a finalized invoice):
    # nothing written; reported with the changed fields until the model or Stripe changes.
    LOCKED = "locked"

    @property
    def succeeded(self) -> bool:
        """Stripe holds the row's values (the state records them)."""
        return self in (Outcome.CREATED, Outcome.UPDATED, Outcome.REPLACED, Outcome.UNCHANGED,
                        Outcome.SENT)

    @property
    def is_problem(self) -> bool:
        return self in (Outcome.REJECTED, Outcome.FAILED, Outcome.NOT_FOUND, Outcome.UNCERTAIN,
                        Outcome.LOCKED)


# The state's mark of an event sent but not yet acknowledged (never a row's final outcome).
IN_FLIGHT = "in_flight"


OUTCOMES: tuple[str, ...] = tuple(o.value for o in Outcome)

OUTCOME_OF_ACTION = {
    Action.CREATE: Outcome.CREATED,
    Action.UPDATE: Outcome.UPDATED,
    Action.REPLACE: Outcome.REPLACED,
    Action.UNCHANGED: Outcome.UNCHANGED,
    Action.SKIP: Outcome.SKIPPED,
    Action.SEND: Outcome.SENT,
    Action.ARCHIVE: Outcome.ARCHIVED,
    Action.DELETE: Outcome.DELETED,
    Action.REJECTED: Outcome.REJECTED,
    Action.NOT_FOUND: Outcome.NOT_FOUND,
    Action.LOCKED: Outcome.LOCKED,
}


# --- the warehouse's diff and state ------------------------------------------------------

class DiffStatus(str, Enum):
    """Why a row came out of the diff query."""

    NEW = "new"  # key not in state
    CHANGED = "changed"  # in state, hash differs
    RETRY = "retry"  # in state with outcome 'failed' (same hash)
    RESYNC = "resync"  # --full-resync: in state, unchanged, re-planned anyway
    # Unchanged since a run that rejected it or found no match: reported again with that
    # outcome and its stored reason, never re-sent (it is retried when its data changes).
    UNSYNCED = "unsynced"
    INVALID_KEY = "invalid_key"  # null/empty key, or key shared by several rows
    REMOVED = "removed"  # on_removed: the key left the model (a state row, no model row)


@dataclass(frozen=True)
class StateRecord:
    """What the last successful (or failed) sync stored for one key."""

    stripe_id: str | None
    row_hash: str
    synced_values: Mapping[str, Any]  # Stripe field path -> value last written (JSON)
    outcome: str  # an Outcome value, or IN_FLIGHT
    error: str | None
    synced_at: datetime | None = None  # when the state row was written (UTC)


@dataclass(slots=True)
class DiffRow:
    """One model row that needs planning. Not frozen (nothing changes it): one is built per
    row of the model, and a frozen dataclass's __init__ costs three times as much."""

    key_value: str | None  # normalized key (email: lower(trim)), None when null/empty
    values: Mapping[str, Any]  # model column -> python value, for spec.columns
    row_hash: str
    status: DiffStatus
    previous: StateRecord | None
    duplicate_count: int  # rows in the model sharing this normalized key (1 = unique)
    # Referenced fields: path -> the Stripe id the referenced model's state holds for the
    # row's key value (None: not synced there).
    references: Mapping[str, str | None] = field(default_factory=dict)
    # Stripe Connect: the row's connected account (None: the platform). Its key_value is then
    # the state's `<account>/<key>`; stripe_key is the key as Stripe holds it.
    account: str | None = None
    scoped: bool = False

    @property
    def stripe_key(self) -> str | None:
        return split_scoped_key(self.key_value)[1] if self.scoped else self.key_value


def split_scoped_key(key_value: str | None) -> tuple[str | None, str | None]:
    """`acct_1/c42` -> ("acct_1", "c42"); `/c42` (the platform) -> (None, "c42")."""
    if key_value is None:
        return None, None
    account, _, key = key_value.partition("/")
    return account or None, key


@dataclass(frozen=True)
class RemovedRow:
    """A key that left the model while its Stripe object still exists (on_removed)."""

    key_value: str
    stripe_id: str
    synced_values: Mapping[str, Any]
    synced_at: datetime | None
    account: str | None = None  # Stripe Connect: the key's connected account


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
    unsynced: int = 0  # unchanged since a run that rejected them or found no match


@dataclass(frozen=True)
class RowOutcome:
    """The result for one row, written to the state and row-results tables."""

    key_value: str | None
    action: str  # an Action value
    outcome: str  # an Outcome value
    stripe_id: str | None
    row_hash: str | None  # None: planned again if the key comes back (a removal)
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



# --- matching and planning -----------------------------------------------------------------

@dataclass(frozen=True)
class FieldDiff:
    path: str
    before: Any
    after: Any


@dataclass(frozen=True)
class DesiredRow:
    """A row converted to Stripe values: path -> value; None means "unset" (null_values: clear).

    Paths whose column is null under `skip` are absent: they leave Stripe as it is.
    """

    row: DiffRow
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Rejection:
    row: DiffRow
    reason: str
    retryable: bool = False  # may pass later as it is (an event timestamped ahead)


@dataclass(frozen=True)
class Match:
    """What Stripe holds for a key: no object, one (with its current values), or several."""

    stripe_ids: tuple[str, ...] = ()
    current: Mapping[str, Any] | None = None  # flat values of the mapped paths (one match)
    source: str = "lookup"  # lookup | state
    # Every matched object's flat values, by id (a lookup that found several).
    candidates: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def ambiguous(self) -> bool:
        return len(self.stripe_ids) > 1


NO_MATCH = Match()


@dataclass(frozen=True)
class RowPlan:
    """The action for one row, with everything needed to perform and record it."""

    key_value: str | None
    action: Action
    row_hash: str
    status: DiffStatus
    stripe_id: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    diffs: tuple[FieldDiff, ...] = ()
    # The mapped paths' values Stripe holds once the action is done (state's synced_values).
    synced_values: Mapping[str, Any] | None = None
    reason: str | None = None
    idempotency_key: str | None = None
    # A replace: the object archived once the new one exists, how, and the fields whose
    # change forced it.
    replaces: str | None = None
    archive_params: Mapping[str, Any] = field(default_factory=dict)
    archive_idempotency_key: str | None = None
    forced_by: tuple[str, ...] = ()



# --- results ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class RowReport:
    """A row the report names: rejected, failed or not found (with why), or a diff sample."""

    key: str | None
    action: str
    stripe_id: str | None = None
    reason: str | None = None
    diffs: tuple[FieldDiff, ...] = ()
    forced_by: tuple[str, ...] = ()  # a replace: the immutable fields that changed
    replaces: str | None = None  # a replace: the object archived
    dashboard_url: str | None = None  # the object's page in the Stripe Dashboard


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
    removals: list[RowReport] = field(default_factory=list)  # on_removed: every one
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


