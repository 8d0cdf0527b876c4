"""What every emulated Stripe object provides to the server, and a store for simple objects.

A resource declares the collection it lives under (`name`: `/v1/<name>`, also its key in
stats, seeds and dumps), the endpoints it serves (`routes`), the permission a restricted key
needs (`rak_<object_name>_read` / `_write`), one method per endpoint, and its store: `reset`,
`seed`, `dump`, `live_count`, `object_lock`. The server's router, faults, rate limits,
idempotency, locks and stats work from those declarations alone.
"""

from __future__ import annotations

import bisect
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..clock import EmulatorClock
from ..errors import ApiError, invalid, no_such
from .params import page_limit, random_id, string_param

Operation = Callable[[dict[str, Any], "str | None"], Any]


@dataclass
class ResourceContext:
    """What a resource is built with: the id seed, the search lag, the emulator clock (Stripe's
    calendar as tests move it: token expiry, identifier windows), and the resources built
    before it (`resources["products"]`), for resources that reference others."""

    seed: int | None = None
    search_delay: Callable[[], float] = lambda: 0.0
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


@dataclass
class Entry:
    seq: int
    obj: dict[str, Any]
    deleted: bool = False


class ObjectStore:
    """Objects in creation order with cursor pagination, newest first as Stripe lists them.

    Published dicts are never mutated (copy on write): readers serialize them after the lock
    is released. `lock` may be shared between stores whose writes check each other (a product
    delete looks at prices), so those checks and writes are atomic together.
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
    ) -> None:
        self.kind = kind  # "product": named in "No such product: 'x'"
        self.prefix = prefix
        self.url = url
        self.id_length = id_length
        self.lock = lock if lock is not None else threading.RLock()
        self._rng = self._random(seed)
        self._entries: dict[str, Entry] = {}
        self._order: list[Entry] = []  # index == seq
        self._object_locks: dict[str, threading.Lock] = {}
        self._live = 0

    def _random(self, seed: int | None) -> random.Random:
        """Ids repeat for a seed, and differ between object types under one seed."""
        return random.Random(None if seed is None else f"{seed}/{self.prefix}")

    def reset(self, seed: int | None = None) -> None:
        with self.lock:
            self._rng = self._random(seed)
            self._entries.clear()
            self._order.clear()
            self._object_locks.clear()
            self._live = 0

    @property
    def live_count(self) -> int:
        return self._live

    def object_lock(self, object_id: str) -> threading.Lock:
        with self.lock:
            lock = self._object_locks.get(object_id)
            if lock is None:
                lock = self._object_locks[object_id] = threading.Lock()
            return lock

    # -- primitives; writers hold `self.lock` around check-then-write sequences

    def new_id(self) -> str:
        while True:
            candidate = random_id(self._rng, self.prefix, self.id_length)
            if candidate not in self._entries:
                return candidate

    def taken(self, object_id: str) -> bool:
        """An id ever used here, deleted objects included."""
        return object_id in self._entries

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

    def insert(self, obj: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            entry = Entry(seq=len(self._order), obj=obj)
            self._entries[obj["id"]] = entry
            self._order.append(entry)
            self._live += 1
            return obj

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self._entries[obj["id"]].obj = obj
            return obj

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

    def seq_of(self, object_id: str) -> int | None:
        entry = self._entries.get(object_id)
        return None if entry is None else entry.seq

    # -- reads

    def list_page(
        self,
        params: Mapping[str, Any],
        *,
        keep: Callable[[dict[str, Any]], bool] | None = None,
        seqs: list[int] | None = None,
    ) -> dict[str, Any]:
        """A list answer: `limit`, `starting_after`, `ending_before` read from `params`;
        `keep` filters; `seqs` (ascending) restricts the candidates, e.g. from an index."""
        limit = page_limit(params)
        if "starting_after" in params and "ending_before" in params:
            raise invalid(
                "You may only specify one of these parameters: ending_before, starting_after.",
                "ending_before",
            )
        with self.lock:
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
            candidates: Any = seqs if seqs is not None else range(len(self._order))
            if forward:
                end = (
                    len(candidates)
                    if cursor_seq is None
                    else bisect.bisect_left(candidates, cursor_seq)
                )
                indexes: Iterable[int] = range(end - 1, -1, -1)
            else:
                start = bisect.bisect_right(candidates, cursor_seq)
                indexes = range(start, len(candidates))
            picked: list[dict[str, Any]] = []
            has_more = False
            for index in indexes:
                entry = self._order[candidates[index]]
                if entry.deleted or (keep is not None and not keep(entry.obj)):
                    continue
                if len(picked) == limit:
                    has_more = True
                    break
                picked.append(entry.obj)
        if not forward:
            picked.reverse()
        return {"object": "list", "data": picked, "has_more": has_more, "url": self.url}

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
