"""The customer catalogue (read from the stripe SDK) and the generic value machinery."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import stripe
from stripe.params import CustomerCreateParams, CustomerUpdateParams

from dbt_stripe_activation.match import LookupStrategy, Matcher
from dbt_stripe_activation.objects import (
    OBJECT_SPECS,
    UnknownObjectError,
    get_object_spec,
)
from dbt_stripe_activation.objects.catalogue import (
    _docstrings,
    closest_field,
    resolve_field,
    sdk_fields,
    sdk_required,
)
from dbt_stripe_activation.objects.contract import (
    Behavior,
    FieldSpec,
    KeyLookup,
    RowIssue,
    ValueKind,
)
from dbt_stripe_activation.objects.customer import CUSTOMER, EXCLUDED
from dbt_stripe_activation.objects.invoice_item import INVOICE_ITEM
from dbt_stripe_activation.objects.keys import normalize_key
from dbt_stripe_activation.objects.macro_registry import REGISTRY_PATH, render_registry_macro
from dbt_stripe_activation.objects.meter_event import METER_EVENT
from dbt_stripe_activation.objects.params import build_params, expand_for, flatten_object
from dbt_stripe_activation.objects.price import PRICE
from dbt_stripe_activation.objects.product import PRODUCT
from dbt_stripe_activation.objects.subscription_item import SUBSCRIPTION_ITEM
from dbt_stripe_activation.objects.values import convert_value, validate_values
from dbt_stripe_activation.planner import plan_row
from dbt_stripe_activation.records import Action
from dbt_stripe_activation.stripe_api import StripeGateway, StripeSettings
from stripe_emulator import EmulatorHandle
from tests.unit.object_conformance import ObjectConformance


class TestCustomer(ObjectConformance):
    spec = CUSTOMER
    resource = "customers"
    samples = {"email": "ada@example.com", "invoice_prefix": "ADA1"}
    row = {"name": "Ada Lovelace", "metadata.plan": "pro"}
    key_values = {"email": "Conf.{n}@Example.com", "metadata": "crm-{n}"}
    # References to objects the emulator does not hold (it answers resource_missing).
    server_skip = frozenset({"invoice_settings.default_payment_method"})

    def text_of_length(self, field: FieldSpec, length: int) -> str:
        if field.path == "email":
            return "a" * (length - len("@example.com")) + "@example.com"
        if field.path == "invoice_prefix":
            return "A" * length
        return "x" * length


class TestProduct(ObjectConformance):
    spec = PRODUCT
    resource = "products"
    samples = {"url": "https://example.com/widget", "images": ["https://example.com/a.png"]}
    row = {"name": "Widget", "description": "A widget"}
    key_values = {"id": "prod_conf_{n}", "metadata": "sku-{n}"}


class TestPrice(ObjectConformance):
    spec = PRICE
    resource = "prices"
    samples = {"currency": "usd", "lookup_key": "sample_key"}
    key_values = {"lookup_key": "conf_{n}", "metadata": "plan-{n}"}

    def create_base(self, client: stripe.StripeClient) -> dict[str, Any]:
        product = client.v1.products.create(params={"name": "Conformance"})
        return {"currency": "usd", "unit_amount": 100, "product": product.id}

    def row_values(self, client: stripe.StripeClient) -> dict[str, Any]:
        product = client.v1.products.create(params={"name": "Conformance"})
        return {"currency": "usd", "unit_amount": 700, "recurring.interval": "month",
                "nickname": "Monthly", "product": product.id}


class TestMeterEvent(ObjectConformance):
    """An event is sent, never matched or updated: the round trips are the send itself."""

    spec = METER_EVENT
    resource = "billing.meter_events"
    samples = {"event_name": "api_calls", "identifier": "evt-1"}

    def test_server_round_trip(self, emulator: EmulatorHandle) -> None:
        emulator.seed_meters([{"display_name": "Calls", "event_name": "conf_calls"}])
        [customer] = emulator.seed([{"email": "events@example.com"}])
        flat = {"event_name": "conf_calls", "identifier": "conf-1", "timestamp": 1_900_000_000,
                "payload.stripe_customer_id": customer, "payload.value": "3"}
        now = {**flat, "timestamp": int(dt.datetime.now(dt.timezone.utc).timestamp()) - 60}
        client = stripe.StripeClient("sk_test_conformance",
                                     base_addresses={"api": emulator.url})
        client.v1.billing.meter_events.create(params=build_params(now, create=True,
                                                                  spec=METER_EVENT))
        [event] = [e for e in emulator.meter_events() if e["identifier"] == "conf-1"]
        assert flatten_object(event, now) == now

    @pytest.mark.parametrize("strategy", [LookupStrategy.PER_ROW])
    def test_each_key_kind_matches_and_round_trips_to_unchanged(
        self, emulator: EmulatorHandle, strategy: LookupStrategy
    ) -> None:
        """The identifier is the only key; it is kept in the ledger, never looked up."""
        assert [k.lookup for k in METER_EVENT.keys.values()] == [KeyLookup.LEDGER]
        assert METER_EVENT.behaviors == (Behavior.APPEND,)
        assert METER_EVENT.rate_pool is not None


class TestSubscriptionItem(ObjectConformance):
    spec = SUBSCRIPTION_ITEM
    resource = "subscription_items"
    key_values = {"metadata": "seat-{n}"}

    def _items(self, emulator: EmulatorHandle, metadata: dict[str, str]) -> list[str]:
        [customer] = emulator.seed([{"email": "seats@example.com"}])
        [product] = emulator.seed_products([{"name": "Seats"}])
        [price] = emulator.seed_prices([{"product": product, "currency": "usd",
                                         "unit_amount": 100,
                                         "recurring": {"interval": "month"}}])
        [subscription] = emulator.seed_subscriptions([{"customer": customer, "items": [
            {"price": price, "quantity": 1, "metadata": metadata}]}])
        return [i["id"] for i in emulator.subscription_items()
                if i["subscription"] == subscription]

    def test_server_round_trip(self, emulator: EmulatorHandle) -> None:
        [item] = self._items(emulator, {})
        client = stripe.StripeClient("sk_test_conformance",
                                     base_addresses={"api": emulator.url})
        flat = {"quantity": 9, "metadata.team": "core"}
        client.v1.subscription_items.update(
            item, params=build_params(flat, create=False, spec=SUBSCRIPTION_ITEM))
        stored = client.v1.subscription_items.retrieve(item).to_dict()
        assert flatten_object(stored, flat) == flat

    @pytest.mark.parametrize("strategy", [LookupStrategy.PER_ROW, LookupStrategy.INDEX])
    def test_each_key_kind_matches_and_round_trips_to_unchanged(
        self, emulator: EmulatorHandle, strategy: LookupStrategy
    ) -> None:
        """Items are made with their subscription; each key kind finds its item (metadata
        through the subscriptions), a changed quantity plans one update, then nothing."""
        gateway = StripeGateway(StripeSettings(api_key="sk_test_conformance",
                                               api_base=emulator.url, max_rps=1000,
                                               per_endpoint_rps=1000))
        tag = f"seat-{strategy.value}"
        [item] = self._items(emulator, {"seat": tag})
        for field, raw in (("id", item), ("metadata.seat", tag)):
            spec = self._spec_for(field, {field: raw, "quantity": 4}
                                  if field != "id" else {"quantity": 4})
            desired = self._desired(spec, raw, {field: raw, "quantity": 4})
            matcher = Matcher(spec, gateway, strategy)
            matcher.prepare(unknown_keys=1)
            plan = plan_row(spec, desired, matcher.match(desired))
            if plan.action is Action.UPDATE:
                assert plan.stripe_id == item and plan.idempotency_key is not None
                gateway.update(spec.object.service, item, plan.params, plan.idempotency_key)
            again = Matcher(spec, gateway, strategy)
            again.prepare(unknown_keys=1)
            assert plan_row(spec, desired, again.match(desired)).action is Action.UNCHANGED


class TestInvoiceItem(ObjectConformance):
    spec = INVOICE_ITEM
    resource = "invoice_items"
    # pricing.price excludes amount (tested by the sync's own tests); the emulator keeps no
    # tax rates or tax codes.
    server_skip = frozenset({"pricing.price", "tax_rates", "tax_code", "tax_behavior"})
    samples = {"amount": -250, "quantity": 1, "period.start": 1_700_000_000,
               "period.end": 1_700_086_400}
    key_values = {"metadata": "fee-{n}"}

    def create_base(self, client: stripe.StripeClient) -> dict[str, Any]:
        customer = client.v1.customers.create(params={"email": "items@example.com"})
        return {"customer": customer.id, "currency": "usd"}

    def row_values(self, client: stripe.StripeClient) -> dict[str, Any]:
        return {**self.create_base(client), "amount": 500, "description": "Setup fee"}


def test_generated_macro_registry_matches_the_python_registry() -> None:
    """validate() reads macros/registry.sql; regenerate it when an object or key changes:
    python -m dbt_stripe_activation.objects.macro_registry > macros/registry.sql"""
    assert REGISTRY_PATH.read_text() == render_registry_macro()


def test_nothing_outside_objects_names_an_object_or_a_key_kind() -> None:
    """The contract is the one place object facts live: outside objects/, no code compares
    with, looks up or passes an object's name, service or key kind as a literal."""
    package = Path(__file__).resolve().parents[2] / "dbt_stripe_activation"
    names = {n for spec in OBJECT_SPECS.values() for n in (spec.name, spec.service)}
    names |= {kind for spec in OBJECT_SPECS.values() for kind in spec.keys} - {"metadata", "id"}
    literal = re.compile(r"[\"']({})[\"']".format("|".join(sorted(names))))
    offenders = []
    for path in sorted(package.glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if literal.search(code):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert offenders == []


# --- the catalogue follows the SDK ----------------------------------------------------------

CUSTOMER_PATHS = {
    "address.city", "address.country", "address.line1", "address.line2",
    "address.postal_code", "address.state",
    "balance", "business_name", "description", "email", "individual_name", "invoice_prefix",
    "invoice_settings.default_payment_method", "invoice_settings.footer",
    "invoice_settings.rendering_options.amount_tax_display",
    "invoice_settings.rendering_options.template",
    "name", "next_invoice_sequence", "payment_method", "phone", "preferred_locales",
    "shipping.address.city", "shipping.address.country", "shipping.address.line1",
    "shipping.address.line2", "shipping.address.postal_code", "shipping.address.state",
    "shipping.name", "shipping.phone",
    "tax.ip_address", "tax_exempt", "test_clock",
}  # fmt: skip


def test_customer_catalogue_is_every_scalar_param_but_the_excluded() -> None:
    # An SDK upgrade that adds or removes a field fails here: decide, then update the list.
    assert set(CUSTOMER.fields) == CUSTOMER_PATHS


def test_every_exclusion_names_a_param_the_sdk_has() -> None:
    params = set(sdk_fields(CustomerCreateParams))
    for prefix in EXCLUDED:
        assert any(p == prefix or p.startswith(prefix + ".") for p in params), prefix


def test_request_options_and_metadata_are_not_fields() -> None:
    params = sdk_fields(CustomerCreateParams)
    assert not {"api_key", "idempotency_key", "stripe_account", "metadata"} & set(params)


def test_create_only_fields_are_those_update_lacks() -> None:
    assert {p for p, f in CUSTOMER.fields.items() if f.create_only} == {
        "payment_method",
        "test_clock",
    }


def test_kinds_and_choices_come_from_the_sdk_annotations() -> None:
    kinds = {p: f.kind for p, f in CUSTOMER.fields.items() if f.kind is not ValueKind.STRING}
    assert kinds == {
        "balance": ValueKind.INTEGER,
        "next_invoice_sequence": ValueKind.INTEGER,
        "preferred_locales": ValueKind.STRING_LIST,
        "tax_exempt": ValueKind.ENUM,
        "invoice_settings.rendering_options.amount_tax_display": ValueKind.ENUM,
    }
    assert CUSTOMER.fields["tax_exempt"].choices == ("exempt", "none", "reverse")


def test_limits_from_sdk_docstrings_and_the_documented_table() -> None:
    lengths = {p: f.max_length for p, f in CUSTOMER.fields.items() if f.max_length}
    assert lengths == {
        "email": 512,  # SDK docstring
        "business_name": 150,  # SDK docstring
        "individual_name": 150,  # SDK docstring
        "name": 256,
        "phone": 20,
        "invoice_prefix": 12,
    }
    assert CUSTOMER.fields["next_invoice_sequence"].minimum == 1


def test_invoice_prefix_rule_matches_the_pinned_sdk_docstring() -> None:
    # The pattern in customer.py copies this sentence; an SDK that changes it fails here.
    doc = _docstrings(CustomerCreateParams)["invoice_prefix"]
    assert "Must be 1–12 uppercase letters or numbers." in doc  # noqa: RUF001
    field = CUSTOMER.fields["invoice_prefix"]
    for good in ("A", "ABC", "AB12", "A" * 12):
        assert convert_value(field, good) == good
    for bad in ("abc", "AB_1", "AB 1", "A" * 13):
        with pytest.raises(ValueError) as info:
            convert_value(field, bad)
        assert str(info.value) in (
            "must be 1 to 12 uppercase letters or digits (A-Z, 0-9)",
            "is 13 characters; Stripe allows at most 12",
        )


def test_unsettable_from_literal_empty_and_the_documented_table() -> None:
    unsettable = {p for p, f in CUSTOMER.fields.items() if f.unsettable}
    never = {p for p in CUSTOMER.fields if p not in unsettable}
    assert never == {
        "balance",
        "invoice_prefix",
        "invoice_settings.default_payment_method",
        "invoice_settings.footer",
        "next_invoice_sequence",
        "payment_method",
        "preferred_locales",
        "test_clock",
    }
    assert {"email", "name", "phone", "description", "tax_exempt", "address.city"} <= unsettable


def test_shipping_group_comes_from_the_sdk_required_keys() -> None:
    assert sdk_required(CustomerUpdateParams) == {"shipping": ("shipping.address", "shipping.name")}
    assert dict(CUSTOMER.required_together) == {
        "shipping": ("shipping.address.line1", "shipping.name")
    }


def test_registry() -> None:
    assert get_object_spec("customer") is CUSTOMER
    assert list(OBJECT_SPECS) == [
        "customer", "product", "price", "meter_event", "subscription_item", "invoice_item"
    ]
    with pytest.raises(UnknownObjectError) as info:
        get_object_spec("credit_note")
    assert isinstance(info.value, KeyError)
    assert str(info.value) == (
        "unknown Stripe object 'credit_note'; supported: customer, product, price, "
        "meter_event, subscription_item, invoice_item"
    )


def test_no_field_has_a_name_the_sdk_raw_request_takes_as_an_option() -> None:
    """Writes go through StripeClient.raw_request, which takes these keyword names (the
    SDK's request options, `base`, `usage`) out of the fields: no object may have one."""
    from stripe._request_options import RequestOptions

    from dbt_stripe_activation.stripe_api import RAW_REQUEST_NAMES

    assert set(RequestOptions.__annotations__) <= RAW_REQUEST_NAMES
    for spec in OBJECT_SPECS.values():
        names = {path.split(".")[0] for path in spec.fields} | set(spec.keys)
        assert not names & RAW_REQUEST_NAMES, spec.name


# --- field lookup ---------------------------------------------------------------------------


def test_metadata_paths_resolve_to_a_500_character_string() -> None:
    field = resolve_field(CUSTOMER, "metadata.crm.id")
    assert (field.path, field.kind, field.max_length, field.unsettable) == (
        "metadata.crm.id",
        ValueKind.STRING,
        500,
        True,
    )


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("metadata.", "the metadata key name is empty"),
        ("metadata.a[b", "metadata key 'a[b' contains '[' or ']', which Stripe does not allow"),
        ("metadata." + "k" * 41, f"metadata key '{'k' * 41}' is 41 characters; Stripe allows "
         "at most 40"),
        ("adress.city", "customer has no mappable field 'adress.city'"),
    ],
)  # fmt: skip
def test_resolve_field_refuses(path: str, problem: str) -> None:
    with pytest.raises(KeyError) as info:
        resolve_field(CUSTOMER, path)
    assert info.value.args[0] == problem


@pytest.mark.parametrize(
    ("typo", "expected"),
    [
        ("adress.city", "address.city"),
        ("Email", "email"),
        ("city", "address.city"),
        ("metdata.plan", "metadata.plan"),
        ("meta.plan", "metadata.plan"),
        ("shiping.name", "shipping.name"),
        ("tax_exemption", "tax_exempt"),
        ("preferred_locale", "preferred_locales"),
        ("zzzz", None),
    ],
)
def test_closest_field(typo: str, expected: str | None) -> None:
    assert closest_field(CUSTOMER, typo) == expected


# --- conversion -----------------------------------------------------------------------------

TEXT = FieldSpec("description", ValueKind.STRING)
SHORT = FieldSpec("metadata.x", ValueKind.STRING, max_length=5)
INTEGER = FieldSpec("balance", ValueKind.INTEGER)
LOCALES = CUSTOMER.fields["preferred_locales"]
TAX_EXEMPT = CUSTOMER.fields["tax_exempt"]
EMAIL = CUSTOMER.fields["email"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  keep  spaces ", "  keep  spaces "),
        ("", ""),
        (42, "42"),
        (-7, "-7"),
        (Decimal("10.50"), "10.50"),
        (2.5, "2.5"),
        (True, "true"),
        (False, "false"),
        (dt.date(2024, 2, 29), "2024-02-29"),
        (dt.datetime(2024, 2, 29, 13, 5, 9), "2024-02-29T13:05:09"),
        (dt.datetime(2024, 2, 29, 13, 5, tzinfo=dt.timezone.utc), "2024-02-29T13:05:00+00:00"),
    ],
)
def test_text_conversion_is_exact(raw: Any, expected: str) -> None:
    assert convert_value(TEXT, raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("a\x00b", "contains a NUL character, which Stripe does not accept"),
        (b"bytes", "is binary data; expected text"),
        (["a"], "is a list; expected a single value"),
        ({"a": 1}, "is a dict; expected a single value"),
        (float("nan"), "is nan; expected a finite number or text"),
    ],
)
def test_text_conversion_refuses(raw: Any, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        convert_value(TEXT, raw)
    assert str(info.value) == reason


def test_length_counts_characters_as_stripe_does() -> None:
    assert convert_value(SHORT, "😀😀😀😀😀") == "😀😀😀😀😀"  # an emoji is one character
    combining = "e\u0301" * 3  # e + combining acute: two characters each, not normalized
    with pytest.raises(ValueError) as info:
        convert_value(SHORT, combining)
    assert str(info.value) == "is 6 characters; Stripe allows at most 5"
    assert convert_value(SHORT, "é" * 5) == "é" * 5  # precomposed: one character each
    with pytest.raises(ValueError) as info:
        convert_value(resolve_field(CUSTOMER, "metadata.note"), "n" * 600)
    assert str(info.value) == "is 600 characters; Stripe allows at most 500"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1200, 1200),
        (-300, -300),
        (Decimal("2.0"), 2),
        (Decimal("-15"), -15),
        (2.0, 2),
        ("42", 42),
        ("-42", -42),
        ("", None),
    ],
)
def test_integer_conversion(raw: Any, expected: int | None) -> None:
    assert convert_value(INTEGER, raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (2.5, "is 2.5; Stripe expects a whole number (minor units)"),
        (Decimal("19.99"), "is 19.99; Stripe expects a whole number (minor units)"),
        (True, "is a boolean; expected a whole number"),
        ("12a", "is '12a'; expected a whole number"),
        (" 12", "is ' 12'; expected a whole number"),
        (float("inf"), "is inf; expected a whole number"),
        (Decimal("NaN"), "is NaN; expected a whole number"),
        (dt.date(2024, 1, 1), "is a date; expected a whole number"),
    ],
)
def test_integer_conversion_refuses(raw: Any, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        convert_value(INTEGER, raw)
    assert str(info.value) == reason


def test_integer_minimum() -> None:
    field = CUSTOMER.fields["next_invoice_sequence"]
    assert convert_value(field, 1) == 1
    with pytest.raises(ValueError) as info:
        convert_value(field, 0)
    assert str(info.value) == "is 0; Stripe requires at least 1"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (["en", "fr"], ["en", "fr"]),
        (("de",), ["de"]),
        ("en,fr", ["en", "fr"]),
        (" en , fr ,, ", ["en", "fr"]),
        (["en", None, "", " fr "], ["en", "fr"]),
        ("", []),
        ([], []),
    ],
)
def test_string_list_conversion(raw: Any, expected: list[str]) -> None:
    assert convert_value(LOCALES, raw) == expected


def test_string_list_refuses_other_types_and_nul() -> None:
    with pytest.raises(ValueError) as info:
        convert_value(LOCALES, 5)
    assert str(info.value) == "is a int; expected an array or comma-separated text"
    with pytest.raises(ValueError, match="NUL"):
        convert_value(LOCALES, ["en", "f\x00r"])


def test_enum_conversion() -> None:
    assert convert_value(TAX_EXEMPT, "reverse") == "reverse"
    assert convert_value(TAX_EXEMPT, "") == ""
    for bad, shown in (("Exempt", "'Exempt'"), ("taxed", "'taxed'")):
        with pytest.raises(ValueError) as info:
            convert_value(TAX_EXEMPT, bad)
        assert str(info.value) == f"is {shown}; Stripe accepts exempt, none or reverse"
    with pytest.raises(ValueError) as info:
        convert_value(TAX_EXEMPT, True)
    assert str(info.value) == "is a boolean; Stripe accepts exempt, none or reverse"


def test_boolean_conversion() -> None:
    field = FieldSpec("flag", ValueKind.BOOLEAN)
    assert [convert_value(field, v) for v in (True, 0, "TRUE", "false", "")] == [
        True, False, True, False, None,
    ]  # fmt: skip
    with pytest.raises(ValueError) as info:
        convert_value(field, "yes")
    assert str(info.value) == "is 'yes'; expected true or false"


@pytest.mark.parametrize("good", ["ada@example.com", "Ada.Lovelace+x@sub.example.co.uk"])
def test_valid_emails(good: str) -> None:
    assert convert_value(EMAIL, good) == good


@pytest.mark.parametrize(
    "bad", ["ada", "ada@", "ada@example", "a da@example.com", "a@b@example.com",
            " ada@example.com", "@example.com", "ada@.com"],
)  # fmt: skip
def test_invalid_emails(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        convert_value(EMAIL, bad)
    assert str(info.value) == "is not a valid email address"


# --- cross-field validation -----------------------------------------------------------------


def test_shipping_needs_name_and_line1_when_any_shipping_field_is_set() -> None:
    assert validate_values(CUSTOMER, {"shipping.phone": None, "name": "Ada"}) == []
    assert validate_values(CUSTOMER, {"shipping.phone": "+1 555"}) == [
        RowIssue("shipping.address.line1", "is required when shipping is set (Stripe needs "
                 "shipping.address.line1 and shipping.name together)"),
        RowIssue("shipping.name", "is required when shipping is set (Stripe needs "
                 "shipping.address.line1 and shipping.name together)"),
    ]  # fmt: skip
    complete = {"shipping.name": "Ada", "shipping.address.line1": "1 Main St"}
    assert validate_values(CUSTOMER, {**complete, "shipping.phone": "1"}) == []


# --- params ---------------------------------------------------------------------------------


def test_build_params_nests_paths() -> None:
    flat = {
        "email": "ada@example.com",
        "address.city": "London",
        "address.line1": "1 Main St",
        "shipping.name": "Ada",
        "shipping.address.line1": "1 Main St",
        "metadata.crm.id": "42",
        "preferred_locales": ("en", "fr"),
        "balance": 0,
        "test_clock": "clock_1",
    }
    assert build_params(flat, create=True, spec=CUSTOMER) == {
        "email": "ada@example.com",
        "address": {"city": "London", "line1": "1 Main St"},
        "shipping": {"name": "Ada", "address": {"line1": "1 Main St"}},
        "metadata": {"crm.id": "42"},
        "preferred_locales": ["en", "fr"],
        "balance": 0,
        "test_clock": "clock_1",
    }


def test_build_params_unsets_on_update() -> None:
    flat = {"name": None, "metadata.plan": None, "address.city": None, "test_clock": "clock_1"}
    assert build_params(flat, create=False, spec=CUSTOMER) == {
        "name": "",
        "metadata": {"plan": ""},
        "address": {"city": ""},
    }
    assert build_params(flat, create=True, spec=CUSTOMER) == {"test_clock": "clock_1"}


def test_build_params_unsets_shipping_whole() -> None:
    everything = {"shipping.name": None, "shipping.address.line1": None, "shipping.phone": None}
    assert build_params(everything, create=False, spec=CUSTOMER) == {"shipping": ""}
    some = {"shipping.name": "Ada", "shipping.address.line1": "1 Main St", "shipping.phone": None}
    assert build_params(some, create=False, spec=CUSTOMER) == {
        "shipping": {"name": "Ada", "address": {"line1": "1 Main St"}, "phone": ""}
    }


def test_build_params_refuses_to_unset_what_stripe_cannot() -> None:
    with pytest.raises(ValueError) as info:
        build_params({"balance": None}, create=False, spec=CUSTOMER)
    assert str(info.value) == "customer.balance cannot be unset: Stripe has no empty value"


def test_flatten_object_reads_a_stripe_customer() -> None:
    customer = {
        "id": "cus_1",
        "object": "customer",
        "address": None,
        "balance": -500,
        "email": "Ada@Example.com",
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": {"id": "pm_1", "object": "payment_method"},
            "footer": None,
            "rendering_options": None,
        },
        "metadata": {"crm.id": "42", "plan": "pro"},
        "preferred_locales": ["en", "fr"],
        "shipping": {
            "address": {"city": None, "line1": "1 Main St"},
            "name": "Ada",
            "phone": None,
        },
        "tax_exempt": "none",
    }
    paths = [
        "address.city", "balance", "email", "invoice_settings.default_payment_method",
        "invoice_settings.rendering_options.template", "metadata.crm.id", "metadata.absent",
        "preferred_locales", "shipping.address.line1", "shipping.name", "tax.ip_address",
        "tax_exempt",
    ]  # fmt: skip
    assert flatten_object(customer, paths) == {
        "address.city": None,
        "balance": -500,
        "email": "Ada@Example.com",
        "invoice_settings.default_payment_method": "pm_1",
        "invoice_settings.rendering_options.template": None,
        "metadata.crm.id": "42",
        "metadata.absent": None,
        "preferred_locales": ["en", "fr"],
        "shipping.address.line1": "1 Main St",
        "shipping.name": "Ada",
        "tax.ip_address": None,
        "tax_exempt": "none",
    }


def test_expand_for_names_what_a_read_must_expand() -> None:
    assert expand_for(CUSTOMER, ["email", "tax.ip_address"]) == ("tax",)
    assert expand_for(CUSTOMER, ["email", "address.city"]) == ()


# --- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        ("email", "  Ada@Example.COM\t\n", "ada@example.com"),
        ("email", "Ada@Example.com", "ada@example.com"),
        ("metadata", "  CRM-42 ", "CRM-42"),
        ("id", "cus_ABC ", "cus_ABC"),
        ("metadata", 42, "42"),
        ("metadata", True, "true"),
        ("email", "   ", None),
        ("email", "", None),
        ("id", None, None),
        # The SQL side trims ASCII whitespace only; a no-break space is part of the key.
        ("metadata", "\u00a0x\u00a0", "\u00a0x\u00a0"),
    ],
)
def test_normalize_key(kind: Any, raw: Any, expected: str | None) -> None:
    key = CUSTOMER.key_spec("metadata.x" if kind == "metadata" else kind)
    assert key is not None
    assert normalize_key(raw, casefold=key.casefold) == expected


def test_docstrings_are_read_from_the_sdk_source() -> None:
    docs = _docstrings(CustomerCreateParams)
    assert re.search(r"up to \*512 characters\*", docs["email"])
    assert "payment_method" not in docs  # the SDK has no docstring for it


def test_dashboard_urls_follow_the_mode_the_account_and_the_parent_page() -> None:
    assert CUSTOMER.dashboard_url("test", "cus_1") == \
        "https://dashboard.stripe.com/test/customers/cus_1"
    assert CUSTOMER.dashboard_url("live", "cus_1") == \
        "https://dashboard.stripe.com/customers/cus_1"
    assert PRICE.dashboard_url("test", "price_1", "acct_9") == \
        "https://dashboard.stripe.com/acct_9/test/prices/price_1"
    assert PRODUCT.dashboard_url("live", "prod_1", "acct_9") == \
        "https://dashboard.stripe.com/acct_9/products/prod_1"
    # A subscription item has no page of its own: its subscription's.
    assert SUBSCRIPTION_ITEM.dashboard_url("test", "si_1", None, {"subscription": "sub_1"}) == \
        "https://dashboard.stripe.com/test/subscriptions/sub_1"
    assert SUBSCRIPTION_ITEM.dashboard_url("test", "si_1") is None  # no parent known
    assert CUSTOMER.dashboard_url("test", None) is None  # not created yet
    assert METER_EVENT.dashboard_url("test", "x") is None  # no page for one event
