"""The customer resource: Stripe's object shape, parameter validation, list and search.

Published customer dicts are never mutated (copy on write), so readers serialize them after
the store lock is released. Lists use the creation sequence (newest first, like Stripe) and an
exact email index; search sees each customer as it was `search_delay_seconds` ago, because
Stripe's search index is eventually consistent.
"""

from __future__ import annotations

import base64
import json
import math
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import search as search_query
from ..errors import invalid, missing_parameter, no_such, unknown_parameter
from ..forms import as_list
from .base import (
    CRUD_ROUTES,
    DELETE_ROUTE,
    Entry,
    ObjectResource,
    ObjectStore,
    ResourceContext,
    created_range,
    exact,
    text,
)
from .params import boolean_param as _boolean
from .params import check_known, expand_names
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
EXPANDABLE = frozenset(
    {"tax", "test_clock", "default_source", "invoice_settings.default_payment_method"}
)
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


class CustomerStore(ObjectStore):
    """Customers with the email index, and for search each customer's recent versions: search
    sees a customer as it was `search_delay` ago. Every method holds the lock only for
    in-memory work."""

    def __init__(
        self,
        *,
        seed: int | None = None,
        search_delay: Callable[[], float] = lambda: 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            kind="customer", prefix="cus_", url="/v1/customers", seed=seed, indexed=("email",)
        )
        self._search_delay = search_delay
        self._clock = clock
        self._versions: dict[str, list[_Version]] = {}
        self._search_email: dict[str, set[str]] = {}  # any indexed email, lower -> ids
        self._search_meta: dict[tuple[str, str], set[str]] = {}

    def _random(self, seed: int | None) -> random.Random:
        """Seeded as before stores were seeded per type, so a seed's customer ids stay."""
        return random.Random(seed)

    def reset(self, seed: int | None = None) -> None:
        with self.lock:
            super().reset(seed)
            self._versions.clear()
            self._search_email.clear()
            self._search_meta.clear()

    def _add_version(self, customer_id: str, at: float) -> None:
        obj = self.get(customer_id)
        doc = None if obj is None else _search_doc(obj)
        versions = self._versions.setdefault(customer_id, [])
        versions.append(_Version(at, doc))
        horizon = self._clock() - self._search_delay()
        visible = [i for i, v in enumerate(versions) if v.at <= horizon]
        if visible and visible[-1] > 0:
            del versions[: visible[-1]]
        if doc is not None:
            if doc["email"]:
                self._search_email.setdefault(doc["email"].lower(), set()).add(customer_id)
            for key, value in doc["metadata"].items():
                self._search_meta.setdefault((key, value.lower()), set()).add(customer_id)

    # -- writes

    def create(
        self,
        changes: Mapping[str, Any],
        *,
        customer_id: str | None = None,
        created: int | None = None,
        searchable_now: bool = False,
    ) -> dict[str, Any]:
        with self.lock:
            self.check_unused(customer_id)
            obj: dict[str, Any] = {
                "id": customer_id or self.new_id(),
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
            self.insert(obj)
            self._add_version(obj["id"], -math.inf if searchable_now else self._clock())
            return obj

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            super().replace(obj)
            self._add_version(obj["id"], self._clock())
            return obj

    def mark_deleted(self, object_id: str) -> None:
        with self.lock:
            super().mark_deleted(object_id)
            self._add_version(object_id, self._clock())

    # -- search

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
        with self.lock:
            candidates = self._candidates(query)
            seqs = (
                sorted((self._entries[i].seq for i in candidates), reverse=True)
                if candidates is not None
                else range(len(self._order) - 1, -1, -1)
            )
            hits: list[Entry] = []
            for seq in seqs:
                entry = self._order[seq]
                if entry.deleted:
                    continue
                doc = _visible(self._versions[entry.obj["id"]], horizon)
                if doc is not None and query.matches(doc):
                    hits.append(entry)
        if before is not None:
            hits = [e for e in hits if e.seq < before]
        page, rest = hits[:limit], hits[limit:]
        result: dict[str, Any] = {
            "object": "search_result",
            "data": [e.obj for e in page],
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


def _visible(versions: list[_Version], horizon: float) -> dict[str, Any] | None:
    for version in reversed(versions):
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


class CustomersResource(ObjectResource):
    name = "customers"
    object_name = "customer"
    routes = (*CRUD_ROUTES, DELETE_ROUTE, ("GET", "/search", "search"))
    expandable = EXPANDABLE
    filters = (
        exact("email", text("email", STRING_LIMITS["email"])),
        created_range(),
        # Not checked: no customer is attached to a test clock here, so none matches.
        exact("test_clock", lambda clock: clock),
    )
    list_checks = ("limit", "expand", "cursor", "filters")
    seed_item = "seed item"  # the first seeds were customers only

    def __init__(self, context: ResourceContext) -> None:
        super().__init__(context)
        self.store: CustomerStore = CustomerStore(
            seed=context.seed, search_delay=context.search_delay
        )

    def changes(self, params: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        return customer_changes(params, creating=creating)

    def insert(
        self, changes: Mapping[str, Any], *, object_id: str | None = None, created: Any = None
    ) -> dict[str, Any]:
        return self.store.create(changes, customer_id=object_id, created=created)

    def apply(self, obj: dict[str, Any], changes: Mapping[str, Any]) -> None:
        _apply(obj, changes)

    def render(self, obj: Mapping[str, Any], expand: list[str]) -> dict[str, Any]:
        return render(obj, expand)

    def retrieve(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        """A deleted customer is still retrievable, as its deletion stub."""
        assert object_id is not None
        check_known(params, {"expand"})
        gone = self.store.get(object_id) is None and self.store.taken(object_id)
        obj = self.deleted(object_id) if gone else self.store.require(object_id)
        return render(obj, expand_list(params))

    def search(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        result = self.store.search(params)
        expand = [e for e in _raw_expand(params) if e != "total_count"]
        expand = [e[5:] if e.startswith("data.") else e for e in expand]
        result["data"] = [render(obj, expand) for obj in result["data"]]
        return result

    def seed_one(self, params: dict[str, Any]) -> dict[str, Any]:
        """Seeded customers are searchable at once."""
        customer_id = params.pop("id", None)
        created = params.pop("created", None)
        changes = customer_changes(params, creating=True)
        return self.store.create(
            changes, customer_id=customer_id, created=created, searchable_now=True
        )

    def dump(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        return [render(obj) for obj in self.store.dump(include_deleted)]
