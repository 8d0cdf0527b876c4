"""What a validated model sync is: the model, its Stripe object, its key and field map.

Built once by meta_block.py from a model's `stripe_activation` block; every later stage
reads these, never the block.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .objects.contract import METADATA_PREFIX, Behavior, KeySpec, ObjectSpec, RemovalMode
from .project import DbtModel


class NullPolicy(str, Enum):
    """What a null in a mapped column does: `skip` leaves Stripe as is, `clear` unsets."""

    SKIP = "skip"
    CLEAR = "clear"


@dataclass(frozen=True)
class SyncKey:
    """How a row finds its Stripe object: a model column, a Stripe field and its kind."""

    column: str
    field: str  # "email" | "id" | "lookup_key" | "metadata.<name>" ...
    spec: KeySpec  # how the object looks this kind of key up (objects/contract.py)

    @property
    def metadata_name(self) -> str | None:
        if not self.field.startswith(METADATA_PREFIX):
            return None
        return self.field[len(METADATA_PREFIX) :]

    @property
    def casefold(self) -> bool:
        return self.spec.casefold


@dataclass(frozen=True)
class Reference:
    """A field filled from another synced model's state: the column holds that model's key,
    the sync writes the Stripe id that key was synced to."""

    model: DbtModel
    object_name: str
    casefold: bool  # how the referenced model normalizes its keys
    # Both models name an account column: the key resolves in the row's own account.
    same_account: bool = False

    @property
    def label(self) -> str:
        return self.model.name


NO_CONSTANT = object()  # FieldMapping.constant when the value comes from a column


@dataclass(frozen=True)
class FieldMapping:
    """Stripe field path <- a model column (optionally a reference), or a constant."""

    path: str
    column: str | None
    null_values: NullPolicy = NullPolicy.SKIP
    ref: Reference | None = None
    constant: Any = NO_CONSTANT

    @property
    def is_constant(self) -> bool:
        return self.constant is not NO_CONSTANT

    @property
    def source(self) -> str:
        """How messages and the fingerprint name where the value comes from."""
        if self.is_constant:
            return "value " + json.dumps(self.constant, sort_keys=True, default=str)
        if self.ref is not None:
            return f"ref {self.ref.model.unique_id} column {self.column}"
        return f"column {self.column}"


@dataclass(frozen=True)
class Removal:
    """`on_removed`: what happens to the Stripe object of a key that left the model. Archive
    sends `archive_values` (flat paths); a key that comes back gets `restore_values` (None
    unsets a metadata flag) unless the model maps those paths itself."""

    mode: RemovalMode = RemovalMode.IGNORE
    archive_values: Mapping[str, Any] = field(default_factory=dict)
    restore_values: Mapping[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.mode is not RemovalMode.IGNORE


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
    # Block settings sent with every write (a subscription item's proration_behavior).
    request_params: Mapping[str, str] = field(default_factory=dict)
    removal: Removal = field(default_factory=Removal)
    # Stripe Connect: the column naming each row's connected account (null: the platform).
    account_column: str | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        """Model columns the sync reads, key first, each once."""
        seen: dict[str, None] = {self.key.column: None}
        if self.account_column is not None:
            seen.setdefault(self.account_column, None)
        for mapping in self.fields:
            if mapping.column is not None:
                seen.setdefault(mapping.column, None)
        return tuple(seen)

    @property
    def references(self) -> tuple[FieldMapping, ...]:
        return tuple(m for m in self.fields if m.ref is not None)

    @property
    def fingerprint(self) -> str:
        """Stable text of the mapping: part of each row's hash, so a changed map resyncs."""
        parts = [self.object.name, self.key.column, self.key.field]
        for m in self.fields:
            if m.ref is None and not m.is_constant:
                parts.append(f"{m.path}<-{m.column}:{m.null_values.value}")
            else:
                parts.append(f"{m.path}<-{m.source}:{m.null_values.value}")
        if self.behavior is Behavior.CREATE_ONLY:
            parts.append("create_only")
        parts += [f"{k}={v}" for k, v in sorted(self.request_params.items())]
        if self.account_column is not None:
            parts.append(f"account<-{self.account_column}")
        return "|".join(parts)
