"""Warehouse access through the user's own dbt adapter: streaming reads, bookkeeping, diff.

The SQL lives in the dbt package's macros (`macros/`), called through `adapter.dispatch`, so
every dbt adapter works; this module renders them, runs them and streams the results.
The dataclasses and the methods of `Warehouse` are the contract with the engine.
"""

from __future__ import annotations

import csv
import json
import operator
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import IO, Any

from . import __version__
from .dbt_compat import PACKAGE, DbtSession
from .errors import ConfigError, LockHeldError, ProjectError, WarehouseError
from .project import DbtModel, Manifest, ProjectSettings
from .records import (
    OUTCOMES,
    DiffCounts,
    DiffRow,
    DiffStatus,
    RemovedRow,
    RowOutcome,
    RunRecord,
    StateRecord,
    split_scoped_key,
)
from .spec import SyncSpec

MACROS_API_VERSION = 6  # what macros/util.sql's macros_api_version() must return

STATE_TABLE = "stripe_sync_state"
RUNS_TABLE = "stripe_sync_runs"
ROW_RESULTS_TABLE = "stripe_sync_row_results"
LOCKS_TABLE = "stripe_sync_locks"
COUNT_COLUMNS = OUTCOMES  # one count column per outcome in the runs table

# Rows per INSERT ... VALUES statement and keys per `in (...)` list: few round trips, and
# well under every driver's limit on bound parameters (state rows have 10 columns).
_ROWS_PER_STATEMENT = 500
# From this many rows an insert goes through the adapter's bulk file load, where it has one.
_BULK_MIN_ROWS = 1000


class Warehouse:
    """One open connection set to the warehouse of the user's dbt profile.

    Not thread-safe: the engine calls it from one thread. A streamed diff has a connection of
    its own, so state writes may interleave with its batches (DuckDB drops a pending result
    when its connection runs another query; PostgreSQL streams from a server-side cursor).
    """

    def __init__(self, session: DbtSession) -> None:
        self._session = session
        self._conn = session.connection("stripe_sync")
        self._streams: list[Any] = []
        # model id -> (the connection, its temporary table of the keys to act on) that
        # diff_counts left for the model's next stream_diff.
        self._prepared: dict[str, tuple[Any, str]] = {}
        self._statements: dict[tuple[Any, ...], Any] = {}
        self._relation_columns: dict[str, list[str]] = {}
        # Keys the current diff reported as duplicated, per model: their outcomes go to the
        # row results but never to the state, which holds one row per key. Otherwise the
        # hash of one duplicate would be stored, and once the duplicates are resolved the
        # surviving row could look unchanged and never be synced.
        self._duplicate_keys: dict[str, set[str]] = {}
        self._bookkeeping_ready = False
        self._closed = False
        # --shard K/N: this process syncs the accounts of shard K only, under its own lock.
        self.shard: tuple[int, int] | None = None

    @classmethod
    def open(cls, settings: ProjectSettings, manifest: Manifest) -> Warehouse:
        warehouse = cls(DbtSession.open(settings, manifest.path))
        try:
            warehouse._check_package(manifest)
        except BaseException:
            warehouse.close()
            raise
        return warehouse

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for conn in list(self._streams):
            self._session.close_connection(conn)
        self._streams.clear()
        self._prepared.clear()
        self._session.close_connection(self._conn)
        self._session.close()

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def adapter_type(self) -> str:
        return self._session.adapter_type

    @property
    def session(self) -> DbtSession:
        """The dbt session underneath (adapter, config, connections): for tests and tools."""
        return self._session

    def check(self) -> str:
        """Run `select 1`; return a one-line description (adapter, database, schema)."""
        with self._transaction():
            self._session.execute(self._conn, "select 1", fetch=True)
        session = self._session
        database = f"database '{session.database}', " if session.database else ""
        return (
            f"{session.adapter_type} via target '{session.target_name}' of profile "
            f"'{session.profile_name}': {database}schema '{session.schema}'; sync state in "
            f"{self.bookkeeping_relation(STATE_TABLE)}"
        )

    def bookkeeping_relation(self, table: str) -> str:
        """The rendered relation of one bookkeeping table, e.g. for messages."""
        return str(self._render("bookkeeping_relation", name=table))

    def relation_columns(self, model: DbtModel) -> list[str]:
        """Column names of the built relation; WarehouseError if it does not exist."""
        with self._transaction():
            columns = self._session.columns_in_relation(
                self._conn, model.database, model.schema, model.alias
            )
        if not columns:
            raise WarehouseError(
                f"The relation for model '{model.name}' ({self._relation_name(model)}) does not "
                f"exist in {self._session.describe_target()}: run `dbt run --select "
                f"{model.name}` first."
            )
        self._relation_columns[model.unique_id] = columns
        return columns

    # -- bookkeeping ---------------------------------------------------------------------------

    def ensure_bookkeeping(self) -> None:
        """Create the bookkeeping schema and tables if missing (idempotent)."""
        # Syncs starting together (shards) race to create the schema and each table: the
        # loser of a race fails (PostgreSQL: a duplicate catalog entry) and its next look
        # finds the winner's table. Each attempt gets past at least one race: the schema and
        # four tables, and one more.
        attempts = 6
        for attempt in range(1, attempts + 1):
            try:
                self._create_bookkeeping()
                break
            except WarehouseError:
                if attempt == attempts:
                    raise
                time.sleep(random.uniform(0.05, 0.25 * attempt))
        self._bookkeeping_ready = True

    def _create_bookkeeping(self) -> None:
        with self._transaction():
            self._session.call_macro(self._conn, "create_bookkeeping")

    def _ensure(self) -> None:
        if not self._bookkeeping_ready:
            self.ensure_bookkeeping()

    def _lock_id(self, model: DbtModel) -> str:
        """The lock's row: one per model, or per model and shard (shards run side by side:
        their accounts, hence their keys and state rows, never overlap)."""
        if self.shard is None:
            return model.unique_id
        return f"{model.unique_id}#shard-{self.shard[0]}-of-{self.shard[1]}"

    def acquire_lock(self, model: DbtModel, owner: str, ttl_seconds: int) -> None:
        """Take the model's sync lock or raise LockHeldError naming the holder and expiry."""
        self._ensure()
        now = _utc_naive()
        lock_id = self._lock_id(model)
        row = {
            "model_unique_id": lock_id,
            "owner": owner,
            "acquired_at": now,
            "expires_at": now + timedelta(seconds=ttl_seconds),
        }
        try:
            with self._transaction():
                self._execute(self._statement("lock_clear_sql"), [lock_id, now, owner])
                self._insert(LOCKS_TABLE, [row])
        except WarehouseError as exc:
            holder = self.lock_holder(model)
            if holder is None or holder[0] == owner:
                raise
            holder_owner, expires_at = holder
            raise LockHeldError(
                f"{model.label} is being synced by {holder_owner}: its lock expires at "
                f"{expires_at:%Y-%m-%d %H:%M:%S} UTC. Wait for that sync to finish; if it "
                f"died, run again after the lock expires, or delete its row from "
                f"{self.bookkeeping_relation(LOCKS_TABLE)}.",
                owner=holder_owner,
                expires_at=expires_at,
            ) from exc

    def lock_holder(self, model: DbtModel) -> tuple[str, datetime] | None:
        """(owner, expires_at in UTC) of the model's lock row, expired or not; None if free."""
        self._ensure()
        with self._transaction():
            rows = self._execute(self._statement("lock_select_sql"), [self._lock_id(model)],
                                 True)
        if not rows:
            return None
        owner, expires_at = rows[0]
        return str(owner), _as_utc(expires_at)

    def release_lock(self, model: DbtModel, owner: str) -> None:
        self._ensure()
        with self._transaction():
            self._execute(self._statement("lock_release_sql"), [self._lock_id(model), owner])

    # -- the diff --------------------------------------------------------------------------------

    def diff_counts(self, spec: SyncSpec, full_resync: bool = False) -> DiffCounts:
        """Counts over the whole model; the same with or without full_resync (`unchanged`
        counts the rows a full resync re-plans as RESYNC).

        Where the adapter has temporary tables, the keys to act on are kept in one, on the
        connection the next stream_diff of this model reads from: the model and its state
        are aggregated once for both (a 10M-row model: the longest step of a plan)."""
        self._ensure()
        args = self._diff_args(spec)
        self._drop_prepared(spec.model.unique_id)
        table = f"_sa_keys_{uuid.uuid4().hex[:12]}"
        create = str(self._render("diff_keys_table_sql", table=table, **args)).strip()
        if create:
            conn = self._session.connection("stripe_sync_stream")
            self._streams.append(conn)
            self._prepared[spec.model.unique_id] = (conn, table)
            sql = str(self._render("diff_counts_from_table_sql", table=table,
                                   relation_name=args["relation_name"], scope=args["scope"]))
            while True:
                try:
                    with self._session.transaction(conn):
                        self._session.execute(conn, create)
                        rows = self._session.execute(conn, sql, None, True)
                    break
                except WarehouseError as exc:
                    if not self._session.raise_memory_limit(conn, exc):
                        raise
                finally:
                    self._session.restore_memory_limit(conn)
        else:
            sql = self._render("diff_counts_sql", **args)
            with self._transaction():
                rows = self._execute(sql, None, True)
        total, new, changed, unchanged, retry, invalid_key, unsynced, removed = (
            int(value or 0) for value in rows[0]
        )
        if total - unchanged > changed + unchanged + retry + unsynced + removed:
            # More keys to act on than state rows (a first sync): the stream's join keeps
            # the smaller side, the state, and the keys table would only take memory.
            self._drop_prepared(spec.model.unique_id)
        return DiffCounts(
            total=total,
            new=new,
            changed=changed,
            unchanged=unchanged,
            retry=retry,
            removed=removed,
            invalid_key=invalid_key,
            unsynced=unsynced,
        )

    def stream_diff(
        self, spec: SyncSpec, full_resync: bool = False, batch_size: int = 500
    ) -> Iterator[list[DiffRow]]:
        """Rows needing action, in batches; memory bounded by batch_size."""
        self._ensure()
        prepared = self._prepared.pop(spec.model.unique_id, None)
        if prepared is not None and full_resync:  # the table lacks the unchanged keys
            self._close_stream(prepared[0])
            prepared = None
        conn, table = prepared or (self._session.connection("stripe_sync_stream"), None)
        if prepared is None:
            self._streams.append(conn)
        sql = self._render("diff_select_sql", full_resync=full_resync, keys_table=table,
                           **self._diff_args(spec))
        duplicates = self._duplicate_keys[spec.model.unique_id] = set()
        columns = spec.columns  # a property that builds the tuple: once, not per row
        width = len(columns)
        ref_paths = [m.path for m in spec.references]
        scoped = spec.account_column is not None
        try:
            for raw_rows in self._stream_rows(conn, sql, batch_size):
                batch = [_diff_row(columns, width, raw, full_resync, ref_paths, scoped)
                         for raw in raw_rows]
                duplicates.update(
                    row.key_value
                    for row in batch
                    if row.status is DiffStatus.INVALID_KEY and row.key_value is not None
                )
                yield batch
        finally:
            self._close_stream(conn)

    def _stream_rows(self, conn: Any, sql: str, batch_size: int
                     ) -> Iterator[list[tuple[Any, ...]]]:
        """The session's stream; run again under a higher DuckDB cap when it fails out of
        memory before its first batch (a read: nothing was handed out)."""
        try:
            while True:
                started = False
                try:
                    for rows in self._session.stream(conn, sql, batch_size):
                        started = True
                        yield rows
                    return
                except WarehouseError as exc:
                    if started or not self._session.raise_memory_limit(conn, exc):
                        raise
        finally:
            self._session.restore_memory_limit(conn)

    def _close_stream(self, conn: Any) -> None:
        """Close a stream's connection (its temporary keys table goes with it)."""
        self._session.close_connection(conn)
        if conn in self._streams:
            self._streams.remove(conn)

    def _drop_prepared(self, model_id: str | None = None) -> None:
        """Forget the keys table diff_counts left for a model (every model's: None). A
        write to the state makes them stale (a key synced since, a reference resolved):
        the next stream then aggregates on its own."""
        for uid in [model_id] if model_id is not None else list(self._prepared):
            prepared = self._prepared.pop(uid, None)
            if prepared is not None:
                self._close_stream(prepared[0])

    def removed_keys(self, spec: SyncSpec, limit: int = 20) -> list[str]:
        """A sample of keys in state that are gone from the model."""
        sql = self._render("removed_keys_sql", limit=int(limit), **self._key_args(spec))
        with self._transaction():
            rows = self._execute(sql, None, True)
        return [str(row[0]) for row in rows]

    def removal_counts(self, spec: SyncSpec) -> tuple[int, int, int]:
        """(keys that left the model whose object Stripe still holds, keys synced, keys the
        model has): what on_removed would remove, and what its guard weighs it against."""
        sql = self._render("removed_rows_sql", count_only=True, **self._key_args(spec))
        with self._transaction():
            removed, synced, rows = self._execute(sql, None, True)[0]
        return int(removed or 0), int(synced or 0), int(rows or 0)

    def removed_rows(self, spec: SyncSpec) -> list[RemovedRow]:
        """The keys on_removed removes, with what the state holds for each. Read whole: the
        guard bounds how many (at most --max-removed)."""
        sql = self._render("removed_rows_sql", **self._key_args(spec))
        with self._transaction():
            rows = self._execute(sql, None, True)
        scoped = spec.account_column is not None
        return [RemovedRow(str(key), str(stripe_id), _from_json(values),
                           _as_utc(synced_at) if synced_at is not None else None,
                           account=split_scoped_key(key)[0] if scoped else None)
                for key, stripe_id, values, synced_at in rows]

    def _key_args(self, spec: SyncSpec) -> dict[str, Any]:
        self._ensure()
        args = self._diff_args(spec)
        return {"relation_name": args["relation_name"], "key_column": args["key_column"],
                "casefold": args["casefold"], "model_unique_id": spec.model.unique_id,
                "scope": args["scope"]}

    # -- results and state -----------------------------------------------------------------------

    def record_run(self, run: RunRecord) -> None:
        """Insert or update (by run_id and model) the runs-table row."""
        self._ensure()
        self._session.allow_writes(self._conn)
        counts = run.counts or {}
        row: dict[str, Any] = {
            "run_id": run.run_id,
            "model_unique_id": run.model_unique_id,
            "command": run.command,
            "started_at": _utc_naive(run.started_at),
            "finished_at": _utc_naive(run.finished_at) if run.finished_at else None,
            "status": run.status,
            "tool_version": __version__,
        }
        for name in COUNT_COLUMNS:
            row[name] = int(counts[name]) if run.counts is not None and name in counts else None
        with self._transaction():
            self._execute(self._statement("run_delete_sql"), [run.run_id, run.model_unique_id])
            self._insert(RUNS_TABLE, [row])

    def write_outcomes(
        self, run_id: str, spec: SyncSpec, outcomes: Sequence[RowOutcome],
        row_results: bool = True, fresh: bool = False,
    ) -> None:
        """Upsert state by (model, key) and append row results (unless `row_results` is
        False: a mark such as in-flight, not an outcome); one transaction per call.
        `fresh`: no key has state yet (new events), so there is nothing to replace."""
        if not outcomes:
            return
        self._ensure()
        self._drop_prepared()
        self._session.allow_writes(self._conn)
        model_id = spec.model.unique_id
        now = _utc_naive()
        duplicates = self._duplicate_keys.get(model_id, set())
        latest: dict[str, RowOutcome] = {}
        for outcome in outcomes:
            if outcome.key_value is not None and outcome.key_value not in duplicates:
                latest[outcome.key_value] = outcome
        keys = list(latest)
        keep_values = [key for key, outcome in latest.items() if outcome.synced_values is None]
        with self._transaction():
            previous: dict[str, Any] = {}
            for chunk in _chunks(keep_values):
                sql = self._statement("state_synced_values_sql", n=len(chunk))
                previous.update(self._execute(sql, [model_id, *chunk], True))
            for chunk in [] if fresh else _chunks(keys):
                sql = self._statement("state_delete_keys_sql", n=len(chunk))
                self._execute(sql, [model_id, *chunk])
            self._insert(
                STATE_TABLE,
                [
                    {
                        "model_unique_id": model_id,
                        "key_value": key,
                        "stripe_object": spec.object.name,
                        "stripe_id": outcome.stripe_id,
                        "row_hash": outcome.row_hash,
                        "synced_values": (
                            previous.get(key)
                            if outcome.synced_values is None
                            else _to_json(outcome.synced_values)
                        ),
                        "last_outcome": outcome.outcome,
                        "last_error": outcome.error,
                        "synced_at": now,
                        "run_id": run_id,
                    }
                    for key, outcome in latest.items()
                ],
            )
            if not row_results:
                return
            self._insert(
                ROW_RESULTS_TABLE,
                [
                    {
                        "run_id": run_id,
                        "model_unique_id": model_id,
                        "key_value": outcome.key_value,
                        "action": outcome.action,
                        "outcome": outcome.outcome,
                        "stripe_id": outcome.stripe_id,
                        "error": outcome.error,
                        "recorded_at": now,
                    }
                    for outcome in outcomes
                ],
            )

    def write_marks(
        self, run_id: str, spec: SyncSpec,
        marks: Sequence[tuple[str | None, str, Mapping[str, Any]]],
        outcome: str, action: str, fresh: bool = False,
    ) -> None:
        """State rows for (key, row hash, values as sent) under `run_id`, all with `outcome`
        and no row results: the in-flight mark of a chunk of events, its hot path. New keys
        on an adapter with a file load go from these tuples straight to the file (no
        RowOutcome or dict per event); anything else goes through write_outcomes."""
        if not marks:
            return
        self._drop_prepared()
        self._session.allow_writes(self._conn)
        if (fresh and len(marks) >= _BULK_MIN_ROWS
                and self._statements.get(("bulk", STATE_TABLE)) != ""
                and not any(mark[0] == _CSV_NULL for mark in marks)):  # a key read as null
            self._ensure()
            columns = self._table_columns(STATE_TABLE)
            fixed = {"model_unique_id": spec.model.unique_id, "stripe_object": spec.object.name,
                     "last_outcome": outcome, "synced_at": _utc_naive().isoformat(sep=" "),
                     "run_id": run_id}
            line = _csv_line_format(columns, fixed, ("key_value", "row_hash", "synced_values"))
            duplicates = self._duplicate_keys.get(spec.model.unique_id, set())

            def body(handle: IO[str]) -> None:
                # One format per line, the three texts quoted: half of csv.writer's time.
                handle.write("".join([
                    line.format(key.replace('"', '""'), row_hash.replace('"', '""'),
                                _to_json(values).replace('"', '""'))
                    for key, row_hash, values in marks
                    if key is not None and key not in duplicates
                ]))

            with self._transaction():
                loaded = self._load_file(STATE_TABLE, columns, body)
            if loaded:
                return
        self.write_outcomes(run_id, spec, [
            RowOutcome(key_value=key, action=action, outcome=outcome, stripe_id=None,
                       row_hash=row_hash, synced_values=values, error=None)
            for key, row_hash, values in marks
        ], row_results=False, fresh=fresh)

    def recent_updates(
        self, model: DbtModel, since: datetime
    ) -> list[tuple[str, int, Mapping[str, Any]]]:
        """(key, updates recorded since `since`, the key's synced values) per updated key."""
        self._ensure()
        with self._transaction():
            rows = self._execute(self._statement("recent_updates_sql"),
                                 [model.unique_id, "updated", _utc_naive(since)], True)
        return [(str(key), int(count), _from_json(values)) for key, count, values in rows]

    def acknowledge(self, run_id: str, spec: SyncSpec, marks: Sequence[str], outcome: str,
                    action: str) -> None:
        """The state rows in-flight marks wrote (each under its mark run id) take `outcome`
        and the run's id, and get their row results: two statements, each one scan of the
        state, for any number of marks and rows."""
        if not marks:
            return
        self._ensure()
        self._drop_prepared()
        self._session.allow_writes(self._conn)
        model_id = spec.model.unique_id
        with self._transaction():
            for chunk in _chunks(list(marks)):
                self._execute(self._statement("row_results_from_state_sql", n=len(chunk)),
                              [run_id, action, outcome, _utc_naive(), model_id, *chunk])
                self._execute(self._statement("state_ack_sql", n=len(chunk)),
                              [outcome, run_id, model_id, *chunk])

    def state_count(self, model: DbtModel) -> int:
        """How many keys the model has in the sync state."""
        self._ensure()
        with self._transaction():
            rows = self._execute(self._statement("state_count_sql"), [model.unique_id], True)
        return int(rows[0][0] or 0)

    def reset_state(self, model: DbtModel) -> int:
        """Delete the model's state rows; return how many."""
        self._ensure()
        self._drop_prepared()
        with self._transaction():
            rows = self._execute(self._statement("state_count_sql"), [model.unique_id], True)
            self._execute(self._statement("state_reset_sql"), [model.unique_id])
        return int(rows[0][0] or 0)

    # -- plumbing --------------------------------------------------------------------------------

    def _check_package(self, manifest: Manifest) -> None:
        """Our macros come from the user's installed dbt package: make sure it is there and
        speaks the macro interface this Python package calls."""
        project_dir = self._session.settings.project_dir.resolve()
        if not self._session.has_macro("macros_api_version"):
            raise ProjectError(
                f"The dbt package '{PACKAGE}' is not installed in the dbt project at "
                f"{project_dir}: its macros are not in {manifest.path}. Add it to "
                "packages.yml (see the README), run `dbt deps` and `dbt parse`, then run again."
            )
        found = int(self._render("macros_api_version"))
        if found != MACROS_API_VERSION:
            raise ProjectError(
                f"The installed dbt package '{PACKAGE}' (macro interface v{found}) does not match "
                f"dbt-stripe-activation {__version__} (v{MACROS_API_VERSION}). Install the same "
                "version of both: update packages.yml, run `dbt deps` and `dbt parse`."
            )

    def _render(self, macro: str, /, **kwargs: Any) -> Any:
        return self._session.call_macro(self._conn, macro, **kwargs)

    def _statement(self, macro: str, /, **kwargs: Any) -> str:
        """A bound statement's SQL, rendered once per shape (macro, table, row count)."""
        key = (macro, *sorted(kwargs.items()))
        if key not in self._statements:
            self._statements[key] = str(self._render(macro, **kwargs))
        return str(self._statements[key])

    def _execute(
        self, sql: str, bindings: Sequence[Any] | None = None, fetch: bool = False
    ) -> list[tuple[Any, ...]]:
        return self._session.execute(self._conn, sql, bindings, fetch)

    def _transaction(self) -> Any:
        return self._session.transaction(self._conn)

    def _table_columns(self, table: str) -> list[str]:
        key = ("bookkeeping_columns", table)
        if key not in self._statements:
            self._statements[key] = list(self._render("bookkeeping_columns", name=table))
        return list(self._statements[key])

    def _insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        columns = self._table_columns(table)
        if len(rows) >= _BULK_MIN_ROWS and self._bulk_insert(table, columns, rows):
            return
        for chunk in _chunks(list(rows)):
            bindings = [row.get(column) for row in chunk for column in columns]
            self._execute(self._statement("insert_rows_sql", name=table, n=len(chunk)), bindings)

    def _bulk_insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]
    ) -> bool:
        """Many rows in one statement through the adapter's file load (DuckDB's read_csv);
        False when the adapter has none (its macro renders nothing)."""
        values_of = _values_getter(columns, rows[0])
        null = _CSV_NULL
        lines = [values_of(row) for row in rows]
        if any(null in line for line in lines):  # a text that would load as null
            return False
        return self._bulk_load(table, columns, (
            [null if v is None else v.isoformat(sep=" ") if isinstance(v, datetime) else v
             for v in line]
            for line in lines
        ))

    def _bulk_load(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
                   ) -> bool:
        """Rows already in file form (column order, `_CSV_NULL` for null, timestamps as
        text) in one statement; False when the adapter has no file load. A text equal to
        `_CSV_NULL` would load as null (quoted or not): callers send such rows elsewhere."""

        def body(handle: IO[str]) -> None:
            csv.writer(handle, quoting=csv.QUOTE_MINIMAL, doublequote=True,
                       lineterminator="\n").writerows(rows)

        return self._load_file(table, columns, body)

    def _load_file(self, table: str, columns: Sequence[str],
                   body: Callable[[IO[str]], None]) -> bool:
        """A CSV file (a header of `columns`, then what `body` writes) loaded into `table`
        by the adapter's bulk_insert_sql; False when the adapter has no file load."""
        if self._statements.get(("bulk", table)) == "":
            return False
        with tempfile.NamedTemporaryFile("w", suffix=".csv", newline="", delete=False,
                                         encoding="utf-8") as handle:
            path = handle.name
            handle.write(",".join(columns) + "\n")
            body(handle)
        try:
            if any(c in path for c in "'\\\""):  # needs the macro's own quoting
                sql = str(self._render("bulk_insert_sql", name=table, path=path)).strip()
            else:  # rendered once per table: a chunk of events loads one file each
                sql = self._statement("bulk_insert_sql", name=table,
                                      path=_BULK_PATH).strip().replace(_BULK_PATH, path)
            if not sql:
                self._statements[("bulk", table)] = ""
                return False
            self._execute(sql)
            return True
        finally:
            os.unlink(path)

    def _relation_name(self, model: DbtModel) -> str:
        if model.relation_name:
            return model.relation_name
        return self._session.render_relation(model.database, model.schema, model.alias)

    def _diff_args(self, spec: SyncSpec) -> dict[str, Any]:
        columns = self.resolve_columns(spec)
        return {
            "relation_name": self._relation_name(spec.model),
            "columns": columns,
            "key_column": columns[0],
            "casefold": spec.key.casefold,
            "model_unique_id": spec.model.unique_id,
            "fingerprint": spec.fingerprint,
            # Connect: keys per account, and --shard K/N's accounts only.
            "scope": {
                "account_column": (columns[spec.columns.index(spec.account_column)]
                                   if spec.account_column is not None else None),
                "shard": list(self.shard) if self.shard else None,
                "account_index": (spec.columns.index(spec.account_column)
                                  if spec.account_column is not None else None),
            },
            # Each reference joins the referenced model's state on the column's key, as that
            # model normalizes its keys: the Stripe id comes from the warehouse, no read.
            "references": [
                {
                    "column_index": spec.columns.index(m.column),
                    "model_unique_id": m.ref.model.unique_id,
                    "casefold": m.ref.casefold,
                    "same_account": m.ref.same_account,
                }
                for m in spec.references
                if m.ref is not None and m.column is not None
            ],
        }

    def resolve_columns(self, spec: SyncSpec) -> list[str]:
        """spec.columns as the relation spells them: exact, else the one case-insensitive
        match (an unquoted `Email` in the block finds PostgreSQL's `email`). The one place
        mapped columns meet the relation: ConfigError names every missing column."""
        model = spec.model
        if not model.relation_name and model.unique_id not in self._relation_columns:
            raise ConfigError(
                f"{model.label} has no relation (is it ephemeral?): a synced model must be "
                "materialized as a table, view or incremental model."
            )
        actual = self._relation_columns.get(model.unique_id) or self.relation_columns(model)
        by_lower: dict[str, list[str]] = {}
        for name in actual:
            by_lower.setdefault(name.lower(), []).append(name)
        resolved: list[str] = []
        missing: list[str] = []
        for wanted in spec.columns:
            if wanted in actual:
                resolved.append(wanted)
            elif len(by_lower.get(wanted.lower(), [])) == 1:
                resolved.append(by_lower[wanted.lower()][0])
            else:
                missing.append(wanted)
        if missing:
            raise ConfigError(
                f"{model.label}: column(s) {', '.join(repr(c) for c in missing)} mapped in "
                f"stripe_activation are not in {self._relation_name(model)} (columns: "
                f"{', '.join(sorted(actual, key=str.lower))}). Fix the mapping or the model, "
                "then `dbt run`."
            )
        return resolved


def _diff_row(
    columns: Sequence[str], width: int, raw: Sequence[Any], full_resync: bool = False,
    ref_paths: Sequence[str] = (), scoped: bool = False,
) -> DiffRow:
    """One row of diff_select_sql (by position: the columns, the fixed tail, then one
    resolved Stripe id per reference)."""
    (
        key,
        row_hash,
        duplicate_count,
        status,
        state_key,
        stripe_id,
        state_hash,
        synced,
        outcome,
        error,
        synced_at,
    ) = raw[width : width + 11]
    previous = None
    if state_key is not None:
        previous = StateRecord(
            stripe_id=stripe_id,
            row_hash=state_hash or "",
            synced_values=_from_json(synced),
            outcome=outcome or "",
            error=error,
            synced_at=_as_utc(synced_at) if synced_at is not None else None,
        )
    kind = DiffStatus.RESYNC if status == "unchanged" else DiffStatus(status)
    if full_resync and kind is DiffStatus.UNSYNCED:
        kind = DiffStatus.RESYNC
    return DiffRow(
        key_value=key,
        values=dict(zip(columns, raw[:width], strict=True)),
        row_hash=str(row_hash),
        status=kind,
        previous=previous,
        duplicate_count=int(duplicate_count),
        references=dict(zip(ref_paths, raw[width + 11 :], strict=True)) if ref_paths else {},
        account=split_scoped_key(key)[0] if scoped else None,
        scoped=scoped,
    )


# Where the bulk-load statement, rendered once, takes each file's path.
_BULK_PATH = "dsa-bulk-load-file.csv"
# The bulk-load CSV's null string (bulk_insert_sql loads it so); timestamps go in ISO form.
_CSV_NULL = "\\N"


def _csv_line_format(columns: Sequence[str], fixed: Mapping[str, str],
                     slots: Sequence[str]) -> str:
    """One CSV line as a str.format template: `fixed` columns' texts quoted in place, the
    `slots` columns as quoted {0}, {1}, ... (their texts given with '"' doubled), any other
    column null."""

    def quoted(text: str) -> str:
        return '"' + text.replace('"', '""').replace("{", "{{").replace("}", "}}") + '"'

    parts = [f'"{{{slots.index(c)}}}"' if c in slots
             else quoted(fixed[c]) if c in fixed else _CSV_NULL for c in columns]
    return ",".join(parts) + "\n"


def _values_getter(
    columns: Sequence[str], first: Mapping[str, Any]
) -> Callable[[Mapping[str, Any]], Sequence[Any]]:
    """A row's values in column order: one C call per row when rows carry every column (a
    batch's rows are alike), else a lookup per column (an absent column is null)."""

    def looked_up(row: Mapping[str, Any]) -> Sequence[Any]:
        return [row.get(column) for column in columns]

    if len(columns) < 2 or not all(column in first for column in columns):
        return looked_up
    getter = operator.itemgetter(*columns)

    def got(row: Mapping[str, Any]) -> Sequence[Any]:
        try:
            return getter(row)  # type: ignore[no-any-return]
        except KeyError:
            return looked_up(row)

    return got


_JSON = json.JSONEncoder(sort_keys=True, default=str)  # one encoder: json.dumps with
# options builds a new one per call


def _to_json(values: Mapping[str, Any]) -> str:
    return _JSON.encode(values if values.__class__ is dict else dict(values))


def _from_json(text: Any) -> Mapping[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _chunks(items: list[Any], size: int = _ROWS_PER_STATEMENT) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _utc_naive(moment: datetime | None = None) -> datetime:
    """Timestamps are stored as UTC without a zone: portable across every adapter's type."""
    moment = moment or datetime.now(timezone.utc)
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def _as_utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)
