"""Connect: the platform and its connected accounts, each a whole Stripe account of its own.

A request with `Stripe-Account: acct_...` acts on that connected account
(docs.stripe.com/api/connected-accounts); without the header it acts on the platform. Every
account gets its own instance of every resource (so no resource knows about accounts: the same
email or product id in two accounts is two objects), its own router over them, idempotency
keys, rate-limit windows and request counters.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .clock import EmulatorClock
from .faults import RateLimiter
from .idempotency import IdempotencyStore
from .resources import ListQuirks, Resource, build_resources
from .routing import Router
from .stats import Stats

CONNECTED_PREFIX = "acct_emu"  # generated ids: acct_emu0001, acct_emu0002, ...
_ACCOUNT_ID = re.compile(r"acct_[A-Za-z0-9]{1,64}")


def account_seed(seed: int | None, account_id: str, connected: bool) -> int | None:
    """The platform keeps the configured seed (its ids stay as before); each connected account
    derives its own, so generated ids differ between accounts yet repeat for a seed."""
    if seed is None or not connected:
        return seed
    digest = hashlib.sha256(f"{seed}/{account_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def connected_id(number: int) -> str:
    return f"{CONNECTED_PREFIX}{number:04d}"


@dataclass
class Account:
    """One Stripe account as the server sees it: its objects and its share of the machinery."""

    id: str
    connected: bool
    resources: dict[str, Resource]
    router: Router
    limiter: RateLimiter = field(default_factory=RateLimiter)
    idempotency: IdempotencyStore = field(default_factory=IdempotencyStore)
    stats: Stats = field(default_factory=Stats)

    @property
    def stored(self) -> list[Resource]:
        """The resources that keep objects, in build order (customers, products, prices)."""
        return [r for r in self.resources.values() if r.has_store]

    def snapshot(self) -> dict[str, Any]:
        """`GET /_emulator/stats`: request counters, live object counts ("customers", ...),
        resource counters ("meter_events", ...) and idempotency keys of this account."""
        data = self.stats.snapshot()
        for resource in self.stored:
            data[resource.name] = resource.live_count
        for resource in self.resources.values():
            data.update(resource.extra_stats())
        data["idempotency_keys"] = len(self.idempotency)
        return data

    def control_read(self, name: str) -> Any:
        """`GET /_emulator/<name>` for the reads resources declare (`control_reads`)."""
        for resource in self.resources.values():
            attribute = resource.control_reads.get(name)
            if attribute is not None:
                return getattr(resource, attribute)()
        return None

    def seed_all(self, payload: Any) -> dict[str, Any]:
        """`POST /_emulator/seed`: a list of customers (`{"ids": [...]}`), or an object of
        lists by resource name, seeded in build order so prices can name seeded products
        (`{"ids": [every id], "customers": [...], "products": [...], ...}`). Inserted directly
        (no API accounting); customers are searchable at once."""
        if isinstance(payload, list):
            return {"ids": self.resources["customers"].seed(payload)}
        if not isinstance(payload, dict):
            raise ValueError(
                "POST /_emulator/seed takes a JSON list of customers or an object of lists "
                f"by resource ({', '.join(r.name for r in self.stored)})"
            )
        known = {r.name for r in self.stored}
        unknown = sorted(set(payload) - known)
        if unknown:
            raise ValueError(f"cannot seed {', '.join(unknown)}; one of {sorted(known)}")
        result: dict[str, Any] = {"ids": []}
        for resource in self.stored:
            if resource.name not in payload:
                continue
            items = payload[resource.name]
            if not isinstance(items, list):
                raise ValueError(f"seed {resource.name!r} takes a JSON list")
            ids = resource.seed(items)
            result[resource.name] = ids
            result["ids"].extend(ids)
        return result

    def reset(self, seed: int | None, *, stats_only: bool) -> None:
        self.stats.reset()
        self.limiter.reset()
        for resource in self.resources.values():
            resource.reset_stats()
        if not stats_only:
            for resource in self.stored:
                resource.reset(account_seed(seed, self.id, self.connected))
            self.idempotency.reset()


class Accounts:
    """The platform plus the connected accounts it may act for, by id."""

    def __init__(
        self,
        platform_id: str,
        *,
        seed: int | None,
        search_delay: Callable[[], float],
        clock: EmulatorClock,
        list_quirks: Callable[[], ListQuirks] = ListQuirks,
    ) -> None:
        self._search_delay = search_delay
        self._list_quirks = list_quirks
        self._clock = clock
        self._lock = threading.Lock()
        self._connected: dict[str, Account] = {}
        self.platform = self._build(platform_id, connected=False, seed=seed)

    def _build(self, account_id: str, *, connected: bool, seed: int | None) -> Account:
        resources = build_resources(
            seed=account_seed(seed, account_id, connected),
            search_delay=self._search_delay,
            list_quirks=self._list_quirks,
            clock=self._clock,
        )
        return Account(
            id=account_id,
            connected=connected,
            resources=resources,
            router=Router(resources.values()),
        )

    def get(self, account_id: str | None) -> Account | None:
        """The account a `Stripe-Account` header names (none, or the platform's own id: the
        platform), or None when the platform cannot act for it."""
        if not account_id or account_id == self.platform.id:
            return self.platform
        return self._connected.get(account_id)

    def require(self, account_id: str | None) -> Account:
        """For the control API: the account, or ValueError naming the connected ones."""
        account = self.get(account_id)
        if account is None:
            raise ValueError(
                f"no connected account {account_id!r}; connected: {sorted(self._connected)}"
            )
        return account

    @property
    def connected(self) -> list[Account]:
        with self._lock:
            return list(self._connected.values())

    def all(self) -> list[Account]:
        return [self.platform, *self.connected]

    def connect(self, account_ids: Iterable[str | None], seed: int | None) -> list[Account]:
        """Create connected accounts (None: the next free `acct_emuNNNN`); an id already
        connected is kept as it is."""
        created = []
        with self._lock:
            for requested in account_ids:
                account_id = requested if requested is not None else self._next_id()
                if not _ACCOUNT_ID.fullmatch(account_id) or account_id == self.platform.id:
                    raise ValueError(
                        f"a connected account id is acct_ and letters or digits, not the "
                        f"platform's: {account_id!r}"
                    )
                account = self._connected.get(account_id)
                if account is None:
                    account = self._build(account_id, connected=True, seed=seed)
                    self._connected[account_id] = account
                created.append(account)
        return created

    def _next_id(self) -> str:
        number = 1
        while connected_id(number) in self._connected:
            number += 1
        return connected_id(number)

    def ensure(self, count: int, seed: int | None) -> None:
        """The `accounts` setting: acct_emu0001 .. acct_emuNNNN exist."""
        self.connect((connected_id(n) for n in range(1, count + 1)), seed)

    def reset(self, seed: int | None, *, stats_only: bool) -> None:
        """Forget every account's stats (and, unless `stats_only`, its objects and keys, and
        every connected account: the caller connects the configured ones again)."""
        if not stats_only:
            with self._lock:
                self._connected.clear()
        for account in self.all():
            account.reset(seed, stats_only=stats_only)
