"""Errors a user can cause, each with the exit code the CLI turns it into.

Messages name the model, the setting and the fix; the CLI renders them once, at its edge.
"""

from __future__ import annotations


class SyncError(Exception):
    """Base of every error the CLI reports without a traceback."""

    exit_code = 2


class ConfigError(SyncError):
    """A `stripe_activation` block (or a CLI flag) that cannot work, found before any call."""


class ProjectError(SyncError):
    """The dbt project cannot be read: no manifest, unknown selection, bad profile."""


class WarehouseError(SyncError):
    """The warehouse cannot be reached or queried through the user's dbt adapter."""


class StripeConnectionError(SyncError):
    """Stripe cannot be reached, or refuses the key (401) or a permission (403)."""


class LockHeldError(SyncError):
    """Another sync of the same model holds the lock in the bookkeeping schema."""

    def __init__(self, message: str, *, owner: str | None = None, expires_at: object = None):
        super().__init__(message)
        self.owner = owner
        self.expires_at = expires_at


class LiveModeError(SyncError):
    """A live-mode key without the explicit opt-in: test pipelines never write production."""


class RemovalGuardError(SyncError):
    """on_removed would remove more than --max-removed allows, or the model is empty:
    refused before any write (a broken model must never empty a Stripe account)."""
