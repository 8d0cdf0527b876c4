"""The `{{ stripe_activation.validate() }}` post-hook in a real `dbt run` (DuckDB, PostgreSQL):
synced models that are right pass, a model without a block is left alone, and each broken
sync fails the run with a message naming the model, the setting and the fix."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.warehouse_fixtures import (
    PROJECT_NAME,
    BuiltProject,
    project_fixture,  # noqa: F401 - the `project` fixture
)


def test_hook_passes_on_good_models_and_ignores_models_without_a_block(project: BuiltProject):
    statuses = {r["unique_id"]: r["status"] for r in project.build_results["results"]}
    for name in ("customers", "odd_names", "big_customers", "no_sync"):
        assert statuses[f"model.{PROJECT_NAME}.{name}"] == "success"


@pytest.fixture(scope="module")
def failing_run(project: BuiltProject) -> tuple[int, dict[str, dict[str, Any]]]:
    """One `dbt run` of the broken models (dbt runs each even when others fail)."""
    proc = project.dbt("run", "--select", "tag:validate_failure", check=False)
    results = {r["unique_id"].split(".")[-1]: r for r in project.run_results()["results"]}
    return proc.code, results


def expected_messages(project: BuiltProject) -> dict[str, str]:
    database = "warehouse" if project.target == "duckdb" else "test"
    relation = f'"{database}"."{project.schema}"."bad_missing_column"'
    return {
        "bad_missing_column": (
            "stripe_activation: model 'bad_missing_column' (models/bad_missing_column.sql): "
            f"column 'phone_number' (stripe_activation.fields.phone) is not in {relation}; "
            "add it to the model's select or fix the mapping."
        ),
        "bad_null_key": (
            "stripe_activation: model 'bad_null_key' (models/bad_null_key.sql): key column "
            "'customer_id' (stripe_activation.key.column) is null or empty in 2 rows; filter "
            "such rows out in the model or fill in the key."
        ),
        "bad_duplicate_key": (
            "stripe_activation: model 'bad_duplicate_key' (models/bad_duplicate_key.sql): key "
            "column 'email' (stripe_activation.key.column) has 1 value shared by several rows "
            "(e.g. 'amy@example.com'); make the key unique: one row per key."
        ),
        "bad_block": (
            "stripe_activation: model 'bad_block' (models/bad_block.sql): object 'credit_note' "
            "is not supported (stripe_activation.object); set object: customer, invoice_item, "
            "meter_event, price, product, subscription_item. behavior 'upsert' is unknown "
            "(stripe_activation.behavior); use update_or_create, update_only, create_only."
        ),
    }


@pytest.mark.parametrize(
    "model", ["bad_missing_column", "bad_null_key", "bad_duplicate_key", "bad_block"]
)
def test_hook_fails_dbt_run_with_the_problem(
    project: BuiltProject, failing_run: tuple[int, dict[str, dict[str, Any]]], model: str
):
    code, results = failing_run
    assert code == 1
    result = results[model]
    assert result["status"] == "error"
    message = result["message"]
    assert message.startswith(f"Compilation Error in model {model} (models/{model}.sql)")
    assert message.splitlines()[1].strip() == expected_messages(project)[model]
