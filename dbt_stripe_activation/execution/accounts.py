"""Stripe Connect: an account the platform cannot act for costs one request, not one per
row."""

from __future__ import annotations

import threading


class AccountGate:
    """An account's first row goes alone; the rows behind it wait for its answer, then go
    (the account works) or are rejected with Stripe's reason, without a request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refused: dict[str, str] = {}
        self._first: dict[str, threading.Event] = {}

    def enter(self, account: str | None) -> str | None:
        """Why the account's rows are rejected, or None to go on."""
        if account is None:
            return None
        with self._lock:
            if account in self._refused:
                return self._refused[account]
            first = self._first.get(account)
            if first is None:
                self._first[account] = threading.Event()
                return None  # this row finds out
        first.wait()
        with self._lock:
            return self._refused.get(account)

    def done(self, account: str | None, refusal: str | None) -> None:
        if account is None:
            return
        with self._lock:
            if refusal is not None:
                self._refused.setdefault(account, refusal)
            first = self._first.setdefault(account, threading.Event())
        first.set()
