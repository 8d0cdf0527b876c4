"""dbt exposures for the synced models, so dbt's lineage and `dbt docs` show Stripe
downstream of the models that feed it, and `dbt build --select +exposure:<name>` builds
exactly what a sync needs (docs.getdbt.com/docs/build/exposures)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from .project import DbtModel
from .spec import SyncSpec

NAME_PREFIX = "stripe_sync_"
DEFAULT_OWNER = "dbt-stripe-sync"
HEADER = (
    "# Written by `dbt-stripe-sync exposures`: one exposure per model synced into Stripe.\n"
    "# Run it again after adding or removing a synced model.\n"
)


def exposure_name(model: DbtModel) -> str:
    """A name dbt accepts (letters, digits, underscores), unique per synced model."""
    return NAME_PREFIX + re.sub(r"\W", "_", model.name)


def exposures_document(specs: Iterable[SyncSpec], project_name: str,
                       owner: str | None = None) -> dict[str, Any]:
    """The `exposures:` YAML of the synced models, as a dict. The owner is `owner` when
    given, else the model's `meta.owner`, else the tool."""
    return {"version": 2, "exposures": [_exposure(spec, project_name, owner) for spec in specs]}


def render(document: Mapping[str, Any]) -> str:
    return HEADER + yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True)


def _exposure(spec: SyncSpec, project_name: str, owner: str | None) -> dict[str, Any]:
    model = spec.model
    obj = spec.object.name
    return {
        "name": exposure_name(model),
        "label": f"Stripe {obj}s from {model.name}",
        "type": "application",
        "description": (
            f"`dbt-stripe-sync` writes each row of `{model.name}` to a Stripe {obj} "
            f"({spec.behavior.value}, keyed on {spec.key.field})."
        ),
        "owner": _owner(owner if owner is not None else model.owner),
        "depends_on": [_ref(model, project_name)],
        "meta": {"stripe_activation": {"object": obj, "behavior": spec.behavior.value,
                                       "key": spec.key.field}},
    }


def _ref(model: DbtModel, project_name: str) -> str:
    if model.package_name and model.package_name != project_name:
        return f"ref('{model.package_name}', '{model.name}')"
    return f"ref('{model.name}')"


def _owner(value: Any) -> dict[str, str]:
    """dbt needs a name or an email: `meta.owner` may be either as text (an address is an
    email), or dbt's owner mapping, taken as written (dbt checks it when it parses)."""
    if isinstance(value, Mapping):
        given = {str(k): str(v) for k, v in value.items() if v}
        if given:
            return given
    elif value:
        text = str(value)
        return dict(email=text) if "@" in text and not text.startswith("@") else dict(name=text)
    return dict(name=DEFAULT_OWNER)
