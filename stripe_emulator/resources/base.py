"""What every emulated Stripe object provides to the server, and the base of stored objects.

A resource declares the collection it lives under (`name`: `/v1/<name>`, also its key in
stats, seeds and dumps), the endpoints it serves (`routes`), the permission a restricted key
needs (`rak_<object_name>_read` / `_write`), one method per endpoint, and its store: `reset`,
`seed`, `dump`, `live_count`, `object_lock`. The server's router, faults, rate limits,
idempotency, locks and stats work from those declarations alone.

`ObjectResource` over an `ObjectStore` serves Stripe's common endpoints from declarations:
list (paging, `created`, exact and indexed filters, `expand`), retrieve, create with a
caller-chosen id, update, delete and seed. A resource adds its fields, its rules (the state
machine) and its own endpoints.
"""

from __future__ import annotations

import bisect
import copy
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..clock import EmulatorClock
from ..errors import ApiError, invalid, no_such
from .params import (
    boolean_param,
    check_known,
    created_filter,
    enum_param,
    expand_names,
    page_limit,
    random_id,
    string_param,
)

Operation = Callable[[dict[str, Any], "str | None"], Any]


@dataclass(frozen=True)
class ListQuirks:
    """How lists behave when the emulator stands in for another fake server: Stripe lists
    newest first and takes `created`; localstripe lists oldest first and refuses it."""

    oldest_first: bool = False
    refuses_created: bool = False


@dataclass
class ResourceContext:
    """What a resource is built with: the id seed, the search lag, the list quirks, the
    emulator clock (Stripe's calendar as tests move it: token expiry, identifier windows),
    and the resources built before it (`resources["products"]`), for resources that
    reference others."""

    seed: int | None = None
    search_delay: Callable[[], float] = lambda: 0.0
    list_quirks: Callable[[], ListQuirks] = ListQuirks
    clock: EmulatorClock = field(default_factory=EmulatorClock)
    resources: dict[str, Resource] = field(default_factory=dict)


class Resource:
    """One Stripe object type. Subclasses set the class attributes and write one method per
    route: `def update(self, params, object_id) -> dict` (the JSON answer), raising `ApiError`.
    """

    name: ClassVar[str] = ""  # collection path under /v1 ("products", "billing/meters")
    api_version: ClassVar[str] = "v1"  # "v2": served under /v2/<name>, JSON bodies, v2 errors
    object_name: ClassVar[str] = ""  # "product": permissions rak_product_read / rak_product_write
    # (method, path after /v1/<name> with {id} for the object id, method name on the resource)
    routes: ClassVar[tuple[tuple[str, str, str], ...]] = ()
    # Method names whose endpoints have their own rate-limit pool: the global `rate_limit` does
    # not count them (their endpoint limit still applies). Stripe: meter events.
    own_rate_limit_pool: ClassVar[frozenset[str]] = frozenset()
    # Method names whose endpoints authenticate with a token this resource checks
    # (`check_token`) instead of an API key: the meter event stream's session token.
    token_auth: ClassVar[frozenset[str]] = frozenset()
    # Extra control-API reads, `GET /_emulator/<name>` -> method name (returns a JSON value).
    control_reads: ClassVar[dict[str, str]] = {}
    store: Any = None  # None: nothing to reset, seed, count or dump (e.g. balance)

    def __init__(self, context: ResourceContext) -> None:
        self.context = context

    # -- routing

    @classmethod
    def endpoint_name(cls, method: str, suffix: str) -> str:
        return f"{method} /{cls.api_version}/{cls.name}{suffix}"

    @classmethod
    def endpoint_names(cls) -> list[str]:
        """Stripe's operation names, e.g. "POST /v1/products/{id}": stats and limit keys."""
        return [cls.endpoint_name(method, suffix) for method, suffix, _ in cls.routes]

    def operations(self) -> dict[str, Operation]:
        return {
            self.endpoint_name(method, suffix): getattr(self, attribute)
            for method, suffix, attribute in self.routes
        }

    def check_token(self, token: str) -> None:
        """For `token_auth` endpoints: raise the 401 `ApiError` when `token` is not valid."""
        raise ApiError(401, "This endpoint does not take tokens.")

    def permission(self, endpoint: str) -> str:
        write = endpoint.startswith(("POST", "DELETE"))
        return f"rak_{self.object_name}_{'write' if write else 'read'}"

    # -- the store, as the control API and the server's locks see it

    @property
    def has_store(self) -> bool:
        return self.store is not None

    def reset(self, seed: int | None) -> None:
        if self.store is not None:
            self.store.reset(seed)

    @property
    def live_count(self) -> int:
        return int(self.store.live_count) if self.store is not None else 0

    def object_lock(self, object_id: str) -> threading.Lock:
        """Held by a write to one object while it executes: the source of lock_timeout."""
        return self.store.object_lock(object_id)  # type: ignore[no-any-return]

    def dump(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        return self.store.dump(include_deleted) if self.store is not None else []

    def seed(self, items: list[Mapping[str, Any]]) -> list[str]:
        """Insert objects directly (no API accounting), validated like a create; their ids."""
        raise ValueError(f"{self.name} cannot be seeded")

    # -- counters the control API's stats include

    def extra_stats(self) -> dict[str, Any]:
        """Keys added to `GET /_emulator/stats` (besides the live count under `name`)."""
        return {}

    def reset_stats(self) -> None:
        """Forget the counters of `extra_stats` (a stats-only reset keeps the objects)."""


# The endpoints of an object Stripe creates, updates, lists and retrieves, in that order.
CRUD_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("POST", "", "create"),
    ("POST", "/{id}", "update"),
    ("GET", "", "list_all"),
    ("GET", "/{id}", "retrieve"),
)
DELETE_ROUTE = ("DELETE", "/{id}", "delete")


class ObjectLocks:
    """One lock per object id, made on first use: a write holds its object's lock while it
    executes, and a second write to that object meets lock_timeout."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def get(self, object_id: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(object_id)
            if lock is None:
                lock = self._locks[object_id] = threading.Lock()
            return lock

    def clear(self) -> None:
        with self._guard:
            self._locks.clear()


@dataclass
class Entry:
    seq: int
    obj: dict[str, Any]
    deleted: bool = False


class ObjectStore:
    """Objects in creation order with cursor pagination, newest first as Stripe lists them.

    Published dicts are never mutated (copy on write): readers serialize them after the lock
    is released. `lock` may be shared between stores whose writes check each other (a product
    delete looks at prices), so those checks and writes are atomic together. `indexed` fields
    (value -> sequence numbers) answer exact list filters, uniqueness checks and children by
    parent without a scan.
    """

    def __init__(
        self,
        *,
        kind: str,
        prefix: str,
        url: str,
        seed: int | None = None,
        id_length: int = 14,
        lock: threading.RLock | None = None,
        indexed: Iterable[str] = (),
    ) -> None:
        self.kind = kind  # "product": named in "No such product: 'x'"
        self.prefix = prefix
        self.url = url
        self.id_length = id_length
        self.lock = lock if lock is not None else threading.RLock()
        self._rng = self._random(seed)
        self._entries: dict[str, Entry] = {}
        self._order: list[Entry] = []  # index == seq
        self._indexes: dict[str, dict[Any, list[int]]] = {name: {} for name in indexed}
        self._object_locks = ObjectLocks()
        self._live = 0

    def _random(self, seed: int | None) -> random.Random:
        """Ids repeat for a seed, and differ between object types under one seed."""
        return random.Random(None if seed is None else f"{seed}/{self.prefix}")

    def reset(self, seed: int | None = None) -> None:
        with self.lock:
            self._rng = self._random(seed)
            self._entries.clear()
            self._order.clear()
            for index in self._indexes.values():
                index.clear()
            self._object_locks.clear()
            self._live = 0

    @property
    def live_count(self) -> int:
        return self._live

    def object_lock(self, object_id: str) -> threading.Lock:
        return self._object_locks.get(object_id)

    # -- primitives; writers hold `self.lock` around check-then-write sequences

    def new_id(self) -> str:
        while True:
            candidate = random_id(self._rng, self.prefix, self.id_length)
            if candidate not in self._entries:
                return candidate

    def taken(self, object_id: str) -> bool:
        """An id ever used here, deleted objects included."""
        return object_id in self._entries

    def check_unused(self, object_id: str | None, param: str = "id") -> None:
        """A caller-chosen id must be new (deleted objects' ids included): 400 otherwise."""
        if object_id is not None and self.taken(object_id):
            raise self.already_exists(object_id, param)

    def already_exists(self, object_id: str, param: str) -> ApiError:
        kind = self.kind.replace("_", " ").capitalize()
        return invalid(f"{kind} already exists: '{object_id}'", param)

    def get(self, object_id: str) -> dict[str, Any] | None:
        entry = self._entries.get(object_id)
        return None if entry is None or entry.deleted else entry.obj

    def require(
        self, object_id: str, param: str | None = "id", status: int = 404
    ) -> dict[str, Any]:
        obj = self.get(object_id)
        if obj is None:
            raise no_such(self.kind, object_id, param, status)
        return obj

    def where(self, name: str, value: Any) -> list[dict[str, Any]]:
        """Live objects whose indexed field `name` is `value`, oldest first."""
        with self.lock:
            entries = (self._order[seq] for seq in self._indexes[name].get(value, ()))
            return [entry.obj for entry in entries if not entry.deleted]

    def insert(self, obj: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            entry = Entry(seq=len(self._order), obj=obj)
            self._entries[obj["id"]] = entry
            self._order.append(entry)
            self._live += 1
            self._reindex(entry.seq, {}, obj)
            return obj

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            entry = self._entries[obj["id"]]
            self._reindex(entry.seq, entry.obj, obj)
            entry.obj = obj
            return obj

    def _reindex(self, seq: int, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        for name, index in self._indexes.items():
            before, after = old.get(name), new.get(name)
            if before == after:
                continue
            if before is not None:
                seqs = index[before]
                del seqs[bisect.bisect_left(seqs, seq)]
                if not seqs:
                    del index[before]
            if after is not None:
                bisect.insort(index.setdefault(after, []), seq)

    def mark_deleted(self, object_id: str) -> None:
        with self.lock:
            entry = self._entries[object_id]
            if not entry.deleted:
                entry.deleted = True
                self._live -= 1

    def live(self) -> Iterable[dict[str, Any]]:
        """Every live object, oldest first (a snapshot)."""
        with self.lock:
            return [e.obj for e in self._order if not e.deleted]

    # -- reads

    def list_page(
        self, params: Mapping[str, Any], limit: int, filters: Iterable[Checked],
        oldest_first: bool = False,
    ) -> dict[str, Any]:
        """A list answer: the cursor read from `params` (`starting_after` or `ending_before`,
        checked to be one), newest first (`oldest_first`: as localstripe lists); exact filters
        on indexed fields pick the candidates, the others test each one."""
        tests: list[Test] = []
        candidates: Any = None
        with self.lock:
            for rule, wanted in filters:
                if rule.field is not None and rule.field in self._indexes:
                    seqs = self._indexed_seqs(rule.field, wanted if rule.many else (wanted,))
                    candidates = seqs if candidates is None else sorted(set(candidates) & set(seqs))
                else:
                    tests.append(rule.bind(wanted))
            cursor_seq: int | None = None
            forward = True
            for name in ("starting_after", "ending_before"):
                if name in params:
                    cursor_id = string_param(params[name], name, emptyable=False) or ""
                    cursor = self._entries.get(cursor_id)
                    if cursor is None:
                        raise no_such(self.kind, cursor_id, name, 400)
                    cursor_seq = cursor.seq
                    forward = name == "starting_after"
            if candidates is None:
                candidates = range(len(self._order))
            if oldest_first:  # the same walk over the reversed order
                candidates = list(reversed(candidates))
                cursor_seq = None if cursor_seq is None else -cursor_seq
                candidates_key = [-seq for seq in candidates]
            else:
                candidates_key = candidates
            if forward:
                end = (
                    len(candidates)
                    if cursor_seq is None
                    else bisect.bisect_left(candidates_key, cursor_seq)
                )
                indexes: Iterable[int] = range(end - 1, -1, -1)
            else:
                start = bisect.bisect_right(candidates_key, cursor_seq)
                indexes = range(start, len(candidates))
            picked: list[dict[str, Any]] = []
            has_more = False
            for index in indexes:
                entry = self._order[candidates[index]]
                if entry.deleted or not all(test(entry.obj) for test in tests):
                    continue
                if len(picked) == limit:
                    has_more = True
                    break
                picked.append(entry.obj)
        if not forward:
            picked.reverse()
        return {"object": "list", "data": picked, "has_more": has_more, "url": self.url}

    def _indexed_seqs(self, name: str, values: Iterable[Any]) -> list[int]:
        index = self._indexes[name]
        return sorted({seq for value in values for seq in index.get(value, ())})

    def dump(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        with self.lock:
            entries = list(self._order)
        result = []
        for entry in entries:
            if entry.deleted:
                if include_deleted:
                    result.append({"id": entry.obj["id"], "object": self.kind, "deleted": True})
            else:
                result.append(entry.obj)
        return result


# -- list filters, declared by each resource

Test = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True)
class Filter:
    """One list parameter. `parse` checks its value, raising Stripe's 400, into the wanted
    value; an object passes `test(obj, wanted)`, or for a field filter `obj[field] == wanted`
    (`in wanted` when `many`), answered from the store's index when it keeps that field.
    `always`: it applies without the parameter too (`parse(None)`: a default, or a 400)."""

    param: str
    parse: Callable[[Any], Any]
    field: str | None = None
    many: bool = False
    test: Callable[[Mapping[str, Any], Any], bool] | None = None
    always: bool = False

    def bind(self, wanted: Any) -> Test:
        if self.test is not None:
            test = self.test
            return lambda obj: test(obj, wanted)
        field = self.field
        assert field is not None, f"filter {self.param}: give `field` or `test`"
        if self.many:
            return lambda obj: obj[field] in wanted
        return lambda obj: obj[field] == wanted


Checked = tuple[Filter, Any]  # a filter and the wanted value parsed from the request


def exact(param: str, parse: Callable[[Any], Any], field: str | None = None) -> Filter:
    """`?param=value`: objects whose `field` (the parameter's name unless given) is value."""
    return Filter(param, parse, field=field or param)


def one_of(param: str, parse: Callable[[Any], Any], field: str) -> Filter:
    """`?param[]=a&param[]=b`: objects whose `field` is one of the values `parse` returns."""
    return Filter(param, parse, field=field, many=True)


def created_range() -> Filter:
    """`created`, a timestamp or `created[gt|gte|lt|lte]` bounds."""
    return Filter("created", created_filter, test=lambda obj, ok: ok(obj["created"]))


def flag(param: str) -> Callable[[Any], bool]:
    return lambda value: boolean_param(value, param)


def text(param: str, limit: int = 5000) -> Callable[[Any], str | None]:
    return lambda value: string_param(value, param, limit, emptyable=False)


def choice(param: str, choices: tuple[str, ...]) -> Callable[[Any], str]:
    return lambda value: enum_param(value, param, choices)


def one_cursor(params: Mapping[str, Any]) -> None:
    if "starting_after" in params and "ending_before" in params:
        raise invalid(
            "You may only specify one of these parameters: ending_before, starting_after.",
            "ending_before",
        )


def embedded_list(data: list[dict[str, Any]], url: str) -> dict[str, Any]:
    """A child collection inside its parent (a subscription's `items`, an invoice's `lines`)."""
    return {"object": "list", "data": data, "has_more": False, "total_count": len(data), "url": url}


class ObjectResource(Resource):
    """A resource whose objects live in an `ObjectStore`: list, retrieve, create, update,
    delete and seed come from declarations, so a resource writes only what is its own.

    Declares `expandable` (what `expand[]` may name), `filters` (its list parameters, in the
    order Stripe checks them) and the hooks: `changes` (validated create/update params),
    `insert` (a new object from changes), `apply` (an update's rules: the state machine),
    `render` (the API shape), `check_delete` (refusals). The store's lock is held from the
    read of an object through its write.
    """

    store: ObjectStore
    expandable: ClassVar[frozenset[str]] = frozenset()
    filters: tuple[Filter, ...] = ()  # a class attribute, or set per instance
    # The order a list checks its parameters in, when several are wrong (Stripe's per object).
    list_checks: ClassVar[tuple[str, ...]] = ("expand", "filters", "limit", "cursor")
    # Seed failures reported as "<name> seed item <i>: message" (others propagate).
    seed_refusals: ClassVar[tuple[type[Exception], ...]] = (ApiError,)
    seed_item: ClassVar[str] = ""  # how seed errors name an item; default "<name> seed item"

    # -- hooks

    def changes(self, params: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        """Create or update params, validated in Stripe's error order."""
        raise NotImplementedError

    def insert(
        self, changes: Mapping[str, Any], *, object_id: str | None = None, created: Any = None
    ) -> dict[str, Any]:
        """Store a new object made from validated changes; every refusal before any write."""
        raise NotImplementedError

    def apply(self, obj: dict[str, Any], changes: Mapping[str, Any]) -> None:
        """Apply validated update changes to a private copy of the object, or refuse them."""
        raise NotImplementedError

    def render(self, obj: Mapping[str, Any], expand: list[str]) -> dict[str, Any]:
        return dict(obj)

    def check_delete(self, object_id: str) -> None:
        """Raise the 400 that refuses a delete (under the store lock)."""

    # -- endpoints

    def create(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        obj = self.insert(self.changes(params, creating=True))
        return self.render(obj, expand_names(params, self.expandable))

    def retrieve(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        assert object_id is not None
        check_known(params, {"expand"})
        expand = expand_names(params, self.expandable)
        return self.render(self.store.require(object_id), expand)

    def update(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        assert object_id is not None
        changes = self.changes(params, creating=False)
        with self.store.lock:
            obj = copy.deepcopy(self.store.require(object_id))
            self.apply(obj, changes)
            self.store.replace(obj)
        return self.render(obj, expand_names(params, self.expandable))

    def delete(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        assert object_id is not None
        check_known(params, ())
        with self.store.lock:
            self.store.require(object_id)
            self.check_delete(object_id)
            self.store.mark_deleted(object_id)
        return self.deleted(object_id)

    def deleted(self, object_id: str) -> dict[str, Any]:
        return {"id": object_id, "object": self.store.kind, "deleted": True}

    def list_all(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        known = {"expand", "limit", "starting_after", "ending_before"}
        check_known(params, known | {rule.param for rule in self.filters})
        checks: dict[str, Callable[[], Any]] = {
            "expand": lambda: expand_names(params, self.expandable, "data."),
            "filters": lambda: [
                (rule, rule.parse(params.get(rule.param)))
                for rule in self.filters
                if rule.always or rule.param in params
            ],
            "limit": lambda: page_limit(params),
            "cursor": lambda: one_cursor(params),
        }
        quirks = self.context.list_quirks()
        if quirks.refuses_created and "created" in params:
            raise invalid("Unexpected created", "created")
        checked = {name: checks[name]() for name in self.list_checks}
        result = self.store.list_page(params, checked["limit"], checked["filters"],
                                      oldest_first=quirks.oldest_first)
        result["data"] = [self.render(obj, checked["expand"]) for obj in result["data"]]
        return result

    # -- control API

    def seed(self, items: list[Mapping[str, Any]]) -> list[str]:
        label = self.seed_item or f"{self.name} seed item"
        ids = []
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise ValueError(f"{label} {index} is not an object")
            try:
                obj = self.seed_one(dict(item))
            except self.seed_refusals as exc:
                message = exc.message if isinstance(exc, ApiError) else str(exc)
                raise ValueError(f"{label} {index}: {message}") from exc
            ids.append(obj["id"])
        return ids

    def seed_one(self, params: dict[str, Any]) -> dict[str, Any]:
        """One seed item: create params plus an optional `id` and `created`."""
        object_id = params.pop("id", None)
        created = params.pop("created", None)
        changes = self.changes(params, creating=True)
        return self.insert(changes, object_id=object_id, created=created)
