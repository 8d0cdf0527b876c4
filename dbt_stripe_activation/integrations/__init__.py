"""Orchestrator integrations (Dagster, Airflow): thin layers over the Python API.

Each module imports its orchestrator, so none is imported here: `import dbt_stripe_activation`
and this package stay light, and each integration needs only its own extra installed.
"""
