"""Runs a command: builds each stage from the run context and chains them.

manifest -> sync specs -> (warehouse diff -> match -> plan -> Stripe writes) -> results.
The CLI calls these functions and nothing deeper; all output goes through report.py.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import notify, report
from .context import (
    CommonOptions,
    RunRequest,
    parse_shard,
    project_settings,
    removal_limit,
    stripe_settings,
)
from .cross_model import check_overlaps
from .dbt_compat import select_models
from .errors import (
    ConfigError,
    LiveModeError,
    ProjectError,
    RemovalGuardError,
    StripeConnectionError,
    WarehouseError,
)
from .meta_block import create_only_warnings, parse_sync_specs
from .objects import DEFAULT_OBJECT
from .project import Manifest, ProjectSettings, load_manifest
from .results import CheckResult, ResetResult, RunResult
from .spec import SyncSpec

if TYPE_CHECKING:
    from .records import ModelResult


def load_specs(settings: ProjectSettings, common: CommonOptions) -> tuple[Manifest, list[SyncSpec]]:
    """The selected models' specs, validated; ConfigError when none is left to sync."""
    manifest = load_manifest(settings)
    models = manifest.synced_models()
    if common.select or common.exclude:
        chosen = select_models(settings, common.select, common.exclude)
        if not chosen:
            raise ConfigError(
                _selection_text(common) + " matches no model of the project. Check the model "
                "names (`dbt ls` lists them), or run without --select to sync every model with "
                "a stripe_activation block."
            )
        models = [m for m in models if m.unique_id in chosen]
        if not models:
            names = sorted(manifest.models[i].name for i in chosen if i in manifest.models)
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise ConfigError(
                f"No model to sync: {_selection_text(common)} selects {len(names)} model(s) "
                f"({shown}), none with a `config.meta.stripe_activation` block. Add the block "
                "as the README shows, or select a model that has one."
            )
    if not models:
        raise ConfigError(
            "No model to sync: no model of the project has a `config.meta.stripe_activation` "
            "block. Add one as the README shows, then `dbt parse` (or `dbt run`)."
        )
    specs = parse_sync_specs(models, manifest.models)
    warnings = check_overlaps(specs)
    warnings += [w for spec in specs for w in create_only_warnings(spec)]
    for warning in warnings:
        report.warn(warning, common.output)
    return manifest, specs


def _selection_text(common: CommonOptions) -> str:
    parts = [f"--select {' '.join(common.select)!r}"] if common.select else []
    parts += [f"--exclude {' '.join(common.exclude)!r}"] if common.exclude else []
    return " ".join(parts)


def _validate_columns(warehouse: Any, specs: list[SyncSpec]) -> None:
    """Every mapped column must exist in the built relation, checked before any API call;
    one error lists every model's missing columns."""
    problems = []
    for spec in specs:
        try:
            warehouse.resolve_columns(spec)
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("\n".join(problems))


def _check_references(warehouse: Any, specs: list[SyncSpec]) -> None:
    """A referenced model that this run does not sync must have synced before: its state
    is where references resolve. Checked before any API call."""
    syncing = {spec.model.unique_id for spec in specs}
    problems = []
    for spec in specs:
        for mapping in spec.references:
            assert mapping.ref is not None
            target = mapping.ref.model
            if target.unique_id in syncing or warehouse.state_count(target) > 0:
                continue
            problems.append(
                f"{spec.model.label}: stripe_activation.fields.{mapping.path}: references "
                f"model '{target.name}', which has no sync state yet, so no key of it "
                f"resolves to a Stripe {mapping.ref.object_name}. Sync '{target.name}' first "
                f"(dbt-stripe-sync --select {target.name}), or select both models."
            )
    if problems:
        raise ConfigError("\n".join(problems))


def removal_guard(warehouse: Any, specs: list[SyncSpec], request: RunRequest) -> list[str]:
    """on_removed: each model's removals weighed before any write. A model with no rows
    removes nothing without --allow-empty-removal (a broken model looks just like that);
    more than --max-removed is refused with the count and the flag that allows it."""
    problems = []
    for spec in specs:
        if not spec.removal.active:
            continue
        removed, synced, rows = warehouse.removal_counts(spec)
        if not removed:
            continue
        mode = spec.removal.mode.value
        if rows == 0 and not request.allow_empty_removal:
            problems.append(
                f"{spec.model.label}: returned no rows, so on_removed: {mode} would remove "
                f"all {removed} of its synced keys. Nothing was written. If the model is "
                "meant to be empty, run again with --allow-empty-removal."
            )
            continue
        limit, how = removal_limit(request.max_removed, synced)
        if removed > limit:
            problems.append(
                f"{spec.model.label}: on_removed: {mode} would remove {removed} of its "
                f"{synced} synced keys, more than allowed ({how}). Nothing was written. "
                f"Check the model; if it is right, run again with --max-removed {removed}."
            )
    return problems


def _ensure_bookkeeping(warehouse: Any) -> None:
    """Create the state tables; a refusal says what was attempted and which grant it needs."""
    from .warehouse import STATE_TABLE

    try:
        warehouse.ensure_bookkeeping()
    except WarehouseError as exc:
        detail = str(exc).rstrip(". ")
        if not any(word in detail.lower() for word in _REFUSED_WORDS):
            raise
        relation = warehouse.bookkeeping_relation(STATE_TABLE)
        schema = relation.rsplit(".", 1)[0]
        raise WarehouseError(
            f"Cannot create the sync state tables in {schema} ({relation}, ...): {detail}. "
            "The user of the dbt profile must be allowed to create that schema and its tables "
            "(PostgreSQL: `grant create on database <database> to <user>`), or an admin "
            "creates the schema and grants the user USAGE and CREATE on it. Then run again."
        ) from exc


# How warehouses word a missing privilege (PostgreSQL, Snowflake, BigQuery, Databricks...).
_REFUSED_WORDS = (
    "permission denied",
    "insufficient privilege",
    "not authorized",
    "access denied",
    "permission_denied",
)


def _rate_pools(specs: list[SyncSpec], mode: str, request: RunRequest) -> dict[str, float]:
    """The separate limits of the synced objects' endpoints (meter events), per mode;
    --max-event-rps overrides them."""
    pools: dict[str, float] = {}
    for spec in specs:
        if spec.object.rate_pool is not None:
            pools.update(spec.object.rate_pool.limits(mode))
    if request.max_event_rps:
        pools = dict.fromkeys(pools, request.max_event_rps)
    return pools


def _project_specs(settings: ProjectSettings) -> list[SyncSpec]:
    """Every synced model's spec, or none while the project cannot be read (check still
    tests the key)."""
    try:
        manifest = load_manifest(settings)
        return parse_sync_specs(manifest.synced_models(), manifest.models)
    except (ConfigError, ProjectError):
        return []


def _check_probes(specs: list[SyncSpec]) -> list[tuple[str, str, dict[str, Any]]]:
    """Each synced object's permission probe (a restricted key must read every object the
    project syncs); the default object's when no model says which."""
    probes: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for obj in [spec.object for spec in specs] or [DEFAULT_OBJECT]:
        service = obj.check.service or obj.service
        probes.setdefault(service, (service, obj.check.method, dict(obj.check.params)))
    return list(probes.values())


def run_check(common: CommonOptions) -> CheckResult:
    from .execution.requirements import required_values
    from .stripe_api import StripeGateway, StripeWriteError
    from .warehouse import Warehouse

    settings = project_settings(common)
    checked: dict[str, Any] = {"command": "check", "stripe": None, "warehouse": None}
    code = 0
    try:
        stripe = stripe_settings(common)
        report.warn_api_base(stripe.api_base, common.output)
        specs = _project_specs(settings)
        gateway = StripeGateway(stripe)
        result = gateway.check(_check_probes(specs))
        _, unmet = required_values(gateway, specs)
        if unmet:
            raise StripeConnectionError("\n".join(unmet))
        checked["stripe"] = {"ok": True, "mode": result.mode, "key_kind": result.key_kind,
                            "method": result.method, "api_base": result.api_base,
                            "detail": result.detail}
    except (StripeConnectionError, StripeWriteError) as exc:
        checked["stripe"] = {"ok": False, "error": str(exc)}
        code = 2
    try:
        manifest = load_manifest(settings)
        with Warehouse.open(settings, manifest) as warehouse:
            checked["warehouse"] = {"ok": True, "detail": warehouse.check()}
    except Exception as exc:  # noqa: BLE001 - every failure here is the report's content
        checked["warehouse"] = {"ok": False, "error": str(exc)}
        code = 2
    outcome = CheckResult(exit_code=code, stripe=checked["stripe"],
                          warehouse=checked["warehouse"])
    report.render_check(outcome.as_document(), output=common.output)
    return outcome


def run_exposures(common: CommonOptions, write: Path | None,
                  owner: str | None) -> dict[str, Any]:
    """The selected synced models as dbt exposures (the YAML's document): printed, or written
    to `write` (a path relative to the project directory), which `dbt parse` then reads."""
    from . import lineage

    settings = project_settings(common)
    manifest, specs = load_specs(settings, common)
    document = lineage.exposures_document(specs, manifest.project_name, owner)
    if write is None:
        if common.output == "json":
            print(report.dumps(document))
        elif common.output == "text":
            print(lineage.render(document), end="")
        return document
    path = write if write.is_absolute() else settings.project_dir / write
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(lineage.render(document))
    if common.output == "json":
        print(report.dumps({"path": str(path), **document}))
    elif common.output == "text":
        names = ", ".join(e["name"] for e in document["exposures"])
        print(f"Wrote {len(document['exposures'])} exposure(s) to {path}: {names}")
    return document


def run_reset(common: CommonOptions) -> ResetResult:
    from .warehouse import Warehouse

    settings = project_settings(common)
    manifest, specs = load_specs(settings, common)
    cleared: dict[str, int] = {}
    with Warehouse.open(settings, manifest) as warehouse:
        _ensure_bookkeeping(warehouse)
        for spec in specs:
            cleared[spec.model.name] = warehouse.reset_state(spec.model)
    report.render_reset(cleared, output=common.output)
    return ResetResult(cleared=cleared)


# The collector's thresholds while models sync: a young collection every 10,000 net
# allocations instead of 700, and full ones rarely (the rows are not cyclic garbage).
_SYNC_GC_THRESHOLDS = (10_000, 20, 20)


@contextmanager
def _start_up_out_of_gc() -> Iterator[None]:
    """What start-up built (dbt's manifest and adapter: millions of objects) is left out of
    the collector while models sync, and collections are rarer. Otherwise a full collection
    walks all of it every few thousand events: 100-250 ms holding the interpreter, which
    wakes the paced sending threads that late (a burst, then 429s) and costs about a fifth
    of the main thread (benchmarks/RESULTS.md, usage (d)). Both are undone afterwards, for
    a process that goes on (the Python API, an orchestrator)."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*_SYNC_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@notify.reported
def run_sync(common: CommonOptions, request: RunRequest) -> RunResult:
    from .execution.engine import Engine
    from .execution.options import SyncOptions, new_run_id
    from .match import LookupStrategy
    from .stripe_api import StripeGateway
    from .warehouse import Warehouse

    settings = project_settings(common)
    shard = parse_shard(request.shard)
    # A run refused before it starts must not leave the last run's results for CI to read.
    report.results_path(settings.resolved_target_path, shard).unlink(missing_ok=True)
    notify.check_webhook(request)
    removal_limit(request.max_removed, 0)  # a bad --max-removed fails before anything
    manifest, specs = load_specs(settings, common)
    stripe = stripe_settings(common, request)
    dry_run = request.command == "plan"
    if stripe.mode == "live" and not dry_run and not request.allow_live:
        raise LiveModeError(
            f"{common.api_key_env} holds a live-mode key: pass --allow-live (or set "
            "DBT_STRIPE_SYNC_ALLOW_LIVE=1) to write production data. `plan` and `check` "
            "work without it."
        )
    report.warn_api_base(stripe.api_base, common.output)
    stripe = replace(stripe, separate_pools=_rate_pools(specs, stripe.mode, request))
    options = SyncOptions(
        dry_run=dry_run, full_resync=request.full_resync, batch_size=request.batch_size,
        lookup=LookupStrategy(request.lookup), concurrency=request.concurrency,
        sample_size=request.sample, event_transport=request.event_transport,
        event_concurrency=request.event_concurrency,
        resend_uncertain=request.resend_uncertain,
    )
    run_id = new_run_id()
    results: list[ModelResult] = []
    error: str | None = None
    with Warehouse.open(settings, manifest) as warehouse:
        warehouse.shard = shard
        _validate_columns(warehouse, specs)
        _ensure_bookkeeping(warehouse)
        _check_references(warehouse, specs)
        refused = removal_guard(warehouse, specs, request)
        if refused and not dry_run:
            raise RemovalGuardError("\n".join(refused))
        gateway = StripeGateway(stripe)
        with report.ModelProgress(disabled=common.output != "text") as progress, \
                _start_up_out_of_gc():
            engine = Engine(warehouse, gateway, options, on_progress=progress.update_model)
            engine.expect_references(specs)
            engine.check_requirements(specs)
            for spec in specs:
                result = engine.run_model(spec, run_id)
                results.append(result)
                if result.exception is not None:
                    error = f"{spec.model.name}: {result.error}"
                    if isinstance(result.exception, (StripeConnectionError, WarehouseError)):
                        break  # a refused key or a lost warehouse fails every model
        for notice in gateway.take_notices():  # a server unlike Stripe: said once
            report.warn(notice, common.output)
    code = report.exit_code(results, request.max_failed_pct)
    if refused:  # plan: shows the removals, and fails as the sync would
        code, error = report.EXIT_ERROR, "\n".join([*refused, *([error] if error else [])])
    document = report.results_document(
        request.command, run_id, results, code,
        stripe={"mode": stripe.mode, "api_base": stripe.api_base}, error=error)
    path = report.write_results_file(settings.resolved_target_path, document, shard)
    report.render_run(document, results, dry_run, path, error, output=common.output)
    return RunResult.from_document(report.json_safe(document), path)
