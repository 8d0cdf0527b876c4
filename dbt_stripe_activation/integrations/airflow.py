"""An Airflow operator that syncs a selection into Stripe (`pip install
"dbt-stripe-activation[airflow]"`), typically after the Cosmos task group that built it.

    DbtTaskGroup(group_id="dbt", ...) >> StripeSyncOperator(task_id="stripe_sync",
                                                           project_dir=DBT_PROJECT,
                                                           select="tag:stripe")

The results document (as `--output json` prints it) is the task's return value, so XCom;
a run that is not ok fails the task with the counts. Two ways to run, as Cosmos runs dbt:
in-process through the Python API (dbt and this package importable by Airflow), or the
`dbt-stripe-sync` of another virtualenv (`sync_executable=`), whose JSON is parsed. The
second needs no dbt here: dbt and this package's pipeline are imported only by the first.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from airflow.exceptions import AirflowException

try:  # Airflow 3: the Task SDK
    from airflow.sdk import BaseHook, BaseOperator
    from airflow.sdk.log import mask_secret
except ImportError:  # Airflow 2.10+
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef,attr-defined]
    from airflow.models import BaseOperator  # type: ignore[no-redef,assignment]
    from airflow.utils.log.secrets_masker import mask_secret  # type: ignore[no-redef]

from ..results import PROBLEM_OUTCOMES, problem_lines

__all__ = ["StripeSyncOperator"]

COMMANDS = ("sync", "plan")
_PROBLEMS_SHOWN = 5  # rows named in a failure's message
# The path options and the CLI's flags for them.
_PATH_FLAGS = {"project_dir": "--project-dir", "profiles_dir": "--profiles-dir",
               "target_path": "--target-path", "manifest": "--manifest"}


def _run_option_names() -> frozenset[str]:
    """The API's run options (`RunRequest`, which imports no dbt), so a new CLI option is
    accepted here without an edit; each is the flag of the same name in kebab case."""
    from ..context import RunRequest

    return frozenset(RunRequest.__dataclass_fields__) - {"command"}


class StripeSyncOperator(BaseOperator):
    """Run `dbt-stripe-sync sync` (or `plan`) on a dbt selection; return the results
    document; fail on exit code 1 (rows failed beyond `max_failed_pct`) or 2 (an error).

    The Stripe key never passes through a template, an argument or XCom: it is read at
    run time from the worker's environment variable `api_key_env`, or from the password
    of the Airflow Connection `stripe_conn_id`, which is put into that variable for the
    sync only. Either way it is masked in the task's logs.
    """

    template_fields: Sequence[str] = (
        "select", "exclude", "project_dir", "profiles_dir", "profile", "target",
        "target_path", "manifest", "vars", "api_base", "env", "sync_executable",
        "run_options",
    )
    template_fields_renderers = {"vars": "json", "env": "json", "run_options": "json"}
    ui_color = "#635bff"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        command: str = "sync",
        select: str | Sequence[str] | None = None,
        exclude: str | Sequence[str] | None = None,
        project_dir: str | os.PathLike[str] | None = None,
        profiles_dir: str | os.PathLike[str] | None = None,
        profile: str | None = None,
        target: str | None = None,
        target_path: str | os.PathLike[str] | None = None,
        manifest: str | os.PathLike[str] | None = None,
        vars: str | Mapping[str, Any] | None = None,
        api_key_env: str = "STRIPE_API_KEY",
        stripe_conn_id: str | None = None,
        api_base: str | None = None,
        sync_executable: str | None = None,
        env: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        """`sync_executable` runs that `dbt-stripe-sync` (e.g. another virtualenv's
        `bin/dbt-stripe-sync`) instead of the Python API. `env` is added to the sync's
        environment (e.g. the warehouse's DBT_ variables), never the Stripe key. Every
        other keyword that is a run option of `sync()` (max_failed_pct, full_resync,
        lookup, max_rps, ...) goes to the sync; the rest to BaseOperator."""
        names = _run_option_names()
        run_options = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
        super().__init__(**kwargs)
        if command not in COMMANDS:
            raise ValueError(f"command must be one of {', '.join(COMMANDS)}, not {command!r}")
        self.command = command
        self.select = select
        self.exclude = exclude
        self.project_dir = project_dir
        self.profiles_dir = profiles_dir
        self.profile = profile
        self.target = target
        self.target_path = target_path
        self.manifest = manifest
        self.vars = vars
        self.api_key_env = api_key_env
        self.stripe_conn_id = stripe_conn_id
        self.api_base = api_base
        self.sync_executable = sync_executable
        self.env = dict(env) if env is not None else None
        self.run_options = run_options
        self._check_env()
        self._process: subprocess.Popen[str] | None = None

    def _check_env(self) -> None:
        if isinstance(self.env, Mapping) and self.api_key_env in self.env:
            raise ValueError(
                f"env must not hold {self.api_key_env}: rendered template fields are stored "
                "and shown in the UI. Leave the key in the worker's environment, or name an "
                "Airflow Connection holding it as its password with stripe_conn_id."
            )

    # --- running ------------------------------------------------------------------------

    def execute(self, context: Any) -> dict[str, Any]:
        self._check_env()
        environ = {str(k): str(v) for k, v in (self.env or {}).items()}
        key = self._api_key()
        if key is not None:
            environ[self.api_key_env] = key
        if self.sync_executable:
            document = self._run_executable(environ)
        else:
            document = self._run_in_process(environ)
        self._log_summary(document)
        code = int(document.get("exit_code", 2))
        if code != 0:
            # A downstream task with trigger_rule all_done still finds what happened.
            context["ti"].xcom_push(key="results", value=document)
            raise AirflowException(self._failure_message(document, code))
        return document

    def _api_key(self) -> str | None:
        """The key from the Connection, else None (the sync reads the worker's variable);
        masked in the logs either way."""
        if self.stripe_conn_id:
            key = (BaseHook.get_connection(self.stripe_conn_id).password or "").strip()
            if not key:
                raise AirflowException(f"The Airflow Connection {self.stripe_conn_id!r} "
                                       "has no password: put the Stripe key there.")
        else:
            key = os.environ.get(self.api_key_env, "").strip()
        if key:
            mask_secret(key)
        return key if self.stripe_conn_id else None

    def _project_options(self) -> dict[str, Any]:
        options = {
            "project_dir": self.project_dir, "profiles_dir": self.profiles_dir,
            "profile": self.profile, "target": self.target, "target_path": self.target_path,
            "manifest": self.manifest, "vars": self.vars, "select": self.select,
            "exclude": self.exclude, "api_base": self.api_base,
        }
        return {k: v for k, v in options.items() if v not in (None, "", [], ())}

    def _run_in_process(self, environ: Mapping[str, str]) -> dict[str, Any]:
        try:
            import dbt.version  # noqa: F401  (the pipeline's dependency, checked first)
        except ImportError as exc:
            raise AirflowException(
                "dbt-core is not importable in Airflow's environment: install "
                "dbt-stripe-activation with your dbt adapter here, or set sync_executable= "
                "to the dbt-stripe-sync of the virtualenv that has them."
            ) from exc
        from .. import api
        from ..errors import SyncError
        from ..stripe_api import redact

        run = api.sync if self.command == "sync" else api.plan
        with _environment(environ):
            try:
                result = run(**self._project_options(), api_key_env=self.api_key_env,
                             output="none", **self.run_options)
            except SyncError as exc:  # the document `--output json` prints for it
                return {"error": redact(str(exc)), "error_type": type(exc).__name__,
                        "exit_code": exc.exit_code}
        return json.loads(json.dumps(dict(result.document), default=str))

    def _arguments(self) -> list[str]:
        """`dbt-stripe-sync <command> --output json` and the flags of the options."""
        assert self.sync_executable
        args = [str(self.sync_executable), self.command, "--output", "json"]
        options = self._project_options()
        for name, flag in _PATH_FLAGS.items():
            if name in options:
                args += [flag, os.fspath(options[name])]
        for name in ("profile", "target", "api_base"):
            if name in options:
                args += ["--" + name.replace("_", "-"), str(options[name])]
        if "vars" in options:
            value = options["vars"]
            args += ["--vars", value if isinstance(value, str) else json.dumps(dict(value))]
        for name in ("select", "exclude"):
            value = options.get(name)
            for item in [value] if isinstance(value, str) else list(value or ()):
                args += [f"--{name}", str(item)]
        args += ["--api-key-env", self.api_key_env]
        for name, value in sorted(self.run_options.items()):
            flag = "--" + name.replace("_", "-")
            if isinstance(value, bool):
                args += [flag] if value else []
            elif value is not None:
                args += [flag, str(value)]
        return args

    def _run_executable(self, environ: Mapping[str, str]) -> dict[str, Any]:
        args = self._arguments()
        self.log.info("Running %s", " ".join(args))
        try:
            self._process = process = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env={**os.environ, **environ},
            )
        except OSError as exc:
            raise AirflowException(f"Cannot run sync_executable {args[0]!r}: {exc}") from exc
        stderr: list[str] = []
        reader = threading.Thread(target=self._relay, args=(process, stderr), daemon=True)
        reader.start()
        assert process.stdout is not None
        stdout = process.stdout.read()
        code = process.wait()
        reader.join()
        self._process = None
        document = _parse_document(stdout)
        if document is None:
            tail = "".join(stderr[-20:]).strip() or stdout.strip()[-2000:]
            raise AirflowException(f"{args[0]} exited {code} without a results document:\n"
                                   f"{tail}")
        document.setdefault("exit_code", code)
        return document

    def _relay(self, process: subprocess.Popen[str], lines: list[str]) -> None:
        """The sync's stderr (warnings, dbt's messages) into the task log, as it comes."""
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            self.log.info("%s", line.rstrip())

    def on_kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()

    # --- reporting ----------------------------------------------------------------------

    def _log_summary(self, document: Mapping[str, Any]) -> None:
        for model in document.get("models") or ():
            counts = ", ".join(f"{n} {c}" for n, c in (model.get("counts") or {}).items() if c)
            self.log.info("%s (%s): %s; %s Stripe reads, %s writes", model.get("model"),
                          model.get("status"), counts or "nothing to do",
                          model.get("stripe_reads"), model.get("stripe_writes"))

    def _failure_message(self, document: Mapping[str, Any], code: int) -> str:
        totals = {n: c for n, c in (document.get("totals") or {}).items() if c}
        counts = ", ".join(f"{n} {c}" for n, c in totals.items()) or "no rows"
        head = f"dbt-stripe-sync {self.command} exited {code}"
        if document.get("error"):
            head += f": {document.get('error_type') or 'error'}: {document['error']}"
        elif code == 1:
            failed = sum(totals.get(n, 0) for n in PROBLEM_OUTCOMES)
            limit = self.run_options.get("max_failed_pct", 0)
            head += (f": {failed} row(s) rejected, failed or uncertain, beyond "
                     f"max_failed_pct={limit}")
        lines = [f"{head} ({counts})"]
        for model in document.get("models") or ():
            if model.get("error"):
                lines.append(f"  {model.get('model')}: {model['error']}")
            lines += problem_lines(model, _PROBLEMS_SHOWN, label=f"{model.get('model')} ")
        return "\n".join(lines)


def _parse_document(stdout: str) -> dict[str, Any] | None:
    """The JSON document `--output json` prints; anything printed before it is skipped."""
    text = stdout.strip()
    starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n" and text[i + 1:i + 2] == "{"]
    for start in starts:
        try:
            value = json.loads(text[start:])
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


@contextlib.contextmanager
def _environment(overrides: Mapping[str, str]) -> Iterator[None]:
    """The sync's variables for the in-process run only; the worker's are put back."""
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
