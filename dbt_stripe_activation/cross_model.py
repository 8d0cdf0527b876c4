"""Checks across the synced models of one run: the order they sync in (referenced models
first; a cycle is an error) and models that would write the same Stripe objects."""

from __future__ import annotations

from .errors import ConfigError
from .spec import SyncSpec


def order_by_references(specs: list[SyncSpec]) -> list[SyncSpec]:
    """Referenced models before the models referencing them, otherwise the given order
    (dbt's); a reference cycle is a ConfigError naming it."""
    by_id = {spec.model.unique_id: spec for spec in specs}
    position = {uid: i for i, uid in enumerate(by_id)}
    ordered: list[SyncSpec] = []
    state: dict[str, str] = {}

    def visit(uid: str, trail: list[str]) -> None:
        if state.get(uid) == "done":
            return
        if state.get(uid) == "visiting":
            cycle = trail[trail.index(uid) :] + [uid]
            names = " -> ".join(by_id[u].model.name if u in by_id else u for u in cycle)
            raise ConfigError(
                f"{by_id[uid].model.label}: stripe_activation.fields: references form a "
                f"cycle ({names}); no model could sync first. Remove one reference (map a "
                "column of Stripe ids instead)."
            )
        state[uid] = "visiting"
        spec = by_id[uid]
        deps = sorted({m.ref.model.unique_id for m in spec.references if m.ref is not None},
                      key=lambda u: position.get(u, -1))
        for dep in deps:
            if dep in by_id and dep != uid or dep == uid:
                visit(dep, [*trail, uid])
        state[uid] = "done"
        ordered.append(spec)

    for uid in by_id:
        visit(uid, [])
    return ordered


def check_overlaps(specs: list[SyncSpec]) -> list[str]:
    """Models that would write the same Stripe objects.

    Refused (ConfigError): two models syncing the same object type with the same key field,
    as each run would overwrite the other's values on the very same objects. Returned as
    warnings: models on the same object type with different keys that write the same
    fields, which may meet on objects both keys match.
    """
    errors: list[str] = []
    warnings: list[str] = []
    for i, first in enumerate(specs):
        for second in specs[i + 1 :]:
            if first.object.name != second.object.name:
                continue
            name = first.object.name
            if first.key.field == second.key.field:
                errors.append(
                    f"{first.model.label} and {second.model.label} both sync Stripe {name}s "
                    f"keyed on {first.key.field}: they would fight over the same {name}s. "
                    "Sync them from one model, or key each on its own field."
                )
                continue
            shared = sorted({m.path for m in first.fields} & {m.path for m in second.fields})
            if shared:
                warnings.append(
                    f"{first.model.label} (key {first.key.field}) and {second.model.label} "
                    f"(key {second.key.field}) both write {', '.join(shared)} on Stripe "
                    f"{name}s: a {name} both keys match gets whichever model syncs last."
                )
    if errors:
        raise ConfigError("\n".join(errors))
    return warnings
