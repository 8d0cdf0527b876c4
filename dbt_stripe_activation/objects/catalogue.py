"""An object's field catalogue: read from the stripe SDK's typed params, and looked up.

The SDK's `*CreateParams` / `*UpdateParams` TypedDicts are the source of truth for what a
field accepts in the pinned API version; a spec module declares only what the SDK cannot
say (limits documented elsewhere, exclusions). The lookups answer the questions a config
raises: does this path exist, what did the user mean, what lies under a group.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import re
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import typing_extensions as te

from .contract import OPEN_MAPS, FieldSpec, ObjectSpec, ValueKind

# --- lookup ---------------------------------------------------------------------------------

def metadata_key_problem(spec: ObjectSpec, name: str) -> str | None:
    """Why Stripe would refuse `name` as a key of the object's open map (metadata), or None
    when it is fine."""
    kind = spec.open_map
    if not name:
        return f"the {kind} key name is empty"
    if "[" in name or "]" in name:
        return f"{kind} key {name!r} contains '[' or ']', which Stripe does not allow"
    if len(name) > spec.metadata_key_max_length:
        return (
            f"{kind} key {name!r} is {len(name)} characters; Stripe allows at most "
            f"{spec.metadata_key_max_length}"
        )
    return None


# Resolved open-map paths, by (spec, path): a sync resolves the same few paths per row.
_RESOLVED: dict[tuple[int, str], FieldSpec] = {}


def resolve_field(spec: ObjectSpec, path: str) -> FieldSpec:
    """The FieldSpec of a mappable path; `metadata.<key>` is a string of at most 500 chars.

    Raises KeyError for a path the object does not have (or an invalid metadata key).
    """
    found = spec.fields.get(path) or _RESOLVED.get((id(spec), path))
    if found is not None:
        return found
    if path.startswith(spec.open_prefix):
        name = path[len(spec.open_prefix) :]
        problem = metadata_key_problem(spec, name)
        if problem is not None:
            raise KeyError(problem)
        resolved = _RESOLVED[(id(spec), path)] = FieldSpec(
            path=path,
            kind=ValueKind.STRING,
            max_length=spec.metadata_value_max_length,
            unsettable=True,  # metadata[key]="" deletes the key
            description=f"{spec.open_map.capitalize()} value for key {name!r}.",
        )
        return resolved
    raise KeyError(f"{spec.name} has no mappable field {path!r}")


def closest_field(spec: ObjectSpec, path: str) -> str | None:
    """The valid path a user most likely meant, for "did you mean" messages."""
    if path in spec.fields:
        return path
    lowered = {p.lower(): p for p in spec.fields}
    if path.lower() in lowered:
        return lowered[path.lower()]
    head, dot, rest = path.partition(".")
    if dot and rest and difflib.get_close_matches(head.lower(), [spec.open_map], n=1, cutoff=0.6):
        return spec.open_prefix + rest
    if not dot:  # "city" -> "address.city": the shortest path ending with that segment
        tails = sorted((p for p in spec.fields if p.rsplit(".", 1)[-1] == path), key=len)
        if tails:
            return tails[0]
    matches = difflib.get_close_matches(path, list(spec.fields), n=1, cutoff=0.6)
    return matches[0] if matches else None


def group_members(spec: ObjectSpec, path: str) -> list[str]:
    """The mappable paths under a group (`address` -> address.city, ...), sorted."""
    return sorted(p for p in spec.fields if p.startswith(path + "."))


# --- the catalogue, read from the stripe SDK's typed params ---------------------------------


@dataclass(frozen=True)
class SdkField:
    """One leaf of an SDK params TypedDict: what it accepts, as the SDK types it."""

    path: str
    kind: ValueKind | None  # None: not a scalar or list of scalars (objects, lists of objects)
    choices: tuple[str, ...] = ()
    accepts_empty: bool = False  # the leaf or a parent admits Literal[''] ("" unsets)
    required_in_parent: bool = False
    doc: str = ""


# Request options every SDK `*CreateParams` inherits (api_key, idempotency_key, ...): not
# fields of the object. Read from the SDK when it exposes them, this list otherwise.
_REQUEST_OPTION_KEYS = (
    "api_key",
    "stripe_version",
    "stripe_account",
    "stripe_context",
    "max_network_retries",
    "idempotency_key",
    "content_type",
    "headers",
)


def _request_option_keys() -> frozenset[str]:
    try:
        from stripe._request_options import RequestOptions
    except ImportError:  # pragma: no cover - a future SDK layout
        return frozenset(_REQUEST_OPTION_KEYS)
    return frozenset(RequestOptions.__annotations__) | frozenset(_REQUEST_OPTION_KEYS)


@functools.cache
def _module_classes(module_name: str) -> dict[str, ast.ClassDef]:
    try:
        source = inspect.getsource(sys.modules[module_name])
    except (OSError, TypeError, KeyError):
        return {}
    return {n.name: n for n in ast.parse(source).body if isinstance(n, ast.ClassDef)}


def _docstrings(cls: type) -> dict[str, str]:
    """The attribute docstrings of a class (the string after each annotation), by name.

    The SDK writes Stripe's API reference text there, limits included ("up to *512
    characters*"); Python keeps them only in the source, hence the AST. Without the source,
    no docstrings: the limits then come from the spec's overrides alone.
    """
    node = _module_classes(cls.__module__).get(cls.__name__)
    body = node.body if node is not None else []
    docs: dict[str, str] = {}
    for item, following in zip(body, [*body[1:], None], strict=True):
        if (
            isinstance(item, ast.AnnAssign)
            and isinstance(item.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[item.target.id] = " ".join(following.value.value.split())
    return docs


def _evaluate(annotation: Any, namespace: Mapping[str, Any]) -> Any:
    if isinstance(annotation, str):
        return eval(annotation, dict(namespace))  # noqa: S307 - the SDK's own annotation text
    if isinstance(annotation, typing.ForwardRef):
        return eval(annotation.__forward_arg__, dict(namespace))  # noqa: S307
    return annotation


def _members(annotation: Any, namespace: Mapping[str, Any]) -> list[Any]:
    """The alternatives of an annotation, unwrapped from NotRequired/Required and unions."""
    annotation = _evaluate(annotation, namespace)
    origin = te.get_origin(annotation)
    if origin in (te.NotRequired, te.Required, typing.Union, types.UnionType):
        return [m for arg in te.get_args(annotation) for m in _members(arg, namespace)]
    return [annotation]


def sdk_fields(
    params: type, *, _prefix: str = "", _inherit_empty: bool = False
) -> dict[str, SdkField]:
    """Every leaf path of an SDK params TypedDict, nested TypedDicts walked in their module.

    `metadata` (a string map) is left out: its keys are the open `metadata.<key>` family.
    """
    namespace = vars(sys.modules[params.__module__])
    docs = _docstrings(params)
    skip: frozenset[str] = _request_option_keys() if not _prefix else frozenset()
    required: frozenset[str] = getattr(params, "__required_keys__", frozenset())
    out: dict[str, SdkField] = {}
    for name, annotation in params.__annotations__.items():
        if name in skip:
            continue
        path = _prefix + name
        members = _members(annotation, namespace)
        literals = [
            v for m in members if te.get_origin(m) is typing.Literal for v in te.get_args(m)
        ]
        accepts_empty = _inherit_empty or "" in literals
        nested = [m for m in members if te.is_typeddict(m)]
        if nested:
            out.update(sdk_fields(nested[0], _prefix=path + ".", _inherit_empty=accepts_empty))
            continue
        if path in OPEN_MAPS and any(te.get_origin(m) is dict for m in members):
            continue
        out[path] = SdkField(
            path=path,
            kind=_kind_of(members),
            choices=tuple(str(v) for v in literals if v != ""),
            accepts_empty=accepts_empty,
            required_in_parent=bool(_prefix) and name in required,
            doc=docs.get(name, ""),
        )
    return out


def sdk_required(params: type, *, _prefix: str = "") -> dict[str, tuple[str, ...]]:
    """The keys a nested params object requires, by object path: {"shipping": (
    "shipping.address", "shipping.name")}. Stripe refuses the object without them."""
    namespace = vars(sys.modules[params.__module__])
    out: dict[str, tuple[str, ...]] = {}
    if _prefix:
        required: list[str] = sorted(getattr(params, "__required_keys__", frozenset()))
        if required:
            out[_prefix[:-1]] = tuple(_prefix + name for name in required)
    skip: frozenset[str] = _request_option_keys() if not _prefix else frozenset()
    for name, annotation in params.__annotations__.items():
        if name in skip:
            continue
        for member in _members(annotation, namespace):
            if te.is_typeddict(member):
                out.update(sdk_required(member, _prefix=_prefix + name + "."))
    return out


def _kind_of(members: list[Any]) -> ValueKind | None:
    literals = [m for m in members if te.get_origin(m) is typing.Literal]
    others = [m for m in members if te.get_origin(m) is not typing.Literal]
    if any(v != "" for m in literals for v in te.get_args(m)):
        return ValueKind.ENUM  # a Literal of choices (the SDK's trailing `|str` is leeway)
    if others and all(m is str for m in others):
        return ValueKind.STRING
    if others and all(m is int for m in others):
        return ValueKind.INTEGER
    if others and all(m is bool for m in others):
        return ValueKind.BOOLEAN
    if len(others) == 1 and te.get_origin(others[0]) is list and te.get_args(others[0]) == (str,):
        return ValueKind.STRING_LIST
    return None


_MAX_LENGTH_TEXT = re.compile(r"up to \*?(\d+) characters")


def catalogue_from_sdk(
    create_params: type,
    update_params: type,
    *,
    exclude: Mapping[str, str],
    overrides: Mapping[str, Mapping[str, Any]] = {},  # noqa: B006 - read only
) -> dict[str, FieldSpec]:
    """The mappable fields of an object, read from the SDK's create/update params.

    Kept: every scalar or list-of-scalars leaf of the create params, except paths under an
    `exclude` prefix (with the reason, for the reader). Create-only = in create but not in
    update. Unsettable = the update params admit "" for the leaf or a parent. Limits the SDK
    states in its docstrings ("up to *N characters*") are read; `overrides` adds what Stripe
    documents elsewhere. Update-only leaves are left out: a sync may have to create.
    """
    create = sdk_fields(create_params)
    update = sdk_fields(update_params)
    fields: dict[str, FieldSpec] = {}
    for path, leaf in sorted(create.items()):
        kind = leaf.kind or overrides.get(path, {}).get("kind")
        if kind is None or any(path == e or path.startswith(e + ".") for e in exclude):
            continue
        updatable = update.get(path)
        found = _MAX_LENGTH_TEXT.search(leaf.doc)
        spec = FieldSpec(
            path=path,
            kind=kind,
            max_length=int(found.group(1)) if found else None,
            choices=leaf.choices,
            create_only=updatable is None,
            unsettable=updatable is not None and updatable.accepts_empty,
            description=leaf.doc.split(". ")[0].rstrip(".") + "." if leaf.doc else "",
        )
        fields[path] = dataclasses.replace(spec, **overrides.get(path, {}))
    unknown = set(overrides) - set(fields)
    if unknown:
        raise ValueError(f"overrides for fields the SDK does not have: {sorted(unknown)}")
    return fields
