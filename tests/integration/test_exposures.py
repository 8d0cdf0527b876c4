"""`dbt-stripe-sync exposures`: the YAML it writes is dbt's own, dbt parses it, and dbt's
selector then finds each synced model (and what it is built from) upstream of Stripe."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.customers import SYNC_BY_EMAIL, SYNC_BY_METADATA, rows
from tests.integration.dbtproj import new_project

EXPOSURES = "models/stripe_exposures.yml"


def test_exposures_put_each_synced_model_upstream_of_stripe_in_dbt(tmp_path: Path) -> None:
    project = new_project(tmp_path / "proj", "duckdb")
    project.write_seed("crm", rows(3))
    project.write_model("stripe_customers", "select * from {{ ref('crm') }}",
                        sync=SYNC_BY_METADATA)
    project.write_model("customers_by_email", "select * from {{ ref('crm') }}",
                        sync=SYNC_BY_EMAIL)
    project.write_model("crm_names", "select full_name from {{ ref('crm') }}")  # not synced
    schema_path = project.root / "models" / "schema.yml"
    schema = yaml.safe_load(schema_path.read_text())
    for entry in schema["models"]:
        if entry["name"] == "stripe_customers":
            entry["config"]["meta"]["owner"] = "revops@example.com"
    schema_path.write_text(yaml.safe_dump(schema, sort_keys=False))
    project.dbt("deps")
    project.dbt("parse")

    printed = project.sync("exposures")
    assert printed.code == 0, printed.stderr
    written = project.sync("exposures", "--write", EXPOSURES)
    assert written.code == 0, written.stderr
    assert "Wrote 2 exposure(s)" in written.stdout
    document = yaml.safe_load((project.root / EXPOSURES).read_text())
    assert yaml.safe_load(printed.stdout) == document
    by_name = {e["name"]: e for e in document["exposures"]}
    assert set(by_name) == {"stripe_sync_stripe_customers", "stripe_sync_customers_by_email"}
    customers = by_name["stripe_sync_stripe_customers"]
    assert customers["type"] == "application"
    assert customers["depends_on"] == ["ref('stripe_customers')"]
    assert customers["owner"] == {"email": "revops@example.com"}  # the model's meta.owner
    assert customers["meta"] == {"stripe_activation": {
        "object": "customer", "behavior": "update_or_create", "key": "metadata.crm_id"}}
    assert by_name["stripe_sync_customers_by_email"]["owner"] == {"name": "dbt-stripe-sync"}

    project.dbt("parse")  # dbt reads the file it wrote
    manifest = json.loads((project.root / "target" / "manifest.json").read_text())
    exposure = manifest["exposures"]["exposure.test_project.stripe_sync_stripe_customers"]
    assert exposure["depends_on"]["nodes"] == ["model.test_project.stripe_customers"]
    assert exposure["owner"]["email"] == "revops@example.com"
    listed = project.dbt("ls", "--select", "+exposure:stripe_sync_stripe_customers",
                         "--output", "name", "--quiet").stdout.split()
    # What `dbt build --select +exposure:...` builds: the model and what it reads, no more.
    assert {"crm", "stripe_customers"} <= set(listed)
    assert "crm_names" not in listed and "customers_by_email" not in listed
