"""A model's `stripe_activation` meta block -> a validated SyncSpec.

Validated once, at the edge, before any warehouse query or Stripe call: every error names
the model, the setting and the fix. A reference is checked against the model it names.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from .cross_model import order_by_references
from .errors import ConfigError
from .objects import DEFAULT_OBJECT, OBJECT_SPECS, UnknownObjectError, get_object_spec
from .objects.catalogue import closest_field, group_members, metadata_key_problem
from .objects.contract import METADATA_PREFIX, Behavior, ObjectSpec, RemovalMode
from .project import DbtModel
from .spec import (
    NO_CONSTANT,
    FieldMapping,
    NullPolicy,
    Reference,
    Removal,
    SyncKey,
    SyncSpec,
)

SETTINGS = ("object", "behavior", "key", "fields", "null_values", "on_removed", "account")
KEY_SETTINGS = ("column", "field")
FIELD_SETTINGS = ("column", "null_values", "ref", "value")
_NULL_POLICIES = tuple(p.value for p in NullPolicy)


def _type_name(value: Any) -> str:
    """A YAML value's type in the user's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    found = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean {found[0]!r}?" if found else "."


class _Problems:
    """The config errors of one model, each naming the model, the setting and the fix."""

    def __init__(self, model: DbtModel) -> None:
        self.model = model
        self.items: list[str] = []

    def add(self, setting: str, text: str) -> None:
        self.items.append(f"{self.model.label}: stripe_activation.{setting}: {text}")


def _choice(
    block: Mapping[str, Any],
    name: str,
    allowed: tuple[str, ...],
    default: str,
    problems: _Problems,
    hint: str,
) -> str:
    value = block.get(name, default)
    if value is None:
        value = default
    if not isinstance(value, str) or value not in allowed:
        shown = repr(value) if isinstance(value, str) else _type_name(value)
        problems.add(name, f"{shown} is not valid. Use {hint}.")
        return default
    return value


def _column(value: Any, setting: str, problems: _Problems) -> str | None:
    if not isinstance(value, str):
        problems.add(setting, f"must be a model column name (a string), got {_type_name(value)}.")
        return None
    if not value.strip():
        problems.add(setting, "is empty. Name the model column to read.")
        return None
    return value


def _or(items: list[str]) -> str:
    """'a', 'a or b', 'a, b or c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _parse_key(
    block: Mapping[str, Any], obj: ObjectSpec | None, behavior: Behavior, problems: _Problems
) -> SyncKey | None:
    raw = block.get("key")
    choices = (obj or DEFAULT_OBJECT).key_choices
    allowed = _or(list(choices))
    shape = f"a mapping with `column` (the model column) and `field` ({allowed})"
    if raw is None:
        problems.add("key", f"is required: {shape}.")
        return None
    if not isinstance(raw, Mapping):
        problems.add("key", f"must be {shape}, got {_type_name(raw)}.")
        return None
    for name in raw:
        if name not in KEY_SETTINGS:
            problems.add(
                f"key.{name}",
                f"is not a key setting{_did_you_mean(str(name), KEY_SETTINGS)} "
                "Allowed: column, field.",
            )
    column = _column(raw.get("column"), "key.column", problems) if "column" in raw else None
    if "column" not in raw:
        problems.add("key.column", "is required: the model column holding the key value.")
    field = raw.get("field")
    if field is None:
        problems.add("key.field", f"is required: the Stripe field the key matches ({allowed}).")
        return None
    if not isinstance(field, str):
        problems.add("key.field", f"must be {allowed}, got {_type_name(field)}.")
        return None
    if obj is None:
        return None
    key_spec = obj.key_spec(field)
    if field.startswith(METADATA_PREFIX) and key_spec is not None:
        problem = metadata_key_problem(obj, field[len(METADATA_PREFIX) :])
        if problem is not None:
            problems.add("key.field", f"{problem}. Use another metadata key name.")
            return None
    elif key_spec is None or field == "metadata":
        hint = _did_you_mean(field, choices)
        hint = hint if hint != "." else f". A {obj.name} is matched on {allowed}."
        problems.add("key.field", f"{field!r} cannot be a {obj.name} key{hint}")
        return None
    if not key_spec.can_create and behavior is not Behavior.UPDATE_ONLY:
        others = [c for c in choices if obj.key_spec(c.replace("<name>", "x")) is not key_spec]
        problems.add(
            "key.field",
            f"{field!r} works only with behavior: update_only (Stripe assigns ids, so a "
            "row without a match cannot be created). Set `behavior: update_only`, "
            f"or key on {' or '.join(others)}.",
        )
        return None
    return SyncKey(column=column, field=field, spec=key_spec) if column is not None else None


def _parse_fields(
    block: Mapping[str, Any],
    obj: ObjectSpec | None,
    behavior: Behavior,
    default_nulls: NullPolicy,
    problems: _Problems,
    models: Mapping[str, DbtModel],
) -> list[FieldMapping]:
    raw = block.get("fields")
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        problems.add(
            "fields",
            f"must be a mapping of Stripe field path to model column (`name: full_name`), "
            f"got {_type_name(raw)}.",
        )
        return []
    mappings: list[FieldMapping] = []
    for path, entry in raw.items():
        if not isinstance(path, str):
            problems.add("fields", f"field paths must be strings, got {_type_name(path)} {path!r}.")
            continue
        setting = f"fields.{path}"
        parsed = _field_entry(entry, setting, problems)
        if obj is not None and not _check_path(obj, path, behavior, setting, problems):
            continue
        if parsed is None:
            continue
        column, explicit, ref_name, constant = parsed
        nulls = NullPolicy(explicit) if explicit else default_nulls
        target = obj.fields.get(path) if obj is not None else None
        if nulls is NullPolicy.CLEAR and target is not None and not target.unsettable:
            if explicit:
                problems.add(
                    f"{setting}.null_values",
                    f"is clear, but Stripe cannot unset {path} (it has no empty value). Use skip.",
                )
                continue
            # A model-wide `clear` applies where Stripe can unset; a null here is skipped.
            nulls = NullPolicy.SKIP
        ref = None
        if ref_name is not None and obj is not None:
            ref = _resolve_reference(obj, path, ref_name, setting, models, problems)
            if ref is None:
                continue
        if constant is not NO_CONSTANT:
            mappings.append(FieldMapping(path=path, column=None, null_values=nulls,
                                         constant=constant))
        else:
            mappings.append(FieldMapping(path=path, column=column, null_values=nulls, ref=ref))
    return mappings


_Entry = tuple[str | None, str | None, str | None, Any]


def _field_entry(entry: Any, setting: str, problems: _Problems) -> _Entry | None:
    """(column, explicit null policy, referenced model, constant) of one `fields` entry: a
    column name, or {column, null_values}, {ref, column} or {value}."""
    if isinstance(entry, str):
        column = _column(entry, setting, problems)
        return (column, None, None, NO_CONSTANT) if column is not None else None
    if not isinstance(entry, Mapping):
        problems.add(
            setting,
            f"must be a model column name (a string) or a mapping ({{column: ..., "
            f"null_values: skip|clear}}, {{ref: <model>, column: ...}} or {{value: ...}}), "
            f"got {_type_name(entry)}.",
        )
        return None
    for name in entry:
        if name not in FIELD_SETTINGS:
            problems.add(
                f"{setting}.{name}",
                f"is not a field setting{_did_you_mean(str(name), FIELD_SETTINGS)} "
                "Allowed: column, null_values, ref, value.",
            )
    nulls = entry.get("null_values")
    if nulls is not None and nulls not in _NULL_POLICIES:
        shown = repr(nulls) if isinstance(nulls, str) else _type_name(nulls)
        problems.add(f"{setting}.null_values", f"{shown} is not valid. Use skip or clear.")
        nulls = None
    if "value" in entry:
        if "column" in entry or "ref" in entry:
            problems.add(
                setting,
                "sets both a constant (value) and a column: use {value: ...} alone for a "
                "constant, or {column: ...} to read the model.",
            )
            return None
        value = entry["value"]
        if isinstance(value, (Mapping, list, tuple)):
            problems.add(f"{setting}.value", f"must be a single value, got {_type_name(value)}.")
            return None
        return None, nulls, None, value
    if "column" not in entry:
        problems.add(f"{setting}.column", "is required: the model column to read.")
        return None
    column = _column(entry["column"], f"{setting}.column", problems)
    ref = entry.get("ref")
    if ref is not None and (not isinstance(ref, str) or not ref.strip()):
        problems.add(
            f"{setting}.ref",
            f"must be the name of another model with a stripe_activation block, got "
            f"{_type_name(ref)}.",
        )
        return None
    return (column, nulls, ref, NO_CONSTANT) if column is not None else None


def _resolve_reference(
    obj: ObjectSpec,
    path: str,
    name: str,
    setting: str,
    models: Mapping[str, DbtModel],
    problems: _Problems,
) -> Reference | None:
    """The synced model a `{ref: name}` names, checked against what the field holds."""
    found = [m for m in models.values() if m.name == name]
    if not found:
        hint = _did_you_mean(name, sorted({m.name for m in models.values()}))
        problems.add(
            f"{setting}.ref",
            f"names model {name!r}, which is not in the project{hint}" if hint != "."
            else f"names model {name!r}, which is not in the project. Name a model with a "
            "stripe_activation block.",
        )
        return None
    if len(found) > 1:
        problems.add(
            f"{setting}.ref",
            f"names model {name!r}, which several packages define "
            f"({', '.join(m.unique_id for m in found)}); rename one.",
        )
        return None
    target_model = found[0]
    if target_model.sync_block is None:
        problems.add(
            f"{setting}.ref",
            f"names model {name!r}, which has no stripe_activation block: a reference "
            "resolves a key to the Stripe id that model synced. Add the block to "
            f"{name!r}, or map a column holding Stripe ids instead.",
        )
        return None
    block = target_model.sync_block if isinstance(target_model.sync_block, Mapping) else {}
    object_name = block.get("object")
    target_obj = OBJECT_SPECS.get(object_name) if isinstance(object_name, str) else None
    raw_key = block.get("key")
    key_block: Mapping[str, Any] = raw_key if isinstance(raw_key, Mapping) else {}
    raw_field = key_block.get("field")
    key_field = raw_field if isinstance(raw_field, str) else None
    key_spec = target_obj.key_spec(key_field) if target_obj and key_field else None
    if target_obj is None or key_spec is None:
        problems.add(
            f"{setting}.ref",
            f"names model {name!r}, whose own stripe_activation block is invalid; fix it "
            "first (its errors are listed when it is selected).",
        )
        return None
    expected = obj.field_references(path)
    if not path.startswith(obj.open_prefix) and expected is None:
        problems.add(
            f"{setting}.ref",
            f"{path} does not hold the id of another Stripe object, so it cannot be a "
            "reference. Map it to a column.",
        )
        return None
    if expected is not None and target_obj.name != expected:
        problems.add(
            f"{setting}.ref",
            f"{path} holds a {expected} id, but model {name!r} syncs {target_obj.name}s. "
            f"Reference a model with object: {expected}.",
        )
        return None
    return Reference(model=target_model, object_name=target_obj.name, casefold=key_spec.casefold)


def _check_path(
    obj: ObjectSpec, path: str, behavior: Behavior, setting: str, problems: _Problems
) -> bool:
    if path == "id":
        id_key = obj.keys.get("id")
        if id_key is not None and id_key.written:
            text = (
                f"a {obj.name}'s id is its key: Stripe lets the caller choose it on create. "
                "Use `key: {field: id, column: ...}` instead of mapping it."
            )
        else:
            text = (
                f"a {obj.name}'s id is assigned by Stripe and cannot be written. To match on "
                "it, use `key: {field: id, column: ...}` with behavior: update_only."
            )
        problems.add(setting, text)
        return False
    if path == obj.open_map:
        problems.add(
            setting,
            f"'{path}' is a group; map its keys one by one: `{path}.<key>: column`.",
        )
        return False
    if path.startswith(obj.open_prefix):
        problem = metadata_key_problem(obj, path[len(METADATA_PREFIX) :])
        if problem is not None:
            problems.add(setting, f"{problem}. Use another metadata key name.")
            return False
        return True
    target = obj.fields.get(path)
    if target is None:
        members = group_members(obj, path)
        if members:
            problems.add(
                setting,
                f"{path!r} is a group; map its fields one by one: {', '.join(members)}.",
            )
            return False
        suggestion = closest_field(obj, path)
        hint = (
            f"did you mean {suggestion!r}?"
            if suggestion
            else f"mappable: {', '.join(sorted(obj.fields))}, {obj.open_prefix}<key>."
        )
        problems.add(setting, f"{path!r} is not a {obj.name} field Stripe lets you write; {hint}")
        return False
    if target.create_only and behavior is Behavior.UPDATE_ONLY:
        replaced = obj.replace is not None and path in obj.replace.fields
        consequence = f" (a change to it needs a new {obj.name})" if replaced else ""
        problems.add(
            setting,
            f"{path!r} can only be set when Stripe creates a {obj.name}{consequence}, and "
            "behavior is update_only. Remove it, or use behavior: update_or_create.",
        )
        return False
    return True


def _parse(
    model: DbtModel, models: Mapping[str, DbtModel] | None = None
) -> tuple[SyncSpec | None, list[str]]:
    problems = _Problems(model)
    block = model.sync_block
    if not isinstance(block, Mapping):
        problems.items.append(
            f"{model.label}: stripe_activation must be a mapping (object, key, fields, ...), "
            f"got {_type_name(block)}. Write it under `config: meta: stripe_activation:` as "
            "the README shows."
        )
        return None, problems.items
    if model.materialized == "ephemeral":
        problems.items.append(
            f"{model.label}: is materialized as ephemeral, so it has no relation in the "
            "warehouse for the sync to read. Materialize it as a table, view or incremental "
            "model (`config: materialized: table`)."
        )
        return None, problems.items
    obj = _parse_object(block, problems)
    allowed_settings = (*SETTINGS, *(obj.request_settings if obj is not None else ()))
    for name in block:
        if name not in allowed_settings:
            problems.add(
                str(name),
                f"is not a setting{_did_you_mean(str(name), allowed_settings)} "
                f"Allowed: {', '.join(sorted(allowed_settings))}.",
            )
    request_params: dict[str, str] = {}
    for name, (choices, default) in (obj.request_settings if obj is not None else {}).items():
        request_params[name] = _choice(block, name, choices, default, problems,
                                       _or([f"{default} (the default)",
                                            *[c for c in choices if c != default]]))
    allowed = obj.behaviors if obj is not None else tuple(Behavior)
    names = [b.value for b in allowed]
    behavior = Behavior(
        _choice(
            block,
            "behavior",
            tuple(names),
            names[0],
            problems,
            _or([f"{names[0]} (the default)", *names[1:]]),
        )
    )
    default_nulls = NullPolicy(
        _choice(
            block,
            "null_values",
            _NULL_POLICIES,
            NullPolicy.SKIP.value,
            problems,
            "skip (the default: a null leaves Stripe as it is) or clear (a null unsets "
            "the Stripe field)",
        )
    )
    key = _parse_key(block, obj, behavior, problems)
    fields = _parse_fields(block, obj, behavior, default_nulls, problems, models or {})
    removal = _parse_removal(block.get("on_removed"), obj, key, problems) \
        if obj is not None else Removal()
    account_column = _column(block["account"], "account", problems) \
        if block.get("account") is not None else None
    if account_column is not None and behavior is Behavior.APPEND:
        problems.add("account", "is not supported for meter events yet (they are sent to the "
                     "platform's account). Remove the setting.")
        account_column = None
    fields = _scope_references(fields, account_column, problems)
    if obj is not None:
        if key is not None:
            fields = _with_key_field(key, fields, problems)
        raw_fields = block.get("fields")
        declared = {p for p in raw_fields if isinstance(p, str)} \
            if isinstance(raw_fields, Mapping) else set()
        _check_whole(obj, key, behavior, fields, problems, declared)
    if problems.items or obj is None or key is None:
        return None, problems.items
    spec = SyncSpec(
        model=model,
        object=obj,
        behavior=behavior,
        key=key,
        fields=tuple(fields),
        null_values=default_nulls,
        request_params=request_params,
        removal=removal,
        account_column=account_column,
    )
    return spec, []


def _scope_references(
    fields: list[FieldMapping], account_column: str | None, problems: _Problems
) -> list[FieldMapping]:
    """Connect: a reference resolves in the row's own account, so the referencing and the
    referenced model must both name an account column, or neither."""
    out = []
    for mapping in fields:
        ref = mapping.ref
        if ref is None:
            out.append(mapping)
            continue
        theirs = isinstance(ref.model.sync_block, Mapping) and \
            ref.model.sync_block.get("account") is not None
        if theirs != (account_column is not None):
            scoped, plain = (ref.label, "this model") if theirs else ("this model", ref.label)
            problems.add(f"fields.{mapping.path}", f"references model '{ref.label}', but "
                         f"{scoped} names an `account` column and {plain} does not: an "
                         "object can only name objects of its own Stripe account. Give both "
                         "models the account column, or neither.")
            continue
        out.append(replace(mapping, ref=replace(ref, same_account=theirs)))
    return out


def _parse_removal(
    value: Any, obj: ObjectSpec, key: SyncKey | None, problems: _Problems
) -> Removal:
    """`on_removed: ignore | archive | delete`, or `{archive: {metadata.<name>: value}}` for
    objects whose archive is a flag the user names (customers)."""
    policy = obj.removal
    modes = [m.value for m in policy.modes]
    usage = _or([f"{modes[0]} (the default)", *modes[1:]])
    if value is None:
        return Removal()
    if policy.never and value != RemovalMode.IGNORE.value:
        problems.add("on_removed", f"{_shown(value)} is not available: {policy.never}. "
                     "Remove the setting (or write `on_removed: ignore`).")
        return Removal()
    flag_example = "on_removed: {archive: {metadata.status: archived}}"
    if isinstance(value, Mapping):
        if list(value) != [RemovalMode.ARCHIVE.value] or not isinstance(value["archive"], Mapping):
            problems.add("on_removed", f"a mapping must be {{archive: {{metadata.<name>: "
                         f"value}}}} (e.g. {flag_example}); got {_shown(value)}.")
            return Removal()
        if not policy.archive_by_flag:
            problems.add("on_removed", f"a {obj.name} archives with "
                         f"{_flat_text(policy.archive or {})}, no flag to name: write "
                         "`on_removed: archive`.")
            return Removal()
        return _flag_removal(value["archive"], obj, key, problems, flag_example)
    if not isinstance(value, str) or value not in [m.value for m in RemovalMode]:
        problems.add("on_removed", f"{_shown(value)} is not valid. Use {usage}.")
        return Removal()
    mode = RemovalMode(value)
    if mode is RemovalMode.ARCHIVE and policy.archive is None and policy.archive_by_flag:
        problems.add("on_removed", f"a Stripe {obj.name} has no archived state: name the "
                     f"metadata flag that marks it archived ({flag_example}), or use "
                     f"delete ({policy.delete_note or 'permanent'}).")
        return Removal()
    if mode not in policy.modes:
        problems.add("on_removed", f"{value!r} is not available for a {obj.name}. Use {usage}.")
        return Removal()
    if mode is RemovalMode.ARCHIVE:
        archive = dict(policy.archive or {})
        return Removal(mode, archive, dict(policy.restore or {}))
    return Removal(mode)


def _flag_removal(
    flags: Mapping[Any, Any], obj: ObjectSpec, key: SyncKey | None, problems: _Problems,
    example: str,
) -> Removal:
    archive: dict[str, Any] = {}
    for path, flag in flags.items():
        setting = f"on_removed.archive.{path}"
        if not isinstance(path, str) or not path.startswith(METADATA_PREFIX):
            problems.add(setting, f"the archive flag must be a metadata key, as in {example}.")
            continue
        name = path[len(METADATA_PREFIX):]
        issue = metadata_key_problem(obj, name)
        if issue:
            problems.add(setting, issue + ".")
            continue
        if key is not None and key.metadata_name == name:
            problems.add(setting, f"is the sync key ({key.field}): archiving must keep the "
                         "key, so a row that comes back finds its object. Name another key.")
            continue
        if not isinstance(flag, (str, int, float)) or isinstance(flag, bool) or not str(flag):
            problems.add(setting, f"must be a non-empty text value, got {_shown(flag)}.")
            continue
        archive[path] = str(flag)
    if not archive and not problems.items:
        problems.add("on_removed.archive", f"names no flag; e.g. {example}.")
    return Removal(RemovalMode.ARCHIVE, archive, dict.fromkeys(archive))


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else _type_name(value)


def _flat_text(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{path}: {json.dumps(value)}" for path, value in values.items())


def _parse_object(block: Mapping[str, Any], problems: _Problems) -> ObjectSpec | None:
    known = ", ".join(OBJECT_SPECS)
    if "object" not in block or block["object"] is None:
        problems.add("object", f"is required: the Stripe object type to sync ({known}).")
        return None
    name = block["object"]
    if not isinstance(name, str):
        problems.add("object", f"must be a Stripe object type ({known}), got {_type_name(name)}.")
        return None
    try:
        return get_object_spec(name)
    except UnknownObjectError:
        hint = _did_you_mean(name, OBJECT_SPECS)
        hint = hint if hint != "." else f". Supported: {known}."
        problems.add("object", f"{name!r} is not a supported Stripe object{hint}")
        return None


def _source_text(mapping: FieldMapping) -> str:
    return f"column {mapping.column!r}" if mapping.ref is None and not mapping.is_constant \
        else mapping.source


def _with_key_field(
    key: SyncKey, fields: list[FieldMapping], problems: _Problems
) -> list[FieldMapping]:
    """The key's own field joins the mapped fields, so a created object carries its key."""
    if not key.spec.written:
        return fields
    same = [m for m in fields if m.path == key.field]
    for mapping in same:
        if mapping.column != key.column or mapping.ref is not None:
            problems.add(
                f"fields.{key.field}",
                f"reads {_source_text(mapping)}, but key.field {key.field} reads column "
                f"{key.column!r}: a created {key.field} would not be found by its key. Map "
                f"{key.field} to {key.column!r}, or remove it from fields.",
            )
    if same:
        return fields
    return [*fields, FieldMapping(path=key.field, column=key.column)]


def _check_whole(
    obj: ObjectSpec,
    key: SyncKey | None,
    behavior: Behavior,
    fields: list[FieldMapping],
    problems: _Problems,
    declared: set[str],
) -> None:
    """Rules over the whole mapping: metadata key count, groups Stripe requires whole,
    what a create needs, fields that exclude each other. `declared` are the paths the block
    names, valid or not: one already reported is not reported again as missing."""
    paths = [m.path for m in fields]
    metadata = {p for p in paths if p.startswith(METADATA_PREFIX)}
    if len(metadata) > obj.metadata_max_keys:
        problems.add(
            "fields",
            f"maps {len(metadata)} metadata keys (the key's included); Stripe allows at most "
            f"{obj.metadata_max_keys} per {obj.name}. Map fewer, or combine values into one key.",
        )
    for group, required in obj.required_together.items():
        mapped = [p for p in paths if p.startswith(group + ".")]
        missing = [p for p in required if p not in paths]
        if mapped and missing:
            problems.add(
                "fields",
                f"maps {', '.join(mapped)} but not {', '.join(missing)}; Stripe needs "
                f"{' and '.join(required)} whenever {group} is sent. Map them too.",
            )
    for exclusive in obj.exclusive:
        both = [p for p in exclusive if p in paths]
        if len(both) > 1:
            problems.add(
                "fields",
                f"maps {' and '.join(both)}; Stripe takes only one of them. Map one.",
            )
    if behavior is not Behavior.UPDATE_ONLY:
        missing = [p for p in obj.required_on_create if p not in paths and p not in declared]
        if missing:
            problems.add(
                "fields",
                f"does not map {', '.join(missing)}, which Stripe requires to create a "
                f"{obj.name} (behavior {behavior.value}). Map "
                f"{'it' if len(missing) == 1 else 'them'}, or use behavior: update_only.",
            )
        named = set(paths) | set(declared)
        for one_of in obj.create_needs_one_of:
            if not named & set(one_of):
                problems.add(
                    "fields",
                    f"maps no {' or '.join(one_of)}: Stripe needs one of them to create "
                    f"the {obj.name}. Map one.",
                )
        for path, needed in obj.required_with_on_create.items():
            lacking = [p for p in needed if path in named and p not in named]
            if lacking:
                problems.add(
                    "fields",
                    f"maps {path} without {', '.join(lacking)}: Stripe needs "
                    f"{' and '.join(lacking)} with it to create the {obj.name}. Map "
                    f"{' and '.join(lacking)}.",
                )
    if not fields and key is not None:
        problems.add(
            "fields",
            f"is empty: with key.field {key.field}, nothing would be written. Map at least "
            "one Stripe field to a column.",
        )


def parse_sync_spec(model: DbtModel, models: Mapping[str, DbtModel] | None = None) -> SyncSpec:
    """Validate one model's `stripe_activation` block; ConfigError lists every problem."""
    spec, problems = _parse(model, models)
    if spec is None:
        raise ConfigError("\n".join(problems))
    return spec


def parse_sync_specs(
    models: Iterable[DbtModel], project_models: Mapping[str, DbtModel] | None = None
) -> list[SyncSpec]:
    """Validate every model; one ConfigError lists all problems of all models at once.

    `project_models` (every model of the manifest, by unique id) resolves references to
    models that are not selected; without it, only the given models can be referenced.
    The specs come back in sync order: referenced models first (a cycle is an error).
    """
    chosen = list(models)
    universe = dict(project_models) if project_models is not None else {
        m.unique_id: m for m in chosen
    }
    specs: list[SyncSpec] = []
    problems: list[str] = []
    for model in chosen:
        spec, found = _parse(model, universe)
        problems += found
        if spec is not None:
            specs.append(spec)
    if problems:
        raise ConfigError("\n".join(problems))
    return order_by_references(specs)


def create_only_warnings(spec: SyncSpec) -> list[str]:
    """Mapped fields Stripe sets only on create and the object keeps as they are (a
    customer's test_clock): a change to one in the model is ignored on existing objects."""
    policy = spec.object.replace
    ignored = [
        m.path for m in spec.fields
        if m.path != spec.key.field and (target := spec.object.fields.get(m.path)) is not None
        and target.create_only and (policy is None or not policy.forces(m.path, None))
    ]
    if not ignored:
        return []
    return [
        f"{spec.model.label}: {', '.join(ignored)} can only be set when Stripe creates a "
        f"{spec.object.name}: a change to {'it' if len(ignored) == 1 else 'them'} in the model "
        f"is ignored on existing {spec.object.name}s."
    ]
