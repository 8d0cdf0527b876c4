"""Planning: one warehouse row + what Stripe holds for its key -> the action to take.

Pure functions, no I/O: the engine feeds them the diff rows and the match results, and
`plan` and `sync` share them, so the preview predicts exactly what a sync does. What
differs between objects (create-only fields, replacements, archive params) comes from the
object's contract; nothing here names an object.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from .objects.catalogue import resolve_field
from .objects.contract import RemovalMode
from .objects.keys import normalize_key
from .objects.params import build_params
from .objects.values import Converter, converter, validate_values
from .records import (
    Action,
    DesiredRow,
    DiffRow,
    DiffStatus,
    FieldDiff,
    Match,
    Rejection,
    RemovedRow,
    RowPlan,
)
from .spec import Behavior, FieldMapping, NullPolicy, SyncSpec

ACCOUNT_ID = re.compile(r"acct_[A-Za-z0-9]+")

# Keys a `plan` run would create, by model: a plan writes no state, so a reference to a key
# its upstream model would create in the same run resolves to a placeholder, not a rejection.
PlannedKeys = Mapping[str, "set[str]"]


def desired_values(
    spec: SyncSpec, row: DiffRow, planned: PlannedKeys | None = None
) -> DesiredRow | Rejection:
    """Convert and validate a row's mapped values; the first problems reject the row."""
    if row.status is DiffStatus.INVALID_KEY:
        return Rejection(row, _invalid_key_reason(spec, row))
    if row.account is not None and not ACCOUNT_ID.fullmatch(row.account):
        return Rejection(row, f"account column {spec.account_column}: {row.account!r} is not "
                         "a Stripe account id (acct_...); leave it null for the platform")
    values: dict[str, Any] = {}
    problems: list[str] = []
    columns = row.values
    for field in _fields_of(spec):
        if field.column is not None:
            raw = columns.get(field.column)
        else:
            raw = _raw_value(field.mapping, row, problems, planned)
        value = None
        if raw is not None:
            try:
                value = field.convert(raw)
            except ValueError as exc:
                problems.append(f"{field.path} ({field.mapping.source}): {exc}")
                continue
        if value is None or value == "" or value == []:
            if field.clear:
                values[field.path] = None
            continue
        values[field.path] = value
    issues = validate_values(spec.object, values)
    problems += [str(issue) for issue in issues]
    if problems:
        retryable = len(issues) == len(problems) and all(i.retryable for i in issues)
        return Rejection(row, "; ".join(problems), retryable=retryable)
    return DesiredRow(row, values)


_UNRESOLVED = object()


@dataclass(frozen=True)
class _Field:
    """One mapping, resolved once per sync: its converter, and the column to read when it
    is a plain column (None: a constant or a reference, read by _raw_value)."""

    mapping: FieldMapping
    path: str
    column: str | None
    convert: Converter
    clear: bool


def _fields_of(spec: SyncSpec) -> tuple[_Field, ...]:
    found = _FIELDS.get(id(spec))
    if found is None or found[0] is not spec:
        fields = tuple(
            _Field(mapping, mapping.path,
                   mapping.column if not mapping.is_constant and mapping.ref is None else None,
                   converter(resolve_field(spec.object, mapping.path)),
                   mapping.null_values is NullPolicy.CLEAR)
            for mapping in spec.fields
        )
        found = _FIELDS[id(spec)] = (spec, fields)
    return found[1]


_FIELDS: dict[int, tuple[SyncSpec, tuple[_Field, ...]]] = {}


def _raw_value(
    mapping: FieldMapping, row: DiffRow, problems: list[str], planned: PlannedKeys | None
) -> Any:
    """The value a mapping gives this row: the column, the constant, or the Stripe id the
    referenced model synced the column's key to (from its state: no Stripe read)."""
    if mapping.is_constant:
        return mapping.constant
    raw = row.values.get(mapping.column or "")
    if mapping.ref is None or raw is None or (isinstance(raw, str) and not raw.strip()):
        return raw
    resolved = row.references.get(mapping.path)
    ref = mapping.ref
    if resolved is None and planned is not None:
        key = normalize_key(raw, casefold=ref.casefold)
        if key is not None and ref.same_account:  # the referenced model's state key
            key = f"{row.account or ''}/{key}"
        if key is not None and key in planned.get(ref.model.unique_id, ()):
            return f"(new {ref.object_name} {key})"
    if resolved is None:
        problems.append(
            f"{mapping.path} (ref {ref.label}, column {mapping.column}): key {str(raw)!r} has "
            f"no Stripe {ref.object_name} in {ref.label}'s sync state (not in that model, "
            f"rejected there, or not synced yet); sync {ref.label} first"
        )
        return None
    return resolved


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


def plan_row(spec: SyncSpec, desired: DesiredRow, match: Match, *, keys: bool = True) -> RowPlan:
    """Decide create / update / replace / unchanged / skip / not_found / rejected. `keys`:
    False for a plan, which sends nothing, so its writes need no idempotency keys (a
    third of a first plan's time per row)."""
    row = desired.row
    base = RowPlan(key_value=row.key_value, action=Action.UNCHANGED, row_hash=row.row_hash,
                   status=row.status)
    obj = spec.object
    if match.ambiguous:
        ids = ", ".join(match.stripe_ids)
        return replace(base, action=Action.REJECTED,
                       reason=f"key {spec.key.field}={row.key_value!r} matches "
                       f"{len(match.stripe_ids)} Stripe {obj.name}s ({ids}); "
                       "refusing to pick one")
    if not match.stripe_ids:
        if spec.behavior is Behavior.UPDATE_ONLY:
            return replace(base, action=Action.NOT_FOUND,
                           reason=f"no Stripe {obj.name} has "
                           f"{spec.key.field}={row.key_value!r}")
        return _create(spec, desired, keys)
    stripe_id = match.stripe_ids[0]
    current = dict(match.current or {})
    synced = _synced(spec, current, desired.values)
    if spec.behavior is Behavior.CREATE_ONLY:
        return replace(base, action=Action.SKIP, stripe_id=stripe_id, synced_values=synced,
                       reason=f"{obj.name} {stripe_id} exists (create_only leaves it as is)")
    wanted = {**_restore(spec, current, desired.values), **desired.values}
    changed = {
        path: value for path, value in wanted.items()
        if not _same(current.get(path), value)
    }
    policy = obj.replace
    forced = tuple(sorted(
        path for path in changed
        if policy is not None and policy.forces(path, current.get(path))
    ))
    if forced and not spec.key.spec.written:
        return replace(base, action=Action.REJECTED, stripe_id=stripe_id,
                       reason=f"{', '.join(forced)} cannot change on an existing {obj.name}, "
                       f"and a new {obj.name} would not carry the key {spec.key.field} (Stripe "
                       "assigns it): key the model on a field the sync can write")
    if forced:
        return _replace(spec, desired, base, stripe_id, current, forced)
    # Create-only fields (test_clock, payment_method) are ignored on an existing object.
    changed = {p: v for p, v in changed.items() if not resolve_field(obj, p).create_only}
    if not changed:
        return replace(base, stripe_id=stripe_id, synced_values=synced)
    to_send = _with_whole_groups(spec, changed, wanted)
    params = {**build_params(to_send, create=False, spec=obj), **spec.request_params}
    diffs = tuple(FieldDiff(p, current.get(p), v) for p, v in sorted(changed.items()))
    return replace(base, action=Action.UPDATE, stripe_id=stripe_id, params=params, diffs=diffs,
                   synced_values=synced,
                   idempotency_key=idempotency_key(spec, row, "update", params, stripe_id)
                   if keys else None)


def _restore(spec: SyncSpec, current: Mapping[str, Any],
             desired: Mapping[str, Any]) -> dict[str, Any]:
    """A key back in the model whose object on_removed archived: what undoes the archive
    (active=true; a flag unset), for the paths the model does not map itself."""
    removal = spec.removal
    if removal.mode is not RemovalMode.ARCHIVE or not removal.archive_values:
        return {}
    if not all(_same(current.get(p), v) for p, v in removal.archive_values.items()):
        return {}
    return {p: v for p, v in removal.restore_values.items() if p not in desired}


def plan_removal(spec: SyncSpec, removed: RemovedRow) -> RowPlan:
    """on_removed for a key that left the model: archive (the archive values; the state
    keeps them, so a key that comes back is restored) or delete."""
    archive = spec.removal.mode is RemovalMode.ARCHIVE
    values = dict(spec.removal.archive_values) if archive else {}
    params = build_params(values, create=False, spec=spec.object) if archive else {}
    action = Action.ARCHIVE if archive else Action.DELETE
    material = json.dumps(
        [spec.model.unique_id, spec.object.name, removed.key_value, action.value,
         removed.stripe_id, removed.synced_at.isoformat() if removed.synced_at else None,
         params], sort_keys=True, default=str, separators=(",", ":"))
    return RowPlan(
        key_value=removed.key_value, action=action, row_hash="", status=DiffStatus.REMOVED,
        stripe_id=removed.stripe_id, params=params,
        diffs=tuple(FieldDiff(p, removed.synced_values.get(p), v) for p, v in values.items()),
        synced_values={**removed.synced_values, **values} if archive else None,
        # The time of the state row is part of the key: archived, back, and removed again
        # within Stripe's 24 hours is a second archive, not a replay of the first.
        idempotency_key=f"dsa-{action.value}-"
        + hashlib.sha256(material.encode()).hexdigest()[:48],
    )


def _create(spec: SyncSpec, desired: DesiredRow, keys: bool) -> RowPlan:
    """Built whole, not by replace() on a base plan: every row of a first sync is one."""
    row = desired.row
    values = {p: v for p, v in desired.values.items() if v is not None}
    params = {**build_params(values, create=True, spec=spec.object), **spec.request_params}
    diffs = tuple(FieldDiff(p, None, v) for p, v in sorted(values.items()))
    return RowPlan(key_value=row.key_value, action=Action.CREATE, row_hash=row.row_hash,
                   status=row.status, params=params, diffs=diffs,
                   synced_values=_synced(spec, {}, values),
                   idempotency_key=idempotency_key(spec, row, "create", params)
                   if keys else None)


def _replace(
    spec: SyncSpec, desired: DesiredRow, base: RowPlan, old_id: str,
    current: Mapping[str, Any], forced: tuple[str, ...],
) -> RowPlan:
    """A new object with the row's values (and the key: a lookup key is transferred
    atomically), then the old one archived. The new object starts from the old one's
    values for what the model does not map as null."""
    policy = spec.object.replace
    assert policy is not None
    values = {p: v for p, v in {**current, **desired.values}.items() if v is not None}
    values = {p: v for p, v in values.items() if any(m.path == p for m in spec.fields)}
    params = {**build_params(values, create=True, spec=spec.object),
              **policy.create_extra_by_key.get(spec.key.spec.kind, {})}
    archive = dict(policy.archive)
    if spec.key.metadata_name is not None:
        # The old object gives up the key, as transfer_lookup_key does for lookup keys, so
        # that one object per key carries it.
        archive["metadata"] = {spec.key.metadata_name: ""}
    diffs = tuple(
        FieldDiff(p, current.get(p), v) for p, v in sorted(desired.values.items())
        if not _same(current.get(p), v)
    )
    row = desired.row
    return replace(
        base, action=Action.REPLACE, stripe_id=None, params=params, diffs=diffs,
        synced_values=_synced(spec, {}, values),
        idempotency_key=idempotency_key(spec, row, "replace", params, old_id),
        replaces=old_id, archive_params=archive, forced_by=forced,
        archive_idempotency_key=idempotency_key(spec, row, "archive", archive, old_id),
    )


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
    """What the mapped paths hold in Stripe after the write (for the state table), and the
    parent a group limit counts by (a subscription item's subscription)."""
    out: dict[str, Any] = {}
    limit = spec.object.group_limit
    if limit is not None and current.get(limit.attribute) is not None:
        out[limit.attribute] = current[limit.attribute]
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
    previous = row.previous.row_hash if (row.previous and action != "create") else ""
    if action == "create" and row.previous and row.previous.stripe_id:
        # The key's object was deleted (on_removed): a new object, not a replay of the
        # create that made the deleted one.
        previous = row.previous.stripe_id
    failure = row.previous.error if (row.previous and row.previous.outcome == "failed") else None
    material = json.dumps(
        [spec.model.unique_id, spec.object.name, row.key_value, action, stripe_id, previous,
         params, *([failure] if failure else [])],
        sort_keys=True, default=str, separators=(",", ":"),
    )
    return f"dsa-{action}-{hashlib.sha256(material.encode()).hexdigest()[:48]}"
