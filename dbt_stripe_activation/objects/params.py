"""Between flat field paths and Stripe's nested shapes: the params a write sends, and the
current values read back from an object.

A model maps flat paths (`address.city`, `metadata.plan`); the SDK takes nested dicts and
answers with nested objects. Both directions split a path the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .catalogue import resolve_field
from .contract import OPEN_MAPS, ObjectSpec
from .values import FlatValues


def _split(path: str) -> tuple[str, ...]:
    """Path segments; a key of an open map (metadata, payload) may itself contain dots."""
    found = _SEGMENTS.get(path)
    if found is None:
        head, dot, rest = path.partition(".")
        found = (head, rest) if dot and head in OPEN_MAPS else tuple(path.split("."))
        if len(_SEGMENTS) < 4096:
            _SEGMENTS[path] = found
    return found


_SEGMENTS: dict[str, tuple[str, ...]] = {}  # a sync builds the same paths row after row


def build_params(flat: FlatValues, *, create: bool, spec: ObjectSpec) -> dict[str, Any]:
    """Flat path -> value into the nested dict the SDK takes.

    None means unset: on update it becomes "" (a metadata key: deleted), and a required
    group whose every sent path is None is unset whole (`shipping=""`), since Stripe refuses
    a shipping without its name; on create None values are dropped. Create-only fields are
    dropped on update.
    """
    params: dict[str, Any] = {}
    if create:  # the common case, row after row: nothing is unset, nothing create-only
        for path, value in flat.items():
            if value is None:
                continue
            if isinstance(value, tuple):
                value = list(value)
            segments = _split(path)
            if len(segments) == 1:
                params[path] = value
                continue
            node = params
            for segment in segments[:-1]:
                node = node.setdefault(segment, {})
            node[segments[-1]] = value
        return params
    cleared_groups = set()
    if not create:
        for group in spec.required_together:
            members = [v for p, v in flat.items() if p.startswith(group + ".")]
            if members and all(v is None for v in members):
                cleared_groups.add(group)
                params[group] = ""
    for path, value in flat.items():
        target = resolve_field(spec, path)
        if value is None and create:
            continue
        if target.create_only and not create:
            continue
        if any(path.startswith(group + ".") for group in cleared_groups):
            continue
        if value is None:
            if not target.unsettable:
                raise ValueError(f"{spec.name}.{path} cannot be unset: Stripe has no empty value")
            value = ""
        elif isinstance(value, tuple):
            value = list(value)
        node = params
        *parents, leaf = _split(path)
        for segment in parents:
            node = node.setdefault(segment, {})
        node[leaf] = value
    return params


def flatten_object(obj: Mapping[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """The current values of `paths` in a Stripe object dict (`.to_dict()`); missing -> None.

    An expanded reference (`invoice_settings.default_payment_method` as an object) reads as
    its id, the way it was written.
    """
    out: dict[str, Any] = {}
    for path in paths:
        node: Any = obj
        for segment in _split(path):
            node = node.get(segment) if isinstance(node, Mapping) else None
            if node is None:
                break
        if isinstance(node, Mapping) and "id" in node:
            node = node["id"]
        elif isinstance(node, (list, tuple)):
            node = list(node)
        out[path] = node
    return out


def expand_for(spec: ObjectSpec, paths: Iterable[str]) -> tuple[str, ...]:
    """The `expand` values a read needs so that flatten_object sees these paths."""
    wanted = {
        value
        for path in paths
        for prefix, value in spec.read_expand.items()
        if path.startswith(prefix)
    }
    return tuple(sorted(wanted))
