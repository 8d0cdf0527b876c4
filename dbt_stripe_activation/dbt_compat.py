"""Every call into dbt-core internals, in one place, gated on dbt-core's version.

dbt has no public API for "run this macro with the user's profile and stream a result": we
use the same internals `dbt run-operation` uses (RuntimeConfig, the adapter factory, the
manifest's macros, the adapter's connection manager), which dbt does not promise to keep.
SUPPORTED names the dbt-core versions this module was checked against; when a dbt release
moves one of them, this module is the only one to change.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ProjectError, WarehouseError
from .project import ProjectSettings, is_fusion

SUPPORTED = ">=1.10,<1.12"
PACKAGE = "stripe_activation"  # the dbt package (the repo root) whose macros we call


def dbt_core_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dbt-core")
    except PackageNotFoundError:
        return "not installed"


def check_dbt_version(installed: str | None = None) -> str:
    """Raise ProjectError unless the installed dbt-core is one this module was written for."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    installed = installed or dbt_core_version()
    try:
        ok = SpecifierSet(SUPPORTED).contains(Version(installed), prereleases=True)
    except InvalidVersion:
        ok = False
    if not ok:
        raise ProjectError(
            f"dbt-stripe-activation needs dbt-core {SUPPORTED} (it drives your dbt adapter "
            f"through dbt's Python internals); this environment has dbt-core {installed}. "
            f"Install a supported version: pip install 'dbt-core{SUPPORTED}' and the matching "
            "adapter (e.g. 'dbt-postgres>=1.10,<1.12')."
        )
    return installed


class _LazyStderr:
    """sys.stderr looked up at each write: pytest and the CLI swap it after we configure."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def quiet_dbt_events(debug_log: Path | None = None) -> None:
    """Keep dbt's event log off stdout (the CLI's `--output json` owns it).

    Warnings and errors still reach stderr; with `debug_log`, every dbt event (including the
    SQL we run, never bound values) is appended there, as dbt does to logs/dbt.log.
    """
    from dbt_common.events.base_types import EventLevel
    from dbt_common.events.event_manager_client import (
        add_logger_to_manager,
        cleanup_event_logger,
    )
    from dbt_common.events.functions import env_scrubber
    from dbt_common.events.logger import LineFormat, LoggerConfig

    cleanup_event_logger()
    for name in ("stripe_sync_stderr", "stripe_sync_file"):  # from an earlier call
        for handler in logging.getLogger(name).handlers:
            handler.close()
    add_logger_to_manager(
        LoggerConfig(
            name="stripe_sync_stderr",
            level=EventLevel.WARN,
            line_format=LineFormat.PlainText,
            scrubber=env_scrubber,
            output_stream=_LazyStderr(),  # type: ignore[arg-type]
        )
    )
    if debug_log is not None:
        with contextlib.suppress(OSError):
            debug_log.parent.mkdir(parents=True, exist_ok=True)
            add_logger_to_manager(
                LoggerConfig(
                    name="stripe_sync_file",
                    level=EventLevel.DEBUG,
                    line_format=LineFormat.DebugText,
                    scrubber=env_scrubber,
                    output_file_name=str(debug_log),
                )
            )


# DuckDB's memory and threads for the sync's own queries when the profile sets none (see
# DbtSession._limit_duckdb_memory); a profile's `settings: {memory_limit: ..., threads: ...}`
# wins. The diff's one aggregate spills to DuckDB's temp directory under this cap at any
# model size; a second thread needs a cap of its own for its partitions (benchmarks/RESULTS.md).
DUCKDB_MEMORY_LIMIT = "64MB"
DUCKDB_THREADS = 1
# A read that still fails with DuckDB's out-of-memory error (nothing handed out yet: safe to
# run again) is run again under the next cap, then the cap goes back to the first. A sync
# that writes its state takes the second for good: DuckDB holds what a transaction wrote in
# memory until a checkpoint, beside the open stream (a plan writes nothing).
DUCKDB_MEMORY_RETRY_LIMITS = ("256MB", "1GB")


@dataclass
class DbtSession:
    """The user's adapter, opened from their profile, with the manifest's macros loaded.

    Connections are ours, not dbt's per-thread ones: dbt keys connections by thread, and we
    need two in one thread (a pending streamed read and the state writes beside it), so each
    call binds one of our connections as the thread's connection for its duration.
    """

    config: Any  # dbt RuntimeConfig
    adapter: Any  # the adapter instance (BaseAdapter subclass)
    settings: ProjectSettings
    manifest: Any  # dbt's Manifest: the macros we run (ours, dbt's, the adapter's)
    # DuckDB: the caps the sync may set (none when the profile sets its own), and which
    # one is set.
    _duckdb_caps: list[str] = field(default_factory=list)
    _duckdb_cap: int = 0
    _duckdb_base_cap: int = 0  # the cap a read goes back to: 1 once the sync writes

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, settings: ProjectSettings, manifest_path: Path) -> DbtSession:
        check_dbt_version()
        quiet_dbt_events(_log_path(settings))
        config = _runtime_config(settings)
        manifest = read_dbt_manifest(manifest_path)
        parsed_for = getattr(manifest.metadata, "adapter_type", None)
        if parsed_for and parsed_for != config.credentials.type:
            # dispatch would silently pick the wrong implementations: the manifest holds the
            # macros of the adapter it was parsed with only
            raise ProjectError(
                f"The dbt manifest at {manifest_path} was parsed for {parsed_for}, but target "
                f"'{config.target_name}' uses {config.credentials.type}: run `dbt parse "
                f"--target {config.target_name}` (or `dbt run`) first, then run again."
            )
        if is_fusion(str(manifest.metadata.dbt_version or "")):
            _use_installed_adapter_macros(manifest, config)
        from dbt.context.providers import generate_runtime_macro_context

        adapter = _register_adapter(config)
        adapter.set_macro_resolver(manifest)
        adapter.set_macro_context_generator(generate_runtime_macro_context)
        return cls(config=config, adapter=adapter, settings=settings, manifest=manifest)

    def close(self) -> None:
        from dbt.adapters.factory import FACTORY

        with FACTORY.lock:
            if FACTORY.adapters.get(self.adapter_type) is self.adapter:
                del FACTORY.adapters[self.adapter_type]
        self.adapter.cleanup_connections()
        if self.adapter_type == "duckdb":
            _close_duckdb_environment(type(self.adapter.connections))

    # -- what we are connected to ----------------------------------------------------------

    @property
    def adapter_type(self) -> str:
        return str(self.config.credentials.type)

    @property
    def target_name(self) -> str:
        return str(self.config.target_name)

    @property
    def profile_name(self) -> str:
        return str(self.config.profile_name)

    @property
    def database(self) -> str | None:
        return getattr(self.config.credentials, "database", None)

    @property
    def schema(self) -> str:
        return str(self.config.credentials.schema)

    def describe_target(self) -> str:
        return f"target '{self.target_name}' ({self.adapter_type})"

    def has_macro(self, name: str, package: str = PACKAGE) -> bool:
        return self.manifest.find_macro_by_name(name, self.config.project_name, package) is not None

    # -- connections -----------------------------------------------------------------------

    def connection(self, name: str) -> Any:
        """A new connection of the profile's credentials; it opens on first use."""
        from dbt.adapters.contracts.connection import (
            Connection,
            ConnectionState,
            Identifier,
            LazyHandle,
        )

        manager = self.adapter.connections
        conn = Connection(
            type=Identifier(manager.TYPE),
            name=name,
            state=ConnectionState.INIT,
            transaction_open=False,
            handle=None,
            credentials=self.config.credentials,
        )
        conn.handle = LazyHandle(manager.open)
        return conn

    def close_connection(self, conn: Any) -> None:
        with contextlib.suppress(Exception):
            self.adapter.connections.close(conn)

    @contextlib.contextmanager
    def using(self, conn: Any) -> Iterator[Any]:
        """Bind `conn` as this thread's dbt connection; translate dbt errors to ours."""
        from dbt.adapters.factory import FACTORY

        manager = self.adapter.connections
        self._open(conn)
        key = manager.get_thread_identifier()
        with manager.lock:
            previous = manager.thread_connections.get(key)
            manager.thread_connections[key] = conn
        # The macro context's `adapter` is the registered one: make it ours for the call, in
        # case another session (or a dbtRunner invocation) registered its own since.
        with FACTORY.lock:
            registered = FACTORY.adapters.get(self.adapter_type)
            FACTORY.adapters[self.adapter_type] = self.adapter
        try:
            with self.translate_errors():
                yield conn
        finally:
            with manager.lock:
                if previous is None:
                    manager.thread_connections.pop(key, None)
                else:
                    manager.thread_connections[key] = previous
            with FACTORY.lock:
                if registered is not None:
                    FACTORY.adapters[self.adapter_type] = registered

    def _open(self, conn: Any) -> None:
        """Open `conn` now, so any failure to connect is reported as one (drivers raise
        their own exception types: dbt-duckdb lets duckdb.IOException through)."""
        from dbt.adapters.contracts.connection import ConnectionState

        if conn.state == ConnectionState.OPEN:
            return
        try:
            self.adapter.connections.open(conn)
        except Exception as exc:
            raise WarehouseError(self._connect_message(exc)) from exc
        if conn.state != ConnectionState.OPEN:
            raise WarehouseError(self._connect_message(RuntimeError("the connection did not open")))
        self._limit_duckdb_memory(conn)

    def _limit_duckdb_memory(self, conn: Any) -> None:
        """Cap embedded DuckDB's working memory unless the profile sets its own: DuckDB's
        default (80% of RAM) lets the diff of a million-row model grow the sync's process
        past 800 MB; with a cap it spills to disk instead (benchmarks/RESULTS.md, (c))."""
        if self.adapter_type != "duckdb":
            return
        settings = getattr(self.config.credentials, "settings", None) or {}
        statements = []
        if "memory_limit" not in settings and "max_memory" not in settings:
            self._duckdb_caps = [DUCKDB_MEMORY_LIMIT, *DUCKDB_MEMORY_RETRY_LIMITS]
            # the cap in force (a read may have raised it): the setting is the database's
            statements.append(f"SET memory_limit = '{self._duckdb_caps[self._duckdb_cap]}'")
        if "threads" not in settings and "worker_threads" not in settings:
            statements.append(f"SET threads = {DUCKDB_THREADS:d}")
        for statement in statements:
            with contextlib.suppress(Exception):
                conn.handle.cursor().execute(statement)

    def raise_memory_limit(self, conn: Any, exc: BaseException) -> bool:
        """After DuckDB's out-of-memory error on a read: raise the cap the sync set to the
        next one and say so (True), or False when the error is another one, the profile
        set its own cap, or the last cap was reached."""
        caps, current = self._duckdb_caps, self._duckdb_cap
        if not _is_out_of_memory(exc) or current + 1 >= len(caps):
            return False
        self._duckdb_cap = current + 1
        with self.using(conn):
            conn.handle.cursor().execute(f"SET memory_limit = '{caps[current + 1]}'")
        return True

    def restore_memory_limit(self, conn: Any) -> None:
        """The base cap again, after a read that needed a higher one."""
        caps, base = self._duckdb_caps, self._duckdb_base_cap
        if self._duckdb_cap == base or not caps:
            return
        self._duckdb_cap = base
        with contextlib.suppress(Exception), self.using(conn):
            conn.handle.cursor().execute(f"SET memory_limit = '{caps[base]}'")

    def allow_writes(self, conn: Any) -> None:
        """Before the first state write of a sync: the cap for a writer, for good."""
        if len(self._duckdb_caps) < 2 or self._duckdb_base_cap >= 1:
            return
        self._duckdb_base_cap = 1
        if self._duckdb_cap < 1:
            self._duckdb_cap = 1
            with contextlib.suppress(Exception), self.using(conn):
                conn.handle.cursor().execute(f"SET memory_limit = '{self._duckdb_caps[1]}'")

    @contextlib.contextmanager
    def translate_errors(self) -> Iterator[None]:
        from dbt.adapters.exceptions import FailedToConnectError
        from dbt_common.exceptions import DbtBaseException

        try:
            yield
        except FailedToConnectError as exc:
            raise WarehouseError(self._connect_message(exc)) from exc
        except DbtBaseException as exc:
            raise WarehouseError(
                f"The warehouse query failed on {self.describe_target()}: {_one_line(exc)}"
            ) from exc
        except Exception as exc:
            if not _is_driver_error(exc):
                raise
            raise WarehouseError(
                f"The warehouse query failed on {self.describe_target()}: {_one_line(exc)}"
            ) from exc

    def _connect_message(self, exc: BaseException) -> str:
        detail = _one_line(exc)
        profiles = self.settings.resolved_profiles_dir / "profiles.yml"
        message = (
            f"Cannot connect to the {self.adapter_type} warehouse of {self.describe_target()}, "
            f"profile '{self.profile_name}': {detail}."
        )
        if self.adapter_type == "duckdb" and "conflicting lock" in detail.lower():
            return message + (
                " DuckDB lets one process write a database file at a time: wait for the "
                "running dbt command (or other sync) to finish, then run again."
            )
        return message + (
            f" Check the '{self.target_name}' output in {profiles}, then run "
            f"`dbt debug --target {self.target_name}`."
        )

    # -- running things ----------------------------------------------------------------------

    def call_macro(self, conn: Any, macro: str, /, **kwargs: Any) -> Any:
        """Run one of our package's macros and return what it `return()`s."""
        with self.using(conn):
            return self.adapter.execute_macro(macro, project=PACKAGE, kwargs=kwargs)

    def execute(
        self, conn: Any, sql: str, bindings: Sequence[Any] | None = None, fetch: bool = False
    ) -> list[tuple[Any, ...]]:
        """One statement with bound values on `conn`, inside its open transaction if any."""
        with self.using(conn):
            _, cursor = self.adapter.connections.add_query(
                sql, auto_begin=False, bindings=list(bindings) if bindings is not None else None
            )
            if not fetch:
                return []
            return [tuple(row) for row in cursor.fetchall()]

    @contextlib.contextmanager
    def transaction(self, conn: Any) -> Iterator[None]:
        """BEGIN ... COMMIT on `conn`; ROLLBACK on any error.

        dbt's own macros may commit halfway (create_schema does) and run_query does not
        begin: what ran after that is in the driver's implicit transaction (psycopg2) or
        already committed (DuckDB), so the end always commits through a BEGIN if needed.
        """
        manager = self.adapter.connections
        with self.using(conn):
            if not conn.transaction_open:
                manager.begin()
        try:
            yield
        except BaseException:
            self.rollback(conn)
            raise
        with self.using(conn):
            if not conn.transaction_open:
                manager.begin()
            manager.commit()

    def rollback(self, conn: Any) -> None:
        """Roll back whatever `conn` has open, as dbt knows it or only the driver does."""
        from dbt.adapters.contracts.connection import ConnectionState

        conn.transaction_open = False
        if conn.state != ConnectionState.OPEN:
            return
        handle = conn.handle
        try:
            handle.rollback()
            return
        except Exception:  # dbt-duckdb 1.10: its handle has no rollback()
            pass
        with contextlib.suppress(Exception):
            handle.cursor().execute("rollback")

    def stream(self, conn: Any, sql: str, batch_size: int) -> Iterator[list[tuple[Any, ...]]]:
        """Rows of one SELECT, `batch_size` at a time, never the whole result in memory.

        PostgreSQL's client-side cursors fetch everything on execute: a named (server-side)
        cursor streams. DuckDB and other DB-API drivers stream from a plain cursor.
        """
        if self.adapter_type in ("postgres", "redshift") and _is_psycopg2(conn, self):
            yield from self._stream_server_side(conn, sql, batch_size)
            return
        with self.using(conn):
            _, cursor = self.adapter.connections.add_query(sql, auto_begin=False)
        try:
            while True:
                with self.using(conn):  # translates a driver error raised mid-stream
                    rows = cursor.fetchmany(batch_size)
                if not rows:
                    return
                yield [tuple(row) for row in rows]
        finally:
            # dbt-duckdb hands out one cursor per connection: closing it closes the connection.
            if self.adapter_type != "duckdb":
                with contextlib.suppress(Exception):
                    cursor.close()

    def _stream_server_side(
        self, conn: Any, sql: str, batch_size: int
    ) -> Iterator[list[tuple[Any, ...]]]:
        import psycopg2

        with self.using(conn):
            handle = conn.handle
        # A named cursor lives in a transaction; in autocommit mode only WITH HOLD works.
        hold = bool(getattr(handle, "autocommit", False))
        if not hold:
            # After dbt's own BEGIN ... COMMIT statements on this connection (the diff's
            # keys table), psycopg2 still believes a transaction is open and would not
            # begin one for the cursor: end it on the driver's side.
            with contextlib.suppress(psycopg2.Error):
                handle.rollback()
        cursor = handle.cursor(name=f"stripe_sync_{uuid.uuid4().hex[:12]}", withhold=hold)
        try:
            try:
                cursor.execute(sql)
                # Each fetch is a round trip: fetch many batches at once, hand them out one
                # at a time (a first plan of a million rows took 2,000 fetches of 500).
                fetch = max(batch_size, _SERVER_FETCH_ROWS)
                while True:
                    rows = cursor.fetchmany(fetch)
                    if not rows:
                        return
                    for start in range(0, len(rows), batch_size):
                        yield [tuple(row) for row in rows[start : start + batch_size]]
            except psycopg2.Error as exc:
                raise WarehouseError(
                    f"The warehouse query failed on {self.describe_target()}: {_one_line(exc)}"
                ) from exc
        finally:
            with contextlib.suppress(Exception):
                cursor.close()
            with contextlib.suppress(Exception):
                handle.rollback()

    def columns_in_relation(
        self, conn: Any, database: str | None, schema: str, identifier: str
    ) -> list[str]:
        """Column names of a relation as the warehouse spells them ([] if it is missing)."""
        with self.using(conn):
            relation = self.adapter.Relation.create(
                database=database, schema=schema, identifier=identifier
            )
            return [column.name for column in self.adapter.get_columns_in_relation(relation)]

    def render_relation(self, database: str | None, schema: str, identifier: str) -> str:
        relation = self.adapter.Relation.create(
            database=database, schema=schema, identifier=identifier
        )
        return str(relation)


# Rows per round trip of a server-side cursor (PostgreSQL, Redshift): a few MB at most.
_SERVER_FETCH_ROWS = 10_000


def _close_duckdb_environment(manager_class: Any) -> None:
    """dbt-duckdb keeps its database open for the process (`keep_open` defaults to true):
    close it, so a `dbt` command run next (DuckDB allows one writer) can open the file."""
    lock = getattr(manager_class, "_LOCK", None)
    if lock is None or not hasattr(manager_class, "_ENV"):
        return
    with lock:
        environment = manager_class._ENV
        if environment is None or getattr(environment, "handle_count", 0) > 0:
            return  # another session still uses it
        manager_class._ENV = None
    with contextlib.suppress(Exception):
        environment.close()


def _is_out_of_memory(exc: BaseException | None) -> bool:
    """DuckDB's out-of-memory error, wrapped or not (dbt and we wrap driver errors)."""
    while exc is not None:
        if type(exc).__name__ == "OutOfMemoryException" or "Out of Memory Error" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _is_driver_error(exc: BaseException) -> bool:
    """A DB-API driver's exception (duckdb.Error, psycopg2.Error, ...): every driver derives
    them from a class named Error of its own; dbt lets some through unwrapped."""
    return any(
        cls.__name__ in ("Error", "DatabaseError") and cls.__module__ != "builtins"
        for cls in type(exc).__mro__
    )


def _is_psycopg2(conn: Any, session: DbtSession) -> bool:
    with session.using(conn):
        handle = conn.handle
    return type(handle).__module__.startswith("psycopg2")


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "msg", None) or exc).strip()
    return " ".join(text.split())


def _log_path(settings: ProjectSettings) -> Path:
    return settings.project_dir / "logs" / "dbt-stripe-sync.log"


def _set_flags(settings: ProjectSettings) -> argparse.Namespace:
    """dbt's global flags, as `dbt run` would set them (the selector and the adapter read
    them); the same arguments build the RuntimeConfig."""
    from dbt.flags import set_from_args
    from dbt_common.context import set_invocation_context

    args = argparse.Namespace(
        project_dir=str(settings.project_dir.resolve()),
        profiles_dir=str(settings.resolved_profiles_dir.resolve()),
        profile=settings.profile,
        target=settings.target,
        vars=dict(settings.vars),
        threads=None,
        target_path=str(settings.target_path) if settings.target_path else None,
    )
    set_invocation_context(dict(os.environ))
    set_from_args(args, {})
    return args


def _runtime_config(settings: ProjectSettings) -> Any:
    """dbt's RuntimeConfig for the user's project and profile, as `dbt run` would build it."""
    from dbt.config.runtime import RuntimeConfig
    from dbt_common.exceptions import DbtBaseException

    try:
        args = _set_flags(settings)
        return RuntimeConfig.from_args(args)
    except DbtBaseException as exc:
        raise ProjectError(
            f"dbt cannot load the project in {settings.project_dir.resolve()} with the profiles "
            f"in {settings.resolved_profiles_dir.resolve()}: {_one_line(exc)}. Fix "
            "dbt_project.yml / profiles.yml (`dbt debug` shows the same problem), or pass "
            "--profiles-dir / --profile / --target."
        ) from exc


def _register_adapter(config: Any) -> Any:
    """Our adapter instance, also registered globally: the macro context's `adapter` is the
    registered one, so both must be the same object. Replaces one left by an earlier open."""
    from dbt.adapters.factory import FACTORY, get_adapter, register_adapter
    from dbt.mp_context import get_mp_context
    from dbt_common.exceptions import DbtBaseException

    adapter_type = config.credentials.type
    with FACTORY.lock:
        previous: Any = FACTORY.adapters.pop(adapter_type, None)
    if previous is not None:
        with contextlib.suppress(Exception):
            previous.cleanup_connections()
    try:
        register_adapter(config, get_mp_context())
    except DbtBaseException as exc:
        raise ProjectError(
            f"dbt cannot load the '{adapter_type}' adapter of target '{config.target_name}': "
            f"{_one_line(exc)}. Install it: pip install 'dbt-{adapter_type}>=1.10,<1.12'."
        ) from exc
    return get_adapter(config)


# -- the manifest in dbt-core's classes: the session's macros, the selection's graph ---------

# The last manifest read, left by the selection for the session of the same run, so a run
# reads it once: {(path, mtime, size): dbt Manifest}, at most one entry.
_KEPT: dict[tuple[str, int, int], Any] = {}


def read_dbt_manifest(path: Path, keep: bool = False) -> Any:
    """dbt-core's Manifest of a manifest.json, dbt-core's or dbt Fusion's; `keep` leaves it
    for the next call on the same, unchanged file, which takes it."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise ProjectError(f"Cannot read the dbt manifest at {path}: {exc}") from exc
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    manifest = _KEPT.pop(key, None)
    _KEPT.clear()
    if manifest is None:
        manifest = _read_dbt_manifest(path)
    if keep:
        _KEPT[key] = manifest
    return manifest


# What a manifest dbt-core cannot read may raise: dbt's errors, mashumaro's (ValueError,
# LookupError, TypeError), a file that went away.
_READ_ERRORS = (OSError, ValueError, LookupError, TypeError)


def _read_dbt_manifest(path: Path) -> Any:
    from dbt.contracts.graph.manifest import Manifest, WritableManifest
    from dbt_common.exceptions import DbtBaseException

    try:
        writable = WritableManifest.read_and_check_versions(str(path))
    except (DbtBaseException, *_READ_ERRORS) as exc:
        try:
            writable = _read_fusion_manifest(path)
        except (DbtBaseException, *_READ_ERRORS):
            writable = None
        if writable is None:
            raise ProjectError(
                f"dbt-core {dbt_core_version()} cannot read the dbt manifest at {path}: "
                f"{_brief(exc)}. Run `dbt parse` (or `dbt run`) with this dbt version, or "
                "pass the manifest.json of a dbt-core 1.8+ or dbt Fusion run, then run again."
            ) from exc
    return Manifest.from_writable_manifest(writable)


def _read_fusion_manifest(path: Path) -> Any:
    """dbt Fusion's v12 manifest (docs/FUSION.md) in dbt-core's classes, or None when the file
    is not Fusion's. Fusion writes null where dbt-core expects a value or no key (`config.meta`,
    ...), its early builds stamped schema v20, and its disabled nodes are partial: read nulls
    as absent, the schema as v12, and leave the disabled nodes out (nothing here reads them)."""
    from dbt.contracts.graph.manifest import WritableManifest

    raw = json.loads(path.read_text())
    metadata = raw.get("metadata") or {}
    if not is_fusion(str(metadata.get("dbt_version") or "")):
        return None
    metadata["dbt_schema_version"] = str(WritableManifest.dbt_schema_version)
    raw["disabled"] = {}
    return WritableManifest.upgrade_schema_version(_without_nulls(raw))


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _use_installed_adapter_macros(manifest: Any, config: Any) -> None:
    """A Fusion manifest carries Fusion's own copies of dbt's and the adapter's macros; the
    Python adapter that runs here needs the ones installed with it. The project's and its
    packages' macros (ours among them) stay the manifest's."""
    from dbt.parser.manifest import ManifestLoader

    installed = ManifestLoader.load_macros(config, lambda _: None, base_macros_only=True).macros
    config.clear_dependencies()  # loaded without the project's packages: load them when asked
    internal = {macro.package_name for macro in installed.values()}
    kept = {uid: m for uid, m in manifest.macros.items() if m.package_name not in internal}
    manifest.macros = {**kept, **installed}
    manifest._macros_by_name = None
    manifest._macros_by_package = None


def select_models(
    settings: ProjectSettings, select: tuple[str, ...], exclude: tuple[str, ...]
) -> set[str]:
    """Unique ids of the models `--select/--exclude` pick, by dbt's own selector (dbt.graph,
    as `dbt ls` runs it) on the manifest the sync reads: no project parse (most of what
    `dbt ls` costs), and the selection and the synced models come from one manifest.

    `dbt ls` through dbtRunner is the fallback when dbt-core cannot build the graph of the
    project's own manifest; a --manifest is always resolved against itself."""
    from dbt_common.exceptions import DbtBaseException

    path = settings.resolved_manifest_path
    check_dbt_version()
    quiet_dbt_events(_log_path(settings))
    try:
        _set_flags(settings)
        manifest = read_dbt_manifest(path, keep=True)
        graph = _graph(manifest)
    except (ProjectError, DbtBaseException) as exc:
        if settings.manifest_path is None:
            return list_models(settings, select, exclude)
        raise ProjectError(
            f"Cannot resolve {_selection(select, exclude)} against --manifest {path}: "
            f"{_brief(exc)}"
        ) from exc
    from dbt.graph import ResourceTypeSelector, parse_difference
    from dbt.node_types import NodeType
    from dbt_common.events.contextvars import task_contextvars

    selector = ResourceTypeSelector(graph=graph, manifest=manifest, previous_state=None,
                                    resource_types=[NodeType.Model], include_empty_nodes=True)
    try:
        # `path:` globs from the project root, as `dbt ls` sets it
        with task_contextvars(project_root=str(settings.project_dir.resolve())):
            spec = parse_difference(list(select) or None, list(exclude) or None)
            return set(selector.get_selected(spec))
    except DbtBaseException as exc:
        raise ProjectError(
            f"dbt could not resolve {_selection(select, exclude)}: {_one_line(exc)}"
        ) from exc


def _graph(manifest: Any) -> Any:
    """The DAG `dbt ls` selects on (dbt.compilation.Compiler.compile, without its files)."""
    from dbt.compilation import Linker
    from dbt.graph import Graph

    linker = Linker()
    linker.link_graph(manifest)
    return Graph(linker.graph)


def _selection(select: tuple[str, ...], exclude: tuple[str, ...]) -> str:
    return f"--select {' '.join(select)!r} --exclude {' '.join(exclude)!r}"


def _brief(exc: BaseException, limit: int = 300) -> str:
    """dbt's and mashumaro's errors embed whole nodes: their first few hundred characters."""
    text = _one_line(exc)
    return text if len(text) <= limit else text[:limit] + " ..."


def list_models(
    settings: ProjectSettings, select: tuple[str, ...], exclude: tuple[str, ...]
) -> set[str]:
    """`dbt ls --resource-type model` through dbtRunner (dbt's own selector, after a project
    parse): unique ids."""
    import io
    from contextlib import redirect_stdout

    from dbt.cli.main import dbtRunner

    args = ["ls", "--resource-type", "model", "--output", "json", "--output-keys", "unique_id",
            "--quiet", "--no-write-json", "--project-dir", str(settings.project_dir)]
    args += ["--profiles-dir", str(settings.resolved_profiles_dir)]
    if settings.profile:
        args += ["--profile", settings.profile]
    if settings.target:
        args += ["--target", settings.target]
    if settings.target_path:
        args += ["--target-path", str(settings.target_path)]
    if settings.vars:
        args += ["--vars", json.dumps(dict(settings.vars))]
    for item in select:
        args += ["--select", item]
    for item in exclude:
        args += ["--exclude", item]
    with redirect_stdout(io.StringIO()):
        result = dbtRunner().invoke(args)
    if not result.success:
        detail = f": {result.exception}" if result.exception else ""
        raise ProjectError(f"dbt could not resolve {_selection(select, exclude)}{detail}")
    ids: set[str] = set()
    for line in result.result if isinstance(result.result, list) else []:
        try:
            ids.add(json.loads(line)["unique_id"])
        except (ValueError, KeyError, TypeError):
            continue
    return ids
