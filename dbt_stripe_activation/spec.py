"""A model's `stripe_activation` meta block -> a validated SyncSpec.

Validated once, at the edge, before any warehouse query or Stripe call: every error names
the model, the setting and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .objects.base import ObjectSpec
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
