"""The contract every Stripe object spec fulfils: its fields, their limits, its key kinds.

The engine knows nothing of customers: it asks an ObjectSpec which field paths exist, how to
convert and validate a warehouse value for a path, and how to build create/update params.
A new object (Product, Price) is a new spec plus a conformance test class.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import difflib
import functools
import inspect
import math
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import typing_extensions as te

from .contract import OPEN_MAPS, FieldSpec, ObjectSpec, RowIssue, ValueKind

# Flat desired state of one object: Stripe field path -> converted value (None = unset).
FlatValues = Mapping[str, Any]


METADATA_PREFIX = "metadata."

# Practical, not RFC 5322: one @, no whitespace, a dot in the domain. Stripe rejects worse.
EMAIL_PATTERN = r"[^@\s]+@[^@\s]+\.[^@\s]+"
EMAIL_REASON = "is not a valid email address"


# --- field lookup ---------------------------------------------------------------------------


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


# --- conversion -----------------------------------------------------------------------------


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


def as_unix_seconds(value: Any) -> int | None:
    """A point in time as Unix seconds: a timestamp (naive means UTC), a date (midnight
    UTC), an ISO-8601 string, or a number of seconds."""
    if value.__class__ is dt.datetime:  # what drivers return: row after row, so first
        # what datetime.timestamp() computes for an aware time, without the replace()
        return int((value - (_EPOCH_NAIVE if value.tzinfo is None else _EPOCH)).total_seconds())
    if isinstance(value, bool):
        raise ValueError("is a boolean; expected a timestamp")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if re.fullmatch(r"[0-9]+", text):
            return int(text)
        try:
            value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"is {_short(value)}; expected a timestamp (ISO 8601)") from None
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return int(moment.timestamp())
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


# --- params and current values --------------------------------------------------------------


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
            segments = _SEGMENTS.get(path) or _split(path)
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


# --- keys -----------------------------------------------------------------------------------

# The characters the SQL side trims (macros/util.sql `trim_whitespace`): ASCII whitespace.
_KEY_WHITESPACE = " \t\n\x0b\x0c\r"


def normalize_key(value: Any, *, casefold: bool) -> str | None:
    """A key as the sync compares it; None when null or empty.

    Every key is its text with ASCII whitespace trimmed; a case-folded key kind (email) is
    also lowercased, so `Amy@X.com` is `amy@x.com`. The SQL side computes the same thing
    from the same flag (`lower(trim(cast(col as string)))`, macros/util.sql
    `normalized_key`): keep the two identical. Lowercasing agrees with SQL for ASCII; for
    other letters it follows each engine's own case mapping.
    """
    if value is None:
        return None
    # A boolean reads as SQL casts it to text.
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    text = text.strip(_KEY_WHITESPACE)
    if casefold:
        text = text.lower()
    return text or None


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
