"""The Airflow operator, run by `dag.test()` on a DuckDB project and the emulator: after a
task group that builds the dbt project (where a Cosmos `DbtTaskGroup` goes), in-process and
through another environment's `dbt-stripe-sync`; the results document is its XCom, a re-run
writes nothing, a failing row fails the task with the counts, and the key stays out of logs,
XCom and rendered fields.

Airflow installs beside dbt-core in the test environment, but each DAG runs in a child
interpreter of it, with AIRFLOW_HOME in a temporary directory: Airflow configures logging
and its settings globally on import, which must not leak into the other tests of a pytest
worker (this module never imports it). Airflow 3's `dag.test()` takes a DAG from a bundle,
so the DAG is a file in the dags folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stripe_emulator import start_emulator
from stripe_emulator.handle import EmulatorHandle
from tests.customers import SYNC_BY_METADATA, row, rows
from tests.integration.dbtproj import BIN, DbtProject, new_project

CONNECTION_KEY = "sk_test_airflowConn0SecretPart"
ENV_KEY = "sk_test_airflowEnv00SecretPart"
FAST = {"max_rps": 1000, "max_endpoint_rps": 1000}
RESULT_PREFIX = "DAG_TEST_RESULT "

DAG_FILE = textwrap.dedent('''
    """The test DAGs: the operator, after a task group running dbt (a Cosmos DbtTaskGroup's
    place) when asked, and a task reading its XCom. Settings come from the environment;
    `python <this file>` runs the DAGs it names in order with dag.test(), in one process
    (Airflow's start costs more than a sync)."""
    import json
    import os

    import pendulum
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG, TaskGroup, task

    from dbt_stripe_activation.integrations.airflow import StripeSyncOperator

    CONFIG = json.loads(os.environ["STRIPE_SYNC_TEST_DAGS"])
    DAGS = {}

    for dag_id, config in CONFIG["dags"].items():
        with DAG(dag_id, schedule=None, catchup=False,
                 start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
            sync = StripeSyncOperator(task_id="stripe_sync", **config["operator"])

            @task
            def created(document):
                return document["totals"]["created"]

            created(sync.output)
            if config.get("dbt"):
                with TaskGroup("dbt") as dbt_group:
                    BashOperator(task_id="run", bash_command=config["dbt"])
                dbt_group >> sync
        DAGS[dag_id] = dag

    if __name__ == "__main__":
        from sqlalchemy import select
        from airflow.models.renderedtifields import RenderedTaskInstanceFields as Rendered
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        for dag_id in CONFIG["runs"]:
            run = DAGS[dag_id].test()
            with create_session() as session:
                tasks = {ti.task_id: str(ti.state)
                         for ti in run.get_task_instances(session=session)}
                xcoms = {f"{x.task_id}:{x.key}": XComModel.deserialize_value(x)
                         for x in session.scalars(select(XComModel).where(
                             XComModel.dag_id == dag_id, XComModel.run_id == run.run_id))}
                rendered = {r.task_id: r.rendered_fields
                            for r in session.scalars(select(Rendered).where(
                                Rendered.dag_id == dag_id, Rendered.run_id == run.run_id))}
            print("DAG_TEST_RESULT " + json.dumps(
                {"state": str(run.state), "tasks": tasks, "xcoms": xcoms,
                 "rendered": rendered}, default=str), flush=True)
''')


@dataclass
class DagRun:
    state: str
    tasks: dict[str, str]
    xcoms: dict[str, Any]
    rendered: dict[str, Any]

    @property
    def document(self) -> dict[str, Any]:
        return self.xcoms["stripe_sync:return_value"]


@dataclass
class DagTest:
    runs: list[DagRun]
    logs: str  # the process's output and the task log files

    def assert_key_kept_out(self, key: str) -> None:
        assert key not in self.logs
        for run in self.runs:
            assert key not in json.dumps(run.xcoms) and key not in json.dumps(run.rendered)


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorHandle]:
    with start_emulator(seed=11) as handle:
        yield handle


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> DbtProject:
    project = new_project(tmp_path_factory.mktemp("airflow") / "proj")
    project.write_seed("crm", rows(3))
    project.write_seed("crm_bad", [row(10), {**row(11), "email": "not an email"}])
    project.write_model("stripe_customers", "select * from {{ ref('crm') }}",
                        sync=SYNC_BY_METADATA)
    project.write_model("stripe_bad_customers", "select * from {{ ref('crm_bad') }}",
                        sync=SYNC_BY_METADATA)
    project.build()
    return project


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A metadata database of its own (SQLite) and the dags folder holding the test DAG."""
    home = tmp_path_factory.mktemp("airflow_home")
    (home / "dags").mkdir()
    (home / "dags" / "stripe_sync_test.py").write_text(DAG_FILE)
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=_airflow_env(home),
                   capture_output=True, text=True, check=True, timeout=300)
    return home


def _airflow_env(home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(base if base is not None else os.environ)
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="false",
               AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
               AIRFLOW__CORE__UNIT_TEST_MODE="false")
    return env


def run_dags(home: Path, project: DbtProject, emulator: EmulatorHandle,
             dags: Mapping[str, Mapping[str, Any]], runs: list[str],
             **environment: str) -> DagTest:
    """Define `dags` (dag id: operator arguments, and `dbt`: a dbt command run by a task
    group before it), then `dag.test()` each of `runs` in order, in one process whose
    environment, the worker's, is the project's (dbt settings, the emulator) plus
    `environment`."""
    config = {"runs": runs, "dags": {
        dag_id: {"operator": {k: v for k, v in dag.items() if k != "dbt"},
                 "dbt": f"cd {project.root} && {BIN / 'dbt'} {dag['dbt']}" if "dbt" in dag
                 else None}
        for dag_id, dag in dags.items()}}
    env = _airflow_env(home, project.env(STRIPE_API_BASE=emulator.url, **environment))
    env["STRIPE_SYNC_TEST_DAGS"] = json.dumps(config)
    proc = subprocess.run([sys.executable, str(home / "dags" / "stripe_sync_test.py")],
                          cwd=project.root, env=env, capture_output=True, text=True,
                          timeout=600)
    results = [json.loads(line[len(RESULT_PREFIX):]) for line in proc.stdout.splitlines()
               if line.startswith(RESULT_PREFIX)]
    assert proc.returncode == 0 and len(results) == len(runs), (
        f"dag.test() failed:\n{proc.stdout}\n{proc.stderr}")
    task_logs = "\n".join(p.read_text(errors="replace")
                          for p in (home / "logs").rglob("*") if p.is_file())
    return DagTest(runs=[DagRun(**result) for result in results],
                   logs="\n".join((proc.stdout, proc.stderr, task_logs)))


def test_in_process_after_a_task_group_pushes_the_results_document(
        airflow_home: Path, project: DbtProject, emulator: EmulatorHandle) -> None:
    """The key is an Airflow Connection's password, put into the sync's environment only;
    the same DAG run twice: the second run writes nothing. A user error fails the task with
    the CLI's message."""
    emulator.reset()
    dag = {"select": "stripe_customers", "target": "{{ params.target }}",
           "params": {"target": "duckdb"}, "stripe_conn_id": "stripe_test",
           "dbt": "run --select stripe_customers --target duckdb", **FAST}
    unknown = {"select": "no_such_model", "stripe_conn_id": "stripe_test"}
    connection = json.dumps({"conn_type": "generic", "password": CONNECTION_KEY})

    test = run_dags(airflow_home, project, emulator, {"in_process": dag, "unknown": unknown},
                    ["in_process", "in_process", "unknown"],
                    AIRFLOW_CONN_STRIPE_TEST=connection)
    first, again, refused = test.runs
    assert first.state == "success", test.logs[-5000:]
    assert first.tasks == {"dbt.run": "success", "stripe_sync": "success",
                           "created": "success"}
    document = first.document
    assert document["command"] == "sync" and document["exit_code"] == 0
    assert document["totals"]["created"] == 3
    assert [(m["model"], m["counts"]["created"]) for m in document["models"]] == [
        ("stripe_customers", 3)]
    assert first.xcoms["created:return_value"] == 3  # a downstream task reads the XCom
    assert first.rendered["stripe_sync"]["target"] == "duckdb"  # templated
    assert "stripe_customers (success): created 3; 1 Stripe reads, 3 writes" in test.logs

    assert again.state == "success"
    model = again.document["models"][0]
    assert model["counts"]["unchanged"] == 3 and model["stripe_writes"] == 0
    assert again.xcoms["created:return_value"] == 0
    assert sorted(c["metadata"]["crm_id"] for c in emulator.customers()) == [
        "c00000", "c00001", "c00002"]

    assert refused.tasks == {"stripe_sync": "failed", "created": "upstream_failed"}
    error = refused.xcoms["stripe_sync:results"]
    assert (error["error_type"], error["exit_code"]) == ("ConfigError", 2)
    assert "dbt-stripe-sync sync exited 2: ConfigError:" in test.logs
    assert "no_such_model" in error["error"]
    test.assert_key_kept_out(CONNECTION_KEY)


def test_executable_of_another_environment_fails_the_task_on_a_failing_row(
        airflow_home: Path, project: DbtProject, emulator: EmulatorHandle) -> None:
    """`sync_executable` runs the dbt environment's `dbt-stripe-sync --output json`; the key
    is the worker's STRIPE_API_KEY. A row Stripe would refuse fails the task, with the
    document in XCom all the same; within max_failed_pct the re-run passes, writing
    nothing."""
    emulator.reset()
    strict = {"select": ["stripe_bad_customers"], "project_dir": str(project.root),
              "manifest": str(project.root / "target" / "manifest.json"), "target": "duckdb",
              "sync_executable": str(BIN / "dbt-stripe-sync"), **FAST}
    dags = {"strict": strict, "lenient": {**strict, "max_failed_pct": 50}}

    test = run_dags(airflow_home, project, emulator, dags, ["strict", "lenient"],
                    STRIPE_API_KEY=ENV_KEY)
    failed, lenient = test.runs
    assert failed.state == "failed"
    assert failed.tasks == {"stripe_sync": "failed", "created": "upstream_failed"}
    assert "stripe_sync:return_value" not in failed.xcoms
    document = failed.xcoms["stripe_sync:results"]  # for a task with trigger_rule all_done
    assert document["exit_code"] == 1
    assert (document["totals"]["created"], document["totals"]["rejected"]) == (1, 1)
    assert document["models"][0]["rejected"][0]["key"] == "c00011"
    assert "exited 1: 1 row(s) rejected, failed or uncertain" in test.logs
    assert "(created 1, rejected 1)" in test.logs
    assert "stripe_bad_customers rejected 'c00011'" in test.logs

    assert lenient.state == "success"
    model = lenient.document["models"][0]
    assert (model["counts"]["unchanged"], model["counts"]["rejected"]) == (1, 1)
    assert model["stripe_writes"] == 0
    assert [c["metadata"]["crm_id"] for c in emulator.customers()] == ["c00010"]
    test.assert_key_kept_out(ENV_KEY)


def test_operator_needs_no_dbt_with_an_executable(tmp_path: Path) -> None:
    """In Airflow's own environment (no dbt, no Stripe SDK) the operator imports and builds
    the command line; the in-process mode says what is missing. Importing the package never
    imports Airflow."""
    code = textwrap.dedent('''
        import json, sys

        class NoDbt:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("dbt", "stripe", "agate"):
                    raise ImportError(f"{name} is not installed here")

        import dbt_stripe_activation, dbt_stripe_activation.integrations
        print(json.dumps("airflow" in sys.modules))
        sys.meta_path.insert(0, NoDbt())
        from airflow.exceptions import AirflowException
        from dbt_stripe_activation.integrations.airflow import StripeSyncOperator

        op = StripeSyncOperator(task_id="s", select=["a", "tag:b c"], exclude="d",
                                project_dir="/p", vars={"day": 1}, full_resync=True,
                                allow_live=False, max_failed_pct=5, retries=2,
                                sync_executable="/venvs/stripe/bin/dbt-stripe-sync")
        print(json.dumps(op._arguments()))
        print(json.dumps(op.retries))
        op.sync_executable = None
        try:
            op._run_in_process({})
        except AirflowException as exc:
            print(json.dumps(str(exc)))
        for bad in ({"command": "reset"}, {"env": {"STRIPE_API_KEY": "x"}}):
            try:
                StripeSyncOperator(task_id="t", **bad)
            except ValueError as exc:
                print(json.dumps(str(exc)))
    ''')
    env = _airflow_env(tmp_path)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    imported, args, retries, missing, bad_command, bad_env = (
        json.loads(line) for line in proc.stdout.splitlines()[-6:])
    assert imported is False
    assert args == ["/venvs/stripe/bin/dbt-stripe-sync", "sync", "--output", "json",
                    "--project-dir", "/p", "--vars", '{"day": 1}', "--select", "a",
                    "--select", "tag:b c", "--exclude", "d", "--api-key-env",
                    "STRIPE_API_KEY", "--full-resync", "--max-failed-pct", "5"]
    assert retries == 2
    assert "dbt-core is not importable" in missing and "sync_executable" in missing
    assert "command must be one of sync, plan" in bad_command
    assert "env must not hold STRIPE_API_KEY" in bad_env
