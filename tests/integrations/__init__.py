"""Tests of the orchestrator integrations (Dagster, Airflow)."""
