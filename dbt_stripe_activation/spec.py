"""A model's `stripe_activation` meta block -> a validated SyncSpec.

Validated once, at the edge, before any warehouse query or Stripe call: every error names
the model, the setting and the fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .errors import ConfigError
from .objects import OBJECT_SPECS, UnknownObjectError, get_object_spec
from .objects.base import (
    METADATA_PREFIX,
    ObjectSpec,
    closest_field,
    group_members,
    metadata_key_problem,
)
from .project import DbtModel


class Behavior(str, Enum):
    UPDATE_OR_CREATE = "update_or_create"
    UPDATE_ONLY = "update_only"


class KeyKind(str, Enum):
    EMAIL = "email"
    ID = "id"
    METADATA = "metadata"


class NullPolicy(str, Enum):
    """What a null in a mapped column does: `skip` leaves Stripe as is, `clear` unsets."""

    SKIP = "skip"
    CLEAR = "clear"


@dataclass(frozen=True)
class SyncKey:
    """How a row finds its Stripe object: a model column and a Stripe field."""

    column: str
    field: str  # "email" | "id" | "metadata.<name>"

    @property
    def kind(self) -> KeyKind:
        if self.field.startswith("metadata."):
            return KeyKind.METADATA
        return KeyKind(self.field)

    @property
    def metadata_name(self) -> str | None:
        return self.field.split(".", 1)[1] if self.kind is KeyKind.METADATA else None


@dataclass(frozen=True)
class FieldMapping:
    """Stripe field path <- model column, with its null policy."""

    path: str
    column: str
    null_values: NullPolicy = NullPolicy.SKIP


@dataclass(frozen=True)
class SyncSpec:
    """Everything the pipeline needs to sync one model into one Stripe object type."""

    model: DbtModel
    object: ObjectSpec
    behavior: Behavior
    key: SyncKey
    # The mapped fields; the key's own field (email, metadata.<name>) is included when the
    # key is not `id`, so a created object carries its key and the next run finds it.
    fields: tuple[FieldMapping, ...]
    null_values: NullPolicy = NullPolicy.SKIP

    @property
    def columns(self) -> tuple[str, ...]:
        """Model columns the sync reads, key first, each once."""
        seen: dict[str, None] = {self.key.column: None}
        for mapping in self.fields:
            seen.setdefault(mapping.column, None)
        return tuple(seen)

    @property
    def fingerprint(self) -> str:
        """Stable text of the mapping: part of each row's hash, so a changed map resyncs."""
        parts = [self.object.name, self.key.column, self.key.field]
        parts += [f"{m.path}<-{m.column}:{m.null_values.value}" for m in self.fields]
        return "|".join(parts)


# --- parsing: the meta block -> SyncSpec ------------------------------------------------------

SETTINGS = ("object", "behavior", "key", "fields", "null_values")
KEY_SETTINGS = ("column", "field")
FIELD_SETTINGS = ("column", "null_values")
_BEHAVIORS = tuple(b.value for b in Behavior)
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


def _parse_key(
    block: Mapping[str, Any], obj: ObjectSpec | None, behavior: Behavior, problems: _Problems
) -> SyncKey | None:
    raw = block.get("key")
    shape = "a mapping with `column` (the model column) and `field` (email, id or metadata.<name>)"
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
    key_fields = obj.key_fields if obj is not None else ("email", "id")
    allowed = ", ".join(key_fields) + " or metadata.<name>"
    if field is None:
        problems.add("key.field", f"is required: the Stripe field the key matches ({allowed}).")
        return None
    if not isinstance(field, str):
        problems.add("key.field", f"must be {allowed}, got {_type_name(field)}.")
        return None
    if field.startswith(METADATA_PREFIX):
        problem = metadata_key_problem(obj, field[len(METADATA_PREFIX) :]) if obj else None
        if problem is not None:
            problems.add("key.field", f"{problem}. Use another metadata key name.")
            return None
    elif field not in key_fields:
        options = [*key_fields, "metadata.<name>"]
        hint = _did_you_mean(field, options)
        hint = hint if hint != "." else f". Use {allowed}."
        problems.add("key.field", f"{field!r} cannot be a key{hint}")
        return None
    if field == "id" and behavior is Behavior.UPDATE_OR_CREATE:
        problems.add(
            "key.field",
            "'id' works only with behavior: update_only (Stripe assigns ids, so a row "
            "without a match cannot be created). Set `behavior: update_only`, or key on "
            "email or metadata.<name>.",
        )
        return None
    return SyncKey(column=column, field=field) if column is not None else None


def _parse_fields(
    block: Mapping[str, Any],
    obj: ObjectSpec | None,
    behavior: Behavior,
    default_nulls: NullPolicy,
    problems: _Problems,
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
        column, explicit = _field_entry(entry, setting, problems)
        if obj is not None and not _check_path(obj, path, behavior, setting, problems):
            continue
        if column is None:
            continue
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
        mappings.append(FieldMapping(path=path, column=column, null_values=nulls))
    return mappings


def _field_entry(entry: Any, setting: str, problems: _Problems) -> tuple[str | None, str | None]:
    """(column, explicit null policy) of one `fields` entry: a column or {column, null_values}."""
    if isinstance(entry, str):
        return _column(entry, setting, problems), None
    if not isinstance(entry, Mapping):
        problems.add(
            setting,
            f"must be a model column name (a string) or a mapping {{column: ..., "
            f"null_values: skip|clear}}, got {_type_name(entry)}.",
        )
        return None, None
    for name in entry:
        if name not in FIELD_SETTINGS:
            problems.add(
                f"{setting}.{name}",
                f"is not a field setting{_did_you_mean(str(name), FIELD_SETTINGS)} "
                "Allowed: column, null_values.",
            )
    if "column" not in entry:
        problems.add(f"{setting}.column", "is required: the model column to read.")
        column = None
    else:
        column = _column(entry["column"], f"{setting}.column", problems)
    nulls = entry.get("null_values")
    if nulls is not None and nulls not in _NULL_POLICIES:
        shown = repr(nulls) if isinstance(nulls, str) else _type_name(nulls)
        problems.add(f"{setting}.null_values", f"{shown} is not valid. Use skip or clear.")
        nulls = None
    return column, nulls


def _check_path(
    obj: ObjectSpec, path: str, behavior: Behavior, setting: str, problems: _Problems
) -> bool:
    if path == "id":
        problems.add(
            setting,
            f"a {obj.name}'s id is assigned by Stripe and cannot be written. To match on "
            "it, use `key: {field: id, column: ...}` with behavior: update_only.",
        )
        return False
    if path == "metadata":
        problems.add(
            setting,
            "'metadata' is a group; map its keys one by one: `metadata.<key>: column`.",
        )
        return False
    if path.startswith(METADATA_PREFIX):
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
            else f"mappable: {', '.join(sorted(obj.fields))}, metadata.<key>."
        )
        problems.add(setting, f"{path!r} is not a {obj.name} field Stripe lets you write; {hint}")
        return False
    if target.create_only and behavior is Behavior.UPDATE_ONLY:
        problems.add(
            setting,
            f"{path!r} can only be set when Stripe creates a {obj.name}, and behavior is "
            "update_only. Remove it, or use behavior: update_or_create.",
        )
        return False
    return True


def _parse(model: DbtModel) -> tuple[SyncSpec | None, list[str]]:
    problems = _Problems(model)
    block = model.sync_block
    if not isinstance(block, Mapping):
        problems.items.append(
            f"{model.label}: stripe_activation must be a mapping (object, key, fields, ...), "
            f"got {_type_name(block)}. Write it under `config: meta: stripe_activation:` as "
            "the README shows."
        )
        return None, problems.items
    for name in block:
        if name not in SETTINGS:
            problems.add(
                str(name),
                f"is not a setting{_did_you_mean(str(name), SETTINGS)} "
                f"Allowed: {', '.join(sorted(SETTINGS))}.",
            )
    obj = _parse_object(block, problems)
    behavior = Behavior(
        _choice(
            block,
            "behavior",
            _BEHAVIORS,
            Behavior.UPDATE_OR_CREATE.value,
            problems,
            "update_or_create (the default) or update_only",
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
    fields = _parse_fields(block, obj, behavior, default_nulls, problems)
    if obj is not None:
        if key is not None:
            fields = _with_key_field(key, fields, problems)
        _check_whole(obj, key, fields, problems)
    if problems.items or obj is None or key is None:
        return None, problems.items
    spec = SyncSpec(
        model=model,
        object=obj,
        behavior=behavior,
        key=key,
        fields=tuple(fields),
        null_values=default_nulls,
    )
    return spec, []


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


def _with_key_field(
    key: SyncKey, fields: list[FieldMapping], problems: _Problems
) -> list[FieldMapping]:
    """The key's own field joins the mapped fields, so a created object carries its key."""
    if key.kind is KeyKind.ID:
        return fields
    same = [m for m in fields if m.path == key.field]
    for mapping in same:
        if mapping.column != key.column:
            problems.add(
                f"fields.{key.field}",
                f"reads column {mapping.column!r}, but key.field {key.field} reads column "
                f"{key.column!r}: a created {key.field} would not be found by its key. Map "
                f"{key.field} to {key.column!r}, or remove it from fields.",
            )
    if same:
        return fields
    return [*fields, FieldMapping(path=key.field, column=key.column)]


def _check_whole(
    obj: ObjectSpec, key: SyncKey | None, fields: list[FieldMapping], problems: _Problems
) -> None:
    """Rules over the whole mapping: metadata key count, groups Stripe requires whole."""
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
    if not fields and key is not None:
        problems.add(
            "fields",
            f"is empty: with key.field {key.field}, nothing would be written. Map at least "
            "one Stripe field to a column.",
        )


def parse_sync_spec(model: DbtModel) -> SyncSpec:
    """Validate one model's `stripe_activation` block; ConfigError lists every problem."""
    spec, problems = _parse(model)
    if spec is None:
        raise ConfigError("\n".join(problems))
    return spec


def parse_sync_specs(models: Iterable[DbtModel]) -> list[SyncSpec]:
    """Validate every model; one ConfigError lists all problems of all models at once."""
    specs: list[SyncSpec] = []
    problems: list[str] = []
    for model in models:
        spec, found = _parse(model)
        problems += found
        if spec is not None:
            specs.append(spec)
    if problems:
        raise ConfigError("\n".join(problems))
    return specs


def check_overlaps(specs: list[SyncSpec]) -> list[str]:
    """Models that would write the same Stripe objects.

    Refused (ConfigError): two models syncing the same object type with the same key field,
    as each run would overwrite the other's values on the very same objects. Returned as
    warnings: models on the same object type with different keys that write the same
    fields, which may meet on objects both keys match.
    """
    errors: list[str] = []
    warnings: list[str] = []
    for i, first in enumerate(specs):
        for second in specs[i + 1 :]:
            if first.object.name != second.object.name:
                continue
            name = first.object.name
            if first.key.field == second.key.field:
                errors.append(
                    f"{first.model.label} and {second.model.label} both sync Stripe {name}s "
                    f"keyed on {first.key.field}: they would fight over the same {name}s. "
                    "Sync them from one model, or key each on its own field."
                )
                continue
            shared = sorted({m.path for m in first.fields} & {m.path for m in second.fields})
            if shared:
                warnings.append(
                    f"{first.model.label} (key {first.key.field}) and {second.model.label} "
                    f"(key {second.key.field}) both write {', '.join(shared)} on Stripe "
                    f"{name}s: a {name} both keys match gets whichever model syncs last."
                )
    if errors:
        raise ConfigError("\n".join(errors))
    return warnings
