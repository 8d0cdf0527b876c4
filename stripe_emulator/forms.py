"""Stripe's form encoding, decoded: `metadata[k]=v`, `address[city]=x`, `preferred_locales[0]=en`,
`expand[]=tax`, as the SDKs send them in POST bodies and GET/DELETE query strings.

Lists stay dicts keyed by index strings here: only the schema knows whether `metadata[0]` is a
list item or a metadata key named "0" (see `as_list`).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from .errors import invalid

_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
APPEND = "\x00append"  # the key `[]` is stored under until `as_list` numbers it


def _segments(key: str) -> list[str]:
    base, bracket, rest = key.partition("[")
    if not bracket:
        return [key]
    rest = "[" + rest
    parts = _SEGMENT.findall(rest)
    if "".join(f"[{p}]" for p in parts) != rest:
        raise invalid(f"Invalid parameter name: {key}", key)
    return [base, *parts]


def decode(query: str) -> dict[str, Any]:
    """Decode a form body into nested dicts of strings (`[]` appends)."""
    params: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        path = _segments(key)
        node = params
        for depth, segment in enumerate(path):
            last = depth == len(path) - 1
            name = segment
            if segment == "" and depth > 0:
                counter = node.setdefault(APPEND, 0)
                node[APPEND] = counter + 1
                name = str(counter)
            if last:
                if isinstance(node.get(name), dict):
                    raise invalid(f"Invalid {_name(path)}: both a value and a hash", _name(path))
                node[name] = value
            else:
                child = node.get(name)
                if child is None:
                    child = node[name] = {}
                elif not isinstance(child, dict):
                    raise invalid(
                        f"Invalid {_name(path[: depth + 1])}: both a value and a hash",
                        _name(path[: depth + 1]),
                    )
                node = child
    _drop_counters(params)
    return params


def _drop_counters(node: dict[str, Any]) -> None:
    node.pop(APPEND, None)
    for value in node.values():
        if isinstance(value, dict):
            _drop_counters(value)


def _name(path: list[str]) -> str:
    return path[0] + "".join(f"[{p}]" for p in path[1:])


def as_list(value: Any, param: str) -> list[Any]:
    """A list parameter: a JSON list, or a form dict keyed by 0, 1, ... in any order."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        if not all(isinstance(k, str) and k.isdigit() for k in value):
            raise invalid(f"Invalid array: {param} must be an array", param)
        return [value[k] for k in sorted(value, key=int)]
    raise invalid(f"Invalid array: {param} must be an array", param)


def canonical(params: Any) -> Any:
    """A comparable form of decoded params, for idempotency fingerprints."""
    if isinstance(params, dict):
        return tuple(sorted((str(k), canonical(v)) for k, v in params.items()))
    if isinstance(params, list):
        return tuple(canonical(v) for v in params)
    return str(params) if not isinstance(params, bool) else ("true" if params else "false")
