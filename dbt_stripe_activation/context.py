"""The run context: every setting of a command, resolved once at the edge.

The CLI (and the Python API) build a `CommonOptions` and a `RunRequest`; the pipeline turns
them into the settings each stage takes (`ProjectSettings`, `StripeSettings`). No stage
imports the CLI.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .errors import ConfigError, StripeConnectionError
from .project import ProjectSettings

# The meter event stream's own base address; without it, STRIPE_API_BASE serves it too.
METER_EVENTS_BASE_ENV = "STRIPE_METER_EVENTS_BASE"

if TYPE_CHECKING:
    from .stripe_api import StripeSettings


@dataclass(frozen=True)
class CommonOptions:
    project_dir: Path
    profiles_dir: Path | None
    profile: str | None
    target: str | None
    target_path: Path | None
    vars: str | None
    select: tuple[str, ...]
    exclude: tuple[str, ...]
    api_key_env: str
    api_base: str | None
    output: str  # text | json | none (the Python API: print nothing)
    manifest: Path | None = None  # any manifest.json (dbt Cloud artifacts, dbt Fusion)


@dataclass(frozen=True)
class RunRequest:
    command: str  # sync | plan
    full_resync: bool = False
    lookup: str = "auto"
    sample: int = 20
    max_failed_pct: float = 0.0
    max_rps: float | None = None
    max_endpoint_rps: float | None = None
    concurrency: int = 16
    request_timeout: float = 30.0
    batch_size: int = 500
    allow_live: bool = False
    # append objects (meter events)
    event_transport: str = "stream"
    max_event_rps: float | None = None
    event_concurrency: int = 32
    resend_uncertain: bool = False
    # on_removed: the most keys one model may remove ("N" or "P%" of its synced keys), and
    # whether a model with no rows may remove anything.
    max_removed: str | None = None
    allow_empty_removal: bool = False
    # Stripe Connect: each connected account's requests/s, and `K/N`: sync only the
    # accounts in shard K of N (an orchestrator runs the N shards side by side).
    max_account_rps: float | None = None
    shard: str | None = None
    # alerts (notify.py): a Slack-compatible webhook posted to when a run fails
    notify_webhook: str | None = None


# The guard's default: 10% of a model's synced keys, and never more than 1,000.
DEFAULT_MAX_REMOVED_PCT = 10.0
DEFAULT_MAX_REMOVED_CAP = 1000


def removal_limit(max_removed: str | None, synced: int) -> tuple[int, str]:
    """How many keys a model may remove in one run, and how the message names the limit.
    `N` is a count, `P%` a share of the synced keys (rounded down)."""
    if max_removed is None:
        limit = min(DEFAULT_MAX_REMOVED_CAP, int(synced * DEFAULT_MAX_REMOVED_PCT / 100))
        return limit, (f"{limit}: the default, {DEFAULT_MAX_REMOVED_PCT:g}% of its synced "
                       f"keys and at most {DEFAULT_MAX_REMOVED_CAP:,}")
    text = max_removed.strip()
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            if not 0 <= pct <= 100:
                raise ValueError
            limit = int(synced * pct / 100)
            return limit, f"{limit}: --max-removed {text} of its synced keys"
        limit = int(text)
        if limit < 0:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--max-removed {max_removed!r} is not a count or a percentage: "
                          "write e.g. --max-removed 50 or --max-removed 5%.") from None
    return limit, f"{limit}: --max-removed {text}"


def parse_shard(shard: str | None) -> tuple[int, int] | None:
    """`--shard K/N` -> (K, N), 1 <= K <= N."""
    if shard is None:
        return None
    k_text, _, n_text = shard.strip().partition("/")
    try:
        k, n = int(k_text), int(n_text)
    except ValueError:
        k = n = 0
    if not 1 <= k <= n:
        raise ConfigError(f"--shard {shard!r} is not K/N with 1 <= K <= N: write e.g. "
                          "--shard 1/4 (the first of four shards).")
    return k, n


def project_settings(common: CommonOptions) -> ProjectSettings:
    variables: dict[str, Any] = {}
    if common.vars:
        try:
            parsed = yaml.safe_load(common.vars)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--vars is not valid YAML: {exc}") from exc
        if not isinstance(parsed, dict):
            raise ConfigError("--vars must be a YAML mapping, e.g. --vars '{key: value}'")
        variables = parsed
    return ProjectSettings(
        project_dir=common.project_dir,
        profiles_dir=common.profiles_dir,
        profile=common.profile,
        target=common.target,
        target_path=common.target_path,
        vars=variables,
        manifest_path=common.manifest,
    )


def stripe_settings(common: CommonOptions, request: RunRequest | None = None) -> StripeSettings:
    """The key comes from an environment variable only: a flag would land in shell history
    and CI logs."""
    from .stripe_api import StripeSettings

    key = os.environ.get(common.api_key_env, "").strip()
    if not key:
        raise StripeConnectionError(
            f"No Stripe API key: set {common.api_key_env} (e.g. export "
            f"{common.api_key_env}=sk_test_...), or name another variable with --api-key-env."
        )
    if not key.startswith(("sk_test_", "sk_live_", "rk_test_", "rk_live_")):
        raise StripeConnectionError(
            f"{common.api_key_env} does not hold a Stripe secret or restricted key "
            "(sk_test_/sk_live_/rk_test_/rk_live_): publishable keys (pk_) cannot write."
        )
    kwargs: dict[str, Any] = {"api_key": key, "api_base": common.api_base,
                              "api_key_env": common.api_key_env,
                              "meter_events_base": os.environ.get(METER_EVENTS_BASE_ENV) or None}
    if request is not None:
        kwargs.update(account_rps=request.max_account_rps)
        kwargs.update(max_rps=request.max_rps, per_endpoint_rps=request.max_endpoint_rps,
                      concurrency=request.concurrency, timeout_seconds=request.request_timeout)
    return StripeSettings(**kwargs)


