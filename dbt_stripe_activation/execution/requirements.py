"""Fields that must name an existing Stripe object (a meter event's event_name: an active
meter's), checked with one list per requirement before any write."""

from __future__ import annotations

import json

from ..records import DesiredRow
from ..spec import SyncSpec
from ..stripe_api import StripeGateway


def required_values(
    gateway: StripeGateway, specs: list[SyncSpec]
) -> tuple[dict[tuple[str, str], tuple[set[str], str]], list[str]]:
    """For each spec's required fields: the values Stripe has (one list per requirement),
    by (model, field), and the problems of constants that name none."""
    listed: dict[tuple[str, str], set[str]] = {}
    found: dict[tuple[str, str], tuple[set[str], str]] = {}
    problems: list[str] = []
    for spec in specs:
        for path, need in spec.object.requires.items():
            mapping = next((m for m in spec.fields if m.path == path), None)
            if mapping is None:
                continue
            key = (need.service, json.dumps(dict(need.params), sort_keys=True))
            if key not in listed:
                listed[key] = {str(o.get(need.attribute))
                               for o in gateway.list_where(need.service, dict(need.params))}
            allowed = listed[key]
            found[(spec.model.unique_id, path)] = (allowed, need.what)
            if mapping.is_constant and str(mapping.constant) not in allowed:
                known = ", ".join(sorted(allowed)[:10]) or "none"
                problems.append(
                    f"{spec.model.label}: stripe_activation.fields.{path}: "
                    f"{mapping.constant!r} is not the {path} of {need.what} in this Stripe "
                    f"account (found: {known}). Create it in Stripe, or fix the value."
                )
    return found, problems


def unmet(allowed: dict[tuple[str, str], tuple[set[str], str]], spec: SyncSpec,
          desired: DesiredRow) -> str | None:
    """Why a row's value names no required object, or None."""
    for path in spec.object.requires:
        found = allowed.get((spec.model.unique_id, path))
        value = desired.values.get(path)
        if found is not None and value is not None and str(value) not in found[0]:
            return f"{path}: {str(value)!r} is not the {path} of {found[1]} in Stripe"
    return None
