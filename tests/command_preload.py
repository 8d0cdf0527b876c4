"""Imported once by the warm server of tests/commands.py: what every dbt and dbt-stripe-sync
process imports anyway (dbt-core's CLI and the adapters the tests use).

Nothing here may read a setting from the environment at import, since each command has an
environment of its own: the Stripe SDK reads STRIPE_LOG at import, so it is not preloaded
(it costs 0.2 s; dbt-core and the adapters cost about 3 s)."""

import agate  # noqa: F401
import dbt.adapters.duckdb  # noqa: F401
import dbt.adapters.postgres  # noqa: F401
import dbt.cli.main  # noqa: F401

import dbt_stripe_activation.cli  # noqa: F401
