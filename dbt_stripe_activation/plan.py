"""Planning: one warehouse row + what Stripe holds for its key -> the action to take.

Pure functions, no I/O: the engine feeds them the diff rows and the match results, and
`plan` and `sync` share them, so the preview predicts exactly what a sync does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .objects.base import build_params, convert_value, resolve_field, validate_values
from .spec import Behavior, NullPolicy, SyncSpec
from .warehouse import DiffRow, DiffStatus


class Action(str, Enum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"
    NOT_FOUND = "not_found"


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


@dataclass(frozen=True)
class Match:
    """What Stripe holds for a key: no object, one (with its current values), or several."""

    stripe_ids: tuple[str, ...] = ()
    current: Mapping[str, Any] | None = None  # flat values of the mapped paths (one match)
    source: str = "lookup"  # lookup | state

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


def desired_values(spec: SyncSpec, row: DiffRow) -> DesiredRow | Rejection:
    """Convert and validate a row's mapped columns; the first problems reject the row."""
    if row.status is DiffStatus.INVALID_KEY:
        return Rejection(row, _invalid_key_reason(spec, row))
    values: dict[str, Any] = {}
    problems: list[str] = []
    for mapping in spec.fields:
        raw = row.values.get(mapping.column)
        target = resolve_field(spec.object, mapping.path)
        try:
            value = convert_value(target, raw)
        except ValueError as exc:
            problems.append(f"{mapping.path} (column {mapping.column}): {exc}")
            continue
        if value is None or value == "" or value == []:
            if mapping.null_values is NullPolicy.CLEAR:
                values[mapping.path] = None
            continue
        values[mapping.path] = value
    problems += [str(issue) for issue in validate_values(spec.object, values)]
    if problems:
        return Rejection(row, "; ".join(problems))
    return DesiredRow(row, values)


def _invalid_key_reason(spec: SyncSpec, row: DiffRow) -> str:
    if row.key_value is None:
        return f"key column {spec.key.column} is null or empty"
    return (
        f"key {spec.key.field}={row.key_value!r} is shared by {row.duplicate_count} rows "
        f"of the model; each Stripe {spec.object.name} needs exactly one row"
    )


def reject(spec: SyncSpec, rejection: Rejection) -> RowPlan:
    return RowPlan(
        key_value=rejection.row.key_value,
        action=Action.REJECTED,
        row_hash=rejection.row.row_hash,
        status=rejection.row.status,
        reason=rejection.reason,
    )


def plan_row(spec: SyncSpec, desired: DesiredRow, match: Match) -> RowPlan:
    """Decide create / update / unchanged / not_found / rejected for one valid row."""
    row = desired.row
    base = RowPlan(key_value=row.key_value, action=Action.UNCHANGED, row_hash=row.row_hash,
                   status=row.status)
    if match.ambiguous:
        ids = ", ".join(match.stripe_ids)
        return _replace(base, action=Action.REJECTED,
                        reason=f"key {spec.key.field}={row.key_value!r} matches "
                        f"{len(match.stripe_ids)} Stripe {spec.object.name}s ({ids}); "
                        "refusing to pick one")
    if not match.stripe_ids:
        if spec.behavior is Behavior.UPDATE_ONLY:
            return _replace(base, action=Action.NOT_FOUND,
                            reason=f"no Stripe {spec.object.name} has "
                            f"{spec.key.field}={row.key_value!r}")
        values = {p: v for p, v in desired.values.items() if v is not None}
        params = build_params(values, create=True, spec=spec.object)
        diffs = tuple(FieldDiff(p, None, v) for p, v in sorted(values.items()))
        return _replace(base, action=Action.CREATE, params=params, diffs=diffs,
                        synced_values=_synced(spec, {}, values),
                        idempotency_key=idempotency_key(spec, row, "create", params))
    stripe_id = match.stripe_ids[0]
    current = dict(match.current or {})
    # Create-only fields (test_clock, payment_method) cannot be changed on an existing object.
    changed = {
        path: value for path, value in desired.values.items()
        if not resolve_field(spec.object, path).create_only
        and not _same(current.get(path), value)
    }
    synced = _synced(spec, current, desired.values)
    if not changed:
        return _replace(base, stripe_id=stripe_id, synced_values=synced)
    to_send = _with_whole_groups(spec, changed, desired.values)
    params = build_params(to_send, create=False, spec=spec.object)
    diffs = tuple(FieldDiff(p, current.get(p), v) for p, v in sorted(changed.items()))
    return _replace(base, action=Action.UPDATE, stripe_id=stripe_id, params=params, diffs=diffs,
                    synced_values=synced,
                    idempotency_key=idempotency_key(spec, row, "update", params, stripe_id))


def _replace(plan: RowPlan, **changes: Any) -> RowPlan:
    from dataclasses import replace

    return replace(plan, **changes)


def _same(before: Any, after: Any) -> bool:
    """Equal as Stripe sees it: "" and missing are both unset; lists compare in order."""
    if before in ("", None, []) and after in ("", None, []):
        return True
    if isinstance(before, (list, tuple)) and isinstance(after, (list, tuple)):
        return list(before) == list(after)
    return bool(before == after)


def _with_whole_groups(
    spec: SyncSpec, changed: Mapping[str, Any], desired: Mapping[str, Any]
) -> dict[str, Any]:
    """A changed `address.city` sends every mapped `address.*` path: Stripe sets a nested
    hash as a whole, so sending one sub-field could drop its mapped siblings. A group Stripe
    requires whole (`shipping` needs name and address) is sent from its root. Metadata keys
    are the exception: Stripe merges metadata key by key."""

    def group_of(path: str) -> str | None:
        if "." not in path or path.startswith("metadata."):
            return None
        for root in spec.object.required_together:
            if path.startswith(root + "."):
                return root
        return path.rsplit(".", 1)[0]

    groups = {g for g in map(group_of, changed) if g}
    out = dict(changed)
    for path, value in desired.items():
        group = group_of(path)
        if group and group in groups and not resolve_field(spec.object, path).create_only:
            out.setdefault(path, value)
    return out


def _synced(spec: SyncSpec, current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict:
    """What the mapped paths hold in Stripe after the write (for the state table)."""
    out: dict[str, Any] = {}
    for mapping in spec.fields:
        if mapping.path in desired:
            out[mapping.path] = desired[mapping.path]
        else:
            out[mapping.path] = current.get(mapping.path)
    return out


def idempotency_key(
    spec: SyncSpec, row: DiffRow, action: str, params: Mapping[str, Any], stripe_id: str = ""
) -> str:
    """Deterministic: the same write after a crash or a lost response replays in Stripe.

    The previous hash is part of an update's key so that A -> B -> A within Stripe's 24 h
    window is three distinct writes, not a replay of the first. A write that failed in an
    earlier run is retried under a key derived from that failure: Stripe saves its own 500s
    under the key and replays them to every later request with it, so the old key could
    never succeed. (A create that did land is found by the key lookup instead of re-sent; a
    re-sent update sets the same values.)
    """
    previous = row.previous.row_hash if (row.previous and action == "update") else ""
    failure = row.previous.error if (row.previous and row.previous.outcome == "failed") else None
    material = json.dumps(
        [spec.model.unique_id, spec.object.name, row.key_value, action, stripe_id, previous,
         params, *([failure] if failure else [])],
        sort_keys=True, default=str, separators=(",", ":"),
    )
    return f"dsa-{action}-{hashlib.sha256(material.encode()).hexdigest()[:48]}"
