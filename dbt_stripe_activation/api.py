"""The Python API: `sync`, `plan`, `check` and `reset_state`, with the CLI's options as
keyword arguments and typed results.

The CLI, the Dagster assets and the Airflow operator are thin layers over these functions,
so every path runs the same pipeline. Errors a user can cause (a bad block, no manifest, a
refused key) raise `SyncError` subclasses with the message the CLI would print; rows that
fail do not raise: they are in the result, whose `exit_code` says what the CLI would exit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .context import CommonOptions, RunRequest
from .results import CheckResult, ResetResult, RunResult

OUTPUTS = ("none", "text", "json")


def _selection(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """`"a b"`, `["a", "b"]` and `None` alike: dbt takes a space-separated union in one
    item, as `--select "a b"` does."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _vars(value: str | Mapping[str, Any] | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(dict(value))  # JSON is YAML: parsed as --vars is


def _path(value: str | os.PathLike[str] | None, env: str | None = None) -> Path | None:
    if value is None and env:
        value = os.environ.get(env) or None
    return Path(value) if value is not None else None


def common_options(
    *,
    project_dir: str | os.PathLike[str] | None = None,
    profiles_dir: str | os.PathLike[str] | None = None,
    profile: str | None = None,
    target: str | None = None,
    target_path: str | os.PathLike[str] | None = None,
    manifest: str | os.PathLike[str] | None = None,
    vars: str | Mapping[str, Any] | None = None,
    select: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    api_key_env: str = "STRIPE_API_KEY",
    api_base: str | None = None,
    output: str = "none",
) -> CommonOptions:
    """The project and connection options, defaulted from the environment as the CLI's
    flags are (DBT_PROJECT_DIR, DBT_PROFILES_DIR, DBT_TARGET_PATH, STRIPE_API_BASE)."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
    return CommonOptions(
        project_dir=_path(project_dir, "DBT_PROJECT_DIR") or Path("."),
        profiles_dir=_path(profiles_dir, "DBT_PROFILES_DIR"),
        profile=profile,
        target=target,
        target_path=_path(target_path, "DBT_TARGET_PATH"),
        manifest=_path(manifest),
        vars=_vars(vars),
        select=_selection(select),
        exclude=_selection(exclude),
        api_key_env=api_key_env,
        api_base=api_base if api_base is not None else os.environ.get("STRIPE_API_BASE"),
        output=output,
    )


def _run_request(command: str, options: Mapping[str, Any]) -> RunRequest:
    names = set(RunRequest.__dataclass_fields__) - {"command"}
    unknown = sorted(set(options) - names)
    if unknown:
        raise TypeError(f"{command}() got unknown option(s): {', '.join(unknown)}; it takes "
                        f"{', '.join(sorted(names))} besides the project options")
    return RunRequest(command=command, **options)


def sync(**options: Any) -> RunResult:
    """Sync the selected models into Stripe, as `dbt-stripe-sync sync` does.

    Project options: project_dir, profiles_dir, profile, target, target_path, manifest,
    vars, select, exclude, api_key_env, api_base, output ("none" prints nothing, "text" the
    CLI's summary, "json" the document). Run options: as the CLI's flags, in snake case
    (full_resync, lookup, max_failed_pct, max_rps, max_endpoint_rps, concurrency,
    request_timeout, batch_size, allow_live, event_transport, max_event_rps,
    event_concurrency, resend_uncertain, ...). Clearing state is `reset_state()`.
    """
    from .pipeline import run_sync

    common, rest = _split(options)
    return run_sync(common, _run_request("sync", rest))


def plan(**options: Any) -> RunResult:
    """Preview a sync: what would be created, updated, replaced, sent, rejected; reads
    Stripe, writes nothing to it. Takes `sync`'s options and `sample` (diffs shown)."""
    from .pipeline import run_sync

    common, rest = _split(options)
    return run_sync(common, _run_request("plan", rest))


def check(**options: Any) -> CheckResult:
    """Test the Stripe key and the warehouse of the dbt profile; takes the project
    options."""
    from .pipeline import run_check

    return run_check(common_options(**options))


def reset_state(**options: Any) -> ResetResult:
    """Clear the selected models' sync state (nothing is sent to Stripe): the next sync
    matches every row again by its key."""
    from .pipeline import run_reset

    return run_reset(common_options(**options))


def exposures(write: str | os.PathLike[str] | None = None, owner: str | None = None,
              **options: Any) -> dict[str, Any]:
    """The synced models as dbt exposures, as `dbt-stripe-sync exposures` makes them: the
    YAML's document, also written to `write` (relative to the project directory) when
    given. Takes the project options and `owner`."""
    from .pipeline import run_exposures

    return run_exposures(common_options(**options), _path(write), owner)


_COMMON_NAMES = frozenset(common_options.__kwdefaults__ or ())


def _split(options: Mapping[str, Any]) -> tuple[CommonOptions, dict[str, Any]]:
    common = {k: v for k, v in options.items() if k in _COMMON_NAMES}
    rest = {k: v for k, v in options.items() if k not in _COMMON_NAMES}
    return common_options(**common), rest
