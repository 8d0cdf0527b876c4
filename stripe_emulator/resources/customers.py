"""The customer resource: Stripe's object shape, parameter validation, list and search.

Published customer dicts are never mutated (copy on write), so readers serialize them after
the store lock is released. Lists use the creation sequence (newest first, like Stripe) and an
exact email index; search sees each customer as it was `search_delay_seconds` ago, because
Stripe's search index is eventually consistent.
"""

from __future__ import annotations

import base64
import bisect
import copy
import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import search as search_query
from ..errors import ApiError, invalid, missing_parameter, no_such, unknown_parameter
from ..forms import as_list
from .base import Resource, ResourceContext
from .params import ID_ALPHABET, expand_names
from .params import boolean_param as _boolean
from .params import created_filter as _created_filter
from .params import enum_param as _enum
from .params import hash_param as _hash
from .params import integer_param as _integer
from .params import metadata_change as _metadata
from .params import page_limit as _limit
from .params import string_param as _string

ADDRESS_FIELDS = ("city", "country", "line1", "line2", "postal_code", "state")
STRING_LIMITS = {
    "email": 512,
    "name": 256,
    "phone": 20,
    "description": 5000,
    "business_name": 150,
    "individual_name": 150,
}
CREATE_ONLY = {"payment_method", "tax_id_data", "test_clock"}
UPDATE_ONLY = {"default_source"}
COMMON = {
    "address",
    "balance",
    "business_name",
    "cash_balance",
    "description",
    "email",
    "expand",
    "individual_name",
    "invoice_prefix",
    "invoice_settings",
    "metadata",
    "name",
    "next_invoice_sequence",
    "phone",
    "preferred_locales",
    "shipping",
    "source",
    "tax",
    "tax_exempt",
    "validate",
}
TAX_EXEMPT = ("none", "exempt", "reverse")
EXPANDABLE = {"tax", "test_clock", "default_source", "invoice_settings.default_payment_method"}
EMAIL_RE = re.compile(r"^[^\s@]+@[^\s@]+\.[^\s@]+$")
INVOICE_PREFIX_RE = re.compile(r"^[A-Z0-9]{1,12}$")


# --- parameter validation -------------------------------------------------------------------


def _address(value: Any, param: str) -> dict[str, Any]:
    given = _hash(value, param, ADDRESS_FIELDS)
    return {
        name: _string(given[name], f"{param}[{name}]") if name in given else None
        for name in ADDRESS_FIELDS
    }


def _email(value: Any) -> str | None:
    email = _string(value, "email", STRING_LIMITS["email"])
    if email is not None and not EMAIL_RE.match(email):
        raise invalid(f"Invalid email address: {email}", "email", "email_invalid")
    return email


def _shipping(value: Any) -> dict[str, Any] | None:
    if value == "":
        return None
    given = _hash(value, "shipping", ("address", "name", "phone"))
    if "name" not in given:
        raise missing_parameter("shipping[name]")
    if "address" not in given:
        raise missing_parameter("shipping[address]")
    return {
        "address": _address(given["address"], "shipping[address]"),
        "name": _string(given["name"], "shipping[name]", emptyable=False),
        "phone": _string(given["phone"], "shipping[phone]") if "phone" in given else None,
    }


def _invoice_settings(value: Any) -> dict[str, Any]:
    given = _hash(
        value,
        "invoice_settings",
        ("custom_fields", "default_payment_method", "footer", "rendering_options"),
    )
    change: dict[str, Any] = {}
    if "custom_fields" in given:
        raw = given["custom_fields"]
        if raw == "":
            change["custom_fields"] = None
        else:
            items = as_list(raw, "invoice_settings[custom_fields]")
            if len(items) > 4:
                raise invalid(
                    "Invalid array: invoice_settings[custom_fields] can have at most 4 items",
                    "invoice_settings[custom_fields]",
                )
            fields = []
            for index, item in enumerate(items):
                param = f"invoice_settings[custom_fields][{index}]"
                item = _hash(item, param, ("name", "value"))
                for part in ("name", "value"):
                    if part not in item:
                        raise missing_parameter(f"{param}[{part}]")
                fields.append(
                    {
                        "name": _string(item["name"], f"{param}[name]", 40, emptyable=False),
                        "value": _string(item["value"], f"{param}[value]", 140, emptyable=False),
                    }
                )
            change["custom_fields"] = fields
    if "default_payment_method" in given:
        pm = _string(given["default_payment_method"], "invoice_settings[default_payment_method]")
        if pm is not None:
            raise no_such("PaymentMethod", pm, "invoice_settings[default_payment_method]", 400)
        change["default_payment_method"] = None
    if "footer" in given:
        change["footer"] = _string(given["footer"], "invoice_settings[footer]")
    if "rendering_options" in given:
        raw = given["rendering_options"]
        if raw == "":
            change["rendering_options"] = None
        else:
            param = "invoice_settings[rendering_options]"
            options = _hash(raw, param, ("amount_tax_display", "template"))
            display = options.get("amount_tax_display")
            if display not in (None, ""):
                choices = ("exclude_tax", "include_inclusive_tax")
                display = _enum(display, f"{param}[amount_tax_display]", choices)
            template = options.get("template")
            change["rendering_options"] = {
                "amount_tax_display": display or None,
                "template": _string(template, f"{param}[template]") if template else None,
            }
    return change


def _tax(value: Any) -> dict[str, Any]:
    given = _hash(value, "tax", ("ip_address", "validate_location"))
    change: dict[str, Any] = {}
    if "ip_address" in given:
        change["ip_address"] = _string(given["ip_address"], "tax[ip_address]")
    if "validate_location" in given:
        _enum(given["validate_location"], "tax[validate_location]", ("deferred", "immediately"))
    return change


def expand_list(params: Mapping[str, Any], prefix: str = "") -> list[str]:
    """`expand[]` of a customer request, checked against what a customer can expand."""
    return expand_names(params, EXPANDABLE, prefix)


def customer_changes(params: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    """Validate create/update params into the changes to apply, in Stripe's error order."""
    allowed = COMMON | (CREATE_ONLY if creating else UPDATE_ONLY)
    for key in params:
        if key not in allowed:
            raise unknown_parameter(key)
    changes: dict[str, Any] = {}
    for key, value in params.items():
        if key == "email":
            changes["email"] = _email(value)
        elif key in STRING_LIMITS:
            changes[key] = _string(value, key, STRING_LIMITS[key])
        elif key == "address":
            changes["address"] = None if value == "" else _address(value, "address")
        elif key == "shipping":
            changes["shipping"] = _shipping(value)
        elif key == "metadata":
            changes["metadata"] = _metadata(value)
        elif key == "preferred_locales":
            items = [] if value == "" else as_list(value, "preferred_locales")
            changes["preferred_locales"] = [
                _string(item, f"preferred_locales[{i}]", 35, emptyable=False)
                for i, item in enumerate(items)
            ]
        elif key == "tax_exempt":
            changes["tax_exempt"] = "none" if value == "" else _enum(value, key, TAX_EXEMPT)
        elif key == "balance":
            changes["balance"] = _integer(value, key)
        elif key == "next_invoice_sequence":
            number = _integer(value, key)
            if number < 1:
                raise invalid("Invalid next_invoice_sequence: must be at least 1", key)
            changes[key] = number
        elif key == "invoice_prefix":
            prefix = _string(value, key, 12, emptyable=False)
            if prefix is None or not INVOICE_PREFIX_RE.match(prefix):
                raise invalid(
                    "Invalid invoice_prefix: must be 1 to 12 uppercase letters or numbers", key
                )
            changes[key] = prefix
        elif key == "invoice_settings":
            changes[key] = _invoice_settings(value)
        elif key == "tax":
            changes[key] = _tax(value)
        elif key == "cash_balance":
            settings = _hash(value, key, ("settings",)).get("settings", {})
            mode = _hash(settings, "cash_balance[settings]", ("reconciliation_mode",))
            if "reconciliation_mode" in mode:
                _enum(
                    mode["reconciliation_mode"],
                    "cash_balance[settings][reconciliation_mode]",
                    ("automatic", "manual", "merchant_default"),
                )
        elif key == "validate":
            _boolean(value, key)
        elif key == "expand":
            expand_list(params)
        elif key == "tax_id_data":
            for index, item in enumerate(as_list(value, key)):
                item = _hash(item, f"tax_id_data[{index}]", ("type", "value"))
                for part in ("type", "value"):
                    if part not in item:
                        raise missing_parameter(f"tax_id_data[{index}][{part}]")
        elif key in ("payment_method", "source", "default_source", "test_clock"):
            reference = _string(value, key, 5000)
            if reference is not None:
                kind = {
                    "payment_method": "PaymentMethod",
                    "source": "token",
                    "default_source": "source",
                    "test_clock": "test_clock",
                }[key]
                raise no_such(kind, reference, key, 400)
    return changes


# --- the store ------------------------------------------------------------------------------


@dataclass
class _Version:
    at: float
    doc: dict[str, Any] | None  # None: deleted


@dataclass
class _Record:
    seq: int
    id: str
    obj: dict[str, Any]
    deleted: bool = False
    versions: list[_Version] = field(default_factory=list)


def _search_doc(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "email": obj.get("email"),
        "name": obj.get("name"),
        "phone": obj.get("phone"),
        "created": obj.get("created"),
        "metadata": dict(obj.get("metadata") or {}),
    }


def _encode_page(seq: int) -> str:
    raw = json.dumps({"before": seq}).encode()
    return "page_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_page(token: Any) -> int:
    try:
        assert isinstance(token, str) and token.startswith("page_")
        body = token[5:]
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        return int(data["before"])
    except Exception as exc:
        raise invalid(f"Invalid page: {token}", "page") from exc


class CustomerStore:
    """Thread-safe; every method holds the store lock only for in-memory work."""

    def __init__(
        self,
        *,
        seed: int | None = None,
        search_delay: Callable[[], float] = lambda: 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._search_delay = search_delay
        self._clock = clock
        self._records: dict[str, _Record] = {}
        self._order: list[_Record] = []  # index == seq
        self._by_email: dict[str, list[int]] = {}  # current email -> sorted seqs (live only)
        self._search_email: dict[str, set[str]] = {}  # any indexed email, lower -> ids
        self._search_meta: dict[tuple[str, str], set[str]] = {}
        self._object_locks: dict[str, threading.Lock] = {}
        self._live = 0

    # -- bookkeeping

    def reset(self, seed: int | None = None) -> None:
        with self._lock:
            self._rng = random.Random(seed)
            self._records.clear()
            self._order.clear()
            self._by_email.clear()
            self._search_email.clear()
            self._search_meta.clear()
            self._object_locks.clear()
            self._live = 0

    @property
    def live_count(self) -> int:
        return self._live

    def object_lock(self, customer_id: str) -> threading.Lock:
        with self._lock:
            lock = self._object_locks.get(customer_id)
            if lock is None:
                lock = self._object_locks[customer_id] = threading.Lock()
            return lock

    def _new_id(self) -> str:
        while True:
            candidate = "cus_" + "".join(self._rng.choice(ID_ALPHABET) for _ in range(14))
            if candidate not in self._records:
                return candidate

    def _index_email(self, record: _Record, old: str | None, new: str | None) -> None:
        if old == new:
            return
        if old is not None:
            seqs = self._by_email.get(old, [])
            at = bisect.bisect_left(seqs, record.seq)
            if at < len(seqs) and seqs[at] == record.seq:
                del seqs[at]
            if not seqs:
                self._by_email.pop(old, None)
        if new is not None:
            bisect.insort(self._by_email.setdefault(new, []), record.seq)

    def _add_version(self, record: _Record, at: float) -> None:
        doc = None if record.deleted else _search_doc(record.obj)
        record.versions.append(_Version(at, doc))
        horizon = self._clock() - self._search_delay()
        visible = [i for i, v in enumerate(record.versions) if v.at <= horizon]
        if visible and visible[-1] > 0:
            del record.versions[: visible[-1]]
        if doc is not None:
            if doc["email"]:
                self._search_email.setdefault(doc["email"].lower(), set()).add(record.id)
            for key, value in doc["metadata"].items():
                self._search_meta.setdefault((key, value.lower()), set()).add(record.id)

    # -- writes

    def create(
        self,
        changes: Mapping[str, Any],
        *,
        customer_id: str | None = None,
        created: int | None = None,
        searchable_now: bool = False,
    ) -> dict[str, Any]:
        with self._lock:
            if customer_id is not None and customer_id in self._records:
                raise invalid(f"Customer already exists: '{customer_id}'", "id")
            obj: dict[str, Any] = {
                "id": customer_id or self._new_id(),
                "object": "customer",
                "address": None,
                "balance": 0,
                "business_name": None,
                "created": int(time.time()) if created is None else int(created),
                "currency": None,
                "customer_account": None,
                "default_source": None,
                "delinquent": False,
                "description": None,
                "discount": None,
                "email": None,
                "individual_name": None,
                "invoice_prefix": "".join(self._rng.choice("0123456789ABCDEF") for _ in range(8)),
                "invoice_settings": {
                    "custom_fields": None,
                    "default_payment_method": None,
                    "footer": None,
                    "rendering_options": None,
                },
                "livemode": False,
                "metadata": {},
                "name": None,
                "next_invoice_sequence": 1,
                "phone": None,
                "preferred_locales": [],
                "shipping": None,
                "tax_exempt": "none",
                "test_clock": None,
                "_tax": {"ip_address": None},
            }
            _apply(obj, changes)
            record = _Record(seq=len(self._order), id=obj["id"], obj=obj)
            self._records[record.id] = record
            self._order.append(record)
            self._live += 1
            self._index_email(record, None, obj["email"])
            self._add_version(record, -math.inf if searchable_now else self._clock())
            return obj

    def update(self, customer_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            record = self._records.get(customer_id)
            if record is None or record.deleted:
                raise no_such("customer", customer_id, "id")
            obj = copy.deepcopy(record.obj)
            _apply(obj, changes)
            old_email = record.obj["email"]
            record.obj = obj
            self._index_email(record, old_email, obj["email"])
            self._add_version(record, self._clock())
            return obj

    def delete(self, customer_id: str) -> dict[str, Any]:
        with self._lock:
            record = self._records.get(customer_id)
            if record is None or record.deleted:
                raise no_such("customer", customer_id, "id")
            record.deleted = True
            self._live -= 1
            self._index_email(record, record.obj["email"], None)
            self._add_version(record, self._clock())
            return {"id": customer_id, "object": "customer", "deleted": True}

    # -- reads

    def exists(self, customer_id: str) -> bool:
        record = self._records.get(customer_id)
        return record is not None and not record.deleted

    def retrieve(self, customer_id: str) -> dict[str, Any]:
        with self._lock:
            record = self._records.get(customer_id)
        if record is None:
            raise no_such("customer", customer_id, "id")
        if record.deleted:
            return {"id": customer_id, "object": "customer", "deleted": True}
        return record.obj

    def list_page(self, params: Mapping[str, Any]) -> dict[str, Any]:
        allowed = {"limit", "starting_after", "ending_before", "email", "created", "expand"}
        allowed |= {"test_clock"}
        for key in params:
            if key not in allowed:
                raise unknown_parameter(key)
        limit = _limit(params)
        expand_list(params, "data.")
        if "starting_after" in params and "ending_before" in params:
            raise invalid(
                "You may only specify one of these parameters: ending_before, starting_after.",
                "ending_before",
            )
        email = None
        if "email" in params:
            email = _string(params["email"], "email", STRING_LIMITS["email"], emptyable=False)
        created_ok = _created_filter(params["created"]) if "created" in params else None
        with self._lock:
            cursor_seq: int | None = None
            forward = True
            for name in ("starting_after", "ending_before"):
                if name in params:
                    cursor_id = _string(params[name], name, emptyable=False)
                    cursor = self._records.get(cursor_id or "")
                    if cursor is None:
                        raise no_such("customer", str(cursor_id), name, 400)
                    cursor_seq = cursor.seq
                    forward = name == "starting_after"
            if "test_clock" in params:
                candidates: list[int] = []  # no test clocks here: nothing is attached to one
            elif email is not None:
                candidates = self._by_email.get(email, [])
            else:
                candidates = range(len(self._order))  # type: ignore[assignment]
            found = self._page(candidates, cursor_seq, forward, limit, created_ok)
        data, has_more = found
        return {
            "object": "list",
            "data": data,
            "has_more": has_more,
            "url": "/v1/customers",
        }

    def _page(
        self,
        seqs: Any,
        cursor_seq: int | None,
        forward: bool,
        limit: int,
        created_ok: Callable[[int], bool] | None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """Newest first. `forward`: older than the cursor; else the ones just newer than it."""
        if forward:
            end = len(seqs) if cursor_seq is None else bisect.bisect_left(seqs, cursor_seq)
            indexes: Iterable[int] = range(end - 1, -1, -1)
        else:
            start = bisect.bisect_right(seqs, cursor_seq)
            indexes = range(start, len(seqs))
        picked: list[dict[str, Any]] = []
        has_more = False
        for index in indexes:
            record = self._order[seqs[index]]
            if record.deleted or (created_ok and not created_ok(record.obj["created"])):
                continue
            if len(picked) == limit:
                has_more = True
                break
            picked.append(record.obj)
        if not forward:
            picked.reverse()
        return picked, has_more

    def search(self, params: Mapping[str, Any]) -> dict[str, Any]:
        for key in params:
            if key not in {"query", "limit", "page", "expand"}:
                raise unknown_parameter(key)
        if "query" not in params:
            raise missing_parameter("query")
        query_text = _string(params["query"], "query", emptyable=False) or ""
        query = search_query.parse(query_text)
        limit = _limit(params)
        raw_expand = [] if params.get("expand", "") == "" else as_list(params["expand"], "expand")
        with_total = "total_count" in raw_expand
        expand_list({"expand": [e for e in raw_expand if e != "total_count"]}, "data.")
        before = _decode_page(params["page"]) if "page" in params else None
        horizon = self._clock() - self._search_delay()
        with self._lock:
            candidates = self._candidates(query)
            seqs = (
                sorted((self._records[i].seq for i in candidates), reverse=True)
                if candidates is not None
                else range(len(self._order) - 1, -1, -1)
            )
            hits: list[_Record] = []
            for seq in seqs:
                record = self._order[seq]
                if record.deleted:
                    continue
                doc = _visible(record, horizon)
                if doc is not None and query.matches(doc):
                    hits.append(record)
        if before is not None:
            hits = [r for r in hits if r.seq < before]
        page, rest = hits[:limit], hits[limit:]
        result: dict[str, Any] = {
            "object": "search_result",
            "data": [r.obj for r in page],
            "has_more": bool(rest),
            "next_page": _encode_page(page[-1].seq) if rest else None,
            "url": "/v1/customers/search",
        }
        if with_total:
            result["total_count"] = len(hits)
        return result

    def _candidates(self, query: search_query.Query) -> set[str] | None:
        """Ids that may match, from the email/metadata indexes; None: scan everything."""
        sets: list[set[str]] = []
        for clause in query.clauses:
            if clause.negate or clause.op != ":" or clause.value is None:
                return None
            if clause.field == "email":
                sets.append(self._search_email.get(str(clause.value).lower(), set()))
            elif clause.field == "metadata":
                key = (clause.metadata_key or "", str(clause.value).lower())
                sets.append(self._search_meta.get(key, set()))
            else:
                return None
        if query.join == "AND":
            return set.intersection(*sets) if sets else set()
        return set().union(*sets)

    def dump(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            records = list(self._order)
        result = []
        for record in records:
            if record.deleted:
                if include_deleted:
                    result.append({"id": record.id, "object": "customer", "deleted": True})
            else:
                result.append(render(record.obj))
        return result


def _visible(record: _Record, horizon: float) -> dict[str, Any] | None:
    for version in reversed(record.versions):
        if version.at <= horizon:
            return version.doc
    return None


def _apply(obj: dict[str, Any], changes: Mapping[str, Any]) -> None:
    for key, value in changes.items():
        if key == "metadata":
            obj["metadata"] = value.apply(obj["metadata"])
        elif key == "invoice_settings":
            obj["invoice_settings"] = {**obj["invoice_settings"], **value}
        elif key == "tax":
            obj["_tax"] = {**obj["_tax"], **value}
        else:
            obj[key] = value


def render(obj: Mapping[str, Any], expand: Iterable[str] = ()) -> dict[str, Any]:
    """The API shape of a stored customer: private fields dropped, `tax` when expanded."""
    shown = {k: v for k, v in obj.items() if not k.startswith("_")}
    if "tax" in expand and not obj.get("deleted"):
        location = None
        address = obj.get("address") or {}
        if address.get("country"):
            location = {
                "country": address["country"],
                "source": "billing_address",
                "state": address.get("state"),
            }
        shown["tax"] = {
            "automatic_tax": "supported" if location else "unrecognized_location",
            "ip_address": (obj.get("_tax") or {}).get("ip_address"),
            "location": location,
            "provider": "stripe",
        }
    return shown


# --- the resource ---------------------------------------------------------------------------


def _raw_expand(params: Mapping[str, Any]) -> list[str]:
    raw = params.get("expand", "")
    if raw == "":
        return []
    if isinstance(raw, dict):
        return [raw[k] for k in sorted(raw, key=int)]
    return list(raw)


class CustomersResource(Resource):
    name = "customers"
    object_name = "customer"
    routes = (
        ("POST", "", "create"),
        ("POST", "/{id}", "update"),
        ("GET", "", "list_all"),
        ("GET", "/{id}", "retrieve"),
        ("DELETE", "/{id}", "delete"),
        ("GET", "/search", "search"),
    )

    def __init__(self, context: ResourceContext) -> None:
        super().__init__(context)
        self.store = CustomerStore(seed=context.seed, search_delay=context.search_delay)

    def create(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        obj = self.store.create(customer_changes(params, creating=True))
        return render(obj, expand_list(params))

    def update(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        assert object_id is not None
        changes = customer_changes(params, creating=False)
        if not self.store.exists(object_id):
            raise no_such("customer", object_id, "id")
        return render(self.store.update(object_id, changes), expand_list(params))

    def retrieve(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        assert object_id is not None
        for key in params:
            if key != "expand":
                raise unknown_parameter(key)
        return render(self.store.retrieve(object_id), expand_list(params))

    def delete(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        assert object_id is not None
        for key in params:
            raise unknown_parameter(key)
        return self.store.delete(object_id)

    def list_all(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        result = self.store.list_page(params)
        expand = expand_list(params, "data.")
        result["data"] = [render(obj, expand) for obj in result["data"]]
        return result

    def search(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        result = self.store.search(params)
        expand = [e for e in _raw_expand(params) if e != "total_count"]
        expand = [e[5:] if e.startswith("data.") else e for e in expand]
        result["data"] = [render(obj, expand) for obj in result["data"]]
        return result

    def seed(self, items: list[Mapping[str, Any]]) -> list[str]:
        """Insert customers directly (no API accounting), searchable at once."""
        ids = []
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise ValueError(f"seed item {index} is not an object")
            params = dict(item)
            customer_id = params.pop("id", None)
            created = params.pop("created", None)
            try:
                changes = customer_changes(params, creating=True)
                obj = self.store.create(
                    changes, customer_id=customer_id, created=created, searchable_now=True
                )
            except ApiError as exc:
                raise ValueError(f"seed item {index}: {exc.message}") from exc
            ids.append(obj["id"])
        return ids

    def dump(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        return self.store.dump(include_deleted)
