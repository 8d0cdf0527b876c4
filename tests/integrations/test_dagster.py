"""The Dagster assets in-process: one asset per synced model, downstream of the asset
dagster-dbt gives the model (and of the Stripe assets it references), materialized with
Dagster's `materialize` on a DuckDB project and the emulator: counts as metadata, a re-run
writes nothing, failing rows and user errors fail the asset, the key never reaches Dagster."""

# No `from __future__ import annotations`: Dagster reads `context` and resource
# parameters' annotations as classes.

import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from dbt_stripe_activation.integrations.dagster import build_stripe_sync_assets
from stripe_emulator import start_emulator
from stripe_emulator.handle import EmulatorHandle
from tests.customers import SYNC_BY_METADATA, row, rows
from tests.integration import dbtproj

# dagster-dbt 0.29 calls its own deprecated `context.op`.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:dagster_dbt")

API_KEY = "sk_test_dagster0secret0key"
FAST = {"max_rps": 1000, "max_endpoint_rps": 1000}

PRODUCTS_SYNC = {"object": "product", "key": {"column": "sku", "field": "id"},
                 "fields": {"name": "name"}}
PRICES_SYNC = {
    "object": "price",
    "key": {"column": "lookup_key", "field": "lookup_key"},
    "fields": {"product": {"ref": "stripe_products", "column": "sku"},
               "currency": "currency", "unit_amount": "amount"},
}

CUSTOMERS = dg.AssetKey(["stripe", "stripe_customers"])
BAD_CUSTOMERS = dg.AssetKey(["stripe", "stripe_bad_customers"])
PRODUCTS = dg.AssetKey(["stripe", "stripe_products"])
PRICES = dg.AssetKey(["stripe", "stripe_prices"])


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorHandle]:
    with start_emulator(seed=7) as handle:
        yield handle


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory,
            emulator: EmulatorHandle) -> Iterator[dbtproj.DbtProject]:
    """Customers, customers with a row Stripe refuses, and a price referencing a product,
    parsed (Dagster's dbt asset builds them); the dbt and Stripe settings in the
    environment, as in a deployment."""
    project = dbtproj.new_project(tmp_path_factory.mktemp("dagster") / "proj")
    project.write_seed("crm", rows(3))
    project.write_seed("crm_bad", [row(10), {**row(11), "email": "not an email"}])
    project.write_seed("catalogue", [{"sku": "prod_dagster", "name": "Dagster plan"}])
    project.write_seed("plans", [{"lookup_key": "dagster_monthly", "sku": "prod_dagster",
                                  "currency": "usd", "amount": "900"}],
                       types={"amount": "integer"})
    project.write_model("stripe_customers", "select * from {{ ref('crm') }}",
                        sync=SYNC_BY_METADATA)
    project.write_model("stripe_bad_customers", "select * from {{ ref('crm_bad') }}",
                        sync=SYNC_BY_METADATA)
    project.write_model("stripe_products", "select * from {{ ref('catalogue') }}",
                        sync=PRODUCTS_SYNC)
    project.write_model("stripe_prices", "select * from {{ ref('plans') }}", sync=PRICES_SYNC)
    project.write_model("not_synced", "select 1 as x")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in project.env(STRIPE_API_KEY=API_KEY,
                                       STRIPE_API_BASE=emulator.url).items():
            patch.setenv(name, value)
        project.dbt("deps")
        project.dbt("parse")
        yield project


@pytest.fixture(scope="module")
def manifest(project: dbtproj.DbtProject) -> Path:
    return project.root / "target" / "manifest.json"


@pytest.fixture(scope="module")
def dbt_models(manifest: Path) -> dg.AssetsDefinition:
    @dbt_assets(manifest=manifest)
    def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
        yield from dbt.cli(["build"], context=context).stream()

    return dbt_models


@pytest.fixture(scope="module")
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


@pytest.fixture(scope="module")
def first_run(project: dbtproj.DbtProject, dbt_models: dg.AssetsDefinition,
              instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """Every asset materialized at once, as a schedule would: the dbt build, then the syncs."""
    dbt_project = DbtProject(project.root, target="duckdb")
    return dg.materialize(
        [dbt_models, *build_stripe_sync_assets(project_dir=dbt_project, **FAST)],
        instance=instance, resources={"dbt": DbtCliResource(project_dir=dbt_project)},
        raise_on_error=False)


def by_key(assets: list[dg.AssetsDefinition]) -> dict[dg.AssetKey, dg.AssetsDefinition]:
    return {a.key: a for a in assets}


def deps(asset: dg.AssetsDefinition) -> set[dg.AssetKey]:
    return {dep.asset_key for dep in asset.specs_by_key[asset.key].deps}


def metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict[str, Any]:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    return {name: value.value for name, value in event.materialization.metadata.items()}


def failure(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> Any:
    """The step's failure: its error (the Failure's description) and user_failure_data."""
    step = key.to_python_identifier()
    [event] = [e for e in result.get_step_failure_events() if e.step_key == step]
    return event.step_failure_data


def event_log_text(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(dg.serialize_value(entry) for entry in instance.all_logs(result.run_id))


def test_one_asset_per_synced_model_downstream_of_its_dbt_asset(
    project: dbtproj.DbtProject, manifest: Path, dbt_models: dg.AssetsDefinition,
) -> None:
    assets = by_key(build_stripe_sync_assets(manifest, project_dir=project.root))
    assert set(assets) == {CUSTOMERS, BAD_CUSTOMERS, PRODUCTS, PRICES}
    # Each depends on the key dagster-dbt gives its model; a price on its product's sync too.
    dbt_key = dg.AssetKey(["stripe_customers"])
    assert dbt_key in dbt_models.keys
    assert deps(assets[CUSTOMERS]) == {dbt_key}
    assert deps(assets[PRICES]) == {dg.AssetKey(["stripe_prices"]), PRODUCTS}
    spec = assets[PRICES].specs_by_key[PRICES]
    assert spec.group_name == "stripe" and spec.kinds == {"stripe"}
    assert spec.metadata["stripe_activation/object"] == "price"
    dg.Definitions.validate_loadable(dg.Definitions(
        assets=[dbt_models, *assets.values()],
        resources={"dbt": DbtCliResource(project_dir=str(project.root))}))

    # A translator that renames the dbt assets, given to both, renames the dependencies.
    class Prefixed(DagsterDbtTranslator):
        def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
            return super().get_asset_key(dbt_resource_props).with_prefix("analytics")

    renamed = by_key(build_stripe_sync_assets(
        manifest, project_dir=project.root, dagster_dbt_translator=Prefixed(),
        key_prefix=["billing", "stripe"], group_name=None))
    key = dg.AssetKey(["billing", "stripe", "analytics", "stripe_prices"])
    assert deps(renamed[key]) == {dg.AssetKey(["analytics", "stripe_prices"]),
                                  dg.AssetKey(["billing", "stripe", "analytics",
                                               "stripe_products"])}


def test_materialize_syncs_each_model_after_its_dbt_asset(
    project: dbtproj.DbtProject, first_run: dg.ExecuteInProcessResult,
    instance: dg.DagsterInstance, emulator: EmulatorHandle,
) -> None:
    assert first_run.get_failed_step_keys() == {BAD_CUSTOMERS.to_python_identifier()}
    assert {c["metadata"]["crm_id"] for c in emulator.customers()} == {
        "c00000", "c00001", "c00002", "c00010"}
    assert len(emulator.prices()) == 1
    synced = metadata(first_run, CUSTOMERS)
    assert synced["created"] == 3 and synced["stripe_writes"] == 3
    assert synced["rejected"] == 0 and synced["status"] == "success"
    assert Path(synced["results_path"]).name == "stripe_sync_results.json"
    assert synced["sync_run_id"] and synced["stripe_mode"] == "test"
    assert metadata(first_run, PRICES)["created"] == 1
    # Dagster ran the dbt build first, then the product before the price referencing it.
    order = [e.asset_key for e in first_run.get_asset_materialization_events()]
    assert order.index(dg.AssetKey(["stripe_customers"])) < order.index(CUSTOMERS)
    assert order.index(PRODUCTS) < order.index(PRICES)
    assert API_KEY not in event_log_text(instance, first_run)

    # Nothing changed in the model: the next materialization writes nothing.
    again = dg.materialize(build_stripe_sync_assets(project_dir=project.root, **FAST),
                           instance=instance, selection=[CUSTOMERS])
    assert again.success
    unchanged = metadata(again, CUSTOMERS)
    assert unchanged["created"] == 0 and unchanged["stripe_writes"] == 0
    assert len(emulator.customers()) == 4


def test_rows_that_fail_fail_the_asset(
    project: dbtproj.DbtProject, manifest: Path, first_run: dg.ExecuteInProcessResult,
    instance: dg.DagsterInstance,
) -> None:
    assert BAD_CUSTOMERS not in {e.asset_key for e in
                                 first_run.get_asset_materialization_events()}
    failed = failure(first_run, BAD_CUSTOMERS)
    assert "1 of 2 row(s) did not sync (rejected 1)" in failed.error.message
    assert "rejected 'c00011': " in failed.error.message
    assert failed.user_failure_data.metadata["rejected"].value == 1
    assert failed.user_failure_data.metadata["created"].value == 1
    assert API_KEY not in event_log_text(instance, first_run)

    # Allowed by max_failed_pct, the row still rejected no longer fails the asset.
    lenient = by_key(build_stripe_sync_assets(manifest, project_dir=project.root,
                                              max_failed_pct=100, **FAST))
    assert dg.materialize([lenient[BAD_CUSTOMERS]]).success


def test_a_user_error_fails_the_asset(project: dbtproj.DbtProject, manifest: Path) -> None:
    assets = by_key(build_stripe_sync_assets(manifest, project_dir=project.root,
                                             api_key_env="UNSET_STRIPE_KEY"))
    result = dg.materialize([assets[CUSTOMERS]], raise_on_error=False)
    assert not result.success
    failed = failure(result, CUSTOMERS)
    assert "No Stripe API key: set UNSET_STRIPE_KEY" in failed.error.message
    assert failed.user_failure_data.metadata["error"].value == "StripeConnectionError"


def test_options_are_checked_when_the_assets_are_built(project: dbtproj.DbtProject,
                                                      manifest: Path) -> None:
    with pytest.raises(TypeError, match="unknown sync option.*max_rsp"):
        build_stripe_sync_assets(manifest, project_dir=project.root, max_rsp=5)
    with pytest.raises(TypeError, match="select set per asset by the factory"):
        build_stripe_sync_assets(manifest, project_dir=project.root, select="x")
    from dbt_stripe_activation.errors import ProjectError

    with pytest.raises(ProjectError, match="No dbt manifest"):
        build_stripe_sync_assets(project_dir=project.root, target_path="nowhere")


def test_the_package_import_does_not_load_dagster() -> None:
    code = ("import sys, dbt_stripe_activation, dbt_stripe_activation.integrations; "
            "print(sorted(m for m in sys.modules if m.split('.')[0].startswith('dagster')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
