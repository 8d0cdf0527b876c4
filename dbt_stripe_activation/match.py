"""Matching: which Stripe object (if any) each row's key points to.

Three sources, cheapest first: the sync state (the id we wrote last time, no read), an
index built by listing every object 100 per page (ceil(N/100) reads for any number of
keys), or one strongly consistent lookup per key (retrieve by id, or an exact list filter
such as `email` or `lookup_keys`). Which lookups a key kind has comes from the object's
contract. Search is never used: it is eventually consistent, so it cannot decide whether
to create.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator, Mapping
from enum import Enum
from typing import Any

from .objects.contract import KeyLookup
from .objects.keys import normalize_key
from .objects.params import flatten_object
from .records import NO_MATCH, DesiredRow, Match, Outcome
from .spec import SyncSpec
from .stripe_api import StripeGateway, StripeWriteError

# Below this many unknown keys, per-key lookups cost fewer reads than listing an account
# of more than this many hundred objects; above it, one listing serves every key.
PER_ROW_LOOKUP_MAX = 50
# List requests in flight while an index is built (parallel by `created` ranges).
INDEX_WORKERS = 16


class LookupStrategy(str, Enum):
    AUTO = "auto"
    INDEX = "index"
    PER_ROW = "per-row"


_Index = dict[str, list[tuple[str, dict[str, Any]]]]  # key -> (Stripe id, flat values)


class Matcher:
    """Thread-safe once `prepare` has run: the engine's workers call `match` concurrently."""

    def __init__(
        self,
        spec: SyncSpec,
        gateway: StripeGateway,
        strategy: LookupStrategy = LookupStrategy.AUTO,
        use_state: bool = True,
    ) -> None:
        self.spec = spec
        self.gateway = gateway
        self.strategy = strategy
        self.use_state = use_state
        self._paths = [m.path for m in spec.fields]
        if spec.object.group_limit is not None:  # read the parent too (a subscription)
            self._paths.append(spec.object.group_limit.attribute)
        # on_removed archive: whether a found object is archived (restored when back).
        self._paths += [p for p in spec.removal.archive_values if p not in self._paths]
        # The index of each account's objects (None: the platform's), when chosen; built
        # in prepare() for the platform, on first use for a connected account.
        self._indexes: dict[str | None, _Index] = {}
        self._use_index = False
        self._lock = threading.Lock()
        self._building: dict[str | None, threading.Lock] = {}
        self._unlisted: dict[str | None, StripeWriteError] = {}  # a listing that failed
        self.chosen: LookupStrategy | None = None

    def prepare(self, unknown_keys: int) -> None:
        """Choose per-row lookups or an index for this run, and build the index if chosen."""
        if unknown_keys == 0:
            self.chosen = LookupStrategy.PER_ROW
            return
        lookup = self.spec.key.spec.lookup
        strategy = self.strategy
        if strategy is LookupStrategy.AUTO:
            strategy = (
                LookupStrategy.INDEX
                if lookup is KeyLookup.INDEX or unknown_keys > PER_ROW_LOOKUP_MAX
                else LookupStrategy.PER_ROW
            )
        if lookup is KeyLookup.INDEX:  # no exact filter: listing is the only consistent way
            strategy = LookupStrategy.INDEX
        self.chosen = strategy
        self._use_index = strategy is LookupStrategy.INDEX
        if self._use_index and self.spec.account_column is None:
            self._index_for(None)

    def _index_for(self, account: str | None) -> _Index:
        """The account's index, listed once (concurrent rows of one account wait for it)."""
        with self._lock:
            index = self._indexes.get(account)
            if index is not None:
                return index
            building = self._building.setdefault(account, threading.Lock())
        with building:
            with self._lock:
                if account in self._indexes:
                    return self._indexes[account]
                if account in self._unlisted:  # listed once and failed: its rows fail fast
                    raise self._unlisted[account]
            found: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
            try:
                for obj in self._every_object(self.gateway.for_account(account)):
                    key = self._key_of(obj)
                    if key is not None:
                        found[key].append((obj["id"], self._flat(obj)))
            except StripeWriteError as exc:
                with self._lock:
                    self._unlisted[account] = exc
                raise
            with self._lock:
                self._indexes[account] = dict(found)
                return self._indexes[account]

    def _every_object(self, gateway: StripeGateway) -> Iterator[dict[str, Any]]:
        """Every object of the account, listed in parallel (through the parents for objects
        Stripe lists only under one)."""
        obj = self.spec.object
        through = obj.listed_through
        if through is None:
            return gateway.iter_all(obj.service, workers=INDEX_WORKERS)
        return gateway.iter_children(through.parent_service, through.children,
                                     obj.service, through.parent_filter,
                                     workers=INDEX_WORKERS)

    def _key_of(self, obj: Mapping[str, Any]) -> str | None:
        raw = flatten_object(obj, [self.spec.key.field])[self.spec.key.field]
        return normalize_key(raw, casefold=self.spec.key.casefold)

    def answers_offline(self, desired: DesiredRow) -> bool:
        """Whether `match` answers this row without a request: from the state, or from an
        index already listed (a plan then runs the row inline, not on a worker)."""
        previous = desired.row.previous
        if (self.use_state and previous is not None and previous.stripe_id
                and previous.outcome != Outcome.DELETED.value):
            return True
        return self._use_index and desired.row.account in self._indexes

    def match(self, desired: DesiredRow, *, ignore_state: bool = False) -> Match:
        row = desired.row
        previous = row.previous
        if (self.use_state and not ignore_state and previous is not None
                and previous.stripe_id and previous.outcome != Outcome.DELETED.value):
            return Match((previous.stripe_id,), dict(previous.synced_values), source="state")
        if self._use_index:
            found = self._index_for(row.account).get(row.stripe_key or "", [])
            return _to_match(found)
        return self.lookup(desired)

    def lookup(self, desired: DesiredRow) -> Match:
        """What Stripe holds for the row's key now, read from Stripe (never the state)."""
        key = desired.row.stripe_key
        if key is None:
            return NO_MATCH
        key_spec = self.spec.key.spec
        service = self.spec.object.service
        gateway = self.gateway.for_account(desired.row.account)
        if key_spec.lookup is KeyLookup.RETRIEVE:
            obj = gateway.retrieve(service, key)
            return NO_MATCH if obj is None else _to_match([(obj["id"], self._flat(obj))])
        if key_spec.lookup is KeyLookup.INDEX:
            found = [(obj["id"], self._flat(obj)) for obj in self._every_object(gateway)
                     if self._key_of(obj) == key]
            return _to_match(found)
        # An exact, case-sensitive list filter. For a case-folded key (email) ask for the
        # value as written and its normalized form (one read each at most).
        assert key_spec.list_filter is not None
        raw = str(desired.row.values.get(self.spec.key.column) or "").strip()
        candidates = [raw, key] if key_spec.casefold else [key]
        found_by_id: dict[str, dict[str, Any]] = {}
        for candidate in dict.fromkeys(candidates):
            if not candidate:
                continue
            value: Any = [candidate] if key_spec.filter_takes_list else candidate
            for obj in gateway.list_where(service, {key_spec.list_filter: value}):
                if self._key_of(obj) == key:
                    found_by_id[obj["id"]] = self._flat(obj)
        return _to_match(list(found_by_id.items()))

    def _flat(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        return flatten_object(obj, self._paths)

    def forget(self, stripe_id: str) -> None:
        """Drop an object Stripe no longer has (deleted) from the index."""
        with self._lock:
            for index in self._indexes.values():
                for key, entries in list(index.items()):
                    kept = [e for e in entries if e[0] != stripe_id]
                    if len(kept) != len(entries):
                        index[key] = kept


def _to_match(found: list[tuple[str, dict[str, Any]]]) -> Match:
    if not found:
        return NO_MATCH
    ids = tuple(sorted(stripe_id for stripe_id, _ in found))
    current = found[0][1] if len(found) == 1 else None
    return Match(ids, current, candidates=dict(found))
