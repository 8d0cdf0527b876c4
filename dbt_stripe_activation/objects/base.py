"""The contract every Stripe object spec fulfils: its fields, their limits, its key kinds.

The engine knows nothing of customers: it asks an ObjectSpec which field paths exist, how to
convert and validate a warehouse value for a path, and how to build create/update params.
A new object (Product, Price) is a new spec plus a conformance test class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class ValueKind(str, Enum):
    STRING = "string"
    INTEGER = "integer"
    STRING_LIST = "string_list"
    ENUM = "enum"
    BOOLEAN = "boolean"


@dataclass(frozen=True)
class FieldSpec:
    """One mappable Stripe field path (``address.city``), with Stripe's limits for it."""

    path: str
    kind: ValueKind
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    create_only: bool = False
    # Posting "" unsets it (Stripe docs: "Literal['']" in the SDK's typed params).
    unsettable: bool = True
    description: str = ""


@dataclass(frozen=True)
class RowIssue:
    """Why one row cannot be sent: the Stripe field path (or key) and the reason."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


# Flat desired state of one object: Stripe field path -> converted value (None = unset).
FlatValues = Mapping[str, Any]


@dataclass(frozen=True)
class ObjectSpec:
    """Declarative description of one Stripe object type."""

    name: str  # "customer"
    fields: Mapping[str, FieldSpec]
    key_fields: tuple[str, ...]  # the key kinds besides metadata.<name>: ("email", "id")
    metadata_max_keys: int = 50
    metadata_key_max_length: int = 40
    metadata_value_max_length: int = 500
    # Groups Stripe requires whole (shipping needs name and address.line1).
    required_together: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
