"""The `stripe_activation` meta block -> SyncSpec: every rule, with its exact message."""

from __future__ import annotations

from typing import Any

import pytest

from dbt_stripe_activation.cross_model import check_overlaps
from dbt_stripe_activation.errors import ConfigError
from dbt_stripe_activation.meta_block import parse_sync_spec, parse_sync_specs
from dbt_stripe_activation.objects.customer import CUSTOMER
from dbt_stripe_activation.project import DbtModel
from dbt_stripe_activation.spec import Behavior, FieldMapping, NullPolicy

SKIP, CLEAR = NullPolicy.SKIP, NullPolicy.CLEAR


def model(block: Any, name: str = "stripe_customers") -> DbtModel:
    return DbtModel(
        unique_id=f"model.shop.{name}",
        name=name,
        package_name="shop",
        relation_name=f'"db"."main"."{name}"',
        database="db",
        schema="main",
        alias=name,
        original_file_path=f"models/{name}.sql",
        sync_block=block,
    )


def label(name: str = "stripe_customers") -> str:
    return f"model '{name}' (models/{name}.sql)"


def block(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "object": "customer",
        "key": {"column": "customer_id", "field": "metadata.crm_id"},
        "fields": {"email": "email", "name": "full_name"},
    }
    for name, value in changes.items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def errors_of(raw: Any) -> list[str]:
    """The problems one block has, each line without the model label."""
    with pytest.raises(ConfigError) as info:
        parse_sync_spec(model(raw))
    lines = str(info.value).split("\n")
    prefix = label() + ": "
    assert all(line.startswith(prefix) for line in lines), lines
    return [line[len(prefix) :] for line in lines]


# --- a valid block --------------------------------------------------------------------------


def test_the_readme_block_parses() -> None:
    raw = {
        "object": "customer",
        "behavior": "update_or_create",
        "key": {"column": "customer_id", "field": "metadata.crm_id"},
        "null_values": "skip",
        "fields": {
            "email": "email",
            "name": "full_name",
            "address.city": "city",
            "preferred_locales": "locales",
            "metadata.plan": "plan",
            "description": {"column": "notes", "null_values": "clear"},
        },
    }
    spec = parse_sync_spec(model(raw))
    assert spec.object is CUSTOMER
    assert spec.behavior is Behavior.UPDATE_OR_CREATE
    assert (spec.key.column, spec.key.field) == ("customer_id", "metadata.crm_id")
    assert spec.key.spec.kind == "metadata" and spec.key.metadata_name == "crm_id"
    assert spec.null_values is SKIP
    assert spec.fields == (
        FieldMapping("email", "email", SKIP),
        FieldMapping("name", "full_name", SKIP),
        FieldMapping("address.city", "city", SKIP),
        FieldMapping("preferred_locales", "locales", SKIP),
        FieldMapping("metadata.plan", "plan", SKIP),
        FieldMapping("description", "notes", CLEAR),
        FieldMapping("metadata.crm_id", "customer_id", SKIP),  # the key's own field, appended
    )
    assert spec.columns == ("customer_id", "email", "full_name", "city", "locales", "plan",
                            "notes")  # fmt: skip


def test_defaults() -> None:
    spec = parse_sync_spec(model(block(fields=None)))
    assert spec.behavior is Behavior.UPDATE_OR_CREATE
    assert spec.null_values is SKIP
    assert spec.fields == (FieldMapping("metadata.crm_id", "customer_id"),)


def test_email_key_joins_fields_unless_mapped_to_the_same_column() -> None:
    spec = parse_sync_spec(
        model(block(key={"column": "email", "field": "email"}, fields={"name": "n"}))
    )
    assert spec.fields == (FieldMapping("name", "n"), FieldMapping("email", "email"))
    spec = parse_sync_spec(
        model(block(key={"column": "email", "field": "email"},
                    fields={"email": {"column": "email", "null_values": "clear"}}))
    )  # fmt: skip
    assert spec.fields == (FieldMapping("email", "email", CLEAR),)


def test_id_key_with_update_only_does_not_join_fields() -> None:
    spec = parse_sync_spec(
        model(block(behavior="update_only", key={"column": "stripe_id", "field": "id"}))
    )
    assert spec.behavior is Behavior.UPDATE_ONLY
    assert spec.key.spec.kind == "id"
    assert [m.path for m in spec.fields] == ["email", "name"]


def test_model_wide_clear_applies_where_stripe_can_unset() -> None:
    spec = parse_sync_spec(
        model(block(null_values="clear", fields={"name": "n", "balance": "b",
                                                 "metadata.plan": "p"}))
    )  # fmt: skip
    assert spec.null_values is CLEAR
    assert spec.fields == (
        FieldMapping("name", "n", CLEAR),
        FieldMapping("balance", "b", SKIP),  # Stripe has no empty balance
        FieldMapping("metadata.plan", "p", CLEAR),
        FieldMapping("metadata.crm_id", "customer_id", SKIP),
    )


def test_fingerprint_changes_with_the_mapping() -> None:
    first = parse_sync_spec(model(block()))
    second = parse_sync_spec(model(block(fields={"email": "email", "name": "other"})))
    assert first.fingerprint != second.fingerprint
    assert first.fingerprint == parse_sync_spec(model(block())).fingerprint


# --- the block and its settings -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"), [(["object", "customer"], "a list"), ("customer", "a string"),
                       (None, "null")],
)  # fmt: skip
def test_block_must_be_a_mapping(raw: Any, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_sync_spec(model(raw))
    assert str(info.value) == (
        f"{label()}: stripe_activation must be a mapping (object, key, fields, ...), got "
        f"{shown}. Write it under `config: meta: stripe_activation:` as the README shows."
    )


def test_unknown_settings_suggest_the_closest() -> None:
    assert errors_of(block(feilds={"name": "n"}, when="daily")) == [
        "stripe_activation.feilds: is not a setting; did you mean 'fields'? Allowed: "
        "account, behavior, fields, key, null_values, object, on_removed.",
        "stripe_activation.when: is not a setting. Allowed: account, behavior, fields, key, "
        "null_values, object, on_removed.",
    ]


def test_object_is_required_and_known() -> None:
    assert errors_of(block(object=None)) == [
        "stripe_activation.object: is required: the Stripe object type to sync (customer, "
        "product, price, meter_event, subscription_item, invoice_item)."
    ]
    assert errors_of(block(object="customers")) == [
        "stripe_activation.object: 'customers' is not a supported Stripe object; did you "
        "mean 'customer'?"
    ]
    assert errors_of(block(object="credit_note")) == [
        "stripe_activation.object: 'credit_note' is not a supported Stripe object. Supported: "
        "customer, product, price, meter_event, subscription_item, invoice_item."
    ]
    assert errors_of(block(object=["customer"])) == [
        "stripe_activation.object: must be a Stripe object type (customer, product, price, "
        "meter_event, subscription_item, invoice_item), got "
        "a list."
    ]


def test_behavior_is_one_of_three() -> None:
    assert errors_of(block(behavior="upsert")) == [
        "stripe_activation.behavior: 'upsert' is not valid. Use update_or_create (the "
        "default), update_only or create_only."
    ]
    assert errors_of(block(behavior=True)) == [
        "stripe_activation.behavior: a boolean is not valid. Use update_or_create (the "
        "default), update_only or create_only."
    ]


def test_null_values_is_skip_or_clear() -> None:
    assert errors_of(block(null_values="keep")) == [
        "stripe_activation.null_values: 'keep' is not valid. Use skip (the default: a null "
        "leaves Stripe as it is) or clear (a null unsets the Stripe field)."
    ]


# --- key ------------------------------------------------------------------------------------

KEY_SHAPE = "a mapping with `column` (the model column) and `field` (email, id or metadata.<name>)"


def test_key_is_a_required_mapping() -> None:
    assert errors_of(block(key=None)) == [f"stripe_activation.key: is required: {KEY_SHAPE}."]
    assert errors_of(block(key="email")) == [
        f"stripe_activation.key: must be {KEY_SHAPE}, got a string."
    ]
    assert errors_of(block(key=["email"])) == [
        f"stripe_activation.key: must be {KEY_SHAPE}, got a list."
    ]


def test_key_column() -> None:
    assert errors_of(block(key={"field": "email"})) == [
        "stripe_activation.key.column: is required: the model column holding the key value."
    ]
    assert errors_of(block(key={"column": 5, "field": "email"})) == [
        "stripe_activation.key.column: must be a model column name (a string), got a number."
    ]
    assert errors_of(block(key={"column": "  ", "field": "email"})) == [
        "stripe_activation.key.column: is empty. Name the model column to read."
    ]


def test_key_settings_are_column_and_field() -> None:
    assert errors_of(block(key={"col": "c", "column": "c", "field": "metadata.x"})) == [
        "stripe_activation.key.col: is not a key setting; did you mean 'column'? Allowed: "
        "column, field."
    ]


def test_key_field() -> None:
    assert errors_of(block(key={"column": "c"})) == [
        "stripe_activation.key.field: is required: the Stripe field the key matches (email, "
        "id or metadata.<name>)."
    ]
    assert errors_of(block(key={"column": "c", "field": "emial"})) == [
        "stripe_activation.key.field: 'emial' cannot be a customer key; did you mean 'email'?"
    ]
    assert errors_of(block(key={"column": "c", "field": "phone"})) == [
        "stripe_activation.key.field: 'phone' cannot be a customer key. A customer is matched "
        "on email, id or metadata.<name>."
    ]
    assert errors_of(block(key={"column": "c", "field": 3})) == [
        "stripe_activation.key.field: must be email, id or metadata.<name>, got a number."
    ]
    assert errors_of(block(key={"column": "c", "field": "metadata.a]"})) == [
        "stripe_activation.key.field: metadata key 'a]' contains '[' or ']', which Stripe "
        "does not allow. Use another metadata key name."
    ]


def test_id_key_needs_update_only() -> None:
    assert errors_of(block(key={"column": "stripe_id", "field": "id"})) == [
        "stripe_activation.key.field: 'id' works only with behavior: update_only (Stripe "
        "assigns ids, so a row without a match cannot be created). Set `behavior: "
        "update_only`, or key on email or metadata.<name>."
    ]


def test_id_key_with_nothing_to_write() -> None:
    assert errors_of(
        block(behavior="update_only", key={"column": "stripe_id", "field": "id"}, fields=None)
    ) == [
        "stripe_activation.fields: is empty: with key.field id, nothing would be written. "
        "Map at least one Stripe field to a column."
    ]


def test_key_field_mapped_to_another_column() -> None:
    raw = block(key={"column": "email", "field": "email"}, fields={"email": "email_2"})
    assert errors_of(raw) == [
        "stripe_activation.fields.email: reads column 'email_2', but key.field email reads "
        "column 'email': a created email would not be found by its key. Map email to "
        "'email', or remove it from fields."
    ]


# --- fields ---------------------------------------------------------------------------------


def test_fields_must_be_a_mapping() -> None:
    assert errors_of(block(fields=["email", "name"])) == [
        "stripe_activation.fields: must be a mapping of Stripe field path to model column "
        "(`name: full_name`), got a list."
    ]


def test_field_entries_are_columns_or_mappings() -> None:
    raw = block(fields={"name": 5, "phone": ["p"], 7: "x", "email": None})
    assert errors_of(raw) == [
        "stripe_activation.fields.name: must be a model column name (a string) or a mapping "
        "({column: ..., null_values: skip|clear}, {ref: <model>, column: ...} or "
        "{value: ...}), got a number.",
        "stripe_activation.fields.phone: must be a model column name (a string) or a mapping "
        "({column: ..., null_values: skip|clear}, {ref: <model>, column: ...} or "
        "{value: ...}), got a list.",
        "stripe_activation.fields: field paths must be strings, got a number 7.",
        "stripe_activation.fields.email: must be a model column name (a string) or a mapping "
        "({column: ..., null_values: skip|clear}, {ref: <model>, column: ...} or "
        "{value: ...}), got null.",
    ]


def test_field_mapping_settings() -> None:
    raw = block(fields={
        "name": {"colum": "n"},
        "phone": {"column": "p", "null_values": "never"},
        "email": {"column": ""},
    })  # fmt: skip
    assert errors_of(raw) == [
        "stripe_activation.fields.name.colum: is not a field setting; did you mean 'column'? "
        "Allowed: column, null_values, ref, value.",
        "stripe_activation.fields.name.column: is required: the model column to read.",
        "stripe_activation.fields.phone.null_values: 'never' is not valid. Use skip or clear.",
        "stripe_activation.fields.email.column: is empty. Name the model column to read.",
    ]


def test_unknown_field_paths_name_the_closest() -> None:
    assert errors_of(block(fields={"adress.city": "city", "metdata.plan": "plan"})) == [
        "stripe_activation.fields.adress.city: 'adress.city' is not a customer field Stripe "
        "lets you write; did you mean 'address.city'?",
        "stripe_activation.fields.metdata.plan: 'metdata.plan' is not a customer field "
        "Stripe lets you write; did you mean 'metadata.plan'?",
    ]


def test_unknown_field_without_a_close_one_lists_the_mappable() -> None:
    (line,) = errors_of(block(fields={"zzzz": "z"}))
    assert line == (
        "stripe_activation.fields.zzzz: 'zzzz' is not a customer field Stripe lets you "
        f"write; mappable: {', '.join(sorted(CUSTOMER.fields))}, metadata.<key>."
    )


def test_a_group_is_not_a_field() -> None:
    assert errors_of(block(fields={"address": "addr"})) == [
        "stripe_activation.fields.address: 'address' is a group; map its fields one by one: "
        "address.city, address.country, address.line1, address.line2, address.postal_code, "
        "address.state."
    ]


def test_metadata_is_mapped_key_by_key() -> None:
    assert errors_of(block(fields={"metadata": "meta_json"})) == [
        "stripe_activation.fields.metadata: 'metadata' is a group; map its keys one by one: "
        "`metadata.<key>: column`."
    ]


def test_id_cannot_be_written() -> None:
    assert errors_of(block(fields={"id": "stripe_id"})) == [
        "stripe_activation.fields.id: a customer's id is assigned by Stripe and cannot be "
        "written. To match on it, use `key: {field: id, column: ...}` with behavior: "
        "update_only."
    ]


def test_metadata_key_names() -> None:
    long = "k" * 41
    assert errors_of(block(fields={f"metadata.{long}": "a", "metadata.a[0]": "b"})) == [
        f"stripe_activation.fields.metadata.{long}: metadata key '{long}' is 41 characters; "
        "Stripe allows at most 40. Use another metadata key name.",
        "stripe_activation.fields.metadata.a[0]: metadata key 'a[0]' contains '[' or ']', "
        "which Stripe does not allow. Use another metadata key name.",
    ]
    spec = parse_sync_spec(model(block(fields={f"metadata.{'k' * 40}": "a"})))
    assert spec.fields[0].path == f"metadata.{'k' * 40}"


def test_at_most_50_metadata_keys_counting_the_key() -> None:
    fields = {f"metadata.k{i}": f"c{i}" for i in range(49)}
    assert parse_sync_spec(model(block(fields=fields)))  # 49 + metadata.crm_id = 50
    fields["metadata.k49"] = "c49"
    assert errors_of(block(fields=fields)) == [
        "stripe_activation.fields: maps 51 metadata keys (the key's included); Stripe allows "
        "at most 50 per customer. Map fewer, or combine values into one key."
    ]


def test_explicit_clear_on_a_field_stripe_cannot_unset() -> None:
    raw = block(fields={"balance": {"column": "b", "null_values": "clear"}})
    assert errors_of(raw) == [
        "stripe_activation.fields.balance.null_values: is clear, but Stripe cannot unset "
        "balance (it has no empty value). Use skip."
    ]


def test_shipping_needs_its_required_fields_mapped() -> None:
    assert errors_of(block(fields={"shipping.phone": "p", "shipping.name": "n"})) == [
        "stripe_activation.fields: maps shipping.phone, shipping.name but not "
        "shipping.address.line1; Stripe needs shipping.address.line1 and shipping.name "
        "whenever shipping is sent. Map them too."
    ]
    ok = {"shipping.name": "n", "shipping.address.line1": "l1", "shipping.phone": "p"}
    assert parse_sync_spec(model(block(fields=ok)))


def test_create_only_fields_need_update_or_create() -> None:
    raw = block(behavior="update_only", fields={"test_clock": "clock"})
    assert errors_of(raw) == [
        "stripe_activation.fields.test_clock: 'test_clock' can only be set when Stripe "
        "creates a customer, and behavior is update_only. Remove it, or use behavior: "
        "update_or_create."
    ]
    spec = parse_sync_spec(model(block(fields={"test_clock": "clock"})))
    assert spec.fields[0] == FieldMapping("test_clock", "clock")


def test_every_problem_of_a_block_is_reported_at_once() -> None:
    raw = {
        "object": "customer",
        "behavior": "sometimes",
        "key": {"column": "c", "field": "nope"},
        "fields": {"adress.city": "c", "id": "i"},
    }
    assert [line.split(":")[0] for line in errors_of(raw)] == [
        "stripe_activation.behavior",
        "stripe_activation.key.field",
        "stripe_activation.fields.adress.city",
        "stripe_activation.fields.id",
    ]


# --- many models ----------------------------------------------------------------------------


def test_parse_sync_specs_collects_all_models_problems() -> None:
    good = model(block(), "good")
    bad_one = model(block(object="credit_note"), "bad_one")
    bad_two = model(["not", "a", "mapping"], "bad_two")
    with pytest.raises(ConfigError) as info:
        parse_sync_specs([good, bad_one, bad_two])
    assert str(info.value).split("\n") == [
        f"{label('bad_one')}: stripe_activation.object: 'credit_note' is not a supported Stripe "
        "object. Supported: customer, product, price, meter_event, subscription_item, "
        "invoice_item.",
        f"{label('bad_two')}: stripe_activation must be a mapping (object, key, fields, ...), "
        "got a list. Write it under `config: meta: stripe_activation:` as the README shows.",
    ]
    specs = parse_sync_specs([good, model(block(), "other")])
    assert [s.model.name for s in specs] == ["good", "other"]


def test_two_models_on_the_same_object_and_key_are_refused() -> None:
    first = parse_sync_spec(model(block(), "crm_customers"))
    second = parse_sync_spec(model(block(fields={"phone": "phone"}), "billing_customers"))
    with pytest.raises(ConfigError) as info:
        check_overlaps([first, second])
    assert str(info.value) == (
        f"{label('crm_customers')} and {label('billing_customers')} both sync Stripe "
        "customers keyed on metadata.crm_id: they would fight over the same customers. Sync "
        "them from one model, or key each on its own field."
    )


def test_different_keys_writing_the_same_fields_is_a_warning() -> None:
    first = parse_sync_spec(model(block(), "crm_customers"))
    second = parse_sync_spec(
        model(block(key={"column": "email", "field": "email"}, fields={"name": "n",
                                                                       "phone": "p"}),
              "billing_customers")
    )  # fmt: skip
    assert check_overlaps([first, second]) == [
        f"{label('crm_customers')} (key metadata.crm_id) and {label('billing_customers')} "
        "(key email) both write email, name on Stripe customers: a customer both keys match "
        "gets whichever model syncs last."
    ]
    third = parse_sync_spec(
        model(block(key={"column": "c", "field": "metadata.other"}, fields={"phone": "p"}),
              "third")
    )  # fmt: skip
    assert check_overlaps([first, third]) == []


def test_create_only_fields_that_are_ignored_on_existing_objects_warn() -> None:
    from dbt_stripe_activation.meta_block import create_only_warnings

    spec = parse_sync_spec(model(block(fields={"email": "email", "test_clock": "clock"})))
    assert create_only_warnings(spec) == [
        f"{label()}: test_clock can only be set when Stripe creates a customer: a "
        "change to it in the model is ignored on existing customers."
    ]
    assert create_only_warnings(parse_sync_spec(model(block()))) == []


def test_shard_and_account_settings() -> None:
    """`account` adds its column (read after the key, part of the fingerprint); a value
    that is not an account id rejects its row before any request; --shard K/N is checked."""
    from dbt_stripe_activation.context import parse_shard
    from dbt_stripe_activation.planner import desired_values
    from dbt_stripe_activation.records import DiffRow, DiffStatus, Rejection

    spec = parse_sync_spec(model(block(account="account_id")))
    assert spec.account_column == "account_id"
    assert spec.columns[:2] == ("customer_id", "account_id")
    assert "account<-account_id" in spec.fingerprint
    assert parse_sync_spec(model(block())).fingerprint != spec.fingerprint

    def row(key: str) -> DiffRow:
        account, _, _ = key.partition("/")
        return DiffRow(key_value=key, values={"customer_id": "c1", "account_id": account,
                                              "email": "a@example.com", "name": "A"},
                       row_hash="h", status=DiffStatus.NEW, previous=None, duplicate_count=1,
                       account=account or None, scoped=True)

    bad = desired_values(spec, row("shop-42/c1"))
    assert isinstance(bad, Rejection) and bad.reason == (
        "account column account_id: 'shop-42' is not a Stripe account id (acct_...); leave "
        "it null for the platform")
    good = row("acct_1Abc/c1")
    assert not isinstance(desired_values(spec, good), Rejection)
    assert (good.account, good.stripe_key) == ("acct_1Abc", "c1")
    assert row("/c1").account is None and row("/c1").stripe_key == "c1"

    assert parse_shard("2/3") == (2, 3) and parse_shard(None) is None
    for text in ("4/3", "0/2", "x", "1/"):
        with pytest.raises(ConfigError, match="is not K/N with 1 <= K <= N"):
            parse_shard(text)
    assert errors_of(block(object="meter_event", behavior="append",
                           key={"column": "e", "field": "identifier"},
                           fields={"event_name": {"value": "x"}, "timestamp": "t",
                                   "payload.value": "v",
                                   "payload.stripe_customer_id": "c"},
                           account="account_id")) == [
        "stripe_activation.account: is not supported for meter events yet (they are sent to "
        "the platform's account). Remove the setting."]


def test_an_invoice_item_needs_a_price_or_an_amount_with_its_currency() -> None:
    item = {"object": "invoice_item", "key": {"column": "fee_id", "field": "metadata.fee_id"}}
    assert errors_of({**item, "fields": {"customer": "cus", "description": "d"}}) == [
        "stripe_activation.fields: maps no amount or pricing.price: Stripe needs one of them "
        "to create the invoice_item. Map one."]
    assert errors_of({**item, "fields": {"customer": "cus", "amount": "amount"}}) == [
        "stripe_activation.fields: maps amount without currency: Stripe needs currency with "
        "it to create the invoice_item. Map currency."]
    assert errors_of({**item, "fields": {"customer": "cus", "amount": "a", "currency": "c",
                                         "pricing.price": "p"}}) == [
        "stripe_activation.fields: maps amount and pricing.price; Stripe takes only one of "
        "them. Map one."]
    # Updating only: the item exists with its currency; a price or an amount is not needed.
    parse_sync_spec(model({**item, "behavior": "update_only", "fields": {"amount": "a"}}))
    parse_sync_spec(model({**item, "fields": {"customer": "c", "pricing.price": "p"}}))
