"""Write the sync state of a model as if a sync had created every row, without Stripe.

A real first sync of 1M rows at Stripe's test-mode limit would take 11 hours; the plan
benchmark only needs the state such a sync leaves. The rows come from the tool's own pieces:
its diff query (keys and row hashes, rendered by its macros), its planner (what a create
would have written, the state's synced values) and its bookkeeping tables; only the Stripe
ids are made up. The state is written by one INSERT ... SELECT over the diff query, in
DuckDB (10M rows in seconds, where a row at a time in Python took 8 minutes): the synced
values are a JSON object of the mapped columns, and the planner's own synced values for a
sample of rows must equal them, or the benchmark stops.

    python -m benchmarks.state PROJECT_DIR DATABASE  (with the project's DBT_* environment)
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from dbt_stripe_activation.execution.options import new_run_id
from dbt_stripe_activation.meta_block import parse_sync_specs
from dbt_stripe_activation.planner import desired_values, plan_row
from dbt_stripe_activation.project import ProjectSettings, load_manifest
from dbt_stripe_activation.records import NO_MATCH, Rejection
from dbt_stripe_activation.spec import SyncSpec
from dbt_stripe_activation.warehouse import STATE_TABLE, RunRecord, Warehouse

CHECKED_ROWS = 2000  # rows whose planner synced values must equal the SQL's
STATE_COLUMNS = (
    "model_unique_id", "key_value", "stripe_object", "stripe_id", "row_hash", "synced_values",
    "last_outcome", "last_error", "synced_at", "run_id",
)  # fmt: skip


def fake_id(n: int) -> str:
    return f"cus_B{n:013d}"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _synced_values_sql(spec: SyncSpec) -> str:
    """The state's synced values of a created row as a DuckDB JSON object (the mapped
    columns as text: the benchmark's models map text columns only)."""
    parts = []
    for mapping in spec.fields:
        if mapping.is_constant or mapping.ref is not None or mapping.column is None:
            raise SystemExit(f"benchmarks.state maps plain columns only: {mapping.path}")
        parts += [_literal(mapping.path), f"_sa_c{spec.columns.index(mapping.column)}"]
    return f"json_object({', '.join(parts)})"


def _planned_sample(warehouse: Warehouse, spec: SyncSpec) -> dict[str, dict[str, Any]]:
    """The planner's synced values (what a create stores) for the first rows of the model."""
    planned: dict[str, dict[str, Any]] = {}
    for batch in warehouse.stream_diff(spec, full_resync=True, batch_size=CHECKED_ROWS):
        for row in batch:
            desired = desired_values(spec, row)
            if isinstance(desired, Rejection):
                raise SystemExit(f"row {row.key_value!r} rejected: {desired.reason}")
            synced = plan_row(spec, desired, NO_MATCH).synced_values
            planned[str(row.key_value)] = dict(synced or {})
        break
    return planned


def write_state(project_dir: Path, database: Path) -> int:
    settings = ProjectSettings(project_dir=project_dir)
    manifest = load_manifest(settings)
    specs = parse_sync_specs(manifest.synced_models())
    statements: list[tuple[SyncSpec, str, str]] = []
    with Warehouse.open(settings, manifest) as warehouse:
        warehouse.ensure_bookkeeping()
        state_relation = warehouse.bookkeeping_relation(STATE_TABLE)
        for spec in specs:
            warehouse.relation_columns(spec.model)
            run_id = new_run_id()
            started = datetime.now(timezone.utc)
            warehouse.record_run(RunRecord(run_id, spec.model.unique_id, "sync", started))
            now = started.replace(tzinfo=None).isoformat(sep=" ")
            # The diff's model part: each row's columns, normalized key and row hash.
            model_sql = warehouse._render("diff_parts", **warehouse._diff_args(spec))["model"]
            insert = (
                f"insert into {state_relation} ({', '.join(STATE_COLUMNS)})\n"
                f"select {_literal(spec.model.unique_id)}, _sa_key, "
                f"{_literal(spec.object.name)}, "
                "'cus_B' || lpad(cast(row_number() over () - 1 as varchar), 13, '0'), "
                f"_sa_hash, {_synced_values_sql(spec)}, 'created', null, "
                f"cast({_literal(now)} as timestamp), {_literal(run_id)}\n"
                f"from ({model_sql}) as _sa_model"
            )
            statements.append((spec, insert, run_id))
    # The dbt adapter has closed the file: write the rows in one statement per model.
    counts: dict[str, int] = {}
    with duckdb.connect(str(database)) as con:
        for spec, insert, _run_id in statements:
            con.execute(insert)
            found = con.execute(f"select count(*) from {state_relation} where model_unique_id "
                                f"= {_literal(spec.model.unique_id)}").fetchone()
            counts[spec.model.unique_id] = int(found[0]) if found else 0
    samples: dict[str, dict[str, dict[str, Any]]] = {}
    with Warehouse.open(settings, manifest) as warehouse:
        for spec, _insert, run_id in statements:
            samples[spec.model.unique_id] = _planned_sample(warehouse, spec)
            warehouse.record_run(RunRecord(
                run_id, spec.model.unique_id, "sync", datetime.now(timezone.utc),
                finished_at=datetime.now(timezone.utc),
                counts={"created": counts[spec.model.unique_id]}, status="success"))
    with duckdb.connect(str(database)) as con:
        for spec, _insert, _run_id in statements:
            planned = samples[spec.model.unique_id]
            con.execute("create temp table _bench_keys (key_value varchar)")
            con.executemany("insert into _bench_keys values (?)", [[k] for k in planned])
            stored = dict(con.execute(
                f"select s.key_value, s.synced_values from {state_relation} as s join "
                "_bench_keys using (key_value) where s.model_unique_id = "
                f"{_literal(spec.model.unique_id)}").fetchall())
            con.execute("drop table _bench_keys")
            for key, values in planned.items():
                if key not in stored or json.loads(stored[key]) != values:
                    raise SystemExit(f"synced values differ for {key!r}: planner {values}, "
                                     f"SQL {stored.get(key)}")
    return sum(counts.values())

def main() -> None:
    started = time.perf_counter()
    written = write_state(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve())
    print(f"wrote state for {written} rows in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
