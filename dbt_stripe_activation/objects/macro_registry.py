"""The object registry as a dbt macro (macros/registry.sql), for the `validate()` post-hook.

Hooks cannot call Python, so the facts `validate()` needs (objects, their behaviors, key
kinds and whether each is case-folded) are generated from the same registry the Python
package uses, and a test fails when the committed file drifts from it:

    python -m dbt_stripe_activation.objects.macro_registry > macros/registry.sql
"""

from __future__ import annotations

import json
from pathlib import Path

from . import OBJECT_SPECS

REGISTRY_PATH = Path(__file__).resolve().parents[2] / "macros" / "registry.sql"


def registry_data() -> dict[str, dict[str, object]]:
    return {
        spec.name: {
            "behaviors": [b.value for b in spec.behaviors],
            "keys": {
                kind: {"casefold": key.casefold, "can_create": key.can_create}
                for kind, key in spec.keys.items()
            },
        }
        for spec in OBJECT_SPECS.values()
    }


def render_registry_macro() -> str:
    data = json.dumps(registry_data(), indent=2, sort_keys=True)
    return (
        "{#- GENERATED from dbt_stripe_activation/objects (do not edit by hand):\n"
        "    python -m dbt_stripe_activation.objects.macro_registry > macros/registry.sql\n"
        "    Every Stripe object the package syncs, its behaviors and its key kinds. -#}\n"
        "{% macro object_registry() %}\n"
        f"  {{{{ return({data}) }}}}\n"
        "{% endmacro %}\n"
    )


if __name__ == "__main__":
    print(render_registry_macro(), end="")
