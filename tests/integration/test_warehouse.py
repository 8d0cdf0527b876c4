"""The warehouse layer against real warehouses (DuckDB, PostgreSQL): bookkeeping tables, the
diff (new, changed, retry, invalid keys, full resync, removed), state write-back, locks,
streaming, and the errors a user can cause. Each test works on its own copy of a model."""

from __future__ import annotations

import hashlib
import inspect
import json
import subprocess
import sys
from dataclasses import replace
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from dbt_stripe_activation import __version__, dbt_compat
from dbt_stripe_activation.errors import LockHeldError, ProjectError, WarehouseError
from dbt_stripe_activation.objects import OBJECT_SPECS
from dbt_stripe_activation.objects.keys import normalize_key
from dbt_stripe_activation.project import load_manifest
from dbt_stripe_activation.spec import FieldMapping, SyncSpec
from dbt_stripe_activation.warehouse import (
    MACROS_API_VERSION,
    DiffCounts,
    DiffRow,
    DiffStatus,
    RowOutcome,
    RunRecord,
    Warehouse,
)
from tests.conftest import drop_postgres_schema
from tests.integration.warehouse_fixtures import (
    BuiltProject,
    copy_model,
    customer_spec,
    project_fixture,  # noqa: F401 - the `project` fixture
    run_sql,
    warehouse_fixture,  # noqa: F401 - the `warehouse` fixture
)

SEED = {
    "c1": {
        "customer_id": "c1",
        "email": "amy@example.com",
        "full_name": "Amy Adams",
        "phone": "+14155550101",
        "city": "San Francisco",
        "plan": "pro",
        "seats": 3,
        "signed_up_on": date(2024, 1, 15),
    },
    "c2": {
        "customer_id": "c2",
        "email": "bob@example.com",
        "full_name": "Bob Brown",
        "phone": None,
        "city": "Paris",
        "plan": "starter",
        "seats": 1,
        "signed_up_on": date(2024, 2, 1),
    },
    "c3": {
        "customer_id": "c3",
        "email": "carla@example.com",
        "full_name": "Carla Cruz",
        "phone": None,
        "city": None,
        "plan": "pro",
        "seats": 2,
        "signed_up_on": None,
    },
    "c4": {
        "customer_id": "c4",
        "email": "Dan@Example.com",
        "full_name": "Dan Diaz",
        "phone": "+442071234567",
        "city": "London",
        "plan": "enterprise",
        "seats": 10,
        "signed_up_on": date(2024, 4, 22),
    },
    "c5": {
        "customer_id": "c5",
        "email": "eve@example.com",
        "full_name": 'Eve "The" O\'Brien',
        "phone": None,
        "city": "Berlin",
        "plan": None,
        "seats": 0,
        "signed_up_on": date(2024, 5, 5),
    },
}


def expected_hash(spec: SyncSpec, row: dict[str, Any]) -> str:
    """The documented row hash: md5 of the fingerprint, then each column as text (nulls as a
    marker), separated by '-|-'."""
    parts = [spec.fingerprint]
    for column in spec.columns:
        value = row[column]
        parts.append("-|-")
        if value is None:
            parts.append("_stripe_activation_null_")
        elif isinstance(value, date):
            parts.append(value.isoformat())
        else:
            parts.append(str(value))
    return hashlib.md5("".join(parts).encode()).hexdigest()


def diff(wh: Warehouse, spec: SyncSpec, full_resync: bool = False) -> dict[str | None, DiffRow]:
    """The diff of a model whose keys are unique, by key."""
    rows = [row for batch in wh.stream_diff(spec, full_resync) for row in batch]
    by_key = {row.key_value: row for row in rows}
    assert len(by_key) == len(rows)
    return by_key


def created(row: DiffRow, synced: dict[str, Any] | None = None) -> RowOutcome:
    return RowOutcome(
        key_value=row.key_value,
        action="create",
        outcome="created",
        stripe_id=f"cus_{row.key_value}",
        row_hash=row.row_hash,
        synced_values=synced if synced is not None else {"email": row.values.get("email")},
        error=None,
    )


def sync_all(wh: Warehouse, spec: SyncSpec, run_id: str = "run1") -> None:
    for batch in wh.stream_diff(spec):
        wh.write_outcomes(run_id, spec, [created(row) for row in batch])


# -- connection, relation ---------------------------------------------------------------------


def test_check_names_adapter_target_and_schema(warehouse: Warehouse, project: BuiltProject):
    database = "warehouse" if project.target == "duckdb" else "test"
    state = warehouse.session.render_relation(
        database, f"{project.schema}_stripe_activation", "stripe_sync_state"
    )
    assert warehouse.check() == (
        f"{project.target} via target '{project.target}' of profile 'warehouse_fixtures': "
        f"database '{database}', schema '{project.schema}'; sync state in {state}"
    )
    assert warehouse.adapter_type == project.target


def test_relation_columns_and_missing_relation(warehouse: Warehouse, project: BuiltProject):
    model = project.model("customers")
    assert warehouse.relation_columns(model) == list(SEED["c1"])
    ghost = replace(model, name="ghost", alias="ghost", relation_name=None)
    relation = warehouse.session.render_relation(model.database, model.schema, "ghost")
    with pytest.raises(WarehouseError) as err:
        warehouse.relation_columns(ghost)
    assert str(err.value) == (
        f"The relation for model 'ghost' ({relation}) does not exist in target "
        f"'{project.target}' ({project.target}): run `dbt run --select ghost` first."
    )


# -- bookkeeping ------------------------------------------------------------------------------


BOOKKEEPING = {
    "stripe_sync_state": [
        "model_unique_id",
        "key_value",
        "stripe_object",
        "stripe_id",
        "row_hash",
        "synced_values",
        "last_outcome",
        "last_error",
        "synced_at",
        "run_id",
    ],
    "stripe_sync_runs": [
        "run_id",
        "model_unique_id",
        "command",
        "started_at",
        "finished_at",
        "created",
        "updated",
        "unchanged",
        "rejected",
        "not_found",
        "failed",
        "status",
        "tool_version",
        "replaced",
        "skipped",
        "sent",
        "already_sent",
        "uncertain",
        "archived",
        "deleted",
        "locked",
    ],
    "stripe_sync_row_results": [
        "run_id",
        "model_unique_id",
        "key_value",
        "action",
        "outcome",
        "stripe_id",
        "error",
        "recorded_at",
    ],
    "stripe_sync_locks": ["model_unique_id", "owner", "acquired_at", "expires_at"],
}


def bookkeeping_columns(wh: Warehouse, schema: str, database: str | None) -> dict[str, list]:
    conn = wh.session.connection("inspect")
    try:
        return {
            table: wh.session.columns_in_relation(conn, database, schema, table)
            for table in BOOKKEEPING
        }
    finally:
        wh.session.close_connection(conn)


def test_bookkeeping_tables_are_created_once_and_kept(project: BuiltProject):
    schema = project.schema + "_custom"  # its own schema, so this test sees it created
    with project.open(vars={"stripe_activation_schema": schema}) as wh:
        model = copy_model(wh, project.model("customers"))
        database = model.database
        assert bookkeeping_columns(wh, schema, database) == {t: [] for t in BOOKKEEPING}
        wh.ensure_bookkeeping()
        assert bookkeeping_columns(wh, schema, database) == BOOKKEEPING
        assert wh.bookkeeping_relation("stripe_sync_state") == wh.session.render_relation(
            database, schema, "stripe_sync_state"
        )
        spec = customer_spec(model)
        sync_all(wh, spec)
        wh.ensure_bookkeeping()
    with project.open(vars={"stripe_activation_schema": schema}) as wh:
        wh.ensure_bookkeeping()  # a new process: the tables and their rows are kept
        assert bookkeeping_columns(wh, schema, database) == BOOKKEEPING
        assert wh.diff_counts(spec).unchanged == 5


RACE_SCRIPT = """
import sys, time
from pathlib import Path
from dbt_stripe_activation.project import ProjectSettings, load_manifest
from dbt_stripe_activation.warehouse import Warehouse
root, target, schema, start_at = Path(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
settings = ProjectSettings(project_dir=root, profiles_dir=root, target=target,
                           target_path=root / "target",
                           vars={"stripe_activation_schema": schema})
with Warehouse.open(settings, load_manifest(settings)) as wh:
    time.sleep(max(0.0, start_at - time.time()))
    wh.ensure_bookkeeping()
print("ok")
"""


@pytest.mark.parametrize("project", ["postgres"], indirect=True)  # DuckDB: one writer anyway
def test_syncs_starting_together_create_the_bookkeeping_once(project: BuiltProject):
    """Shards start side by side: each finds the schema or a table missing and creates it, and
    the losers of each race must carry on with the winner's tables, not fail."""
    import time

    schema = f"{project.schema}_race"
    start_at = time.time() + 8  # every process has loaded dbt by then
    procs = [subprocess.Popen(
        [sys.executable, "-c", RACE_SCRIPT, str(project.root), project.target, schema,
         str(start_at)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) for _ in range(4)]
    try:
        outputs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, [err[-3000:] for _, err in outputs]
    finally:
        drop_postgres_schema(schema)


# -- the diff ---------------------------------------------------------------------------------


def test_empty_state_diff_is_all_new_with_hashes_and_python_values(
    warehouse: Warehouse, project: BuiltProject
):
    spec = customer_spec(copy_model(warehouse, project.model("customers")))
    rows = diff(warehouse, spec)
    assert sorted(rows) == ["c1", "c2", "c3", "c4", "c5"]
    for key, row in rows.items():
        assert row.status is DiffStatus.NEW
        assert row.previous is None
        assert row.duplicate_count == 1
        assert dict(row.values) == SEED[key]
        assert row.row_hash == expected_hash(spec, SEED[key])
    assert isinstance(rows["c1"].values["signed_up_on"], date)
    assert warehouse.diff_counts(spec) == DiffCounts(
        total=5, new=5, changed=0, unchanged=0, retry=0, removed=0, invalid_key=0
    )


def test_changed_mapping_changes_every_hash(warehouse: Warehouse, project: BuiltProject):
    model = copy_model(warehouse, project.model("customers"))
    spec = customer_spec(model)
    sync_all(warehouse, spec)
    remapped = customer_spec(
        model, fields=(FieldMapping("email", "email"), FieldMapping("description", "full_name"))
    )
    rows = diff(warehouse, remapped)
    assert {row.status for row in rows.values()} == {DiffStatus.CHANGED}
    assert len(rows) == 5


def test_written_outcomes_leave_nothing_to_diff(warehouse: Warehouse, project: BuiltProject):
    spec = customer_spec(copy_model(warehouse, project.model("customers")))
    sync_all(warehouse, spec)
    assert diff(warehouse, spec) == {}
    assert warehouse.diff_counts(spec) == DiffCounts(
        total=5, new=0, changed=0, unchanged=5, retry=0, removed=0, invalid_key=0
    )


def test_changed_row_comes_back_alone_with_its_state(warehouse: Warehouse, project: BuiltProject):
    model = copy_model(warehouse, project.model("customers"))
    spec = customer_spec(model)
    first = diff(warehouse, spec)
    synced = {
        "address.city": "Paris",
        "email": "bob@example.com",
        "metadata.seats": Decimal(1),
        "metadata.signed_up_on": date(2024, 2, 1),
    }
    warehouse.write_outcomes(
        "run1",
        spec,
        [created(first["c2"], synced), *[created(r) for k, r in first.items() if k != "c2"]],
    )
    run_sql(warehouse, f"update {model.relation_name} set city = 'Lyon' where customer_id = 'c2'")

    rows = diff(warehouse, spec)
    assert list(rows) == ["c2"]
    row = rows["c2"]
    assert row.status is DiffStatus.CHANGED
    assert row.values["city"] == "Lyon"
    assert row.row_hash == expected_hash(spec, {**SEED["c2"], "city": "Lyon"})
    assert row.previous is not None
    assert row.previous.row_hash == first["c2"].row_hash
    assert row.previous.stripe_id == "cus_c2"
    assert row.previous.outcome == "created"
    # stored as JSON text (sorted keys, non-JSON values as strings)
    assert dict(row.previous.synced_values) == {
        "address.city": "Paris",
        "email": "bob@example.com",
        "metadata.seats": "1",
        "metadata.signed_up_on": "2024-02-01",
    }
    assert warehouse.diff_counts(spec) == DiffCounts(
        total=5, new=0, changed=1, unchanged=4, retry=0, removed=0, invalid_key=0
    )


def test_failed_outcome_is_retried_and_keeps_synced_values(
    warehouse: Warehouse, project: BuiltProject
):
    spec = customer_spec(copy_model(warehouse, project.model("customers")))
    sync_all(warehouse, spec)
    previous = diff(warehouse, spec, full_resync=True)["c3"]
    warehouse.write_outcomes(
        "run2",
        spec,
        [
            RowOutcome(
                key_value="c3",
                action="update",
                outcome="failed",
                stripe_id="cus_c3",
                row_hash=previous.row_hash,
                synced_values=None,
                error="Stripe: 500 api_error",
            )
        ],
    )

    rows = diff(warehouse, spec)
    assert list(rows) == ["c3"]
    retry = rows["c3"]
    assert retry.status is DiffStatus.RETRY
    assert retry.previous is not None
    assert retry.previous.outcome == "failed"
    assert retry.previous.error == "Stripe: 500 api_error"
    assert dict(retry.previous.synced_values) == {"email": "carla@example.com"}
    assert warehouse.diff_counts(spec).retry == 1

    warehouse.write_outcomes("run3", spec, [created(retry)])
    assert diff(warehouse, spec) == {}


def test_null_empty_and_duplicate_keys_are_invalid(warehouse: Warehouse, project: BuiltProject):
    # email key: c2 becomes Amy's email in another case and padded, c3's is blank, c5 null
    model = copy_model(
        warehouse,
        project.model("customers"),
        "update {t} set email = ' AMY@example.com ' where customer_id = 'c2'",
        "update {t} set email = '   ' where customer_id = 'c3'",
        "update {t} set email = null where customer_id = 'c5'",
    )
    spec = customer_spec(
        model, key_column="email", key_field="email", fields=(FieldMapping("name", "full_name"),)
    )
    rows = [row for batch in warehouse.stream_diff(spec) for row in batch]
    by_id = {row.values["full_name"]: row for row in rows}
    assert len(rows) == 5
    for name in ("Amy Adams", "Bob Brown"):
        assert by_id[name].status is DiffStatus.INVALID_KEY
        assert by_id[name].key_value == "amy@example.com"
        assert by_id[name].duplicate_count == 2
    for name in ("Carla Cruz", 'Eve "The" O\'Brien'):
        assert by_id[name].status is DiffStatus.INVALID_KEY
        assert by_id[name].key_value is None
        assert by_id[name].duplicate_count == 1
    assert by_id["Dan Diaz"].status is DiffStatus.NEW
    assert by_id["Dan Diaz"].key_value == "dan@example.com"  # normalized as the sync compares
    assert warehouse.diff_counts(spec) == DiffCounts(
        total=5, new=1, changed=0, unchanged=0, retry=0, removed=0, invalid_key=4
    )

    # Rejections of a duplicated key are recorded as row results but not as state, so the
    # row left once the duplicate is fixed is synced, not taken for unchanged.
    warehouse.write_outcomes(
        "run1",
        spec,
        [
            RowOutcome(row.key_value, "rejected", "rejected", None, row.row_hash, None, "dup")
            for row in rows
        ],
    )
    run_sql(warehouse, f"delete from {model.relation_name} where customer_id = 'c2'")
    fixed = [row for batch in warehouse.stream_diff(spec) for row in batch]
    assert [row.status for row in fixed if row.key_value == "amy@example.com"] == [DiffStatus.NEW]
    results = run_sql(
        warehouse,
        f"select count(*) from {warehouse.bookkeeping_relation('stripe_sync_row_results')} "
        f"where model_unique_id = '{model.unique_id}'",
        fetch=True,
    )
    assert results == [(5,)]


def test_stream_after_the_counts_reads_the_keys_they_kept(
    warehouse: Warehouse, project: BuiltProject
):
    """diff_counts keeps the keys to act on in a temporary table, on the connection of the
    model's next stream: the model is aggregated once for both, and the stream is the one
    it would be alone (duplicated, new, changed keys; unchanged and removed ones left out).
    With more keys to act on than state rows, the table is dropped (a first sync)."""
    model = copy_model(warehouse, project.model("customers"))
    spec = customer_spec(
        model, key_column="email", key_field="email", fields=(FieldMapping("name", "full_name"),)
    )
    assert warehouse.diff_counts(spec).new == 5
    assert spec.model.unique_id not in warehouse._prepared  # all new: the state is smaller
    sync_all(warehouse, spec)
    for statement in (
        "update {t} set email = ' AMY@example.com ' where customer_id = 'c2'",
        "update {t} set full_name = 'Dan D.' where customer_id = 'c4'",
        "insert into {t} (customer_id, email, full_name) values ('c9', 'ivy@example.com', 'Ivy')",
    ):
        run_sql(warehouse, statement.format(t=model.relation_name))

    def streamed(full_resync: bool = False) -> list[DiffRow]:
        rows = [row for batch in warehouse.stream_diff(spec, full_resync) for row in batch]
        return sorted(rows, key=lambda row: str(row.values["full_name"]))

    alone, alone_resync = streamed(), streamed(full_resync=True)
    counts = warehouse.diff_counts(spec)
    assert counts == DiffCounts(total=6, new=1, changed=1, unchanged=2, retry=0, removed=1,
                                invalid_key=2)
    assert spec.model.unique_id in warehouse._prepared  # DuckDB and PostgreSQL have one
    assert streamed() == alone
    assert spec.model.unique_id not in warehouse._prepared
    assert [row.status for row in alone] == [
        DiffStatus.INVALID_KEY, DiffStatus.INVALID_KEY, DiffStatus.CHANGED, DiffStatus.NEW]
    # A full resync needs the unchanged keys too, which the table leaves out: its own query.
    assert warehouse.diff_counts(spec, full_resync=True) == counts
    assert streamed(full_resync=True) == alone_resync
    assert len(alone_resync) == 6
    # A write to the state makes a kept table stale: the next stream reads the state again.
    warehouse.diff_counts(spec)
    warehouse.write_outcomes("run2", spec, [created(alone[2])])
    assert spec.model.unique_id not in warehouse._prepared
    assert [row.status for row in streamed()] == [
        DiffStatus.INVALID_KEY, DiffStatus.INVALID_KEY, DiffStatus.NEW]


def test_a_read_out_of_memory_runs_again_under_a_higher_cap(
    warehouse: Warehouse, project: BuiltProject, monkeypatch: pytest.MonkeyPatch
):
    """DuckDB's cap keeps the sync's memory flat; a read that still runs out of it before
    its first batch (nothing handed out) is run again under the next cap, then the cap is
    set back."""
    if project.target != "duckdb":
        pytest.skip("the cap is the embedded DuckDB's")
    spec = customer_spec(copy_model(warehouse, project.model("customers")))
    session = warehouse.session
    stream = session.stream
    caps: list[str] = []

    class OutOfMemoryException(Exception):  # noqa: N818 - named as duckdb names it
        pass

    def out_of_memory_once(conn: Any, sql: str, batch_size: int) -> Any:
        caps.append(str(run_sql(warehouse, "select current_setting('memory_limit')",
                                fetch=True)[0][0]))
        if len(caps) == 1:
            raise WarehouseError("Out of Memory Error") from OutOfMemoryException()
        yield from stream(conn, sql, batch_size)

    monkeypatch.setattr(session, "stream", out_of_memory_once)
    assert len(diff(warehouse, spec)) == 5
    assert caps == ["61.0 MiB", "244.1 MiB"]  # 64MB, then 256MB
    assert run_sql(warehouse, "select current_setting('memory_limit')",
                   fetch=True)[0][0] == "61.0 MiB"


def test_full_resync_returns_every_row(warehouse: Warehouse, project: BuiltProject):
    model = copy_model(warehouse, project.model("customers"))
    spec = customer_spec(model)
    sync_all(warehouse, spec)
    run_sql(warehouse, f"update {model.relation_name} set plan = 'team' where customer_id = 'c4'")
    rows = diff(warehouse, spec, full_resync=True)
    assert {key: row.status for key, row in rows.items()} == {
        "c1": DiffStatus.RESYNC,
        "c2": DiffStatus.RESYNC,
        "c3": DiffStatus.RESYNC,
        "c4": DiffStatus.CHANGED,
        "c5": DiffStatus.RESYNC,
    }
    assert all(row.previous and row.previous.stripe_id == f"cus_{k}" for k, row in rows.items())
    assert warehouse.diff_counts(spec, full_resync=True) == DiffCounts(
        total=5, new=0, changed=1, unchanged=4, retry=0, removed=0, invalid_key=0
    )


def test_removed_keys_are_counted_and_sampled(warehouse: Warehouse, project: BuiltProject):
    model = copy_model(warehouse, project.model("customers"))
    spec = customer_spec(model)
    sync_all(warehouse, spec)
    run_sql(warehouse, f"delete from {model.relation_name} where customer_id in ('c4', 'c2')")
    assert warehouse.diff_counts(spec) == DiffCounts(
        total=3, new=0, changed=0, unchanged=3, retry=0, removed=2, invalid_key=0
    )
    assert warehouse.removed_keys(spec) == ["c2", "c4"]
    assert warehouse.removed_keys(spec, limit=1) == ["c2"]
    assert diff(warehouse, spec) == {}


def test_reset_state_clears_one_model(warehouse: Warehouse, project: BuiltProject):
    one = customer_spec(copy_model(warehouse, project.model("customers")))
    other = customer_spec(copy_model(warehouse, project.model("customers")))
    sync_all(warehouse, one)
    sync_all(warehouse, other)
    assert warehouse.reset_state(one.model) == 5
    assert warehouse.reset_state(one.model) == 0
    assert warehouse.diff_counts(one).new == 5
    assert warehouse.diff_counts(other).unchanged == 5


def test_odd_identifiers_and_values_are_quoted_and_bound(
    warehouse: Warehouse, project: BuiltProject
):
    """Columns with spaces, quotes and mixed case; a block naming `city` finds `CITY`; key
    values with quotes and % travel as bound values."""
    model = copy_model(
        warehouse,
        project.model("odd_names"),
        "update {t} set \"Customer ID\" = 'o''brien %s %%' where \"Customer ID\" = 'c5'",
    )
    spec = customer_spec(
        model,
        key_column="Customer ID",
        fields=(
            FieldMapping("email", 'E-Mail "Work"'),
            FieldMapping("name", "Full Name"),
            FieldMapping("address.city", "city"),
        ),
    )
    rows = diff(warehouse, spec)
    assert sorted(rows, key=str) == ["c1", "c2", "c3", "c4", "o'brien %s %%"]
    odd = rows["o'brien %s %%"]
    assert dict(odd.values) == {
        "Customer ID": "o'brien %s %%",
        'E-Mail "Work"': "eve@example.com",
        "Full Name": 'Eve "The" O\'Brien',
        "city": "Berlin",
    }
    sync_all(warehouse, spec)
    assert diff(warehouse, spec) == {}
    assert diff(warehouse, spec, full_resync=True)["o'brien %s %%"].previous.stripe_id == (
        "cus_o'brien %s %%"
    )


# -- runs, locks --------------------------------------------------------------------------------


def test_record_run_inserts_then_updates_one_row(warehouse: Warehouse, project: BuiltProject):
    model = copy_model(warehouse, project.model("customers"))
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    warehouse.record_run(RunRecord("run-x", model.unique_id, "sync", started))
    warehouse.record_run(
        RunRecord(
            "run-x",
            model.unique_id,
            "sync",
            started,
            finished_at=started.replace(minute=5),
            counts={
                "created": 3,
                "updated": 1,
                "unchanged": 0,
                "rejected": 1,
                "not_found": 0,
                "failed": 0,
                "skipped": 9,
            },
            status="partial",
        )
    )
    rows = run_sql(
        warehouse,
        (
            "select command, started_at, finished_at, created, updated, rejected, failed, status, "
            f"tool_version from {warehouse.bookkeeping_relation('stripe_sync_runs')} "
            f"where run_id = 'run-x' and model_unique_id = '{model.unique_id}'"
        ),
        fetch=True,
    )
    assert rows == [
        (
            "sync",
            datetime(2026, 1, 2, 3, 4, 5),
            datetime(2026, 1, 2, 3, 5, 5),
            3,
            1,
            1,
            0,
            "partial",
            __version__,
        )
    ]


def test_lock_acquire_conflict_expiry_release(warehouse: Warehouse, project: BuiltProject):
    model = copy_model(warehouse, project.model("customers"))
    warehouse.acquire_lock(model, "host-a:1", ttl_seconds=600)
    warehouse.acquire_lock(model, "host-a:1", ttl_seconds=600)  # its own lock: refreshed

    with pytest.raises(LockHeldError) as err:
        warehouse.acquire_lock(model, "host-b:2", ttl_seconds=600)
    held = err.value
    assert held.owner == "host-a:1"
    assert isinstance(held.expires_at, datetime) and held.expires_at.tzinfo is timezone.utc
    assert str(held).startswith(
        f"{model.label} is being synced by host-a:1: its lock expires at "
        f"{held.expires_at:%Y-%m-%d %H:%M:%S} UTC."
    )
    assert warehouse.bookkeeping_relation("stripe_sync_locks") in str(held)

    with project.open() as other_sync:  # another Warehouse, its own connections
        with pytest.raises(LockHeldError) as err:
            other_sync.acquire_lock(model, "host-b:2", ttl_seconds=600)
        assert err.value.owner == "host-a:1"
    warehouse.check()  # the first one is unaffected

    warehouse.release_lock(model, "host-b:2")  # not the holder: nothing happens
    assert warehouse.lock_holder(model)[0] == "host-a:1"
    warehouse.release_lock(model, "host-a:1")
    assert warehouse.lock_holder(model) is None

    warehouse.acquire_lock(model, "host-b:2", ttl_seconds=-1)  # expired at once
    warehouse.acquire_lock(model, "host-c:3", ttl_seconds=600)  # takes the expired lock over
    assert warehouse.lock_holder(model)[0] == "host-c:3"


# -- streaming --------------------------------------------------------------------------------


def test_streams_10000_rows_in_batches_interleaved_with_writes(
    warehouse: Warehouse, project: BuiltProject
):
    model = copy_model(warehouse, project.model("big_customers"))
    spec = customer_spec(
        model, fields=(FieldMapping("email", "email"), FieldMapping("name", "full_name"))
    )
    assert warehouse.diff_counts(spec).new == 10_000
    batches = warehouse.stream_diff(spec, batch_size=1000)
    assert inspect.isgenerator(batches)
    seen: set[str] = set()
    sizes = []
    for index, batch in enumerate(batches):
        sizes.append(len(batch))
        if index == 0 and project.target == "postgres":
            # a server-side cursor, read 10,000 rows a round trip, handed out 1000 at a time
            fetched = dbt_compat._SERVER_FETCH_ROWS
            active = run_sql(
                warehouse,
                (
                    "select count(*) from pg_stat_activity where query like "
                    f"'FETCH FORWARD {fetched} FROM \"stripe_sync_%' "
                    "and state = 'idle in transaction'"
                ),
                fetch=True,
            )
            assert active[0][0] >= 1
        # state writes and run records between batches, on the same Warehouse
        warehouse.write_outcomes("run1", spec, [created(row) for row in batch])
        warehouse.record_run(
            RunRecord(
                "run1",
                model.unique_id,
                "sync",
                datetime.now(timezone.utc),
                counts={"created": len(seen)},
            )
        )
        seen.update(str(row.key_value) for row in batch)
    assert sizes == [1000] * 10
    assert len(seen) == 10_000
    assert warehouse.diff_counts(spec) == DiffCounts(
        total=10_000, new=0, changed=0, unchanged=10_000, retry=0, removed=0, invalid_key=0
    )


def test_abandoned_stream_is_closed(warehouse: Warehouse, project: BuiltProject):
    spec = customer_spec(copy_model(warehouse, project.model("customers")))
    batches = warehouse.stream_diff(spec, batch_size=2)
    assert len(next(batches)) == 2
    batches.close()
    assert warehouse.diff_counts(spec).new == 5
    assert len(diff(warehouse, spec)) == 5


# -- errors a user can cause ----------------------------------------------------------------


def test_unknown_target_is_a_project_error(project: BuiltProject):
    with pytest.raises(ProjectError) as err:
        project.open(target="nope")
    assert "nope" in str(err.value) and "profiles.yml" in str(err.value)


def test_unreachable_warehouse_names_target_and_fix(project: BuiltProject):
    if project.target != "duckdb":
        with pytest.raises(ProjectError) as err:  # the manifest was parsed for postgres
            project.open(target="unreachable")
        assert "parsed for postgres" in str(err.value)
        assert "dbt parse --target unreachable" in str(err.value)
        return
    with pytest.raises(WarehouseError) as err, project.open(target="unreachable") as wh:
        wh.check()
    message = str(err.value)
    assert message.startswith(
        "Cannot connect to the duckdb warehouse of target 'unreachable' (duckdb), profile "
        "'warehouse_fixtures': "
    )
    assert message.endswith(
        f"Check the 'unreachable' output in {project.root / 'profiles.yml'}, then run "
        "`dbt debug --target unreachable`."
    )


@pytest.mark.parametrize("project", ["duckdb"], indirect=True)  # DuckDB's one-writer lock
def test_duckdb_file_held_by_another_process(project: BuiltProject):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
            "print('ready', flush=True); sys.stdin.read()",
            str(project.duckdb_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(WarehouseError) as err, project.open() as wh:
            wh.check()
        assert "DuckDB lets one process write a database file at a time" in str(err.value)
    finally:
        holder.communicate("", timeout=30)


def _manifest_copy(project: BuiltProject, tmp_path: Path, change: Any) -> Path:
    """A copy of the project's manifest, changed by `change(raw)`, in a target dir of its own."""
    raw = json.loads((project.root / "target" / "manifest.json").read_text())
    change(raw)
    target = tmp_path / "target"
    target.mkdir()
    (target / "manifest.json").write_text(json.dumps(raw))
    return target


def test_missing_dbt_package_is_a_project_error(project: BuiltProject, tmp_path: Path):
    def drop_package(raw: dict[str, Any]) -> None:
        raw["macros"] = {
            k: v for k, v in raw["macros"].items() if v["package_name"] != "stripe_activation"
        }

    target = _manifest_copy(project, tmp_path, drop_package)
    settings = project.settings(target_path=target)
    with pytest.raises(ProjectError) as err:
        Warehouse.open(settings, load_manifest(settings))
    assert str(err.value) == (
        f"The dbt package 'stripe_activation' is not installed in the dbt project at "
        f"{project.root}: its macros are not in {target / 'manifest.json'}. Add it to "
        "packages.yml (see the README), run `dbt deps` and `dbt parse`, then run again."
    )


def test_other_version_of_the_dbt_package_is_a_project_error(project: BuiltProject, tmp_path: Path):
    def bump(raw: dict[str, Any]) -> None:
        macro = raw["macros"]["macro.stripe_activation.macros_api_version"]
        current = f"return({MACROS_API_VERSION})"
        macro["macro_sql"] = macro["macro_sql"].replace(current, "return(99)")

    target = _manifest_copy(project, tmp_path, bump)
    settings = project.settings(target_path=target)
    with pytest.raises(ProjectError) as err:
        Warehouse.open(settings, load_manifest(settings))
    assert "(macro interface v99) does not match" in str(err.value)
    assert "run `dbt deps` and `dbt parse`" in str(err.value)


def test_dbt_version_gate():
    assert dbt_compat.check_dbt_version("1.10.0") == "1.10.0"
    assert dbt_compat.check_dbt_version("1.11.16") == "1.11.16"
    for unsupported in ("1.9.4", "1.12.0", "2.0.0b1", "not installed"):
        with pytest.raises(ProjectError) as err:
            dbt_compat.check_dbt_version(unsupported)
        assert f"dbt-core {dbt_compat.SUPPORTED}" in str(err.value)
        assert f"this environment has dbt-core {unsupported}" in str(err.value)


def test_nothing_reaches_stdout(project: BuiltProject, capfd: pytest.CaptureFixture[str]):
    """dbt's event log stays off stdout (the CLI's --output json owns it)."""
    with project.open() as wh:
        wh.check()
        spec = customer_spec(copy_model(wh, project.model("customers")))
        wh.diff_counts(spec)
    out, _ = capfd.readouterr()
    assert out == ""


def test_synced_values_json_is_sorted_text(warehouse: Warehouse, project: BuiltProject):
    spec = customer_spec(copy_model(warehouse, project.model("customers")))
    row = diff(warehouse, spec)["c1"]
    warehouse.write_outcomes("run1", spec, [created(row, {"z": 1, "a": date(2024, 1, 15)})])
    stored = run_sql(
        warehouse,
        (
            f"select synced_values from {warehouse.bookkeeping_relation('stripe_sync_state')} "
            f"where model_unique_id = '{spec.model.unique_id}'"
        ),
        fetch=True,
    )
    assert stored == [(json.dumps({"a": "2024-01-15", "z": 1}),)]


def test_in_flight_marks_are_state_rows_a_thousand_at_a_time(
    warehouse: Warehouse, project: BuiltProject
) -> None:
    """A chunk of events' marks (over _BULK_MIN_ROWS: DuckDB's file load from tuples; on
    PostgreSQL bound inserts) stores what write_outcomes stores, awkward text included."""
    spec = customer_spec(copy_model(warehouse, project.model("customers")))
    awkward = ['say "hi", then\nleave', "o'brien\\N", "ünï 🎉", "", "\\N"]
    marks = [(f"evt-{i:05d}", f"h{i}", {"a": awkward[i % len(awkward)], "n": i})
             for i in range(1200)]
    warehouse.write_marks("run1#1", spec, marks, "in_flight", "send", fresh=True)
    stored = run_sql(
        warehouse,
        "select key_value, stripe_object, stripe_id, row_hash, synced_values, last_outcome, "
        "last_error, run_id, synced_at is not null "
        f"from {warehouse.bookkeeping_relation('stripe_sync_state')} "
        f"where model_unique_id = '{spec.model.unique_id}' order by key_value",
        fetch=True,
    )
    assert [tuple(r) for r in stored] == [
        (key, "customer", None, row_hash, json.dumps(values, sort_keys=True), "in_flight",
         None, "run1#1", True)
        for key, row_hash, values in marks
    ]
    assert warehouse.state_count(spec.model) == 1200


def test_a_key_that_reads_as_the_files_null_is_stored_as_text(
    warehouse: Warehouse, project: BuiltProject
) -> None:
    spec = customer_spec(copy_model(warehouse, project.model("customers")))
    marks = [("\\N" if i == 7 else f"evt-{i:05d}", f"h{i}", {"n": i}) for i in range(1100)]
    warehouse.write_marks("run1#1", spec, marks, "in_flight", "send", fresh=True)
    warehouse.write_outcomes("run2", spec, [
        RowOutcome(key_value="\\N", action="send", outcome="sent", stripe_id=None,
                   row_hash="h", synced_values={"n": "\\N"}, error=None)
    ] + [RowOutcome(key_value=f"k{i}", action="send", outcome="sent", stripe_id=None,
                    row_hash="h", synced_values=None, error="\\N") for i in range(1100)])
    stored = dict(run_sql(
        warehouse,
        f"select key_value, last_error from {warehouse.bookkeeping_relation('stripe_sync_state')} "
        f"where model_unique_id = '{spec.model.unique_id}'",
        fetch=True,
    ))
    assert len(stored) == 2200 and "\\N" in stored
    assert stored["k5"] == "\\N"


# -- the object contract's key normalization, in SQL ---------------------------------------

KEY_SAMPLES = ["  Ada@Example.COM\t\n", "CRM-42 ", "", "   ", "Mixed Case_Key", "o'brien",
               "\u00a0x\u00a0", "prod_ABC"]


@pytest.mark.parametrize("object_name", sorted(OBJECT_SPECS))
def test_key_normalization_is_identical_in_python_and_sql(
    warehouse: Warehouse, object_name: str
) -> None:
    """The macros receive `casefold` from the contract for every key kind of every object,
    and compute exactly what objects.base.normalize_key computes (ASCII case mapping)."""
    obj = OBJECT_SPECS[object_name]
    for kind, key in obj.keys.items():
        for value in KEY_SAMPLES:
            literal = warehouse._render("string_literal", value=value)
            expression = warehouse._render(
                "normalized_key", column_sql=literal, casefold=key.casefold
            )
            with warehouse._transaction():
                [(got,)] = warehouse._execute(f"select {expression}", None, True)
            assert got == normalize_key(value, casefold=key.casefold), (kind, value)
