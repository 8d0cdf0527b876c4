"""The Python API in-process, as the integrations call it: `sync`, `plan`, `check` and
`reset_state` against a DuckDB project and the emulator, returning typed results; user
errors raise the CLI's errors; the package import stays light."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stripe_emulator import start_emulator
from stripe_emulator.handle import EmulatorHandle
from tests.customers import SYNC_BY_METADATA, rows
from tests.integration.dbtproj import DbtProject, new_project

FAST = {"max_rps": 1000, "max_endpoint_rps": 1000}


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorHandle]:
    with start_emulator(seed=5) as handle:
        yield handle


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            emulator: EmulatorHandle) -> DbtProject:
    emulator.reset()
    project = new_project(tmp_path / "proj")
    project.write_seed("crm", rows(3))
    project.write_model("stripe_customers", "select * from {{ ref('crm') }}",
                        sync=SYNC_BY_METADATA)
    project.write_model("not_synced", "select 1 as x")
    project.build()
    for name, value in project.env(STRIPE_API_KEY="sk_test_api",
                                   STRIPE_API_BASE=emulator.url).items():
        monkeypatch.setenv(name, value)
    return project


def test_sync_then_plan_return_typed_results(project: DbtProject,
                                             emulator: EmulatorHandle) -> None:
    from dbt_stripe_activation import ModelRun, RunResult, plan, sync

    first = sync(project_dir=project.root, select="stripe_customers", target="duckdb", **FAST)
    assert isinstance(first, RunResult) and first.ok and first.command == "sync"
    model = first.model("stripe_customers")
    assert isinstance(model, ModelRun)
    assert (model.object, model.status, model.counts["created"]) == ("customer", "success", 3)
    assert first.totals["created"] == 3 and model.stripe_writes == 3
    assert len(emulator.customers()) == 3
    # The result is the results file, as CI reads it.
    assert json.loads(first.results_path.read_text()) == dict(first.document)

    again = plan(project_dir=str(project.root), select=["stripe_customers"])
    assert again.dry_run and again.ok
    assert again.model("stripe_customers").counts["unchanged"] == 3
    assert again.model("stripe_customers").stripe_writes == 0
    with pytest.raises(KeyError, match="not_synced"):
        again.model("not_synced")


def test_rows_that_fail_do_not_raise(project: DbtProject, emulator: EmulatorHandle) -> None:
    from dbt_stripe_activation import sync

    project.write_seed("crm", [*rows(2), {**rows(3)[2], "email": "not an email"}])
    project.build()
    result = sync(project_dir=project.root, **FAST)
    assert result.exit_code == 1 and not result.ok
    model = result.model("stripe_customers")
    assert model.counts["rejected"] == 1 and model.problems == 1
    assert result.document["models"][0]["rejected"][0]["key"] == "c00002"

    lenient = sync(project_dir=project.root, max_failed_pct=50, **FAST)
    assert lenient.exit_code == 0


def test_user_errors_raise_the_cli_errors(project: DbtProject) -> None:
    from dbt_stripe_activation import sync
    from dbt_stripe_activation.errors import ConfigError, StripeConnectionError

    with pytest.raises(ConfigError, match="matches no model"):
        sync(project_dir=project.root, select="no_such_model")
    with pytest.raises(StripeConnectionError, match="MY_KEY"):
        sync(project_dir=project.root, api_key_env="MY_KEY")
    with pytest.raises(TypeError, match="unknown option.*max_rsp"):
        sync(project_dir=project.root, max_rsp=5)


def test_check_and_reset_state(project: DbtProject, emulator: EmulatorHandle) -> None:
    from dbt_stripe_activation import check, reset_state, sync

    checked = check(project_dir=project.root)
    assert checked.ok and checked.stripe["ok"] and checked.warehouse["ok"]
    assert "sk_test_api" not in json.dumps(checked.as_document())
    sync(project_dir=project.root, **FAST)
    cleared = reset_state(project_dir=project.root, select="stripe_customers")
    assert dict(cleared.cleared) == {"stripe_customers": 3}


def test_output_none_prints_nothing(project: DbtProject,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from dbt_stripe_activation import plan

    plan(project_dir=project.root)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    plan(project_dir=project.root, output="json")
    assert json.loads(capsys.readouterr().out)["command"] == "plan"


def test_import_is_light_and_defines_no_plugins() -> None:
    """dbt imports every `dbt_*` module on each command: the import must load nothing
    heavy, and `plugins` (which dbt would take for adapter plugins) must not exist."""
    code = ("import sys, dbt_stripe_activation as d; "
            "heavy = [m for m in sys.modules if m.split('.')[0] in "
            "('dbt', 'stripe', 'rich', 'click', 'agate', 'yaml')]; "
            "print(heavy, hasattr(d, 'plugins'), callable(d.sync))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[] False True"


def test_exposures_returns_the_document_and_writes_it(project: DbtProject) -> None:
    from dbt_stripe_activation import exposures

    document = exposures(project_dir=project.root, write="models/stripe_exposures.yml",
                         owner="data@example.com")
    [exposure] = document["exposures"]
    assert exposure["name"] == "stripe_sync_stripe_customers"
    assert exposure["owner"] == {"email": "data@example.com"}
    written = (project.root / "models" / "stripe_exposures.yml").read_text()
    assert "stripe_sync_stripe_customers" in written and "ref('stripe_customers')" in written
