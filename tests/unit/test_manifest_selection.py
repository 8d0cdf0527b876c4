"""Selection from the manifest: `--select/--exclude` resolved by dbt's own selector on the
manifest the sync reads (no project parse), with dbt's semantics (the same ids as `dbt ls`),
on a dbt-core manifest and on dbt Fusion's; and the manifest reader's edges.

One dbt project is parsed once (`dbt parse`, no warehouse query): a small DAG of staging and
mart models, tags, a path, a materialization, a disabled model and a test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dbt_stripe_activation.dbt_compat import list_models, read_dbt_manifest, select_models
from dbt_stripe_activation.errors import ProjectError
from dbt_stripe_activation.project import ProjectSettings, is_fusion, load_manifest
from tests.customers import SYNC_BY_METADATA, rows
from tests.fusion_manifest import write_fusion_manifest
from tests.integration.dbtproj import DbtProject, new_project

# model -> (SQL, subdirectory, config)
DAG = {
    "stg_customers": ("select * from {{ ref('crm') }}", "staging", {"tags": ["staging"]}),
    "stg_plans": ("select 'free' as plan", "staging", {"tags": ["staging"]}),
    "stripe_customers": ("select * from {{ ref('stg_customers') }} join {{ ref('stg_plans') }} "
                         "using (plan)", "marts", {"tags": ["stripe"]}),
    "plans_view": ("select * from {{ ref('stg_plans') }}", "marts",
                   {"materialized": "view"}),
    "usage": ("select * from {{ ref('stripe_customers') }}", "marts", {}),
    "retired": ("select 1 as x", "marts", {"enabled": False}),
}
MODELS = {name for name, (_, _, config) in DAG.items() if config.get("enabled", True)}

# --select, --exclude -> the models dbt selects (graph operators, methods, set operations)
CASES: list[tuple[tuple[str, ...], tuple[str, ...], set[str]]] = [
    (("stripe_customers",), (), {"stripe_customers"}),
    (("+stripe_customers",), (), {"stg_customers", "stg_plans", "stripe_customers"}),
    (("stripe_customers+",), (), {"stripe_customers", "usage"}),
    (("1+usage",), (), {"stripe_customers", "usage"}),
    (("@stg_plans",), (), {"stg_customers", "stg_plans", "stripe_customers", "plans_view",
                           "usage"}),
    (("tag:staging",), (), {"stg_customers", "stg_plans"}),
    (("path:models/marts",), (), {"stripe_customers", "plans_view", "usage"}),
    (("config.materialized:view",), (), {"plans_view"}),
    (("tag:staging,stg_plans",), (), {"stg_plans"}),  # intersection
    (("stg_plans usage",), (), {"stg_plans", "usage"}),  # union in one item
    (("+usage",), ("tag:staging",), {"stripe_customers", "usage"}),
    ((), ("marts",), {"stg_customers", "stg_plans"}),  # exclude alone: from everything
    (("package:test_project",), (), MODELS),
    (("retired",), (), set()),  # disabled: never selected
    (("crm+",), (), {"stg_customers", "stripe_customers", "usage"}),  # a seed's children
]


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbtProject]:
    project = new_project(tmp_path_factory.mktemp("selection") / "proj")
    project.write_seed("crm", rows(2))
    entries = []
    for name, (sql, sub, config) in DAG.items():
        (project.root / "models" / sub).mkdir(exist_ok=True)
        (project.root / "models" / sub / f"{name}.sql").write_text(sql)
        entry = {"name": name, "config": dict(config)}
        if name == "stripe_customers":
            entry["config"]["meta"] = {"stripe_activation": SYNC_BY_METADATA}
        if name == "usage":  # a test: a node selection must leave out
            entry["columns"] = [{"name": "customer_id", "tests": ["not_null"]}]
        entries.append(entry)
    doc = {"version": 2, "models": entries}
    (project.root / "models" / "schema.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    project.dbt("deps")
    project.dbt("parse")
    yield project


@pytest.fixture
def settings(parsed: DbtProject, monkeypatch: pytest.MonkeyPatch) -> ProjectSettings:
    for name, value in parsed.env().items():
        monkeypatch.setenv(name, value)
    return ProjectSettings(project_dir=parsed.root, target="duckdb")


def names(ids: set[str]) -> set[str]:
    return {uid.rsplit(".", 1)[-1] for uid in ids}


@pytest.mark.parametrize(("select", "exclude", "expected"), CASES,
                         ids=[" ".join(c[0]) + (f" -x {' '.join(c[1])}" if c[1] else "")
                              for c in CASES])
def test_selection_from_the_manifest(settings: ProjectSettings, select: tuple[str, ...],
                                     exclude: tuple[str, ...], expected: set[str]) -> None:
    assert names(select_models(settings, select, exclude)) == expected


def test_the_same_ids_as_dbt_ls(settings: ProjectSettings) -> None:
    """dbt's semantics exactly: every case resolves to what `dbt ls` (a project parse through
    dbtRunner, the fallback) returns."""
    for select, exclude, _ in CASES:
        ours = select_models(settings, select, exclude)
        assert ours == list_models(settings, select, exclude), (select, exclude)


def test_a_fusion_manifest_selects_the_same(settings: ProjectSettings, tmp_path: Path) -> None:
    fusion = write_fusion_manifest(settings.resolved_manifest_path, tmp_path / "manifest.json",
                                   no_top_level_meta=["stripe_customers"])
    from_fusion = ProjectSettings(project_dir=settings.project_dir, target="duckdb",
                                  manifest_path=fusion)
    for select, exclude, expected in CASES:
        assert names(select_models(from_fusion, select, exclude)) == expected, (select, exclude)
    manifest = load_manifest(from_fusion)
    assert is_fusion(manifest.dbt_version)
    assert [m.name for m in manifest.synced_models()] == ["stripe_customers"]
    assert manifest.models["model.test_project.stripe_customers"].sync_block == SYNC_BY_METADATA


def test_early_fusion_schema_v20_is_read_as_v12(settings: ProjectSettings,
                                                tmp_path: Path) -> None:
    fusion = write_fusion_manifest(settings.resolved_manifest_path, tmp_path / "manifest.json",
                                   schema="v20")
    from_fusion = ProjectSettings(project_dir=settings.project_dir, manifest_path=fusion)
    assert names(select_models(from_fusion, ("+usage",), ())) == {
        "stg_customers", "stg_plans", "stripe_customers", "usage"}


@pytest.mark.parametrize(("select", "message"), [
    ("state:modified", "no comparison manifest"),
    ("colour:red", "'colour' is not a valid method name"),
])
def test_dbt_errors_in_a_selection_are_reported(settings: ProjectSettings, select: str,
                                                message: str) -> None:
    with pytest.raises(ProjectError, match=f"dbt could not resolve --select '{select}'.*"
                                           f"{message}"):
        select_models(settings, (select,), ())


def test_the_selection_leaves_its_manifest_to_the_session(
        settings: ProjectSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    """One read of the manifest per run: the session takes what the selection read."""
    from dbt_stripe_activation import dbt_compat

    dbt_compat._KEPT.clear()  # what an earlier test left
    reads: list[Path] = []
    read = dbt_compat._read_dbt_manifest
    monkeypatch.setattr(dbt_compat, "_read_dbt_manifest",
                        lambda path: reads.append(path) or read(path))
    select_models(settings, ("usage",), ())
    read_dbt_manifest(settings.resolved_manifest_path)
    assert len(reads) == 1
    read_dbt_manifest(settings.resolved_manifest_path)  # taken by the first: read again
    assert len(reads) == 2


def test_a_manifest_dbt_core_cannot_read(settings: ProjectSettings, tmp_path: Path) -> None:
    newer = tmp_path / "manifest.json"
    text = settings.resolved_manifest_path.read_text()
    newer.write_text(text.replace("/manifest/v12.json", "/manifest/v99.json"))
    from_newer = ProjectSettings(project_dir=settings.project_dir, manifest_path=newer)
    with pytest.raises(ProjectError, match=f"against --manifest {newer}: dbt-core .* cannot "
                                           f"read the dbt manifest at {newer}"):
        select_models(from_newer, ("usage",), ())


@pytest.mark.parametrize("version", ["2.0.0-preview.218", "2.0.0", "10.1"])
def test_fusion_versions(version: str) -> None:
    assert is_fusion(version)


@pytest.mark.parametrize("version", ["1.11.16", "1.12.0b1", "", "unknown"])
def test_not_fusion_versions(version: str) -> None:
    assert not is_fusion(version)
