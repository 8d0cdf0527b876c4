"""Write the sync state of a model as if a sync had created every row, without Stripe.

A real first sync of 1M rows at Stripe's test-mode limit would take 11 hours; the plan
benchmark only needs the state such a sync leaves. The rows come from the tool's own pieces:
its diff query (keys and row hashes), its planner (what a create would have written, the
state's synced values) and its bookkeeping tables; only the Stripe ids are made up. The rows
are bulk-loaded with DuckDB's COPY instead of the tool's write-back (bound INSERTs of 500
rows), which is the slow part at this size and not what is measured.

    python -m benchmarks.state PROJECT_DIR   (with the project's DBT_* environment; DuckDB)
"""

from __future__ import annotations

import csv
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from dbt_stripe_activation.execution.options import new_run_id
from dbt_stripe_activation.meta_block import parse_sync_specs
from dbt_stripe_activation.planner import desired_values, plan_row
from dbt_stripe_activation.project import ProjectSettings, load_manifest
from dbt_stripe_activation.records import NO_MATCH, Rejection
from dbt_stripe_activation.warehouse import STATE_TABLE, RunRecord, Warehouse

BATCH = 20_000
STATE_COLUMNS = (
    "model_unique_id", "key_value", "stripe_object", "stripe_id", "row_hash", "synced_values",
    "last_outcome", "last_error", "synced_at", "run_id",
)  # fmt: skip


def fake_id(n: int) -> str:
    return f"cus_B{n:013d}"


def write_state(project_dir: Path, database: Path) -> int:
    settings = ProjectSettings(project_dir=project_dir)
    manifest = load_manifest(settings)
    specs = parse_sync_specs(manifest.synced_models())
    written = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.csv"
        with Warehouse.open(settings, manifest) as warehouse, path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(STATE_COLUMNS)
            warehouse.ensure_bookkeeping()
            state_relation = warehouse.bookkeeping_relation(STATE_TABLE)
            for spec in specs:
                warehouse.relation_columns(spec.model)
                run_id = new_run_id()
                started = datetime.now(timezone.utc)
                warehouse.record_run(RunRecord(run_id, spec.model.unique_id, "sync", started))
                now = started.replace(tzinfo=None).isoformat(sep=" ")
                for batch in warehouse.stream_diff(spec, batch_size=BATCH):
                    for row in batch:
                        desired = desired_values(spec, row)
                        if isinstance(desired, Rejection):
                            raise SystemExit(f"row {row.key_value!r} rejected: {desired.reason}")
                        plan = plan_row(spec, desired, NO_MATCH)
                        synced = json.dumps(dict(plan.synced_values or {}), sort_keys=True)
                        writer.writerow((
                            spec.model.unique_id, row.key_value, spec.object.name,
                            fake_id(written), row.row_hash, synced, "created", None, now, run_id,
                        ))  # fmt: skip
                        written += 1
                warehouse.record_run(
                    RunRecord(
                        run_id,
                        spec.model.unique_id,
                        "sync",
                        started,
                        finished_at=datetime.now(timezone.utc),
                        counts={"created": written},
                        status="success",
                    )  # fmt: skip
                )
        # The dbt adapter has closed the file: load the rows in one statement.
        with duckdb.connect(str(database)) as con:
            con.execute(f"copy {state_relation} from '{path}' (header true)")
    return written


def main() -> None:
    started = time.perf_counter()
    written = write_state(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve())
    print(f"wrote state for {written} rows in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
