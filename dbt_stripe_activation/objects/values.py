"""Warehouse values as the values Stripe expects: conversion per field, checked against the
field's limits, and the rules that span fields of one object.

Text is sent exactly as the warehouse holds it; a value Stripe would refuse raises a
ValueError whose text completes "<column> ..." in the row's rejection.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from .contract import METADATA_PREFIX, FieldSpec, ObjectSpec, RowIssue, ValueKind

# Flat desired state of one object: Stripe field path -> converted value (None = unset).
FlatValues = Mapping[str, Any]

def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _as_text(value: Any) -> str:
    """One warehouse scalar as the text Stripe stores, without altering it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"is {value}; expected a finite number or text")
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise ValueError("is binary data; expected text")
    if isinstance(value, (list, tuple, set, frozenset, Mapping)):
        raise ValueError(f"is a {type(value).__name__}; expected a single value")
    return str(value)  # UUID and other scalar-like types


def _check_text(spec: FieldSpec, text: str) -> str:
    if "\x00" in text:
        raise ValueError("contains a NUL character, which Stripe does not accept")
    # Stripe counts characters (code points), as Python's len() does: an emoji is one, a
    # letter plus a combining accent is two. Nothing is normalized: values are sent exactly.
    if spec.max_length is not None and len(text) > spec.max_length:
        raise ValueError(f"is {len(text)} characters; Stripe allows at most {spec.max_length}")
    if spec.pattern is not None and text and not re.fullmatch(spec.pattern, text):
        raise ValueError(spec.pattern_reason or f"does not match {spec.pattern}")
    return text


def _as_integer(spec: FieldSpec, value: Any) -> int | None:
    if isinstance(value, bool):
        raise ValueError("is a boolean; expected a whole number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, (Decimal, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"is {value}; expected a whole number")
        if isinstance(value, Decimal) and not value.is_finite():
            raise ValueError(f"is {value}; expected a whole number")
        if value != int(value):
            raise ValueError(f"is {value}; Stripe expects a whole number (minor units)")
        number = int(value)
    elif isinstance(value, str):
        if value == "":
            return None
        if not re.fullmatch(r"[+-]?[0-9]+", value):
            raise ValueError(f"is {_short(value)}; expected a whole number")
        number = int(value)
    else:
        raise ValueError(f"is a {type(value).__name__}; expected a whole number")
    if spec.minimum is not None and number < spec.minimum:
        raise ValueError(f"is {number}; Stripe requires at least {spec.minimum}")
    return number


def _as_boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        if value == "":
            return None
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
    raise ValueError(f"is {_short(value)}; expected true or false")


def _as_list(spec: FieldSpec, value: Any) -> list[str]:
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError(f"is a {type(value).__name__}; expected an array or comma-separated text")
    out = []
    for item in items:
        if item is None:
            continue
        text = _as_text(item).strip()
        if text:
            try:
                out.append(_check_text(spec, text))
            except ValueError as exc:  # name the item: the list may be long
                raise ValueError(f"item {_short(text)} {exc}") from None
    return out


def convert_value(spec: FieldSpec, raw: Any) -> Any:
    """A warehouse value -> the value Stripe expects for this field; ValueError says why not.

    None stays None (the planner applies the null policy). Text is sent exactly as the
    warehouse holds it: nothing is trimmed, case-folded or normalized.
    """
    if raw is None:
        return None
    return converter(spec)(raw)


Converter = Callable[[Any], Any]


def converter(spec: FieldSpec) -> Converter:
    """convert_value for one field, chosen once: a sync converts the same fields row after
    row (for a non-null value)."""
    found = _CONVERTERS.get(id(spec))
    if found is None or found[0] is not spec:
        found = _CONVERTERS[id(spec)] = (spec, _make_converter(spec))
    return found[1]


_CONVERTERS: dict[int, tuple[FieldSpec, Converter]] = {}


def _make_converter(spec: FieldSpec) -> Converter:
    kind = spec.kind
    if kind is ValueKind.DECIMAL:
        return _as_decimal
    if kind is ValueKind.TIMESTAMP:
        return as_unix_seconds
    if kind is ValueKind.INTEGER:
        return functools.partial(_as_integer, spec)
    if kind is ValueKind.BOOLEAN:
        return _as_boolean
    if kind is ValueKind.STRING_LIST:
        return functools.partial(_as_list, spec)
    if kind is ValueKind.ENUM:
        return functools.partial(_as_enum, spec)
    lowercase = spec.lowercase

    def as_string(raw: Any) -> str:
        text = raw if raw.__class__ is str else _as_text(raw)
        return _check_text(spec, text.lower() if lowercase else text)

    return as_string


def _as_enum(spec: FieldSpec, raw: Any) -> str:
    if isinstance(raw, bool):
        raise ValueError(f"is a boolean; Stripe accepts {_choices_text(spec.choices)}")
    text = _as_text(raw)
    if spec.lowercase:
        text = text.lower()
    if text and text not in spec.choices:
        accepted = spec.choices_name or _choices_text(spec.choices)
        raise ValueError(f"is {_short(text)}; Stripe accepts {accepted}")
    return text


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_EPOCH_NAIVE = dt.datetime(1970, 1, 1)  # naive timestamps are UTC


def _epoch_seconds(moment: dt.datetime) -> int:
    """What datetime.timestamp() gives for the moment taken as UTC when naive, without
    building an aware copy (three times as fast)."""
    return int((moment - (_EPOCH_NAIVE if moment.tzinfo is None else _EPOCH)).total_seconds())


def as_unix_seconds(value: Any) -> int | None:
    """A point in time as Unix seconds: a timestamp (naive means UTC), a date (midnight
    UTC), an ISO-8601 string, or a number of seconds."""
    if isinstance(value, dt.datetime):  # what drivers return, row after row: first
        return _epoch_seconds(value)
    if isinstance(value, bool):
        raise ValueError("is a boolean; expected a timestamp")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if re.fullmatch(r"[0-9]+", text):
            return int(text)
        try:
            return _epoch_seconds(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            raise ValueError(f"is {_short(value)}; expected a timestamp (ISO 8601)") from None
    if isinstance(value, dt.date):
        return int(dt.datetime(value.year, value.month, value.day,
                               tzinfo=dt.timezone.utc).timestamp())
    if isinstance(value, (int, Decimal)) or (isinstance(value, float) and math.isfinite(value)):
        return int(value)
    raise ValueError(f"is a {type(value).__name__}; expected a timestamp")


# Stripe's unit_amount_decimal: "Same as unit_amount, but accepts a decimal value in cents
# (or local equivalent) with at most 12 decimal places".
_DECIMAL_PLACES = 12


def _as_decimal(value: Any) -> str | None:
    """A number as the decimal string Stripe takes and returns ("12.5", never "1.25E+1")."""
    if isinstance(value, bool):
        raise ValueError("is a boolean; expected a decimal number")
    if isinstance(value, str):
        if value.strip() == "":
            return None
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"is {_short(value)}; expected a decimal number") from None
    elif isinstance(value, (int, Decimal)):
        number = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"is {value}; expected a decimal number")
        number = Decimal(repr(value))
    else:
        raise ValueError(f"is a {type(value).__name__}; expected a decimal number")
    if not number.is_finite():
        raise ValueError(f"is {value}; expected a decimal number")
    if number < 0:
        raise ValueError(f"is {number}; Stripe expects 0 or more")
    exponent = number.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > _DECIMAL_PLACES:
        raise ValueError(f"is {number}; Stripe allows at most {_DECIMAL_PLACES} decimal places")
    text = format(number.normalize(), "f")
    return text


def _choices_text(choices: tuple[str, ...]) -> str:
    if len(choices) <= 1:
        return "".join(choices)
    return ", ".join(choices[:-1]) + " or " + choices[-1]


# --- cross-field validation -----------------------------------------------------------------


def _is_set(value: Any) -> bool:
    return value is not None and value != "" and value != []


def validate_values(spec: ObjectSpec, flat: FlatValues) -> list[RowIssue]:
    """Rules that span fields: groups Stripe requires whole, the metadata key count."""
    issues: list[RowIssue] = []
    for group, required in spec.required_together.items():
        if not any(_is_set(v) for p, v in flat.items() if p.startswith(group + ".")):
            continue
        for path in required:
            if not _is_set(flat.get(path)):
                issues.append(
                    RowIssue(
                        path,
                        f"is required when {group} is set (Stripe needs "
                        f"{' and '.join(required)} together)",
                    )
                )
    keys = 0
    if len(flat) > spec.metadata_max_keys:  # fewer values than the limit: nothing to count
        keys = sum(1 for p, v in flat.items() if p.startswith(METADATA_PREFIX) and _is_set(v))
    if keys > spec.metadata_max_keys:
        issues.append(
            RowIssue("metadata", f"has {keys} keys; Stripe allows at most {spec.metadata_max_keys}")
        )
    if spec.validate_row is not None:
        issues += spec.validate_row(flat)
    return issues
