"""Where the manifest comes from: `--manifest PATH` (a dbt Cloud run's artifact, downloaded
outside the project) synced with the local profile, its selection resolved against it; dbt
Fusion's manifest; the block from `+meta` in dbt_project.yml and from `config.meta`; and a
missing or broken manifest, named in the error."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from stripe_emulator import start_emulator
from stripe_emulator.handle import EmulatorHandle
from tests.customers import SYNC_BY_METADATA, rows
from tests.fusion_manifest import write_fusion_manifest
from tests.integration.dbtproj import DbtProject, new_project

FAST = ("--max-rps", "1000", "--max-endpoint-rps", "1000")
PRODUCTS_SYNC = {"object": "product", "key": {"column": "sku", "field": "id"},
                 "fields": {"name": "name"}}
PRODUCTS = [{"sku": "prod_basic", "name": "Basic"}, {"sku": "prod_team", "name": "Team"}]


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorHandle]:
    with start_emulator(seed=13) as handle:
        yield handle


def two_blocks_project(root: Path) -> DbtProject:
    """Customers declared in the model's YAML (`config: meta:`), products with `+meta` in
    dbt_project.yml, and a model without a block; built by dbt-core."""
    project = new_project(root)
    project.write_seed("crm", rows(3))
    project.write_seed("catalogue", PRODUCTS)
    project.write_model("stripe_customers", "select * from {{ ref('crm') }}",
                        sync=SYNC_BY_METADATA, config_style="schema")
    project.write_model("stripe_products", "select * from {{ ref('catalogue') }}",
                        sync=PRODUCTS_SYNC, config_style="project")
    project.write_model("not_synced", "select 1 as x")
    project.build()
    return project


def set_tags(project: DbtProject, model: str, tags: list[str]) -> None:
    schema = project.root / "models" / "schema.yml"
    doc = yaml.safe_load(schema.read_text())
    for entry in doc["models"]:
        if entry["name"] == model:
            entry.setdefault("config", {})["tags"] = tags
    schema.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_a_manifest_from_elsewhere_syncs_with_the_local_profile(
        tmp_path: Path, emulator: EmulatorHandle) -> None:
    """A dbt Cloud job's manifest, downloaded outside the project, whose target/ has none:
    the warehouse comes from the local profile, and `--select` resolves against that
    manifest (a tag only it has), not against a parse of the local files."""
    emulator.reset()
    project = two_blocks_project(tmp_path / "proj")
    set_tags(project, "stripe_customers", ["cloud"])
    project.dbt("parse")
    downloaded = tmp_path / "artifacts" / "run_42" / "manifest.json"
    downloaded.parent.mkdir(parents=True)
    shutil.move(project.root / "target" / "manifest.json", downloaded)
    set_tags(project, "stripe_customers", [])  # the local project differs from the job's

    run = project.sync("--manifest", str(downloaded), "--select", "tag:cloud", *FAST,
                       "--output", "json", stripe_url=emulator.url)
    assert run.code == 0, run.stderr
    assert [m["model"] for m in run.json["models"]] == ["stripe_customers"]
    assert run.json["models"][0]["counts"]["created"] == 3
    assert len(emulator.customers()) == 3
    assert not (project.root / "target" / "manifest.json").exists()  # nothing parsed

    again = project.sync("plan", "--manifest", str(downloaded), "--output", "json",
                         stripe_url=emulator.url)
    assert again.code == 0, again.stderr
    counts = {m["model"]: m["counts"] for m in again.json["models"]}
    assert counts["stripe_customers"]["unchanged"] == 3
    assert counts["stripe_products"]["created"] == 2


@pytest.mark.parametrize("shape", ["dbt-core", "dbt Fusion"])
def test_project_meta_and_config_meta_sync(shape: str, tmp_path: Path,
                                           emulator: EmulatorHandle) -> None:
    """The block from `+meta` (dbt_project.yml) and from `config.meta` both sync, from the
    manifest dbt-core writes and from the one dbt Fusion writes (v12, fields dbt-core does
    not know, `config.meta` only, nulls, its own copies of dbt's macros: see
    tests/fusion_manifest.py)."""
    emulator.reset()
    project = two_blocks_project(tmp_path / "proj")
    args: tuple[str, ...] = ()
    if shape == "dbt Fusion":
        fusion = write_fusion_manifest(project.root / "target" / "manifest.json",
                                       tmp_path / "fusion" / "manifest.json",
                                       no_top_level_meta=["stripe_customers"])
        args = ("--manifest", str(fusion))
        assert json.loads(fusion.read_text())["metadata"]["dbt_version"].startswith("2.")

    run = project.sync(*args, "--select", "stripe_customers stripe_products", *FAST,
                       "--output", "json", stripe_url=emulator.url)
    assert run.code == 0, run.stderr
    created = {m["model"]: m["counts"]["created"] for m in run.json["models"]}
    assert created == {"stripe_customers": 3, "stripe_products": 2}
    assert len(emulator.customers()) == 3


def test_a_missing_or_broken_manifest_is_named(tmp_path: Path,
                                                emulator: EmulatorHandle) -> None:
    """Exit 2 and one message naming the path; never a traceback, never a Stripe request."""
    project = new_project(tmp_path / "proj")
    (project.root / "target").mkdir()
    broken = tmp_path / "broken.json"
    broken.write_text('{"metadata": {')
    results = tmp_path / "run_results.json"
    results.write_text(json.dumps({"metadata": {
        "dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json"},
        "results": []}))
    cases = {
        tmp_path / "nowhere" / "manifest.json": "does not exist",
        tmp_path: "is a directory",
        broken: "Cannot read the dbt manifest at",
        results: "is not a dbt manifest",
    }
    emulator.reset(stats_only=True)
    for path, message in cases.items():
        run = project.sync("--manifest", str(path), "--output", "json",
                           stripe_url=emulator.url)
        assert run.code == 2, (path, run.stdout, run.stderr)
        assert run.json["error_type"] == "ProjectError"
        assert str(path) in run.json["error"] and message in run.json["error"], run.json
        assert "Traceback" not in run.stderr
    assert emulator.stats()["requests_total"] == 0
