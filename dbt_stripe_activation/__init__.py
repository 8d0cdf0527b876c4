"""dbt-stripe-activation: reverse ETL from dbt models into Stripe.

    from dbt_stripe_activation import sync, plan
    result = sync(project_dir="my_project", select="stripe_customers")

dbt imports every top-level module named ``dbt_*`` on each of its commands, so this file
stays import-light (the API is loaded on first use) and never defines ``plugins``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["CheckResult", "ModelRun", "ResetResult", "RunResult", "check", "exposures", "plan",
           "reset_state", "sync"]

_LAZY = {"sync": "api", "plan": "api", "check": "api", "reset_state": "api", "exposures": "api",
         "RunResult": "results", "ModelRun": "results", "CheckResult": "results",
         "ResetResult": "results"}

if TYPE_CHECKING:
    from .api import check, exposures, plan, reset_state, sync
    from .results import CheckResult, ModelRun, ResetResult, RunResult


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dbt_stripe_activation' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
