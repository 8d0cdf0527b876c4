"""The bad-input catalogue (docs/BAD_INPUT.md): what a user can get wrong, end to end.

Each case runs `dbt-stripe-sync` as a user would, in a dbt project built once per group,
against a Stripe emulator whose request counts are exact, and asserts the exact message, the
exit code, and that nothing was written where nothing should be: configuration and
environment errors stop before the first Stripe write (most before any request at all); a bad
row rejects only itself.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stripe_emulator import start_emulator
from stripe_emulator.errors import mask_key
from stripe_emulator.handle import EmulatorHandle
from tests.catalogue.helpers import (
    FAST,
    Run,
    Sql,
    add_profile_targets,
    bookkeeping_schemas,
    customers_by,
    isolated_target,
    materialize_as_views,
    one_line,
    repeat,
    require_postgres,
    run_cli,
    sql,
    state_rows,
    values_model,
)
from tests.conftest import drop_postgres_schema
from tests.integration.dbtproj import BIN, DbtProject, new_project

# ============================================================================================
# Configuration: a broken stripe_activation block stops the run before any Stripe request.
# ============================================================================================

CRM_ROWS = [
    {"customer_id": "c1", "email": "amy@example.com", "full_name": "Amy Adams", "plan": "pro"},
    {"customer_id": "c2", "email": "bob@example.com", "full_name": "Bob Brown", "plan": "free"},
]
KEY_BY_CRM_ID = {"column": "customer_id", "field": "metadata.crm_id"}
GOOD = {"object": "customer", "key": KEY_BY_CRM_ID, "fields": {"email": "email"}}
PRICE = {
    "object": "price",
    "key": {"column": "customer_id", "field": "lookup_key"},
    "fields": {"currency": "plan", "unit_amount": "plan", "product": "email"},
}


def label(model: str) -> str:
    return f"model '{model}' (models/{model}.sql)"


@dataclass(frozen=True)
class ConfigCase:
    """One mistake in a model's block: the models it needs, and the exact message."""

    id: str
    sync: Any  # the model's stripe_activation block (the model is named like the case)
    message: str  # exact; {m} is the model's label
    extra_models: Mapping[str, Any] = field(default_factory=dict)
    select: tuple[str, ...] = ()  # default: the case's own model
    args: tuple[str, ...] = ()
    warehouse: bool = False  # found in the warehouse (DuckDB: one process at a time)

    @property
    def models(self) -> dict[str, Any]:
        return (
            {self.id: self.sync, **self.extra_models}
            if self.sync is not None
            else dict(self.extra_models)
        )

    def expected(self, relation: str = "") -> str:
        return self.message.format(
            m=label(self.id), relation=relation, **{k: label(k) for k in self.extra_models}
        )


MAPPABLE_HINT = "A customer is matched on email, id or metadata.<name>."

CONFIG_CASES = [
    ConfigCase(
        "missing_object",
        {"key": KEY_BY_CRM_ID, "fields": {"email": "email"}},
        "{m}: stripe_activation.object: is required: the Stripe object type to sync (customer, "
        "product, price, meter_event, subscription_item, invoice_item).",
    ),
    ConfigCase(
        "unknown_object",
        {**GOOD, "object": "credit_note"},
        "{m}: stripe_activation.object: 'credit_note' is not a supported Stripe object. "
        "Supported: customer, product, price, meter_event, subscription_item, invoice_item.",
    ),
    ConfigCase(
        "misspelled_object",
        {**GOOD, "object": "custmer"},
        "{m}: stripe_activation.object: 'custmer' is not a supported Stripe object; "
        "did you mean 'customer'?",
    ),
    ConfigCase(
        "unknown_behavior",
        {**GOOD, "behavior": "upsert"},
        "{m}: stripe_activation.behavior: 'upsert' is not valid. Use update_or_create "
        "(the default), update_only or create_only.",
    ),
    ConfigCase(
        "missing_key",
        {"object": "customer", "fields": {"email": "email"}},
        "{m}: stripe_activation.key: is required: a mapping with `column` (the model column) "
        "and `field` (email, id or metadata.<name>).",
    ),
    ConfigCase(
        "key_without_field",
        {**GOOD, "key": {"column": "customer_id"}},
        "{m}: stripe_activation.key.field: is required: the Stripe field the key matches "
        "(email, id or metadata.<name>).",
    ),
    ConfigCase(
        "key_without_column",
        {**GOOD, "key": {"field": "email"}},
        "{m}: stripe_activation.key.column: is required: the model column holding the key value.",
    ),
    ConfigCase(
        "key_on_unkeyable_field",
        {**GOOD, "key": {"column": "customer_id", "field": "phone"}},
        "{m}: stripe_activation.key.field: 'phone' cannot be a customer key. " + MAPPABLE_HINT,
    ),
    ConfigCase(
        "unknown_field_path",
        {**GOOD, "fields": {"adress.city": "full_name"}},
        "{m}: stripe_activation.fields.adress.city: 'adress.city' is not a customer field "
        "Stripe lets you write; did you mean 'address.city'?",
    ),
    ConfigCase(
        "field_path_without_group",
        {**GOOD, "fields": {"city": "full_name"}},
        "{m}: stripe_activation.fields.city: 'city' is not a customer field Stripe lets you "
        "write; did you mean 'address.city'?",
    ),
    ConfigCase(
        "unknown_setting",
        {**GOOD, "feilds": {"name": "full_name"}},
        "{m}: stripe_activation.feilds: is not a setting; did you mean 'fields'? Allowed: "
        "account, behavior, fields, key, null_values, object, on_removed.",
    ),
    ConfigCase(
        "mapped_column_absent",
        {**GOOD, "fields": {"email": "email", "name": "fullname"}},
        "{m}: column(s) 'fullname' mapped in stripe_activation are not in "
        "{relation} (columns: customer_id, email, full_name, plan). Fix the mapping or the "
        "model, then `dbt run`.",
        warehouse=True,
    ),
    ConfigCase(
        "key_column_absent",
        {**GOOD, "key": {"column": "crm_id", "field": "metadata.crm_id"}},
        "{m}: column(s) 'crm_id' mapped in stripe_activation are not in {relation} (columns: "
        "customer_id, email, full_name, plan). Fix the mapping or the model, then `dbt run`.",
        warehouse=True,
    ),
    ConfigCase(
        "id_key_with_update_or_create",
        {**GOOD, "key": {"column": "customer_id", "field": "id"}},
        "{m}: stripe_activation.key.field: 'id' works only with behavior: update_only (Stripe "
        "assigns ids, so a row without a match cannot be created). Set `behavior: "
        "update_only`, or key on email or metadata.<name>.",
    ),
    ConfigCase(
        "metadata_key_too_long",
        {**GOOD, "fields": {"metadata." + "k" * 41: "plan"}},
        "{m}: stripe_activation.fields.metadata."
        + "k" * 41
        + ": metadata key '"
        + "k" * 41
        + "' is 41 characters; Stripe allows at most 40. Use another metadata key name.",
    ),
    ConfigCase(
        "metadata_key_with_brackets",
        {**GOOD, "fields": {"metadata.plan[0]": "plan"}},
        "{m}: stripe_activation.fields.metadata.plan[0]: metadata key 'plan[0]' contains '[' "
        "or ']', which Stripe does not allow. Use another metadata key name.",
    ),
    ConfigCase(
        "key_metadata_name_with_bracket",
        {**GOOD, "key": {"column": "customer_id", "field": "metadata.crm]id"}},
        "{m}: stripe_activation.key.field: metadata key 'crm]id' contains '[' or ']', which "
        "Stripe does not allow. Use another metadata key name.",
    ),
    ConfigCase(
        "too_many_metadata_keys",
        {**GOOD, "fields": {f"metadata.k{i:02d}": "plan" for i in range(50)}},
        "{m}: stripe_activation.fields: maps 51 metadata keys (the key's included); Stripe "
        "allows at most 50 per customer. Map fewer, or combine values into one key.",
    ),
    ConfigCase(
        "fields_as_a_list",
        {**GOOD, "fields": ["email", "name"]},
        "{m}: stripe_activation.fields: must be a mapping of Stripe field path to model column "
        "(`name: full_name`), got a list.",
    ),
    ConfigCase(
        "key_as_a_string",
        {**GOOD, "key": "customer_id"},
        "{m}: stripe_activation.key: must be a mapping with `column` (the model column) and "
        "`field` (email, id or metadata.<name>), got a string.",
    ),
    ConfigCase(
        "behavior_as_a_boolean",
        {**GOOD, "behavior": True},
        "{m}: stripe_activation.behavior: a boolean is not valid. Use update_or_create (the "
        "default), update_only or create_only.",
    ),
    ConfigCase(
        "column_as_a_number",
        {**GOOD, "fields": {"name": 5}},
        "{m}: stripe_activation.fields.name: must be a model column name (a string) or a "
        "mapping ({{column: ..., null_values: skip|clear}}, {{ref: <model>, column: ...}} or "
        "{{value: ...}}), got a number.",
    ),
    ConfigCase(
        "block_as_a_list",
        ["customer", "email"],
        "{m}: stripe_activation must be a mapping (object, key, fields, ...), got a list. "
        "Write it under `config: meta: stripe_activation:` as the README shows.",
    ),
    ConfigCase(
        "unknown_null_values",
        {**GOOD, "null_values": "erase"},
        "{m}: stripe_activation.null_values: 'erase' is not valid. Use skip (the default: a "
        "null leaves Stripe as it is) or clear (a null unsets the Stripe field).",
    ),
    ConfigCase(
        "misspelled_field_setting",
        {**GOOD, "fields": {"name": {"colum": "full_name"}}},
        "{m}: stripe_activation.fields.name.colum: is not a field setting; did you mean "
        "'column'? Allowed: column, null_values, ref, value.\n"
        "{m}: stripe_activation.fields.name.column: is required: the model column to read.",
    ),
    ConfigCase(
        "group_as_a_field",
        {**GOOD, "fields": {"address": "full_name"}},
        "{m}: stripe_activation.fields.address: 'address' is a group; map its fields one by "
        "one: address.city, address.country, address.line1, address.line2, "
        "address.postal_code, address.state.",
    ),
    ConfigCase(
        "id_as_a_field",
        {**GOOD, "fields": {"id": "customer_id"}},
        "{m}: stripe_activation.fields.id: a customer's id is assigned by Stripe and cannot be "
        "written. To match on it, use `key: {{field: id, column: ...}}` with behavior: "
        "update_only.",
    ),
    ConfigCase(
        "create_only_field_with_update_only",
        {**GOOD, "behavior": "update_only", "fields": {"test_clock": "plan"}},
        "{m}: stripe_activation.fields.test_clock: 'test_clock' can only be set when Stripe "
        "creates a customer, and behavior is update_only. Remove it, or use behavior: "
        "update_or_create.",
    ),
    ConfigCase(
        "shipping_without_address",
        {**GOOD, "fields": {"shipping.name": "full_name"}},
        "{m}: stripe_activation.fields: maps shipping.name but not shipping.address.line1; "
        "Stripe needs shipping.address.line1 and shipping.name whenever shipping is sent. Map "
        "them too.",
    ),
    ConfigCase(
        "clear_on_a_field_stripe_cannot_unset",
        {**GOOD, "fields": {"balance": {"column": "plan", "null_values": "clear"}}},
        "{m}: stripe_activation.fields.balance.null_values: is clear, but Stripe cannot unset "
        "balance (it has no empty value). Use skip.",
    ),
    ConfigCase(
        "email_key_and_email_field_differ",
        {**GOOD, "key": {"column": "customer_id", "field": "email"}},
        "{m}: stripe_activation.fields.email: reads column 'email', but key.field email reads "
        "column 'customer_id': a created email would not be found by its key. Map email to "
        "'customer_id', or remove it from fields.",
    ),
    ConfigCase(
        "nothing_to_write",
        {
            "object": "customer",
            "behavior": "update_only",
            "key": {"column": "customer_id", "field": "id"},
        },
        "{m}: stripe_activation.fields: is empty: with key.field id, nothing would be written. "
        "Map at least one Stripe field to a column.",
    ),
    ConfigCase(
        "two_models_same_key",
        None,
        "{same_key_a} and {same_key_b} both sync Stripe customers keyed on metadata.crm_id: "
        "they would fight over the same customers. Sync them from one model, or key each on "
        "its own field.",
        extra_models={"same_key_a": GOOD, "same_key_b": {**GOOD, "fields": {"name": "full_name"}}},
        select=("same_key_a", "same_key_b"),
    ),
    ConfigCase(
        "selection_matches_no_model",
        None,
        "--select 'no_such_model' matches no model of the project. Check the model names "
        "(`dbt ls` lists them), or run without --select to sync every model with a "
        "stripe_activation block.",
        select=("no_such_model",),
    ),
    ConfigCase(
        "selected_model_has_no_block",
        None,
        "No model to sync: --select 'plain_model' selects 1 model(s) (plain_model), none with "
        "a `config.meta.stripe_activation` block. Add the block as the README shows, or select "
        "a model that has one.",
        select=("plain_model",),
    ),
    # -- the catalogue objects and references between models ---------------------------
    ConfigCase(
        "ref_to_unknown_model",
        {**PRICE, "fields": {**PRICE["fields"],
                             "product": {"ref": "no_such_model", "column": "plan"}}},
        "{m}: stripe_activation.fields.product.ref: names model 'no_such_model', which is not "
        "in the project. Name a model with a stripe_activation block.",
    ),
    ConfigCase(
        "ref_to_model_without_block",
        {**PRICE, "fields": {**PRICE["fields"],
                             "product": {"ref": "plain_model", "column": "plan"}}},
        "{m}: stripe_activation.fields.product.ref: names model 'plain_model', which has no "
        "stripe_activation block: a reference resolves a key to the Stripe id that model "
        "synced. Add the block to 'plain_model', or map a column holding Stripe ids instead.",
    ),
    ConfigCase(
        "ref_to_another_object",
        {**PRICE, "fields": {**PRICE["fields"],
                             "product": {"ref": "env_ok", "column": "customer_id"}}},
        "{m}: stripe_activation.fields.product.ref: product holds a product id, but model "
        "'env_ok' syncs customers. Reference a model with object: product.",
    ),
    ConfigCase(
        "reference_cycle",
        None,
        "{cycle_a}: stripe_activation.fields: references form a cycle (cycle_a -> cycle_b -> "
        "cycle_a); no model could sync first. Remove one reference (map a column of Stripe ids "
        "instead).",
        extra_models={
            "cycle_a": {"object": "product", "key": {"column": "customer_id", "field": "id"},
                        "fields": {"name": "full_name",
                                   "metadata.b": {"ref": "cycle_b", "column": "plan"}}},
            "cycle_b": {"object": "product",
                        "key": {"column": "customer_id", "field": "metadata.sku"},
                        "fields": {"name": "full_name",
                                   "metadata.a": {"ref": "cycle_a", "column": "plan"}}},
        },
        select=("cycle_a", "cycle_b"),
    ),
    ConfigCase(
        "both_amounts",
        {**PRICE, "fields": {**PRICE["fields"], "unit_amount_decimal": "plan"}},
        "{m}: stripe_activation.fields: maps unit_amount and unit_amount_decimal; Stripe takes "
        "only one of them. Map one.",
    ),
    ConfigCase(
        "price_without_product",
        {**PRICE, "fields": {"currency": "plan", "unit_amount": "plan"}},
        "{m}: stripe_activation.fields: does not map product, which Stripe requires to create "
        "a price (behavior update_or_create). Map it, or use behavior: update_only.",
    ),
    ConfigCase(
        "immutable_price_field_with_update_only",
        {**PRICE, "behavior": "update_only"},
        "{m}: stripe_activation.fields.currency: 'currency' can only be set when Stripe "
        "creates a price (a change to it needs a new price), and behavior is update_only. "
        "Remove it, or use behavior: update_or_create.\n"
        "{m}: stripe_activation.fields.unit_amount: 'unit_amount' can only be set when Stripe "
        "creates a price (a change to it needs a new price), and behavior is update_only. "
        "Remove it, or use behavior: update_or_create.\n"
        "{m}: stripe_activation.fields.product: 'product' can only be set when Stripe creates "
        "a price (a change to it needs a new price), and behavior is update_only. Remove it, "
        "or use behavior: update_or_create.",
    ),
    ConfigCase(
        "ephemeral_model",
        GOOD,
        "{m}: is materialized as ephemeral, so it has no relation in the warehouse for the "
        "sync to read. Materialize it as a table, view or incremental model (`config: "
        "materialized: table`).",
    ),
    ConfigCase(
        "on_removed_archive_without_flag",
        {**GOOD, "on_removed": "archive"},
        "{m}: stripe_activation.on_removed: a Stripe customer has no archived state: name the "
        "metadata flag that marks it archived (on_removed: {{archive: {{metadata.status: "
        "archived}}}}), or use delete (Stripe's delete is permanent and immediately cancels "
        "the customer's active subscriptions).",
    ),
    ConfigCase(
        "on_removed_flag_is_the_key",
        {**GOOD, "on_removed": {"archive": {"metadata.crm_id": "archived"}}},
        "{m}: stripe_activation.on_removed.archive.metadata.crm_id: is the sync key "
        "(metadata.crm_id): archiving must keep the key, so a row that comes back finds its "
        "object. Name another key.",
    ),
    ConfigCase(
        "on_removed_unknown_mode",
        {**PRICE, "on_removed": "delete"},
        "{m}: stripe_activation.on_removed: 'delete' is not available for a price. Use ignore "
        "(the default) or archive.",
    ),
    ConfigCase(
        "on_removed_on_meter_events",
        {"object": "meter_event", "behavior": "append",
         "key": {"column": "customer_id", "field": "identifier"},
         "fields": {"event_name": {"value": "api_calls"}, "payload.value": {"value": "1"},
                    "payload.stripe_customer_id": "customer_id"},
         "on_removed": "delete"},
        "{m}: stripe_activation.on_removed: 'delete' is not available: a meter event is never "
        "removed: usage already sent is billed; correct it with a new event or a meter event "
        "adjustment. Remove the setting (or write `on_removed: ignore`).",
    ),
    ConfigCase(
        "vars_not_yaml",
        None,
        "--vars must be a YAML mapping, e.g. --vars '{{key: value}}'",
        select=("env_ok",),
        args=("--vars", "[1, 2]"),
    ),
]


def _relation(project: DbtProject, model: str) -> str:
    return f'"warehouse"."{project.schema}"."{model}"'


def _case_args(case: ConfigCase) -> list[str]:
    select = case.select or (case.id,)
    args = ["sync", *FAST, "--output", "json", *case.args]
    for name in select:
        args += ["--select", name]
    return args


@dataclass
class ConfigGroup:
    project: DbtProject
    runs: dict[str, Run]
    # The bookkeeping schema after every refused run: [] when none of them created it.
    bookkeeping_after_refusals: list[str]
    overlap_warning: Run


def build_config_project(root: Path) -> DbtProject:
    """One project for the configuration and environment groups: a model per config case,
    plus `env_ok` (a valid sync) and `env_gone` (its relation is dropped after the build)."""
    project = new_project(root)
    materialize_as_views(project)  # forty models: views build faster than tables
    project.write_seed("crm", CRM_ROWS)
    select_crm = "select * from {{ ref('crm') }}"
    for case in CONFIG_CASES:
        for name, sync in case.models.items():
            sql_text = select_crm
            if name == "ephemeral_model":
                sql_text = "{{ config(materialized='ephemeral') }}\n" + select_crm
            project.write_model(name, sql_text, sync=sync)
    project.write_model("plain_model", select_crm)
    project.write_model("env_ok", select_crm, sync=GOOD)
    project.write_model("env_gone", select_crm, sync=GOOD)
    project.write_model(
        "overlap_by_email",
        select_crm,
        sync={
            "object": "customer",
            "key": {"column": "email", "field": "email"},
            "fields": {"name": "full_name"},
        },
    )
    project.write_model(
        "overlap_by_crm_id",
        select_crm,
        sync={**GOOD, "fields": {"email": "email", "name": "full_name"}},
    )
    add_profile_targets(project, pg_down={"port": 1})
    project.build()
    sql(project, f'drop view "{project.schema}".env_gone')
    return project


@pytest.fixture(scope="module")
def config_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConfigGroup]:
    project = build_config_project(tmp_path_factory.mktemp("config") / "proj")

    def run_case(case: ConfigCase) -> Run:
        return run_cli(project, *_case_args(case), target=isolated_target(project, case.id))

    # Cases refused before the warehouse is opened run two at a time (dbt's selector is the
    # slow part); DuckDB admits one process, so the others run one by one.
    early = [c for c in CONFIG_CASES if not c.warehouse]
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = dict(zip([c.id for c in early], pool.map(run_case, early), strict=True))
    for case in CONFIG_CASES:
        if case.warehouse:
            runs[case.id] = run_case(case)
    refusals_left = bookkeeping_schemas(project)
    warning = run_cli(
        project,
        "plan",
        "--output",
        "json",
        "--select",
        "overlap_by_email",
        "--select",
        "overlap_by_crm_id",
        target=isolated_target(project, "overlap"),
    )
    yield ConfigGroup(project, runs, refusals_left, warning)


@pytest.mark.parametrize("case", CONFIG_CASES, ids=lambda c: c.id)
def test_config(case: ConfigCase, config_group: ConfigGroup) -> None:
    """Exit 2, the exact message naming the model, the setting and the fix; not one Stripe
    request, no results file, no bookkeeping schema."""
    run = config_group.runs[case.id]
    expected = case.expected(relation=_relation(config_group.project, case.id))
    assert run.json == {"error": expected, "error_type": "ConfigError", "exit_code": 2}, (
        run.explain()
    )
    assert run.code == 2
    assert_no_request(run)
    assert not run.results_written
    assert "Traceback" not in run.stderr
    assert config_group.bookkeeping_after_refusals == []


def test_config_overlapping_fields_warn(config_group: ConfigGroup) -> None:
    """Two models on the same object with different keys may meet on one customer: a warning
    naming both models and the shared fields; the run goes on (this plan writes nothing)."""
    run = config_group.overlap_warning
    assert run.code == 0, run.explain()
    assert one_line(run.stderr).startswith(
        f"Warning: {label('overlap_by_crm_id')} (key metadata.crm_id) and "
        f"{label('overlap_by_email')} (key email) both write email, name on Stripe customers: "
        "a customer both keys match gets whichever model syncs last."
    ), run.stderr
    assert [m["counts"]["created"] for m in run.json["models"]] == [2, 2]
    assert run.stats["writes_committed"] == 0


def test_config_error_in_text_mode(config_group: ConfigGroup) -> None:
    """Without --output json: one `Error:` line on stderr, nothing on stdout, no traceback."""
    project = config_group.project
    run = run_cli(
        project,
        "sync",
        "--select",
        "unknown_field_path",
        target=isolated_target(project, "text_mode"),
    )
    assert run.code == 2
    assert run.stdout == ""
    assert one_line(run.stderr) == one_line(
        "Error: " + next(c for c in CONFIG_CASES if c.id == "unknown_field_path").expected()
    )
    assert_no_request(run)


# ============================================================================================
# Environment: the project, the warehouse or Stripe cannot be used. Exit 2, no Stripe write.
# ============================================================================================


def env_run(config_group: ConfigGroup, name: str, *args: str, **kwargs: Any) -> Run:
    project = config_group.project
    kwargs.setdefault("target", isolated_target(project, name))
    return run_cli(project, "sync", *FAST, "--select", "env_ok", *args, **kwargs)


def assert_no_request(run: Run) -> None:
    """Stopped before Stripe: the emulator saw nothing; the user saw no traceback."""
    assert run.stats["requests_total"] == 0, run.explain()
    assert "Traceback" not in run.stderr


def test_env_no_manifest(config_group: ConfigGroup, tmp_path: Path) -> None:
    run = env_run(config_group, "no_manifest", "--output", "json", target=tmp_path)
    assert run.json["error"] == (
        f"No dbt manifest at {tmp_path}/manifest.json. Run `dbt run` (or `dbt parse`) in "
        f"{config_group.project.root} first, or pass --target-path."
    ), run.explain()
    assert run.json["error_type"] == "ProjectError"
    assert run.code == 2
    assert_no_request(run)
    assert list(tmp_path.iterdir()) == []


def test_env_relation_dropped(config_group: ConfigGroup) -> None:
    project = config_group.project
    run = run_cli(
        project,
        "sync",
        *FAST,
        "--output",
        "json",
        "--select",
        "env_gone",
        target=isolated_target(project, "relation_dropped"),
    )
    assert run.json == {
        "error": f"The relation for model 'env_gone' ({_relation(project, 'env_gone')}) does "
        "not exist in target 'duckdb' (duckdb): run `dbt run --select env_gone` first.",
        "error_type": "WarehouseError",
        "exit_code": 2,
    }, run.explain()
    assert_no_request(run)
    assert not run.results_written


def test_env_no_api_key(config_group: ConfigGroup) -> None:
    run = env_run(config_group, "no_api_key", "--output", "json", api_key=None)
    assert run.json == {
        "error": "No Stripe API key: set STRIPE_API_KEY (e.g. export STRIPE_API_KEY=sk_test_...)"
        ", or name another variable with --api-key-env.",
        "error_type": "StripeConnectionError",
        "exit_code": 2,
    }, run.explain()
    assert_no_request(run)
    assert not run.results_written


def test_env_api_key_env_names_an_unset_variable(config_group: ConfigGroup) -> None:
    run = env_run(
        config_group, "unset_key_env", "--output", "json", "--api-key-env", "CRM_STRIPE_KEY"
    )
    assert run.json["error"] == (
        "No Stripe API key: set CRM_STRIPE_KEY (e.g. export CRM_STRIPE_KEY=sk_test_...), or "
        "name another variable with --api-key-env."
    ), run.explain()
    assert run.code == 2
    assert_no_request(run)


def test_env_publishable_key(config_group: ConfigGroup) -> None:
    run = env_run(config_group, "publishable_key", "--output", "json", api_key="pk_test_catalogue")
    assert run.json == {
        "error": "STRIPE_API_KEY does not hold a Stripe secret or restricted key "
        "(sk_test_/sk_live_/rk_test_/rk_live_): publishable keys (pk_) cannot write.",
        "error_type": "StripeConnectionError",
        "exit_code": 2,
    }, run.explain()
    assert_no_request(run)


def _assert_refused_by_stripe(config_group: ConfigGroup, run: Run, message: str) -> None:
    """A key Stripe refuses: the model errors with exit 2, the message in stdout's JSON, the
    results file and on stderr; nothing reached Stripe's books or the sync state."""
    assert run.code == 2, run.explain()
    document = run.json
    assert document["error"] == f"env_ok: {message}"
    assert document["models"][0]["status"] == "error"
    assert document["models"][0]["error"] == message
    # Nothing synced. (A row whose turn came after the refusal may be counted `failed` with
    # "run aborted", depending on timing: it was never sent.)
    totals = document["totals"]
    assert totals["created"] == totals["updated"] == totals["unchanged"] == 0
    assert all(r["reason"] == "run aborted" for r in document["models"][0]["failed"])
    assert (run.target / "stripe_sync_results.json").read_text().strip() == run.stdout.strip()
    assert one_line(run.stderr).endswith(one_line(f"Error: env_ok: {message}"))
    assert "Traceback" not in run.stderr
    assert run.stats["writes_committed"] == 0
    assert all(stripe_id is None for _, stripe_id, _ in state_rows(config_group.project, "env_ok"))


def test_env_invalid_key_401(config_group: ConfigGroup) -> None:
    run = env_run(
        config_group,
        "invalid_key",
        "--output",
        "json",
        api_key="sk_test_revoked0001",
        emulator_config={"api_keys": ["sk_test_valid"]},
    )
    _assert_refused_by_stripe(
        config_group,
        run,
        (
            "Stripe refused the API key in $STRIPE_API_KEY (401): Invalid API Key provided: "
            f"{mask_key('sk_test_revoked0001')}. Set $STRIPE_API_KEY to a valid secret (sk_) or "
            "restricted (rk_) key from the Stripe dashboard (Developers > API keys)."
        ),
    )
    assert run.stats["by_endpoint_status"] == {"GET /v1/customers": {"401": 1}}


def _permission_message(key: str, permission: str) -> str:
    """Stripe names the key by its prefix, stars and last four characters."""
    return (
        f"The key in $STRIPE_API_KEY lacks the '{permission}' permission (403): The provided "
        f"key '{mask_key(key)}' does not have the required permissions for this endpoint "
        "on account 'acct_1EmuLat0rTest000'. Having the "
        f"'{permission}' permission would allow this request to continue. Grant "
        f"'{permission}' to the restricted key in the Stripe dashboard (Developers > API "
        "keys), or use a key that has it."
    )


def test_env_restricted_key_without_customer_write_403(config_group: ConfigGroup) -> None:
    key = "rk_test_readonly0002"
    run = env_run(
        config_group,
        "no_write_permission",
        "--output",
        "json",
        api_key=key,
        emulator_config={"restricted_keys": {key: ["rak_customer_write"]}},
    )
    _assert_refused_by_stripe(config_group, run, _permission_message(key, "rak_customer_write"))
    # The lookup was allowed; the first create was refused and ended the run.
    statuses = run.stats["by_endpoint_status"]
    assert statuses["GET /v1/customers"] == {"200": 1}
    assert set(statuses["POST /v1/customers"]) == {"403"}


def test_env_restricted_key_without_customer_read_403(config_group: ConfigGroup) -> None:
    key = "rk_test_writeonly0003"
    run = env_run(
        config_group,
        "no_read_permission",
        "--output",
        "json",
        api_key=key,
        emulator_config={"restricted_keys": {key: ["rak_customer_read"]}},
    )
    _assert_refused_by_stripe(config_group, run, _permission_message(key, "rak_customer_read"))
    assert run.stats["by_endpoint_status"] == {"GET /v1/customers": {"403": 1}}


def test_env_unreachable_api_base(config_group: ConfigGroup) -> None:
    """Nothing listens on port 1: the SDK retries the lookup (4 retries), then the model stops."""
    run = env_run(config_group, "unreachable", "--output", "json", api_base="http://127.0.0.1:1")
    _assert_refused_by_stripe(
        config_group,
        run,
        (
            "list customer: no answer from http://127.0.0.1:1 after 4 retries: [Errno 111] "
            "Connection refused."
        ),
    )
    assert run.stats["requests_total"] == 0  # the emulator was not the base: it saw nothing


def test_env_duckdb_file_locked(config_group: ConfigGroup) -> None:
    """Another process holds the DuckDB file (a dbt run still going)."""
    import duckdb

    project = config_group.project
    path = project.root / "warehouse.duckdb"
    with duckdb.connect(str(path)):
        run = env_run(config_group, "duckdb_locked", "--output", "json")
    error = run.json["error"]
    assert re.fullmatch(
        re.escape(
            "Cannot connect to the duckdb warehouse of target 'duckdb' (duckdb), profile "
            f"'test_project': IO Error: Could not set lock on file \"{path}\": Conflicting "
            "lock is held in "
        )
        + r".+ \(PID \d+\)\. .*"
        + re.escape(
            "DuckDB lets one process write a database file at a time: wait for the running dbt "
            "command (or other sync) to finish, then run again."
        ),
        error,
    ), run.explain()
    assert run.json["error_type"] == "WarehouseError"
    assert run.code == 2
    assert_no_request(run)


def test_env_warehouse_down(config_group: ConfigGroup) -> None:
    """A PostgreSQL target whose server does not answer (port 1): the manifest was parsed
    for it (`dbt parse` needs no connection), the sync cannot connect."""
    project = config_group.project
    target = project.root / "target_pg_down"
    parsed = subprocess.run(
        [str(BIN / "dbt"), "parse", "--target", "pg_down", "--target-path", str(target)],
        cwd=project.root,
        env=project.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert parsed.returncode == 0, parsed.stdout + parsed.stderr
    run = run_cli(
        project,
        "sync",
        *FAST,
        "--output",
        "json",
        "--select",
        "env_ok",
        target=target,
        dbt_target="pg_down",
    )
    assert run.json == {
        "error": "Cannot connect to the postgres warehouse of target 'pg_down' (postgres), "
        "profile 'test_project': connection to server at \"127.0.0.1\", port 1 failed: "
        "Connection refused Is the server running on that host and accepting TCP/IP "
        f"connections?. Check the 'pg_down' output in {project.root}/profiles.yml, "
        "then run `dbt debug --target pg_down`.",
        "error_type": "WarehouseError",
        "exit_code": 2,
    }, run.explain()
    assert_no_request(run)
    assert not run.results_written


# --- PostgreSQL: a role that may read the models but not create the state schema ----------

READONLY_ROLE = "dsa_readonly"


def _psql(statement: str) -> None:
    """Run statements as the superuser (roles and grants are outside dbt)."""
    import psycopg2

    con = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test")
    con.autocommit = True
    try:
        with con.cursor() as cur:
            cur.execute(statement)
    finally:
        con.close()


@pytest.fixture(scope="module")
def readonly_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbtProject]:
    require_postgres()
    project = new_project(tmp_path_factory.mktemp("readonly") / "proj", "postgres")
    project.write_seed("crm", CRM_ROWS)
    project.write_model("env_ok", "select * from {{ ref('crm') }}", sync=GOOD)
    add_profile_targets(project, pg_readonly={"user": READONLY_ROLE})
    project.build()
    _psql(
        f"do $$ begin if not exists (select from pg_roles where rolname = '{READONLY_ROLE}') "
        f"then create role {READONLY_ROLE} login; end if; end $$; "
        f"revoke create on database test from {READONLY_ROLE}; "
        f'grant usage on schema "{project.schema}" to {READONLY_ROLE}; '
        f'grant select on all tables in schema "{project.schema}" to {READONLY_ROLE};'
    )
    try:
        yield project
    finally:
        _psql(
            f'revoke all on all tables in schema "{project.schema}" from {READONLY_ROLE}; '
            f'revoke usage on schema "{project.schema}" from {READONLY_ROLE};'
        )
        drop_postgres_schema(project.schema)


def test_env_state_schema_not_writable(readonly_project: DbtProject) -> None:
    project = readonly_project
    run = run_cli(project, "sync", *FAST, "--output", "json", dbt_target="pg_readonly")
    schema = f'"test"."{project.schema}_stripe_activation"'
    assert run.json == {
        "error": f"Cannot create the sync state tables in {schema} ({schema}."
        '"stripe_sync_state", ...): The warehouse query failed on target '
        "'pg_readonly' (postgres): permission denied for database test. The user of the "
        "dbt profile must be allowed to create that schema and its tables (PostgreSQL: "
        "`grant create on database <database> to <user>`), or an admin creates the "
        "schema and grants the user USAGE and CREATE on it. Then run again.",
        "error_type": "WarehouseError",
        "exit_code": 2,
    }, run.explain()
    assert_no_request(run)
    assert bookkeeping_schemas(project) == []


# ============================================================================================
# Rows: a bad row is rejected with its field and reason; every other row syncs.
# ============================================================================================

ROW_COLUMNS = (
    "crm_id",
    "email",
    "name",
    "phone",
    "balance",
    "tax_exempt",
    "locales",
    "note",
    "ship_name",
    "ship_line1",
    "invoice_prefix",
    "next_seq",
    "pm",
)
ROW_SYNC = {
    "object": "customer",
    "key": {"column": "crm_id", "field": "metadata.crm_id"},
    "fields": {
        "email": "email",
        "name": "name",
        "phone": "phone",
        "balance": "balance",
        "tax_exempt": "tax_exempt",
        "preferred_locales": "locales",
        "metadata.note": "note",
        "shipping.name": "ship_name",
        "shipping.address.line1": "ship_line1",
        "invoice_prefix": "invoice_prefix",
        "next_invoice_sequence": "next_seq",
        "payment_method": "pm",
    },
}
EMOJI = "Zoë 🚀 👩\u200d👩\u200d👧"  # a family emoji is 5 code points joined by ZWJ
COMBINING = "Zoe\u0308 Ba\u0301n"  # decomposed: e + combining diaeresis, never normalized


@dataclass(frozen=True)
class RowCase:
    """One row of the `row_cases` model (its crm_id is the case id unless `crm_id` is set)."""

    id: str
    values: Mapping[str, str | Sql | None]
    reason: str | None = None  # exact rejection reason; None: the row is synced
    expect: Mapping[str, Any] = field(default_factory=dict)  # Stripe path -> value, if synced
    key: str | None = "<id>"
    copies: int = 1

    @property
    def crm_id(self) -> str | None:
        return self.id if self.key == "<id>" else self.key

    def rows(self) -> list[dict[str, str | Sql | None]]:
        row: dict[str, str | Sql | None] = {
            "crm_id": self.crm_id,
            "email": f"{self.id}@example.com",
        }
        row.update(self.values)
        return [row] * self.copies


LONG_EMAIL = Sql("repeat('e', 505) || '@example.com'", "e" * 505 + "@example.com")
NULL_KEY_REASON = "key column crm_id is null or empty"
SHIPPING_PAIR = "(Stripe needs shipping.address.line1 and shipping.name together)"

ROW_CASES = [
    RowCase(
        "ok_plain",
        {"name": "Ada Lovelace"},
        expect={"name": "Ada Lovelace", "email": "ok_plain@example.com"},
    ),
    RowCase(
        "ok_every_field",
        {
            "name": "Grace Hopper",
            "phone": "+14155550101",
            "balance": "-500",
            "tax_exempt": "reverse",
            "locales": "fr-CA,en",
            "note": "VIP",
            "ship_name": "Grace",
            "ship_line1": "12 Rue de la Paix",
            "invoice_prefix": "GH01",
            "next_seq": "7",
        },
        expect={
            "name": "Grace Hopper",
            "phone": "+14155550101",
            "balance": -500,
            "tax_exempt": "reverse",
            "preferred_locales": ["fr-CA", "en"],
            "metadata.note": "VIP",
            "shipping.name": "Grace",
            "shipping.address.line1": "12 Rue de la Paix",
            "invoice_prefix": "GH01",
            "next_invoice_sequence": 7,
        },
    ),
    RowCase("ok_name_at_256", {"name": repeat("n", 256)}, expect={"name": "n" * 256}),
    RowCase("ok_note_at_500", {"note": repeat("v", 500)}, expect={"metadata.note": "v" * 500}),
    RowCase(
        "ok_emoji", {"name": EMOJI, "note": "🚀"}, expect={"name": EMOJI, "metadata.note": "🚀"}
    ),
    RowCase("ok_combining_marks", {"name": COMBINING}, expect={"name": COMBINING}),
    RowCase("null_key", {}, NULL_KEY_REASON, key=None),
    RowCase("blank_key", {}, NULL_KEY_REASON, key="   "),
    RowCase(
        "duplicate_key",
        {},
        "key metadata.crm_id='duplicate_key' is shared by 2 rows of "
        "the model; each Stripe customer needs exactly one row",
        copies=2,
    ),
    RowCase(
        "invalid_email",
        {"email": "not-an-email"},
        "email (column email): is not a valid email address",
    ),
    RowCase(
        "email_too_long",
        {"email": LONG_EMAIL},
        "email (column email): is 517 characters; Stripe allows at most 512",
    ),
    RowCase(
        "name_too_long",
        {"name": repeat("n", 257)},
        "name (column name): is 257 characters; Stripe allows at most 256",
    ),
    RowCase(
        "phone_too_long",
        {"phone": "+1" + "5" * 19},
        "phone (column phone): is 21 characters; Stripe allows at most 20",
    ),
    RowCase(
        "metadata_value_too_long",
        {"note": repeat("v", 501)},
        "metadata.note (column note): is 501 characters; Stripe allows at most 500",
    ),
    RowCase(
        "very_long_string",
        {"note": repeat("v", 1_000_000)},
        "metadata.note (column note): is 1000000 characters; Stripe allows at most 500",
    ),
    RowCase(
        "decimal_balance",
        {"balance": "12.5"},
        "balance (column balance): is '12.5'; expected a whole number",
    ),
    RowCase(
        "text_balance",
        {"balance": "ten"},
        "balance (column balance): is 'ten'; expected a whole number",
    ),
    RowCase(
        "unknown_tax_exempt",
        {"tax_exempt": "exempted"},
        "tax_exempt (column tax_exempt): is 'exempted'; Stripe accepts exempt, none or reverse",
    ),
    RowCase(
        "malformed_locale",
        {"locales": "fr,en_US"},
        "preferred_locales (column locales): item 'en_US' is not a language tag like en, "
        "fr-CA or es-419",
    ),
    RowCase(
        "shipping_without_name",
        {"ship_line1": "1 Main St"},
        f"shipping.name: is required when shipping is set {SHIPPING_PAIR}",
    ),
    RowCase(
        "shipping_without_address",
        {"ship_name": "Bo"},
        f"shipping.address.line1: is required when shipping is set {SHIPPING_PAIR}",
    ),
    RowCase(
        "nul_character",
        {"name": "Nul\x00Byte"},
        "name (column name): contains a NUL character, which Stripe does not accept",
    ),
    RowCase(
        "lowercase_invoice_prefix",
        {"invoice_prefix": "abc"},
        "invoice_prefix (column invoice_prefix): must be 1 to 12 uppercase letters or "
        "digits (A-Z, 0-9)",
    ),
    RowCase(
        "zero_invoice_sequence",
        {"next_seq": "0"},
        "next_invoice_sequence (column next_seq): is 0; Stripe requires at least 1",
    ),
    RowCase(
        "two_problems",
        {"email": "nope", "balance": "1.5"},
        "email (column email): is not a valid email address; balance (column balance): is "
        "'1.5'; expected a whole number",
    ),
    RowCase(
        "stripe_refuses_the_row",
        {"pm": "pm_missing"},
        "Stripe: create customer: 400 resource_missing: No such PaymentMethod: "
        "'pm_missing'. (request req_*)",
    ),
]

# A model keyed on email: case-insensitive keys, and keys Stripe itself holds twice.
EMAIL_ROWS = [
    {"email": "new@example.com", "name": "New Customer"},
    {"email": "old@example.com", "name": "Old Renamed"},
    {"email": "Amy@Example.com", "name": "Amy One"},
    {"email": "amy@example.com", "name": "Amy Two"},
    {"email": "twin@example.com", "name": "Which Twin"},
    {"email": "not-an-email", "name": "Nobody"},
]
EMAIL_SYNC = {
    "object": "customer",
    "key": {"column": "email", "field": "email"},
    "fields": {"name": "name"},
}


@dataclass
class RowGroup:
    project: DbtProject
    emulator: EmulatorHandle
    run: Run
    seeded: dict[str, list[str]]

    def rejected(self, model: str, key: str | None) -> list[str]:
        return [r["reason"] for r in self.run.model(model)["rejected"] if r["key"] == key]


@pytest.fixture(scope="module")
def row_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RowGroup]:
    project = new_project(tmp_path_factory.mktemp("rows") / "proj")
    rows = [row for case in ROW_CASES for row in case.rows()]
    project.write_model("row_cases", values_model(ROW_COLUMNS, rows), sync=ROW_SYNC)
    project.write_model("email_cases", values_model(("email", "name"), EMAIL_ROWS), sync=EMAIL_SYNC)
    project.build()
    with start_emulator(in_process=True, seed=5) as emulator:
        seeded = {
            "twin": emulator.seed(
                [
                    {"email": "twin@example.com", "name": "Twin A"},
                    {"email": "twin@example.com", "name": "Twin B"},
                ]
            ),
            "old": emulator.seed([{"email": "old@example.com", "name": "Old"}]),
        }
        emulator.reset(stats_only=True)
        run = run_cli(project, "sync", *FAST, "--output", "json", emulator=emulator)
        yield RowGroup(project, emulator, run, seeded)


def _stripe_value(customer: Mapping[str, Any], path: str) -> Any:
    if path.startswith("metadata."):
        return customer["metadata"].get(path.split(".", 1)[1])
    node: Any = customer
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


@pytest.mark.parametrize("case", ROW_CASES, ids=lambda c: c.id)
def test_row(case: RowCase, row_group: RowGroup) -> None:
    """A bad row: rejected with its exact reason, absent from Stripe, recorded in the state
    without a Stripe id. A good row beside it: created with exactly the model's values."""
    customers = customers_by(row_group.emulator, "crm_id")
    key = (case.crm_id or "").strip() or None
    if case.reason is None:
        assert row_group.rejected("row_cases", key) == []
        [customer] = customers[case.id]
        for path, value in {"email": f"{case.id}@example.com", **case.expect}.items():
            assert _stripe_value(customer, path) == value, path
        return
    reasons = row_group.rejected("row_cases", key)
    if "req_*" in case.reason:
        pattern = re.escape(case.reason).replace(re.escape("req_*"), r"req_\w+")
        assert len(reasons) == 1 and re.fullmatch(pattern, reasons[0]), reasons
    else:
        expected = [case.reason] * case.copies
        if key is None:  # the null and the blank key rows share a report entry shape
            expected = [NULL_KEY_REASON, NULL_KEY_REASON]
        assert reasons == expected
    assert f"{case.id}@example.com" not in {c["email"] for c in row_group.emulator.customers()}
    if key is not None:
        assert customers.get(case.id) is None
        state = [r for r in state_rows(row_group.project, "row_cases") if r[0] == key]
        assert state == [(key, None, "rejected")] or case.copies > 1


def test_rows_reject_only_themselves(row_group: RowGroup) -> None:
    """Exit 1 (rows rejected); every good row created, each exactly once; the bad rows cost
    no write, and the one Stripe refused cost one."""
    run = row_group.run
    assert run.code == 1, run.explain()
    good = sorted(c.id for c in ROW_CASES if c.reason is None)
    bad_rows = sum(c.copies for c in ROW_CASES if c.reason is not None)
    counts = run.model("row_cases")["counts"]
    assert counts == {
        "created": len(good),
        "updated": 0,
        "unchanged": 0,
        "rejected": bad_rows,
        "not_found": 0,
        "failed": 0,
        "replaced": 0,
        "skipped": 0,
        "sent": 0,
        "already_sent": 0,
        "uncertain": 0,
        "archived": 0,
        "deleted": 0,
        "locked": 0,
    }
    assert sorted(k for k in customers_by(row_group.emulator, "crm_id") if k) == good
    writes = row_group.emulator.stats()["by_endpoint_status"]["POST /v1/customers"]
    assert writes == {"200": len(good) + 1, "400": 1}  # + new@example.com; - pm_missing


def test_email_keys_compare_case_insensitively(row_group: RowGroup) -> None:
    """`Amy@Example.com` and `amy@example.com` are one key: both rows are rejected."""
    reason = (
        "key email='amy@example.com' is shared by 2 rows of the model; each Stripe "
        "customer needs exactly one row"
    )
    assert row_group.rejected("email_cases", "amy@example.com") == [reason, reason]
    emails = [c["email"] for c in row_group.emulator.customers()]
    assert "amy@example.com" not in emails and "Amy@Example.com" not in emails


def test_email_key_matching_two_stripe_customers(row_group: RowGroup) -> None:
    """Stripe holds the email twice: the row is rejected naming both ids; neither changes."""
    first, second = row_group.seeded["twin"]
    [reason] = row_group.rejected("email_cases", "twin@example.com")
    ids = re.fullmatch(
        r"key email='twin@example.com' matches 2 Stripe customers "
        r"\((cus_\w+), (cus_\w+)\); refusing to pick one",
        reason,
    )
    assert ids is not None, reason
    assert set(ids.groups()) == {first, second}
    twins = {
        c["id"]: c["name"]
        for c in row_group.emulator.customers()
        if c["email"] == "twin@example.com"
    }
    assert twins == {first: "Twin A", second: "Twin B"}


def test_email_key_that_is_not_an_email(row_group: RowGroup) -> None:
    assert row_group.rejected("email_cases", "not-an-email") == [
        "email (column email): is not a valid email address"
    ]


def test_email_rows_beside_the_bad_ones_sync(row_group: RowGroup) -> None:
    """The new email is created, the existing one updated in place (matched, not duplicated)."""
    counts = row_group.run.model("email_cases")["counts"]
    assert counts == {
        "created": 1,
        "updated": 1,
        "unchanged": 0,
        "rejected": 4,
        "not_found": 0,
        "failed": 0,
        "replaced": 0,
        "skipped": 0,
        "sent": 0,
        "already_sent": 0,
        "uncertain": 0,
        "archived": 0,
        "deleted": 0,
        "locked": 0,
    }
    by_email = {}
    for customer in row_group.emulator.customers():
        by_email.setdefault(customer["email"], []).append(customer)
    assert [c["name"] for c in by_email["new@example.com"]] == ["New Customer"]
    [old] = by_email["old@example.com"]
    assert (old["id"], old["name"]) == (row_group.seeded["old"][0], "Old Renamed")


def test_env_unknown_target(row_group: RowGroup) -> None:
    """`--target prod` where the profile has none (in the rows project: its models are
    valid, so the warehouse is the first thing to fail)."""
    project = row_group.project
    run = run_cli(
        project,
        "sync",
        *FAST,
        "--output",
        "json",
        target=isolated_target(project, "unknown_target"),
        dbt_target="prod",
    )
    assert run.json == {
        "error": f"dbt cannot load the project in {project.root} with the profiles in "
        f"{project.root}: The profile 'test_project' does not have a target named "
        "'prod'. The valid target names for this profile are: - duckdb - postgres. "
        "Fix dbt_project.yml / profiles.yml (`dbt debug` shows the same problem), or "
        "pass --profiles-dir / --profile / --target.",
        "error_type": "ProjectError",
        "exit_code": 2,
    }, run.explain()
    assert_no_request(run)
    assert not run.results_written


# ============================================================================================
# The catalogue's table and its tests say the same thing.
# ============================================================================================


def test_catalogue_doc_lists_every_test() -> None:
    """Every case's test is in docs/BAD_INPUT.md, and every test the table names exists."""
    from tests.catalogue import test_security

    doc = (Path(__file__).resolve().parents[2] / "docs" / "BAD_INPUT.md").read_text()
    last_cells = [
        line.rstrip(" |").rsplit("|", 1)[-1] for line in doc.splitlines() if line.startswith("| ")
    ]
    named = {n for cell in last_cells for n in re.findall(r"`(test_\w+(?:\[\w+\])?)`", cell)}
    tests = {f"test_config[{c.id}]" for c in CONFIG_CASES}
    tests |= {f"test_row[{c.id}]" for c in ROW_CASES}
    for module in (globals(), vars(test_security)):
        tests |= {
            name
            for name, item in module.items()
            if name.startswith("test_")
            and callable(item)
            and name not in ("test_config", "test_row", "test_catalogue_doc_lists_every_test")
        }
    assert sorted(tests - named) == [], "tests missing from the doc"
    assert sorted(named - tests) == [], "the doc names tests that do not exist"


# ============================================================================================
# Catalogue rows: a bad price rejects only itself, with the reason.
# ============================================================================================

PRICE_ROWS = [
    {"lookup_key": "good_monthly", "currency": "USD", "amount": "900"},
    {"lookup_key": "k" * 201, "currency": "usd", "amount": "900"},
    {"lookup_key": "bad_currency", "currency": "usdollar", "amount": "900"},
    {"lookup_key": "fractional_amount", "currency": "usd", "amount": "12.5"},
]
PRICE_REASONS = {
    "k" * 201: "lookup_key (column lookup_key): is 201 characters; Stripe allows at most 200",
    "bad_currency": "currency (column currency): is 'usdollar'; Stripe accepts a three-letter "
    "ISO 4217 currency code (usd, eur, ...)",
    "fractional_amount": "unit_amount (column amount): is '12.5'; expected a whole number",
}


def test_price_rows_reject_only_themselves(tmp_path: Path) -> None:
    project = new_project(tmp_path / "proj")
    project.write_seed("catalogue", [{"sku": "prod_one", "name": "One"}])
    project.write_seed("plans", [{**row, "sku": "prod_one"} for row in PRICE_ROWS])
    project.write_model("stripe_products", "select * from {{ ref('catalogue') }}", sync={
        "object": "product", "key": {"column": "sku", "field": "id"}, "fields": {"name": "name"},
    })
    project.write_model("stripe_prices", "select * from {{ ref('plans') }}", sync={
        "object": "price", "key": {"column": "lookup_key", "field": "lookup_key"},
        "fields": {"product": {"ref": "stripe_products", "column": "sku"},
                   "currency": "currency", "unit_amount": "amount"},
    })
    project.build()
    with start_emulator(seed=5) as emulator:
        run = run_cli(project, "sync", *FAST, "--output", "json", emulator=emulator)
        assert run.code == 1, run.explain()
        prices = run.model("stripe_prices")
        assert prices["counts"]["created"] == 1
        assert {r["key"]: r["reason"] for r in prices["rejected"]} == PRICE_REASONS
        [price] = emulator.prices()
        assert (price["lookup_key"], price["currency"]) == ("good_monthly", "usd")
        assert run.stats["by_endpoint"].get("POST /v1/prices") == 1
