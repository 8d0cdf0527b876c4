"""The warehouse tests' tiny dbt project, built once per test session and target by a real
`dbt build` subprocess, and helpers to open a Warehouse on it.

The project is written from this module, not kept as files under tests/: the repo root is the
dbt package and dbt parses the package's default test-paths (`tests/`), so .sql/.yml files
there would become part of every project that installs the package.

DuckDB lets one process write a database file at a time: dbt runs as a subprocess while no
Warehouse is open, and every Warehouse a test opens is closed when the test ends.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from dbt_stripe_activation.objects.customer import CUSTOMER
from dbt_stripe_activation.project import DbtModel, Manifest, ProjectSettings, load_manifest
from dbt_stripe_activation.spec import Behavior, FieldMapping, NullPolicy, SyncKey, SyncSpec
from dbt_stripe_activation.warehouse import Warehouse
from tests.conftest import drop_postgres_schema, postgres_available
from tests.integration.dbtproj import DbtProject, duckdb_output, postgres_output, write_project

TARGETS = ["duckdb", "postgres"]
PROJECT_NAME = "warehouse_fixtures"

def require_target(target: str) -> None:
    """PostgreSQL tests skip (visibly) when the server is down, unless CI requires it."""
    if target == "postgres" and not postgres_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not running on 127.0.0.1:5432 and CI requires it")
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")


@dataclass
class BuiltProject(DbtProject):
    """A copy of the fixture project, built on one target (`dbt` runs as in every end-to-end
    test; its profile names the warehouse literally, so the tests can open it in-process)."""

    name: str = PROJECT_NAME
    build_results: Mapping[str, Any] = field(default_factory=dict)

    def settings(self, **overrides: Any) -> ProjectSettings:
        values: dict[str, Any] = {
            "project_dir": self.root,
            "profiles_dir": self.root,
            "target": self.target,
            "target_path": self.root / "target",
        }
        values.update(overrides)
        return ProjectSettings(**values)

    def manifest(self) -> Manifest:
        return load_manifest(self.settings())

    def model(self, name: str) -> DbtModel:
        return self.manifest().models[f"model.{self.name}.{name}"]

    def run_results(self) -> dict[str, Any]:
        return json.loads((self.root / "target" / "run_results.json").read_text())

    def open(self, **overrides: Any) -> Warehouse:
        return Warehouse.open(self.settings(**overrides), self.manifest())


SEED_COLUMN_TYPES = {
    "customer_id": "varchar(20)",
    "email": "varchar(100)",
    "full_name": "varchar(100)",
    "phone": "varchar(20)",
    "city": "varchar(50)",
    "plan": "varchar(20)",
    "seats": "integer",
    "signed_up_on": "date",
}

CRM_CUSTOMERS_CSV = """\
customer_id,email,full_name,phone,city,plan,seats,signed_up_on
c1,amy@example.com,Amy Adams,+14155550101,San Francisco,pro,3,2024-01-15
c2,bob@example.com,Bob Brown,,Paris,starter,1,2024-02-01
c3,carla@example.com,Carla Cruz,,,pro,2,
c4,Dan@Example.com,Dan Diaz,+442071234567,London,enterprise,10,2024-04-22
c5,eve@example.com,"Eve ""The"" O'Brien",,Berlin,,0,2024-05-05
"""

MODELS = {
    "customers": "select * from {{ ref('crm_customers') }}\n",
    "odd_names": (
        "-- Identifiers a sync must quote: spaces, mixed case and an embedded double quote.\n"
        "{{ config(alias='Odd Names Model') }}\n"
        "select\n"
        '    customer_id as "Customer ID",\n'
        '    email as "E-Mail ""Work""",\n'
        '    full_name as "Full Name",\n'
        '    city as "CITY"\n'
        "from {{ ref('crm_customers') }}\n"
    ),
    "big_customers": """\
-- 10,000 rows, for streaming in batches.
select
    'k' || cast(n as {{ dbt.type_string() }}) as customer_id,
    'user' || cast(n as {{ dbt.type_string() }}) || '@example.com' as email,
    'User ' || cast(n as {{ dbt.type_string() }}) as full_name
from generate_series(1, 10000) as t(n)
""",
    "no_sync": "-- No stripe_activation block: the hook leaves it alone.\nselect 1 as id\n",
    "bad_missing_column": "select * from {{ ref('crm_customers') }}\n",
    "bad_null_key": """\
-- c2's key is null and c3's is blank: two rows without a key.
select
    case
        when customer_id = 'c2' then null
        when customer_id = 'c3' then '  '
        else customer_id
    end as customer_id,
    email,
    full_name
from {{ ref('crm_customers') }}
""",
    "bad_duplicate_key": """\
-- c2's email is Amy's, in another case and padded: the same key once normalized.
select
    customer_id,
    case when customer_id = 'c2' then ' AMY@example.com ' else email end as email,
    full_name
from {{ ref('crm_customers') }}
""",
    "bad_block": "select * from {{ ref('crm_customers') }}\n",
}

CRM_KEY = {"column": "customer_id", "field": "metadata.crm_id"}
SYNC_BLOCKS: dict[str, Any] = {
    "customers": {
        "object": "customer",
        "behavior": "update_or_create",
        "key": CRM_KEY,
        "fields": {
            "email": "email",
            "name": "full_name",
            "phone": "phone",
            "address.city": "city",
            "metadata.plan": "plan",
            "metadata.seats": "seats",
            "metadata.signed_up_on": {"column": "signed_up_on", "null_values": "clear"},
        },
    },
    "odd_names": {
        "object": "customer",
        "key": {"column": "Customer ID", "field": "metadata.crm_id"},
        "fields": {"email": 'E-Mail "Work"', "name": "Full Name", "address.city": "city"},
    },
    "big_customers": {
        "object": "customer",
        "key": CRM_KEY,
        "fields": {"email": "email", "name": "full_name"},
    },
    "bad_missing_column": {
        "object": "customer",
        "key": CRM_KEY,
        "fields": {"email": "email", "phone": "phone_number"},
    },
    "bad_null_key": {"object": "customer", "key": CRM_KEY, "fields": {"email": "email"}},
    "bad_duplicate_key": {
        "object": "customer",
        "key": {"column": "email", "field": "email"},
        "fields": {"name": "full_name"},
    },
    "bad_block": {
        "object": "credit_note",
        "behavior": "upsert",
        "key": CRM_KEY,
        "fields": {"email": "email"},
    },
}


def write_fixture_project(root: Path, target: str, schema: str) -> None:
    """The dbt project: a seed, synced models (one with awkward identifiers, one of 10,000
    rows), a model without a block, and models the validation hook must fail (tagged); its
    profile names the warehouse literally (no env vars)."""
    write_project(
        root,
        PROJECT_NAME,
        target,
        {
            "duckdb": duckdb_output(str(root / "warehouse.duckdb"), schema),
            "postgres": postgres_output(schema),
            # A DuckDB file in a directory that does not exist: the connection fails.
            "unreachable": duckdb_output(str(root / "missing" / "dir" / "x.duckdb"), schema, 1),
        },
        seeds={PROJECT_NAME: {"+column_types": SEED_COLUMN_TYPES}},
        models={
            PROJECT_NAME: {
                "+materialized": "table",
                "+post-hook": "{{ stripe_activation.validate() }}",
            }
        },
    )
    (root / "seeds" / "crm_customers.csv").write_text(CRM_CUSTOMERS_CSV)
    entries = []
    for name, sql in MODELS.items():
        (root / "models" / f"{name}.sql").write_text(sql)
        entry: dict[str, Any] = {"name": name}
        config: dict[str, Any] = {}
        if name.startswith("bad_"):
            config["tags"] = ["validate_failure"]
        if name in SYNC_BLOCKS:
            config["meta"] = {"stripe_activation": SYNC_BLOCKS[name]}
        if config:
            entry["config"] = config
        entries.append(entry)
    (root / "models" / "schema.yml").write_text(
        yaml.safe_dump({"version": 2, "models": entries}, sort_keys=False)
    )


def new_project(root: Path, target: str) -> BuiltProject:
    """Write the fixture project for `target` in a schema of its own."""
    schema = "wh_" + uuid.uuid4().hex[:10]
    write_fixture_project(root, target, schema)
    return BuiltProject(root=root, target=target, schema=schema)


_BUILDS: dict[str, BuiltProject] = {}


def built_project(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> BuiltProject:
    """The project built on request.param, once per session (shared by the test modules)."""
    target = str(request.param)
    require_target(target)
    if target not in _BUILDS:
        project = new_project(tmp_path_factory.mktemp(f"wh_{target}") / "project", target)
        project.dbt("deps")
        project.dbt("build", "--exclude", "tag:validate_failure")
        project.build_results = project.run_results()
        _BUILDS[target] = project
        if target == "postgres":
            request.addfinalizer(lambda: _drop_postgres(project.schema))
    return _BUILDS[target]


def _drop_postgres(schema: str) -> None:
    drop_postgres_schema(schema)
    drop_postgres_schema(schema + "_custom")


@pytest.fixture(scope="session", params=TARGETS, name="project")
def project_fixture(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> BuiltProject:
    return built_project(request, tmp_path_factory)


@pytest.fixture(name="warehouse")
def warehouse_fixture(project: BuiltProject) -> Iterator[Warehouse]:
    with project.open() as wh:
        yield wh


def run_sql(wh: Warehouse, sql: str, fetch: bool = False) -> list[tuple[Any, ...]]:
    """Test setup SQL, committed, on a connection of its own."""
    session = wh.session
    conn = session.connection("test_setup")
    try:
        with session.transaction(conn):
            return session.execute(conn, sql, fetch=fetch)
    finally:
        session.close_connection(conn)


def copy_model(wh: Warehouse, base: DbtModel, *statements: str) -> DbtModel:
    """A private copy of a model's relation (and its own state, by unique id), changed by
    `statements` ({t} is the copy): tests change data without touching each other."""
    name = f"{base.name}_{uuid.uuid4().hex[:8]}"
    relation = wh.session.render_relation(base.database, base.schema, name)
    run_sql(wh, f"create table {relation} as select * from {base.relation_name}")
    for statement in statements:
        run_sql(wh, statement.format(t=relation))
    return replace(
        base,
        unique_id=f"model.{PROJECT_NAME}.{name}",
        name=name,
        alias=name,
        relation_name=relation,
    )


CUSTOMER_FIELDS = (
    FieldMapping("email", "email"),
    FieldMapping("name", "full_name"),
    FieldMapping("phone", "phone"),
    FieldMapping("address.city", "city"),
    FieldMapping("metadata.plan", "plan"),
    FieldMapping("metadata.seats", "seats"),
    FieldMapping("metadata.signed_up_on", "signed_up_on", NullPolicy.CLEAR),
)


def customer_spec(
    model: DbtModel,
    key_column: str = "customer_id",
    key_field: str = "metadata.crm_id",
    fields: tuple[FieldMapping, ...] = CUSTOMER_FIELDS,
) -> SyncSpec:
    return SyncSpec(
        model=model,
        object=CUSTOMER,
        behavior=Behavior.UPDATE_OR_CREATE,
        key=SyncKey(column=key_column, field=key_field, spec=CUSTOMER.key_spec(key_field)),
        fields=fields,
    )
