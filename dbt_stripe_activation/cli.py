"""The command line: thin click commands over the pipeline.

Parse flags (named as dbt names them), build the stages, run them, render. Known errors
become one clean message and an exit code here, at the edge, never a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .context import CommonOptions, RunRequest
from .errors import SyncError

LIVE_OPT_IN_ENV = "DBT_STRIPE_SYNC_ALLOW_LIVE"


class DefaultGroup(click.Group):
    """`dbt-stripe-sync` alone (or followed by options) means `dbt-stripe-sync sync`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h",
                                                                          "--version")):
            args = ["sync", *args]
        return super().parse_args(ctx, args)


def common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The dbt project flags, the Stripe connection flags and --output, shared by commands."""
    options = [
        click.option("--project-dir", type=click.Path(file_okay=False, path_type=Path),
                     default=Path("."), envvar="DBT_PROJECT_DIR", show_default=True,
                     help="The dbt project directory."),
        click.option("--profiles-dir", type=click.Path(file_okay=False, path_type=Path),
                     envvar="DBT_PROFILES_DIR",
                     help="Where profiles.yml is (dbt's default order applies)."),
        click.option("--profile", help="The profile to use (default: dbt_project.yml's)."),
        click.option("--target", "-t", help="The target of the profile to use."),
        click.option("--target-path", type=click.Path(file_okay=False, path_type=Path),
                     envvar="DBT_TARGET_PATH",
                     help="Where manifest.json is and stripe_sync_results.json goes."),
        click.option("--manifest", type=click.Path(path_type=Path),
                     help="Read this manifest.json (e.g. a dbt Cloud run's artifact, or dbt "
                     "Fusion's) instead of <target-path>/manifest.json; the warehouse comes "
                     "from the local profile."),
        click.option("--vars", help="dbt vars, as YAML, as `dbt run --vars`."),
        click.option("--select", "-s", multiple=True,
                     help="dbt selection syntax (resolved by dbt itself)."),
        click.option("--exclude", multiple=True, help="dbt selection syntax to leave out."),
        click.option("--api-key-env", default="STRIPE_API_KEY", show_default=True,
                     help="The environment variable holding the Stripe key (never a flag)."),
        click.option("--api-base", envvar="STRIPE_API_BASE",
                     help="Another Stripe API base, e.g. a local emulator."),
        click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text",
                     show_default=True, help="json prints machine-readable results only."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _common(kwargs: dict[str, Any]) -> CommonOptions:
    names = CommonOptions.__dataclass_fields__
    return CommonOptions(**{k: kwargs.pop(k) for k in list(kwargs) if k in names})


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dbt-stripe-activation")
def main() -> None:
    """Sync dbt models into Stripe, as declared in each model's `stripe_activation` meta."""


def _handle_errors(func: Callable[..., int]) -> Callable[..., None]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        output = kwargs.get("output", "text")
        try:
            code = func(*args, **kwargs)
        except SyncError as exc:
            from .report import render_error

            render_error(str(exc), type(exc).__name__, exc.exit_code, json_mode=output == "json")
            code = exc.exit_code
        except KeyboardInterrupt:
            code = 130
        sys.exit(code)

    return wrapper


@main.command()
@common_options
@_handle_errors
def check(**kwargs: Any) -> int:
    """Test the connections: the Stripe key (a Balance read, or a customers list for a
    restricted key) and the warehouse of the dbt profile."""
    from .pipeline import run_check

    return run_check(_common(kwargs)).exit_code


def run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """How a plan or sync reads and paces: shared by both, so a plan reads as its sync
    would."""
    options = [
        click.option("--full-resync", is_flag=True,
                     help="Ignore stored hashes; re-plan every row (still matching, never "
                     "duplicating)."),
        click.option("--lookup", type=click.Choice(["auto", "index", "per-row"]),
                     default="auto", show_default=True,
                     help="How unknown keys are matched in Stripe."),
        click.option("--max-failed-pct", type=click.FloatRange(0, 100), default=0.0,
                     show_default=True,
                     help="Exit 0 while rejected+failed rows stay within P%."),
        click.option("--max-rps", type=click.FloatRange(min=0.1), default=None,
                     help="Global requests/s (default: 100 live, 25 test mode)."),
        click.option("--max-endpoint-rps", type=click.FloatRange(min=0.1), default=None,
                     help="Requests/s per endpoint (default 25, as Stripe's newest docs say)."),
        click.option("--concurrency", type=click.IntRange(1, 256), default=16,
                     show_default=True, help="Requests in flight at most."),
        click.option("--request-timeout", type=click.FloatRange(min=0.1), default=30.0,
                     show_default=True, help="Seconds before a Stripe request is abandoned "
                     "(and retried with the same idempotency key)."),
        click.option("--batch-size", type=click.IntRange(1, 100_000), default=500,
                     show_default=True, help="Rows fetched from the warehouse at a time."),
        click.option("--event-transport", type=click.Choice(["stream", "v1"]),
                     default="stream", show_default=True,
                     help="Meter events: the v2 stream (100 events a request) or v1 (one a "
                     "request, with an idempotency key)."),
        click.option("--max-event-rps", type=click.FloatRange(min=0.1), default=None,
                     help="Meter event requests/s, a pool apart from the global limit "
                     "(default: Stripe's published live figures; a tenth in test mode)."),
        click.option("--event-concurrency", type=click.IntRange(1, 512), default=32,
                     show_default=True, help="Meter event requests in flight at most."),
        click.option("--max-removed", metavar="N|P%",
                     help="on_removed: the most keys one model may archive or delete in a "
                     "run, a count or a share of its synced keys (default: 10%, at most "
                     "1,000); more refuses the whole run before any write."),
        click.option("--max-account-rps", type=click.FloatRange(min=0.1), default=None,
                     help="Stripe Connect: each connected account's requests/s (default: "
                     "the mode's limit, which Stripe applies per account)."),
        click.option("--shard", metavar="K/N",
                     help="Stripe Connect: sync only the accounts of shard K of N (by a hash "
                     "of the account id), under a lock of its own; run the N shards side by "
                     "side from an orchestrator."),
        click.option("--allow-empty-removal", is_flag=True,
                     help="on_removed: let a model that returns no rows remove its keys "
                     "(refused by default: an empty model is usually a broken one)."),
        click.option("--resend-uncertain", is_flag=True,
                     help="Send again events sent over 23 hours ago and never acknowledged "
                     "(they may have landed: check the meter first)."),
        click.option("--notify-webhook", metavar="URL",
                     help="Post a Slack-compatible summary here when the run fails or exceeds "
                     "--max-failed-pct (default: $DBT_STRIPE_SYNC_NOTIFY_WEBHOOK)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@main.command()
@common_options
@click.option("--write", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the YAML to this file (relative to the project directory, e.g. "
              "models/stripe_exposures.yml) instead of printing it.")
@click.option("--owner", default=None,
              help="The exposures' owner, a name or an email (default: each model's "
              "meta.owner, else dbt-stripe-sync).")
@_handle_errors
def exposures(write: Path | None, owner: str | None, **kwargs: Any) -> int:
    """dbt exposures for the synced models: Stripe in dbt's lineage and docs, and
    `dbt build --select +exposure:stripe_sync_<model>` builds what a sync needs."""
    from .pipeline import run_exposures

    run_exposures(_common(kwargs), write, owner)
    return 0


def _request(command: str, kwargs: dict[str, Any], **extra: Any) -> RunRequest:
    names = RunRequest.__dataclass_fields__
    return RunRequest(command=command, **{k: kwargs.pop(k) for k in list(kwargs) if k in names},
                      **extra)


@main.command()
@common_options
@run_options
@click.option("--sample", default=20, show_default=True, help="Rows whose diffs are shown.")
@_handle_errors
def plan(**kwargs: Any) -> int:
    """Preview a sync: creates, updates, replacements, unchanged, not found, rejected, field
    diffs. Reads Stripe, writes nothing to it."""
    from .pipeline import run_sync

    request = _request("plan", kwargs)
    return run_sync(_common(kwargs), request).exit_code


@main.command()
@common_options
@run_options
@click.option("--reset-state", is_flag=True,
              help="Clear the selected models' sync state and exit; sends nothing to Stripe.")
@click.option("--allow-live", is_flag=True, envvar=LIVE_OPT_IN_ENV,
              help=f"Allow a live-mode key to write (or set {LIVE_OPT_IN_ENV}=1).")
@_handle_errors
def sync(reset_state: bool, **kwargs: Any) -> int:
    """Sync the selected models into Stripe (the default command)."""
    from .pipeline import run_reset, run_sync

    request = _request("sync", kwargs)
    common = _common(kwargs)
    if reset_state:
        return run_reset(common).exit_code
    return run_sync(common, request).exit_code


if __name__ == "__main__":  # python -m dbt_stripe_activation.cli
    main()
