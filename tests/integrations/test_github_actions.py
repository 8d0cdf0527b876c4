"""The GitHub Actions example, run: its `run:` steps in order, as GitHub would run them for a
pull request and for a push to main, in a DuckDB dbt project against the emulator. The
pull request plans and writes nothing; the push syncs; both leave the results file the
workflow uploads and a Markdown table in $GITHUB_STEP_SUMMARY, and never show the key."""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from stripe_emulator import start_emulator
from stripe_emulator.handle import EmulatorHandle
from tests.customers import SYNC_BY_METADATA, rows
from tests.integration.dbtproj import REPO_ROOT, CliResult, DbtProject, new_project

WORKFLOW = REPO_ROOT / "examples" / "github-actions" / "stripe-sync.yml"
API_KEY = "sk_test_ghactions0001SecretPart"
# What `${{ ... }}` stands for in the test: an unset secret is empty, as on GitHub.
EXPRESSIONS = {
    "secrets.STRIPE_API_KEY": API_KEY,
    "secrets.SLACK_WEBHOOK_URL": "",
    "secrets.WAREHOUSE_PASSWORD": "",
}
# The `if:` conditions the workflow uses, for an event.
CONDITIONS: dict[str, Callable[[str], bool]] = {
    "github.event_name == 'pull_request'": lambda event: event == "pull_request",
    "github.event_name != 'pull_request'": lambda event: event != "pull_request",
    "always()": lambda event: True,
}
# Steps the test does not run: the actions (GitHub's, not bash), and the install (the test
# environment has the packages already).
ACTIONS = {"checkout": "actions/checkout", "setup-python": "actions/setup-python",
           "upload-results": "actions/upload-artifact"}
SKIPPED_RUN_STEPS = {"install"}
STEP_KEYS = {"id", "name", "if", "run", "env", "uses", "with"}  # what the test interprets


def substitute(text: str) -> str:
    def value(match: re.Match[str]) -> str:
        expression = match.group(1)
        assert expression in EXPRESSIONS, f"the test does not know ${{{{ {expression} }}}}"
        return EXPRESSIONS[expression]

    return re.sub(r"\$\{\{\s*(.*?)\s*\}\}", value, text)


def exports(env: Mapping[str, Any]) -> str:
    return "".join(f"export {name}={shlex.quote(substitute(str(v)))}\n"
                   for name, v in env.items())


def workflow_script(job: Mapping[str, Any], event: str) -> tuple[str, set[str]]:
    """The job's run steps for `event` as one bash script (each step a `bash -e` subshell
    with its env, as GitHub runs it), and the ids of the steps it leaves out."""
    script = ["set -e", exports(job.get("env", {}))]
    skipped = set()
    for step in job["steps"]:
        assert set(step) <= STEP_KEYS, f"step {step.get('id')}: the test ignores {set(step)}"
        if "uses" in step or step["id"] in SKIPPED_RUN_STEPS:
            skipped.add(step["id"])
            continue
        condition = step.get("if")
        if condition is not None and not CONDITIONS[condition](event):
            continue
        script.append(f"echo '::group::{step['id']}'\n(\n{exports(step.get('env', {}))}"
                      f"{substitute(step['run'])}\n)")
    return "\n".join(script), skipped


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorHandle]:
    with start_emulator(seed=11) as handle:
        yield handle


def run_workflow(job: Mapping[str, Any], event: str, project: DbtProject,
                 env: Mapping[str, str]) -> CliResult:
    script, skipped = workflow_script(job, event)
    assert skipped == set(ACTIONS) | SKIPPED_RUN_STEPS
    proc = subprocess.run(["bash", "-c", script], cwd=project.root, env=dict(env),
                          capture_output=True, text=True, timeout=600)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def test_the_example_workflow_plans_pull_requests_and_syncs_main(
        tmp_path: Path, emulator: EmulatorHandle) -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(triggers) == {"push", "pull_request", "schedule", "workflow_dispatch"}
    assert triggers["push"] == {"branches": ["main"]}
    (job,) = workflow["jobs"].values()
    steps = {step["id"]: step for step in job["steps"]}
    assert {i: steps[i]["uses"].split("@")[0] for i in ACTIONS} == ACTIONS
    upload = steps["upload-results"]
    assert upload["if"] == "always()"

    emulator.reset()
    project = new_project(tmp_path / "repo")
    project.write_seed("crm", rows(3))
    project.write_model("stripe_customers", "select * from {{ ref('crm') }}",
                        sync=SYNC_BY_METADATA)
    summary = tmp_path / "step_summary.md"
    env = project.env(STRIPE_API_BASE=emulator.url, GITHUB_STEP_SUMMARY=str(summary))
    uploaded = project.root / upload["with"]["path"]

    pull_request = run_workflow(job, "pull_request", project, env)
    assert pull_request.code == 0, pull_request.stdout + pull_request.stderr
    assert emulator.customers() == []
    assert project.results_file()["command"] == "plan" and uploaded.exists()
    planned = summary.read_text()
    assert "### dbt-stripe-sync plan (test_project): succeeded, exit 0" in planned
    assert "| stripe_customers | success | 3 | 3 |" in planned
    assert "nothing was written to Stripe" in planned

    push = run_workflow(job, "push", project, env)
    assert push.code == 0, push.stdout + push.stderr
    assert len(emulator.customers()) == 3
    assert project.results_file()["totals"]["created"] == 3 and uploaded.exists()
    synced = summary.read_text()[len(planned):]
    assert "### dbt-stripe-sync sync (test_project): succeeded, exit 0" in synced
    assert "| model | status | created | rows |" in synced
    assert "| stripe_customers | success | 3 | 3 |" in synced
    assert "| **total** | | **3** | **3** |" in synced
    assert '"command": "sync"' in push.stdout  # --output json, in the step's log

    secret = API_KEY.split("_", 2)[2]
    for text in (pull_request.stdout, pull_request.stderr, push.stdout, push.stderr,
                 summary.read_text(), uploaded.read_text()):
        assert secret not in text
