"""The conformance suite every Stripe ObjectSpec passes, in the dbt-adapters spirit.

A new object is a spec plus a subclass:

    class TestProduct(ObjectConformance):
        spec = PRODUCT
        resource = "products"
        samples = {"url": "https://example.com"}

The class is not collected itself (no `Test` prefix); each subclass runs every test against
its spec, including a round trip through the SDK and the repo's Stripe emulator (a real
server process): what build_params sends is what flatten_object reads back.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import pytest
import stripe

from dbt_stripe_activation.match import LookupStrategy, Matcher
from dbt_stripe_activation.meta_block import parse_sync_spec
from dbt_stripe_activation.objects.catalogue import closest_field, resolve_field
from dbt_stripe_activation.objects.contract import Behavior, FieldSpec, ObjectSpec, ValueKind
from dbt_stripe_activation.objects.keys import normalize_key
from dbt_stripe_activation.objects.params import build_params, expand_for, flatten_object
from dbt_stripe_activation.objects.values import convert_value, validate_values
from dbt_stripe_activation.planner import desired_values, plan_row
from dbt_stripe_activation.project import DbtModel
from dbt_stripe_activation.records import Action, DesiredRow, DiffRow, DiffStatus
from dbt_stripe_activation.spec import SyncSpec
from dbt_stripe_activation.stripe_api import StripeGateway, StripeSettings
from stripe_emulator import EmulatorHandle, start_emulator

stripe.enable_telemetry = False


class ObjectConformance:
    spec: ClassVar[ObjectSpec | None] = None
    # The SDK resource (`client.v1.<resource>`) of the object, for the server round trip.
    resource: ClassVar[str] = ""
    # Values for fields whose shape a generic sample would not satisfy (email, patterns).
    samples: ClassVar[Mapping[str, Any]] = {}
    # Fields the emulator cannot round-trip: references to objects it does not have.
    server_skip: ClassVar[frozenset[str]] = frozenset()
    # A row for the behaviour round trip: Stripe field path -> value (the key is added).
    row: ClassVar[Mapping[str, Any]] = {}
    # A key value per key kind, as a model would hold it ("metadata" covers metadata.<name>),
    # with {n} for what makes it unique to one test run.
    key_values: ClassVar[Mapping[str, str]] = {}

    # --- hooks -------------------------------------------------------------------------------

    @property
    def object_spec(self) -> ObjectSpec:
        assert self.spec is not None, f"{type(self).__name__} must set `spec`"
        return self.spec

    def sample(self, field: FieldSpec) -> Any:
        """A valid value for a field, as convert_value returns it."""
        if field.path in self.samples:
            return self.samples[field.path]
        if field.kind is ValueKind.ENUM:
            return field.choices[0]
        if field.kind is ValueKind.INTEGER:
            return max(field.minimum or 0, 7)
        if field.kind is ValueKind.STRING_LIST:
            return ["en", "fr"]
        if field.kind is ValueKind.BOOLEAN:
            return True
        if field.kind is ValueKind.DECIMAL:
            return "12.5"
        if field.kind is ValueKind.TIMESTAMP:
            return 1_700_000_000
        return "Sample value"[: field.max_length or None]

    def text_of_length(self, field: FieldSpec, length: int) -> str:
        """A value that is valid except perhaps for its length."""
        return "x" * length

    def create_base(self, client: stripe.StripeClient) -> dict[str, Any]:
        """Params every create of the object needs beyond the sampled fields (a price's
        product and amount), made in the emulator if they are other objects."""
        return {}

    def row_values(self, client: stripe.StripeClient) -> dict[str, Any]:
        """The behaviour round trip's row: `row`, with what it references created."""
        return dict(self.row)

    def mappable(self, *, create_only: bool | None = None) -> list[FieldSpec]:
        return [
            f
            for f in self.object_spec.fields.values()
            if create_only is None or f.create_only is create_only
        ]

    # --- the catalogue ----------------------------------------------------------------------

    def test_every_field_resolves_to_itself(self) -> None:
        for path, field in self.object_spec.fields.items():
            assert field.path == path
            assert resolve_field(self.object_spec, path) is field

    def test_kinds_are_consistent(self) -> None:
        for field in self.object_spec.fields.values():
            assert bool(field.choices) is (field.kind is ValueKind.ENUM), field.path
            if field.create_only:
                assert not field.unsettable, f"{field.path}: create-only cannot be unset"

    def test_key_fields_are_mappable_or_id(self) -> None:
        for kind, key in self.object_spec.keys.items():
            assert key.kind == kind
            if kind == "metadata":
                continue
            # A written key is a field Stripe takes on create; an unwritten one is the id.
            assert kind in self.object_spec.fields if key.written else kind == "id", kind

    def test_unknown_paths_do_not_resolve(self) -> None:
        unknown = ["no_such_field", self.object_spec.open_prefix,
                   self.object_spec.open_prefix + "a[b]"]
        for path in unknown + ([] if "id" in self.object_spec.fields else ["id"]):
            with pytest.raises(KeyError):
                resolve_field(self.object_spec, path)

    def test_required_groups_name_mappable_fields(self) -> None:
        for group, required in self.object_spec.required_together.items():
            assert required, group
            for path in required:
                assert path.startswith(group + ".") and path in self.object_spec.fields

    # --- values -----------------------------------------------------------------------------

    def test_samples_convert_to_themselves(self) -> None:
        for field in self.mappable():
            value = self.sample(field)
            assert convert_value(field, value) == value, field.path

    def test_max_lengths_are_enforced(self) -> None:
        limited = [f for f in self.mappable() if f.max_length is not None]
        for field in limited:
            assert field.max_length is not None
            exact = self.text_of_length(field, field.max_length)
            assert convert_value(field, exact) == exact, field.path
            with pytest.raises(ValueError, match="characters; Stripe allows at most"):
                convert_value(field, self.text_of_length(field, field.max_length + 1))

    def test_enum_choices_are_enforced(self) -> None:
        for field in self.mappable():
            if field.kind is not ValueKind.ENUM:
                continue
            for choice in field.choices:
                assert convert_value(field, choice) == choice
            with pytest.raises(ValueError, match="Stripe accepts"):
                convert_value(field, "not-a-choice")

    def test_nul_is_rejected_in_text(self) -> None:
        for field in self.mappable():
            if field.kind is ValueKind.STRING:
                with pytest.raises(ValueError, match="NUL"):
                    convert_value(field, self.text_of_length(field, 3) + "\x00")

    def test_none_stays_none(self) -> None:
        for field in self.mappable():
            assert convert_value(field, None) is None

    def test_metadata_limits(self) -> None:
        spec = self.object_spec
        prefix = spec.open_prefix  # metadata., or a meter event's payload.
        longest = "k" * spec.metadata_key_max_length
        field = resolve_field(spec, f"{prefix}{longest}")
        assert field.kind is ValueKind.STRING and field.unsettable
        with pytest.raises(KeyError):
            resolve_field(spec, f"{prefix}{longest}k")
        value = "v" * spec.metadata_value_max_length
        assert convert_value(field, value) == value
        with pytest.raises(ValueError, match="characters; Stripe allows at most"):
            convert_value(field, value + "v")
        if spec.open_map != "metadata":
            return  # Stripe documents the 50-key limit for metadata only
        full = {f"metadata.k{i}": "v" for i in range(spec.metadata_max_keys)}
        assert validate_values(spec, full) == []
        issues = validate_values(spec, {**full, "metadata.one_more": "v"})
        assert [str(i) for i in issues] == [
            f"metadata: has {spec.metadata_max_keys + 1} keys; Stripe allows at most "
            f"{spec.metadata_max_keys}"
        ]

    def test_required_groups_are_validated(self) -> None:
        spec = self.object_spec
        for group, required in spec.required_together.items():
            complete = {p: self.sample(spec.fields[p]) for p in required}
            assert validate_values(spec, complete) == []
            others = [p for p in spec.fields if p.startswith(group + ".") and p not in required]
            for missing in required:
                partial = {p: v for p, v in complete.items() if p != missing}
                if not partial and others:  # a one-field group: set a sibling instead
                    partial = {others[0]: self.sample(spec.fields[others[0]])}
                assert [i.field for i in validate_values(spec, partial)] == [missing], group

    # --- params -----------------------------------------------------------------------------

    def test_build_then_flatten_round_trips_each_field(self) -> None:
        spec = self.object_spec
        for field in self.mappable():
            flat = {field.path: self.sample(field)}
            params = build_params(flat, create=True, spec=spec)
            assert flatten_object(params, flat) == flat, field.path

    def test_create_only_fields_are_dropped_on_update(self) -> None:
        spec = self.object_spec
        for field in self.mappable(create_only=True):
            flat = {field.path: self.sample(field)}
            assert build_params(flat, create=False, spec=spec) == {}
            assert build_params(flat, create=True, spec=spec) != {}

    def test_none_unsets_on_update_and_is_dropped_on_create(self) -> None:
        spec = self.object_spec
        for field in self.mappable(create_only=False):
            flat = {field.path: None}
            assert build_params(flat, create=True, spec=spec) == {}
            if not field.unsettable:
                with pytest.raises(ValueError, match="cannot be unset"):
                    build_params(flat, create=False, spec=spec)
                continue
            params = build_params(flat, create=False, spec=spec)
            groups = [g for g in spec.required_together if field.path.startswith(g + ".")]
            if groups:  # a required group unset as a whole
                assert params == {groups[0]: ""}
            else:
                assert flatten_object(params, flat) == {field.path: ""}

    def test_closest_field_suggests_each_field_from_a_typo(self) -> None:
        for path in self.object_spec.fields:
            typo = path[:-2] + path[-1]  # one character dropped near the end
            assert closest_field(self.object_spec, typo) == path, typo
            assert closest_field(self.object_spec, path.upper()) == path

    # --- a real server ----------------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def emulator(cls) -> Iterator[EmulatorHandle]:
        handle = start_emulator(in_process=True)
        try:
            yield handle
        finally:
            handle.stop()

    def test_server_round_trip(self, emulator: EmulatorHandle) -> None:
        """Create with every field, read back equal; unset every unsettable one, read None."""
        spec = self.object_spec
        assert self.resource in ("", spec.service), "resource is the contract's service"
        client = stripe.StripeClient(
            "sk_test_conformance", base_addresses={"api": emulator.url}, max_network_retries=0
        )
        service = getattr(client.v1, spec.service)
        fields = [f for f in self.mappable(create_only=False) if f.path not in self.server_skip]
        flat = {f.path: self.sample(f) for f in fields} | {"metadata.with.dots": "kept"}
        params = {**self.create_base(client), **build_params(flat, create=True, spec=spec)}
        created = service.create(params=params)
        expand = {"expand": list(expand_for(spec, flat))}
        stored = service.retrieve(created.id, params=expand).to_dict()
        assert flatten_object(stored, flat) == flat

        cleared = {f.path: None for f in fields if f.unsettable} | {"metadata.with.dots": None}
        service.update(created.id, params=build_params(cleared, create=False, spec=spec))
        stored = service.retrieve(created.id, params=expand).to_dict()
        after = flatten_object(stored, cleared)
        # A few enums read back their default once unset (tax_exempt "" reads "none"); an
        # unset list reads back empty.
        defaults = {p: v for p, v in after.items() if v not in (None, [])}
        assert all(resolve_field(spec, p).kind is ValueKind.ENUM for p in defaults), defaults
        assert {p: v or None for p, v in after.items() if p not in defaults} == {
            p: None for p in cleared if p not in defaults
        }

    # --- behaviour: the contract drives matching and planning ---------------------------

    def _spec_for(self, key_field: str, column_values: Mapping[str, Any]) -> SyncSpec:
        obj = self.object_spec
        key = obj.key_spec(key_field)
        assert key is not None
        creates = key.can_create and Behavior.UPDATE_OR_CREATE in obj.behaviors
        behavior = Behavior.UPDATE_OR_CREATE if creates else Behavior.UPDATE_ONLY
        fields = {path: f"c_{i}" for i, path in enumerate(column_values) if path != key_field}
        block = {"object": obj.name, "behavior": behavior.value,
                 "key": {"column": "k", "field": key_field}, "fields": fields}
        model = DbtModel(unique_id=f"model.conformance.{obj.name}", name=obj.name,
                         package_name="conformance", relation_name='"w"."s"."t"',
                         database="w", schema="s", alias="t",
                         original_file_path=f"models/{obj.name}.sql", sync_block=block)
        return parse_sync_spec(model)

    def _desired(self, spec: SyncSpec, key_raw: Any, values: Mapping[str, Any]) -> DesiredRow:
        columns = {m.column: values[m.path] for m in spec.fields if m.column != "k"}
        row = DiffRow(key_value=normalize_key(key_raw, casefold=spec.key.casefold),
                      values={"k": key_raw, **columns}, row_hash="h", status=DiffStatus.NEW,
                      previous=None, duplicate_count=1)
        desired = desired_values(spec, row)
        assert isinstance(desired, DesiredRow), desired
        return desired

    @pytest.mark.parametrize("strategy", [LookupStrategy.PER_ROW, LookupStrategy.INDEX])
    def test_each_key_kind_matches_and_round_trips_to_unchanged(
        self, emulator: EmulatorHandle, strategy: LookupStrategy
    ) -> None:
        """plan -> sync -> plan against a real server, for every key kind the object has:
        no match plans a create (or, for an id key, the object is made first), the write
        lands, and the next plan finds it by the key and has nothing to change."""
        obj = self.object_spec
        client = stripe.StripeClient(
            "sk_test_conformance", base_addresses={"api": emulator.url}, max_network_retries=0
        )
        gateway = StripeGateway(StripeSettings(api_key="sk_test_conformance",
                                               api_base=emulator.url, max_rps=1000,
                                               per_endpoint_rps=1000))
        assert set(self.key_values) | {"id"} >= set(obj.keys) - {"id"}, "a value per key kind"
        for kind, key in obj.keys.items():
            values = self.row_values(client)
            if not key.can_create:  # update_only: only what an update may change
                values = {p: v for p, v in values.items()
                          if p.startswith("metadata.") or not obj.fields[p].create_only}
            field = f"metadata.conformance_{strategy.value.replace('-', '_')}" \
                if kind == "metadata" else kind
            raw: Any = self.key_values.get(kind, "").format(n=strategy.value.replace("-", "_"))
            if not key.can_create:  # an id Stripe assigns: the object exists first
                created = gateway.create(obj.service, {
                    **self.create_base(client), **build_params(self.row_values(client),
                                                               create=True, spec=obj)},
                    f"conf-{kind}-{strategy}")
                raw = created["id"]
            spec = self._spec_for(field, {field: raw, **values} if key.written else values)
            desired = self._desired(spec, raw, {field: raw, **values})
            matcher = Matcher(spec, gateway, strategy)
            matcher.prepare(unknown_keys=1)
            first = plan_row(spec, desired, matcher.match(desired))
            if key.can_create:
                assert first.action is Action.CREATE, (kind, first)
                assert first.idempotency_key is not None
                gateway.create(obj.service, {**self.create_base(client), **first.params},
                               first.idempotency_key)
            again = Matcher(spec, gateway, strategy)
            again.prepare(unknown_keys=1)
            second = plan_row(spec, desired, again.match(desired))
            assert second.action is Action.UNCHANGED, (kind, strategy, second)
            assert second.stripe_id is not None

