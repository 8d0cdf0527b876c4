"""Stripe's idempotency layer (docs.stripe.com/api/idempotent_requests).

The first result of an executed request is saved and replayed for the same key, including
errors; a key reused with other parameters or on another endpoint is an idempotency_error; a
key whose first request is still running answers 409 idempotency_key_in_use; a request that
failed validation or conflicted saves nothing. Keys never expire here (Stripe: >= 24 h).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from . import errors


@dataclass(frozen=True)
class SavedResponse:
    path: str
    fingerprint: Any
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    request_id: str


class IdempotencyStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._saved: dict[str, SavedResponse] = {}
        self._running: set[str] = set()

    def reset(self) -> None:
        with self._lock:
            self._saved.clear()
            self._running.clear()

    def __len__(self) -> int:
        return len(self._saved)

    def begin(self, key: str, path: str, fingerprint: Any) -> SavedResponse | None:
        """The saved response to replay, or None after marking the key as running."""
        with self._lock:
            saved = self._saved.get(key)
            if saved is not None:
                if saved.path != path:
                    raise errors.idempotency_other_endpoint(key, saved.path, path)
                if saved.fingerprint != fingerprint:
                    raise errors.idempotency_mismatch(key)
                return saved
            if key in self._running:
                raise errors.idempotency_in_use()
            self._running.add(key)
            return None

    def finish(self, key: str, response: SavedResponse | None) -> None:
        """Release the key, saving `response` when the request executed."""
        with self._lock:
            self._running.discard(key)
            if response is not None:
                self._saved[key] = response
