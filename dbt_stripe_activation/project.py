"""The dbt project handle: where it lives, which profile/target, and its manifest read as JSON.

This is the one boundary that reads manifest JSON: downstream stages get DbtModel objects.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ProjectError

META_KEY = "stripe_activation"


@dataclass(frozen=True)
class ProjectSettings:
    """What locates the user's dbt project and profile, named as dbt names its flags."""

    project_dir: Path = Path(".")
    profiles_dir: Path | None = None
    profile: str | None = None
    target: str | None = None
    target_path: Path | None = None
    vars: Mapping[str, Any] = field(default_factory=dict)
    # --manifest: any manifest.json (a dbt Cloud run's artifact, dbt Fusion's), read instead
    # of <target-path>/manifest.json; the profile still comes from the local project.
    manifest_path: Path | None = None

    @property
    def resolved_profiles_dir(self) -> Path:
        """dbt's order: flag, DBT_PROFILES_DIR, the project dir's profiles.yml, ~/.dbt."""
        if self.profiles_dir is not None:
            return self.profiles_dir
        env = os.environ.get("DBT_PROFILES_DIR")
        if env:
            return Path(env)
        if (self.project_dir / "profiles.yml").exists():
            return self.project_dir
        return Path.home() / ".dbt"

    @property
    def resolved_target_path(self) -> Path:
        """The flag, then DBT_TARGET_PATH, then dbt_project.yml's target-path, then target/."""
        if self.target_path is not None:
            path = self.target_path
        elif os.environ.get("DBT_TARGET_PATH"):
            path = Path(os.environ["DBT_TARGET_PATH"])
        else:
            path = Path(_project_target_path(self.project_dir))
        return path if path.is_absolute() else self.project_dir / path

    @property
    def resolved_manifest_path(self) -> Path:
        if self.manifest_path is not None:
            return self.manifest_path
        return self.resolved_target_path / "manifest.json"


def _project_target_path(project_dir: Path) -> str:
    """target-path from dbt_project.yml when it is a plain string (not Jinja), else 'target'."""
    import yaml

    try:
        data = yaml.safe_load((project_dir / "dbt_project.yml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return "target"
    value = data.get("target-path")
    if isinstance(value, str) and "{{" not in value:
        return value
    return "target"


@dataclass(frozen=True)
class DbtModel:
    """One model of the manifest, as the sync needs it."""

    unique_id: str
    name: str
    package_name: str
    relation_name: str | None
    database: str | None
    schema: str
    alias: str
    original_file_path: str
    # The merged `config.meta.stripe_activation` block (falling back to top-level `meta`).
    sync_block: Any
    declared_columns: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()  # unique ids of the nodes it selects from
    materialized: str = ""
    # `meta.owner` (a name, an email, or {name, email}): who an exposure names.
    owner: Any = None

    @property
    def label(self) -> str:
        """How messages name the model: its name and the file that declares it."""
        return f"model '{self.name}' ({self.original_file_path})"


@dataclass(frozen=True)
class Manifest:
    """The models of `target/manifest.json`, keyed by unique id, plus the raw file's path."""

    path: Path
    models: Mapping[str, DbtModel]
    project_name: str
    dbt_version: str = ""  # of the dbt that wrote it: 1.x is dbt-core, 2.x dbt Fusion

    def synced_models(self) -> list[DbtModel]:
        """Every model with a `stripe_activation` block, in a stable order."""
        return sorted(
            (m for m in self.models.values() if m.sync_block is not None),
            key=lambda m: m.unique_id,
        )


def load_manifest(settings: ProjectSettings) -> Manifest:
    """Read the manifest (`<target-path>/manifest.json`, or --manifest) into DbtModel objects.

    Plain JSON, no dbt-core: a v12 manifest from dbt-core or dbt Fusion alike, fields this
    reader does not know ignored, nulls read as absent (Fusion writes `meta: null`)."""
    path = settings.resolved_manifest_path
    raw = read_manifest_json(path, settings)
    models: dict[str, DbtModel] = {}
    for unique_id, node in raw["nodes"].items():
        if isinstance(node, Mapping) and node.get("resource_type") == "model":
            models[unique_id] = model_from_node(unique_id, node)
    metadata = raw.get("metadata") or {}
    return Manifest(path=path, models=models, project_name=metadata.get("project_name") or "",
                    dbt_version=str(metadata.get("dbt_version") or ""))


def read_manifest_json(path: Path, settings: ProjectSettings) -> dict[str, Any]:
    """The manifest as a dict; ProjectError naming the path when it is missing, unreadable or
    not a manifest (a run_results.json or catalog.json downloaded by mistake)."""
    if not path.is_file():
        if settings.manifest_path is not None:
            what = "is a directory" if path.is_dir() else "does not exist"
            raise ProjectError(
                f"--manifest {path} {what}: pass the path of a manifest.json file (a dbt "
                "Cloud run's artifact, or target/manifest.json of a dbt run)."
            )
        raise ProjectError(
            f"No dbt manifest at {path}. Run `dbt run` (or `dbt parse`) in "
            f"{settings.project_dir.resolve()} first, or pass --target-path."
        )
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProjectError(f"Cannot read the dbt manifest at {path}: {exc}") from exc
    if not _is_manifest(raw):
        raise ProjectError(
            f"{path} is not a dbt manifest: pass the manifest.json that dbt writes (not "
            "run_results.json or catalog.json)."
        )
    return raw


def _is_manifest(raw: Any) -> bool:
    """Nodes, and no other artifact's schema (catalog.json has nodes too)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("nodes"), dict):
        return False
    metadata = raw.get("metadata")
    schema = str(metadata.get("dbt_schema_version") or "") if isinstance(metadata, dict) else ""
    return not schema or "/manifest/" in schema


def is_fusion(dbt_version: str) -> bool:
    """Written by dbt Fusion (dbt 2.x), whose manifest dbt-core's classes may not read as is."""
    major = dbt_version.split(".", 1)[0]
    return major.isdigit() and int(major) >= 2


def model_from_node(unique_id: str, node: Mapping[str, Any]) -> DbtModel:
    config = node.get("config") or {}
    config_meta = config.get("meta") or {}
    meta = node.get("meta") or {}
    block = config_meta.get(META_KEY, meta.get(META_KEY))
    return DbtModel(
        unique_id=unique_id,
        name=node["name"],
        package_name=node.get("package_name", ""),
        relation_name=node.get("relation_name"),
        database=node.get("database"),
        schema=node.get("schema") or "",
        alias=node.get("alias") or node["name"],
        original_file_path=node.get("original_file_path") or "",
        sync_block=block,
        declared_columns=tuple((node.get("columns") or {}).keys()),
        depends_on=tuple((node.get("depends_on") or {}).get("nodes") or ()),
        materialized=str(config.get("materialized") or ""),
        owner=config_meta.get("owner", meta.get("owner")),
    )
