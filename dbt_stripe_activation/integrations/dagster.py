"""Dagster assets for the synced models (`pip install "dbt-stripe-activation[dagster]"`).

One asset per model with a `stripe_activation` block, downstream of the asset dagster-dbt
gives that model (and of the Stripe assets of the models it references), materialized by
syncing that one model with the Python API. The counts are the materialization's metadata;
a run that is not ok, or a user error, fails the asset.

    from dbt_stripe_activation.integrations.dagster import build_stripe_sync_assets
    stripe_assets = build_stripe_sync_assets(project_dir=my_dbt_project)
"""

# No `from __future__ import annotations`: Dagster reads the compute function's `context`
# annotation at definition time, as a class.

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtProject

from ..api import common_options
from ..context import RunRequest
from ..cross_model import order_by_references
from ..errors import ConfigError, SyncError
from ..meta_block import parse_sync_spec
from ..project import DbtModel, ProjectSettings, model_from_node, read_manifest_json
from ..results import PROBLEM_OUTCOMES, ModelRun, RunResult, problem_lines
from ..spec import SyncSpec

__all__ = ["build_stripe_sync_assets"]

# The factory chooses these per asset; the rest of the API's options pass through.
_SET_BY_FACTORY = frozenset({"project_dir", "profiles_dir", "profile", "target",
                             "target_path", "manifest", "select", "exclude", "output"})
_SYNC_OPTIONS = (frozenset(common_options.__kwdefaults__ or ())
                 | (frozenset(RunRequest.__dataclass_fields__) - {"command", "sample"}))
_PROBLEMS_SHOWN = 5  # rows named in a failure's description


def build_stripe_sync_assets(
    manifest: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    project_dir: DbtProject | str | os.PathLike[str] | None = None,
    profiles_dir: str | os.PathLike[str] | None = None,
    profile: str | None = None,
    target: str | None = None,
    target_path: str | os.PathLike[str] | None = None,
    dagster_dbt_translator: DagsterDbtTranslator | None = None,
    key_prefix: str | Sequence[str] = "stripe",
    group_name: str | None = "stripe",
    **sync_options: Any,
) -> list[dg.AssetsDefinition]:
    """One asset per synced model of the manifest.

    `project_dir` is the dbt project, a dagster-dbt `DbtProject` or its directory (as
    `DbtCliResource` takes it); its profiles dir, profile, target and target path are the
    defaults of the arguments of the same names. `manifest` (a path or the parsed JSON)
    defaults to the project's `<target-path>/manifest.json`. An asset's key is `key_prefix`
    followed by the key the translator (the one given to `@dbt_assets`) gives the model, and
    it depends on that key. `sync_options` are `sync()`'s run options (max_failed_pct,
    full_resync, max_rps, api_key_env, api_base, vars...); the Stripe key is only ever read
    from the environment variable `api_key_env` names, when an asset materializes.
    """
    unknown = sorted(set(sync_options) - _SYNC_OPTIONS)
    fixed = sorted(set(sync_options) & _SET_BY_FACTORY)
    if unknown or fixed:
        problems = ([f"unknown sync option(s): {', '.join(unknown)}"] if unknown else [])
        problems += ([f"{', '.join(fixed)} set per asset by the factory"] if fixed else [])
        raise TypeError(f"build_stripe_sync_assets(): {'; '.join(problems)}; options: "
                        f"{', '.join(sorted(_SYNC_OPTIONS - _SET_BY_FACTORY))}")

    dbt_project: DbtProject | None = None
    if isinstance(project_dir, DbtProject):
        dbt_project = project_dir
        root = dbt_project.project_dir
        profiles_dir = profiles_dir if profiles_dir is not None else dbt_project.profiles_dir
        profile = profile or dbt_project.profile
        target = target or dbt_project.target
        target_path = target_path if target_path is not None else dbt_project.target_path
    else:
        root = Path(project_dir if project_dir is not None else ".")
    manifest_path = None if isinstance(manifest, Mapping) or manifest is None else Path(manifest)
    project: dict[str, Any] = {
        "project_dir": str(root), "profiles_dir": _opt_str(profiles_dir), "profile": profile,
        "target": target, "target_path": _opt_str(target_path),
        "manifest": _opt_str(manifest_path),
    }
    if isinstance(manifest, Mapping):
        raw = manifest
    else:
        settings = ProjectSettings(
            project_dir=root, target_path=Path(target_path) if target_path is not None else None,
            manifest_path=manifest_path)
        raw = read_manifest_json(settings.resolved_manifest_path, settings)

    translator = dagster_dbt_translator or DagsterDbtTranslator()
    prefix = [key_prefix] if isinstance(key_prefix, str) else list(key_prefix)
    models = _models(raw)
    synced = sorted((m for m in models.values() if m.sync_block is not None),
                    key=lambda m: m.unique_id)
    specs = _specs(synced, models)
    keys = {m.unique_id: translator.get_asset_spec(raw, m.unique_id, dbt_project).key
            for m in synced}
    return [
        _sync_asset(
            model, specs.get(model.unique_id), raw["nodes"][model.unique_id],
            key=dg.AssetKey([*prefix, *keys[model.unique_id].path]),
            deps=[keys[model.unique_id], *(
                dg.AssetKey([*prefix, *keys[uid].path]) for uid in _referenced(
                    specs.get(model.unique_id)) if uid in keys)],
            group_name=group_name, options={**sync_options, **project},
        )
        for model in synced
    ]


def _opt_str(value: str | os.PathLike[str] | None) -> str | None:
    return None if value is None else str(value)


def _models(raw: Mapping[str, Any]) -> dict[str, DbtModel]:
    """The manifest's models as the sync reads them (project.py's reading of a node)."""
    return {uid: model_from_node(uid, node) for uid, node in (raw.get("nodes") or {}).items()
            if node.get("resource_type") == "model"}


def _specs(synced: list[DbtModel], models: Mapping[str, DbtModel]) -> dict[str, SyncSpec]:
    """The valid blocks' specs, for their references. A broken block is left out here and
    fails its own asset with the sync's message, not the whole code location; a reference
    cycle (no model could ever sync first) fails the definitions."""
    specs: dict[str, SyncSpec] = {}
    for model in synced:
        try:
            specs[model.unique_id] = parse_sync_spec(model, models)
        except ConfigError:
            continue
    order_by_references(list(specs.values()))
    return specs


def _referenced(spec: SyncSpec | None) -> list[str]:
    if spec is None:
        return []
    return sorted({m.ref.model.unique_id for m in spec.references if m.ref is not None})


def _selector(model: DbtModel, node: Mapping[str, Any]) -> str:
    """dbt selection syntax for exactly this model: its full fqn, intersected with its name
    (an fqn alone also selects what lies under a directory of the same name)."""
    fqn = node.get("fqn")
    return f"fqn:{'.'.join(fqn)},{model.name}" if fqn else model.name


def _sync_asset(model: DbtModel, spec: SyncSpec | None, node: Mapping[str, Any], *,
                key: dg.AssetKey, deps: list[dg.AssetKey], group_name: str | None,
                options: Mapping[str, Any]) -> dg.AssetsDefinition:
    what = (f"Stripe {spec.object.name} objects ({spec.behavior.value}, keyed on "
            f"{spec.key.field})" if spec is not None else "Stripe")
    metadata: dict[str, Any] = {"stripe_activation/model": model.unique_id}
    if spec is not None:
        metadata.update({"stripe_activation/object": spec.object.name,
                         "stripe_activation/behavior": spec.behavior.value,
                         "stripe_activation/key": spec.key.field})
    select = _selector(model, node)

    @dg.asset(key=key, deps=deps, group_name=group_name, kinds={"stripe"},
              description=f"Syncs dbt model `{model.name}` into {what}.", metadata=metadata)
    def _sync(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        from ..api import sync

        context.log.info(f"dbt-stripe-sync --select {select!r}")
        try:
            result = sync(**options, select=select, output="none")
        except SyncError as exc:
            raise dg.Failure(
                description=f"Stripe sync of model '{model.name}' could not run: "
                            f"{_redact(str(exc))}",
                metadata={"error": type(exc).__name__},
            ) from None
        run = next((m for m in result.models if m.unique_id == model.unique_id), None)
        if run is None:
            raise dg.Failure(description=f"Stripe sync of model '{model.name}': --select "
                                         f"{select!r} did not select it.")
        result_metadata = _result_metadata(result, run)
        if not result.ok:
            raise dg.Failure(description=_failure_text(result, run),
                             metadata=result_metadata)
        return dg.MaterializeResult(metadata=result_metadata)

    return _sync


def _result_metadata(result: RunResult, run: ModelRun) -> dict[str, dg.MetadataValue]:
    """Counts per outcome, requests, time and where the results are; nothing else of the
    document (diff samples hold customer data), and never the key (it is not in it)."""
    metadata: dict[str, dg.MetadataValue] = {
        outcome: dg.MetadataValue.int(count) for outcome, count in run.counts.items()}
    metadata.update({
        "stripe_writes": dg.MetadataValue.int(run.stripe_writes),
        "stripe_reads": dg.MetadataValue.int(run.stripe_reads),
        "seconds": dg.MetadataValue.float(run.seconds),
        "status": dg.MetadataValue.text(run.status),
        "stripe_mode": dg.MetadataValue.text(
            str((result.document.get("stripe") or {}).get("mode") or "")),
        "sync_run_id": dg.MetadataValue.text(result.run_id),
        "results_path": dg.MetadataValue.path(str(result.results_path)),
    })
    return metadata


def _failure_text(result: RunResult, run: ModelRun) -> str:
    """What failed, as the CLI prints it: the model's error, or the rows that did not sync
    (the first few, key and reason), and where the whole results are."""
    lines = [f"Stripe sync of model '{run.model}' failed (exit code {result.exit_code})"
             + (f": {run.error}" if run.error else ".")]
    if run.problems:
        counts = ", ".join(f"{o} {run.counts[o]}" for o in PROBLEM_OUTCOMES if run.counts.get(o))
        total = sum(run.counts.values())
        lines.append(f"{run.problems} of {total} row(s) did not sync ({counts}):")
        entry: Mapping[str, Any] = next(
            (m for m in result.document.get("models", ()) if m.get("unique_id") == run.unique_id),
            {})
        lines += problem_lines(entry, _PROBLEMS_SHOWN)
    lines.append(f"Results: {result.results_path}")
    return _redact("\n".join(lines))


def _redact(text: str) -> str:
    from ..stripe_api import redact

    return redact(text)
