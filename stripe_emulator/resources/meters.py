"""The billing meter resource (docs.stripe.com/api/billing/meter).

Parameters follow `stripe.params.billing.MeterCreateParams` / `MeterUpdateParams` /
`MeterListParams` of the pinned SDK; the object carries the top-level fields of Stripe's own
sample (stripe/openapi `fixtures3.json`, `billing.meter`). `event_name` is unique among active
meters: meter events name their meter by it. Meters cannot be deleted, only deactivated.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from typing import Any

from ..errors import ApiError, invalid, missing_parameter
from .base import ObjectResource, ObjectStore, ResourceContext, choice, exact
from .params import check_known, enum_param, expand_names, hash_param, name_of, string_param

CREATE = {
    "customer_mapping",
    "default_aggregation",
    "display_name",
    "event_name",
    "event_time_window",
    "expand",
    "value_settings",
}
UPDATE = {"display_name", "expand"}
FORMULAS = ("count", "last", "sum")
MAPPING_TYPES = ("by_id",)
TIME_WINDOWS = ("day", "hour")
STATUSES = ("active", "inactive")
DISPLAY_NAME_MAX = 250
EVENT_NAME_MAX = 100
PAYLOAD_KEY_MAX = 100
DEFAULT_CUSTOMER_KEY = "stripe_customer_id"
DEFAULT_VALUE_KEY = "value"


def meter_spec(params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate create params into the meter's fields."""
    check_known(params, CREATE)
    for required in ("display_name", "event_name", "default_aggregation"):
        if required not in params:
            raise missing_parameter(required)
    spec: dict[str, Any] = {
        "customer_mapping": {"event_payload_key": DEFAULT_CUSTOMER_KEY, "type": "by_id"},
        "event_time_window": None,
        "value_settings": {"event_payload_key": DEFAULT_VALUE_KEY},
    }
    for key, value in params.items():
        if key == "display_name":
            spec[key] = string_param(value, key, DISPLAY_NAME_MAX, emptyable=False)
        elif key == "event_name":
            spec[key] = string_param(value, key, EVENT_NAME_MAX, emptyable=False)
        elif key == "default_aggregation":
            given = hash_param(value, key, ("formula",))
            if "formula" not in given:
                raise missing_parameter(name_of(key, "formula"))
            spec[key] = {"formula": enum_param(given["formula"], name_of(key, "formula"), FORMULAS)}
        elif key == "customer_mapping":
            given = hash_param(value, key, ("event_payload_key", "type"))
            for part in ("event_payload_key", "type"):
                if part not in given:
                    raise missing_parameter(name_of(key, part))
            spec[key] = {
                "event_payload_key": string_param(
                    given["event_payload_key"],
                    name_of(key, "event_payload_key"),
                    PAYLOAD_KEY_MAX,
                    emptyable=False,
                ),
                "type": enum_param(given["type"], name_of(key, "type"), MAPPING_TYPES),
            }
        elif key == "value_settings":
            given = hash_param(value, key, ("event_payload_key",))
            if "event_payload_key" not in given:
                raise missing_parameter(name_of(key, "event_payload_key"))
            spec[key] = {
                "event_payload_key": string_param(
                    given["event_payload_key"],
                    name_of(key, "event_payload_key"),
                    PAYLOAD_KEY_MAX,
                    emptyable=False,
                )
            }
        elif key == "event_time_window":
            spec[key] = enum_param(value, key, TIME_WINDOWS)
        elif key == "expand":
            expand_names(params, ())
    return spec


def event_name_taken(event_name: str, holder: str) -> ApiError:
    # Our wording: we did not find Stripe's.
    return invalid(
        f"An active meter (`{holder}`) already uses the event_name `{event_name}`.", "event_name"
    )


class MeterStore(ObjectStore):
    """Meters, with the index of active meters by event_name."""

    def __init__(self, *, seed: int | None) -> None:
        super().__init__(
            kind="meter",  # "No such meter: 'mtr_x'"
            prefix="mtr_test_",
            url="/v1/billing/meters",
            seed=seed,
            id_length=32,
            lock=threading.RLock(),
        )
        self.active_by_event_name: dict[str, str] = {}
        self.inactive_event_names: dict[str, str] = {}  # event_name -> newest inactive meter

    def reset(self, seed: int | None = None) -> None:
        with self.lock:
            super().reset(seed)
            self.active_by_event_name.clear()
            self.inactive_event_names.clear()

    def _index(self, obj: Mapping[str, Any]) -> None:
        name = obj["event_name"]
        if obj["status"] == "active":
            self.active_by_event_name[name] = obj["id"]
            if self.inactive_event_names.get(name) == obj["id"]:
                del self.inactive_event_names[name]
        else:
            if self.active_by_event_name.get(name) == obj["id"]:
                del self.active_by_event_name[name]
            self.inactive_event_names[name] = obj["id"]

    def insert(self, obj: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            super().insert(obj)
            self._index(obj)
            return obj

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            super().replace(obj)
            self._index(obj)
            return obj

    def for_event(self, event_name: str) -> tuple[dict[str, Any] | None, bool]:
        """(the active meter for `event_name` or None, whether an inactive one exists)."""
        with self.lock:
            meter_id = self.active_by_event_name.get(event_name)
            if meter_id is not None:
                return self.get(meter_id), False
            return None, event_name in self.inactive_event_names


class MetersResource(ObjectResource):
    name = "billing/meters"
    object_name = "billing_meter"  # our naming of the permission: rak_billing_meter_read/_write
    routes = (
        ("POST", "", "create"),
        ("GET", "", "list_all"),
        ("GET", "/{id}", "retrieve"),
        ("POST", "/{id}", "update"),
        ("POST", "/{id}/deactivate", "deactivate"),
        ("POST", "/{id}/reactivate", "reactivate"),
    )
    store: MeterStore
    filters = (exact("status", choice("status", STATUSES)),)
    seed_item = "meters seed item"

    def __init__(self, context: ResourceContext) -> None:
        super().__init__(context)
        self.store = MeterStore(seed=context.seed)

    def _now(self) -> int:
        return int(self.context.clock.now())

    def changes(self, params: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        """An update's `display_name` is checked once the meter is found (`apply`)."""
        if creating:
            return meter_spec(params)
        check_known(params, UPDATE)
        expand_names(params, ())
        return dict(params)

    def insert(
        self,
        changes: Mapping[str, Any],
        *,
        object_id: str | None = None,
        created: Any = None,
        status: str = "active",
    ) -> dict[str, Any]:
        with self.store.lock:
            self.store.check_unused(object_id)
            holder = self.store.active_by_event_name.get(changes["event_name"])
            if status == "active" and holder is not None:
                raise event_name_taken(changes["event_name"], holder)
            now = self._now() if created is None else int(created)
            obj: dict[str, Any] = {
                "id": object_id or self.store.new_id(),
                "object": "billing.meter",
                "created": now,
                "customer_mapping": changes["customer_mapping"],
                "default_aggregation": changes["default_aggregation"],
                "display_name": changes["display_name"],
                "event_name": changes["event_name"],
                "event_time_window": changes["event_time_window"],
                "livemode": False,
                "status": status,
                "status_transitions": {"deactivated_at": None if status == "active" else now},
                "updated": now,
                "value_settings": changes["value_settings"],
            }
            return self.store.insert(obj)

    def apply(self, obj: dict[str, Any], changes: Mapping[str, Any]) -> None:
        if "display_name" in changes:
            obj["display_name"] = string_param(
                changes["display_name"], "display_name", DISPLAY_NAME_MAX, emptyable=False
            )
        obj["updated"] = max(self._now(), obj["created"])

    # -- the lifecycle: active <-> inactive

    def deactivate(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        return self._set_status(params, object_id, "inactive")

    def reactivate(self, params: dict[str, Any], object_id: str | None) -> dict[str, Any]:
        return self._set_status(params, object_id, "active")

    def _set_status(
        self, params: dict[str, Any], object_id: str | None, status: str
    ) -> dict[str, Any]:
        assert object_id is not None
        check_known(params, {"expand"})
        expand_names(params, ())
        with self.store.lock:
            obj = copy.deepcopy(self.store.require(object_id))
            if obj["status"] == status:
                # Our wording: we did not find Stripe documenting this case.
                raise invalid(f"This meter is already {status}.")
            if status == "active":
                holder = self.store.active_by_event_name.get(obj["event_name"])
                if holder is not None:
                    raise event_name_taken(obj["event_name"], holder)
            now = max(self._now(), obj["created"])
            obj["status"] = status
            obj["status_transitions"] = {"deactivated_at": now if status == "inactive" else None}
            obj["updated"] = now
            return self.store.replace(obj)

    # -- control API

    def seed_one(self, params: dict[str, Any]) -> dict[str, Any]:
        """Create params plus optional `id`, `created` and `status` ("inactive");
        `default_aggregation` defaults to `{"formula": "sum"}` here (the API requires it)."""
        meter_id = params.pop("id", None)
        created = params.pop("created", None)
        status = params.pop("status", "active")
        params.setdefault("default_aggregation", {"formula": "sum"})
        status = enum_param(status, "status", STATUSES)
        spec = meter_spec(params)
        return self.insert(spec, object_id=meter_id, created=created, status=status)
