"""Parameter validation shared by every resource: Stripe's form values, as `forms.decode` gives
them (strings, nested dicts) or as JSON seed items give them (ints, bools, lists).

Each function raises the 400 `ApiError` Stripe answers with, naming the parameter.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import invalid, invalid_integer, unknown_parameter
from ..forms import as_list

METADATA_MAX_KEYS = 50
METADATA_KEY_MAX = 40
METADATA_VALUE_MAX = 500
ID_ALPHABET = string.ascii_letters + string.digits


def random_id(rng: random.Random, prefix: str, length: int = 14) -> str:
    return prefix + "".join(rng.choice(ID_ALPHABET) for _ in range(length))


def string_param(value: Any, param: str, limit: int = 5000, emptyable: bool = True) -> str | None:
    if not isinstance(value, str):
        raise invalid(f"Invalid string: {value!r}", param)
    if value == "":
        if not emptyable:
            raise invalid(
                f"You passed an empty string for '{param}'. We assume empty values "
                "are an attempt to unset a parameter; however "
                f"'{param}' cannot be unset. You should remove '{param}' from your "
                "request or supply a non-empty value.",
                param,
                "parameter_invalid_empty",
            )
        return None
    if len(value) > limit:
        shown = value if len(value) <= 40 else value[:37] + "..."
        raise invalid(f"Invalid string: {shown}; must be at most {limit} characters", param)
    return value


def integer_param(value: Any, param: str) -> int:
    if isinstance(value, bool):
        raise invalid_integer(param, value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    raise invalid_integer(param, value)


def boolean_param(value: Any, param: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise invalid(f"Invalid boolean: {value}", param, "parameter_invalid_boolean")


def hash_param(value: Any, param: str, allowed: Iterable[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(f"Invalid object: {param} must be a hash", param)
    allowed = set(allowed)
    for key in value:
        if key not in allowed:
            raise unknown_parameter(f"{param}[{key}]")
    return value


def enum_param(value: Any, param: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        options = ", ".join(choices[:-1]) + f", or {choices[-1]}"
        raise invalid(f"Invalid {param}: must be one of {options}", param)
    return str(value)


@dataclass(frozen=True)
class MetadataChange:
    clear: bool = False
    set: Mapping[str, str] = field(default_factory=dict)
    delete: tuple[str, ...] = ()

    def apply(self, current: Mapping[str, str]) -> dict[str, str]:
        result = {} if self.clear else dict(current)
        for key in self.delete:
            result.pop(key, None)
        result.update(self.set)
        if len(result) > METADATA_MAX_KEYS:
            raise invalid(
                f"Metadata can have up to {METADATA_MAX_KEYS} keys, but you've set {len(result)}.",
                "metadata",
            )
        return result


def metadata_change(value: Any) -> MetadataChange:
    if value == "":
        return MetadataChange(clear=True)
    if not isinstance(value, dict):
        raise invalid("Invalid object: metadata must be a hash", "metadata")
    sets: dict[str, str] = {}
    deletes: list[str] = []
    for key, item in value.items():
        if not isinstance(key, str) or len(key) > METADATA_KEY_MAX or "[" in key or "]" in key:
            raise invalid(
                f"Invalid key: {key} must be a string under {METADATA_KEY_MAX} characters "
                "without square brackets",
                "metadata",
            )
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str) or len(item) > METADATA_VALUE_MAX:
            raise invalid(
                f"Invalid val: {item} must be a string under {METADATA_VALUE_MAX} characters",
                "metadata",
            )
        if item == "":
            deletes.append(key)
        else:
            sets[key] = item
    if len(sets) > METADATA_MAX_KEYS:
        raise invalid(
            f"Metadata can have up to {METADATA_MAX_KEYS} keys, but you've set {len(sets)}.",
            "metadata",
        )
    return MetadataChange(set=sets, delete=tuple(deletes))


def page_limit(params: Mapping[str, Any]) -> int:
    if "limit" not in params:
        return 10
    limit = integer_param(params["limit"], "limit")
    if not 1 <= limit <= 100:
        raise invalid(
            "Invalid limit: must be between 1 and 100", "limit", "parameter_invalid_integer"
        )
    return limit


def created_filter(value: Any) -> Callable[[int], bool]:
    if not isinstance(value, dict):
        wanted = integer_param(value, "created")
        return lambda created: created == wanted
    bounds = hash_param(value, "created", ("gt", "gte", "lt", "lte"))
    checks = [(op, integer_param(v, f"created[{op}]")) for op, v in bounds.items()]

    def test(created: int) -> bool:
        for op, bound in checks:
            if op == "gt" and not created > bound:
                return False
            if op == "gte" and not created >= bound:
                return False
            if op == "lt" and not created < bound:
                return False
            if op == "lte" and not created <= bound:
                return False
        return True

    return test


def expand_names(params: Mapping[str, Any], allowed: Iterable[str], prefix: str = "") -> list[str]:
    """`expand[]` checked against what the object can expand; `prefix` ("data.") for lists."""
    if "expand" not in params:
        return []
    raw = params["expand"]
    items = [] if raw == "" else as_list(raw, "expand")
    allowed = set(allowed)
    result = []
    for item in items:
        if not isinstance(item, str):
            raise invalid("Invalid array: expand must contain strings", "expand")
        name = item[len(prefix) :] if prefix and item.startswith(prefix) else item
        if name not in allowed:
            raise invalid(f"This property cannot be expanded ({item}).", "expand")
        result.append(name)
    return result


def check_known(params: Mapping[str, Any], allowed: Iterable[str], prefix: str = "") -> None:
    """Stripe names the first parameter it does not know: `Received unknown parameter: x`."""
    allowed = set(allowed)
    for key in params:
        if key not in allowed:
            raise unknown_parameter(f"{prefix}[{key}]" if prefix else key)


def name_of(prefix: str, key: str) -> str:
    return f"{prefix}[{key}]" if prefix else key
