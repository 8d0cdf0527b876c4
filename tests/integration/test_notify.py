"""Alerts and CI summaries: a run with rows rejected beyond --max-failed-pct, a model that
errors and a run refused before it starts post one Slack-compatible message to the webhook
(a local HTTP server); a clean run posts nothing; a webhook that fails only warns; every run
appends its table to $GITHUB_STEP_SUMMARY. The key never leaves the process."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stripe_emulator.handle import EmulatorHandle
from tests.customers import SYNC_BY_METADATA, rows
from tests.integration import stripe_fixtures
from tests.integration.dbtproj import DbtProject, new_project
from tests.integration.stripe_fixtures import Answer, ScriptedStripe
from tests.servers import free_port

API_KEY = "sk_test_notify0001SecretPart"
SECRET = API_KEY.split("_", 2)[2]
FAST = {"max_rps": 1000, "max_endpoint_rps": 1000}
HOOK_PATH = "/services/T0/B0/s3cr3t"  # a webhook URL's path is its secret

emulator = stripe_fixtures.emulator
# The scripted server of the gateway's tests is the webhook: it records each request and
# answers as scripted (200 once the script is empty).
webhook_server = stripe_fixtures.scripted


@pytest.fixture
def webhook(webhook_server: ScriptedStripe) -> ScriptedStripe:
    webhook_server.answer()
    return webhook_server


def hook_url(server: ScriptedStripe) -> str:
    return server.url + HOOK_PATH


def posts(server: ScriptedStripe) -> list[dict[str, Any]]:
    assert all(seen.method == "POST" and seen.path == HOOK_PATH for seen in server.seen)
    return [json.loads(seen.body) for seen in server.seen]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory,
            emulator: EmulatorHandle) -> Iterator[DbtProject]:
    """Four customers, one with an invalid email: every sync rejects it (25% of the rows)."""
    project = new_project(tmp_path_factory.mktemp("notify") / "proj")
    project.write_seed("crm", [*rows(3), {**rows(4)[3], "email": "not an email"}])
    project.write_model("stripe_customers", "select * from {{ ref('crm') }}",
                        sync=SYNC_BY_METADATA)
    project.build()
    with pytest.MonkeyPatch.context() as env:
        for name, value in project.env(STRIPE_API_KEY=API_KEY,
                                       STRIPE_API_BASE=emulator.url).items():
            env.setenv(name, value)
        for name in ("GITHUB_STEP_SUMMARY", "DBT_STRIPE_SYNC_NOTIFY_WEBHOOK"):
            env.delenv(name, raising=False)
        yield project


def test_rows_beyond_the_threshold_post_one_alert(
        project: DbtProject, webhook: ScriptedStripe, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dbt_stripe_activation import sync

    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = sync(project_dir=project.root, notify_webhook=hook_url(webhook), **FAST)
    assert result.exit_code == 1
    (post,) = posts(webhook)
    title = ("dbt-stripe-sync sync (test_project): 1 of 4 rows rejected, failed or uncertain "
             "(beyond --max-failed-pct 0%), exit 1")
    assert post["text"] == title
    header, facts, models = post["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": title}}
    facts_text = facts["text"]["text"]
    assert f"*Run id:* `{result.run_id}`" in facts_text
    assert "*Command:* `dbt-stripe-sync sync`" in facts_text and "rejected 1" in facts_text
    assert f"*Results file:* `{result.results_path}`" in facts_text
    (field,) = models["fields"]
    assert field["text"].startswith("*stripe_customers* (partial)\n")
    body = webhook.seen[0].body
    assert SECRET not in body and "s3cr3t" not in body
    assert "c00003" not in body  # row keys (often emails) stay in the results file
    assert webhook.seen[0].headers["Content-Type"] == "application/json"
    assert "| stripe_customers | partial |" in summary.read_text()
    assert "| 1 | 4 |" in summary.read_text()


def test_a_clean_run_posts_nothing(project: DbtProject, webhook: ScriptedStripe) -> None:
    from dbt_stripe_activation import plan, sync

    assert sync(project_dir=project.root, notify_webhook=hook_url(webhook), max_failed_pct=50,
                **FAST).exit_code == 0
    assert plan(project_dir=project.root, notify_webhook=hook_url(webhook),
                max_failed_pct=50).exit_code == 0
    assert posts(webhook) == []


def test_a_model_error_posts_the_error(project: DbtProject, webhook: ScriptedStripe,
                                      emulator: EmulatorHandle) -> None:
    from dbt_stripe_activation import sync

    emulator.config(api_keys=["sk_test_another"])
    try:
        result = sync(project_dir=project.root, notify_webhook=hook_url(webhook),
                      full_resync=True, **FAST)
    finally:
        emulator.config(api_keys=None)
    assert result.exit_code == 2 and result.error
    (post,) = posts(webhook)
    assert post["text"].startswith("dbt-stripe-sync sync (test_project): failed, exit 2\n"
                                   "stripe_customers: Stripe refused the API key")
    error = post["blocks"][2]["text"]["text"]
    assert error.startswith("*Error:*\n```stripe_customers: Stripe refused the API key")
    assert SECRET not in webhook.seen[0].body


def test_a_run_refused_before_it_starts_posts_the_error(
        project: DbtProject, webhook: ScriptedStripe, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dbt_stripe_activation import sync
    from dbt_stripe_activation.errors import StripeConnectionError

    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    with pytest.raises(StripeConnectionError):
        sync(project_dir=project.root, notify_webhook=hook_url(webhook),
             api_key_env="NO_SUCH_KEY")
    (post,) = posts(webhook)
    assert post["text"] == (
        "dbt-stripe-sync sync (test_project): could not start (StripeConnectionError), "
        "exit 2\nNo Stripe API key: set NO_SUCH_KEY (e.g. export NO_SUCH_KEY=sk_test_...), "
        "or name another variable with --api-key-env.")
    assert "*Results file:* `none (the run did not start)`" in post["blocks"][1]["text"]["text"]
    assert "could not start (StripeConnectionError)" in summary.read_text()
    assert "No Stripe API key: set NO_SUCH_KEY" in summary.read_text()


@pytest.mark.parametrize(("url", "problem"), [
    ("ftp://hooks.example.com/x", "its scheme is 'ftp'"),
    ("hooks.slack.com/services/x", "it has no scheme"),
    ("https://", "it has no host"),
])
def test_an_invalid_webhook_is_a_config_error_before_any_call(
        project: DbtProject, emulator: EmulatorHandle, url: str, problem: str) -> None:
    from dbt_stripe_activation import sync
    from dbt_stripe_activation.errors import ConfigError

    emulator.reset(stats_only=True)
    with pytest.raises(ConfigError) as raised:
        sync(project_dir=project.root, notify_webhook=url)
    assert str(raised.value) == (  # never the URL: a webhook URL is a secret
        "The notify webhook (--notify-webhook or DBT_STRIPE_SYNC_NOTIFY_WEBHOOK) is not an "
        f"http(s) URL: {problem}. Give the incoming webhook's full URL, e.g. "
        "https://hooks.slack.com/services/T000/B000/XXXX, or leave it empty for no alerts.")
    assert emulator.stats()["requests_total"] == 0
    assert not (project.root / "target" / "stripe_sync_results.json").exists()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes connections and never answers: a webhook slower than any timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


@pytest.mark.parametrize("failure", ["500", "refused", "slow"])
def test_a_failing_webhook_only_warns(project: DbtProject, webhook: ScriptedStripe,
                                     silent_port: int, failure: str,
                                     monkeypatch: pytest.MonkeyPatch,
                                     caplog: pytest.LogCaptureFixture) -> None:
    from dbt_stripe_activation import notify, sync

    monkeypatch.setattr(notify, "TIMEOUT_SECONDS", 0.5)
    monkeypatch.setattr(notify, "BACKOFF_SECONDS", 0.05)
    webhook.answer(*[Answer(500)] * notify.ATTEMPTS)
    url = {"500": hook_url(webhook), "refused": f"http://127.0.0.1:{free_port()}/hook",
           "slow": f"http://127.0.0.1:{silent_port}/hook"}[failure]
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="dbt_stripe_activation"):
        result = sync(project_dir=project.root, notify_webhook=url, **FAST)
    assert result.exit_code == 1
    if failure == "500":
        assert len(webhook.seen) == notify.ATTEMPTS  # retried, then gave up
    (warning,) = [r.getMessage() for r in caplog.records if "notify webhook" in r.getMessage()]
    detail = {"500": "HTTP 500", "refused": "Connection refused", "slow": "timed out"}[failure]
    assert warning.startswith("The notify webhook at 127.0.0.1 did not take the alert (")
    assert detail in warning and "after 3 attempt(s)" in warning and "/hook" not in warning
    assert time.monotonic() - started < 60


def test_the_cli_takes_the_env_var_and_keeps_its_exit_code(
        project: DbtProject, webhook: ScriptedStripe, emulator: EmulatorHandle) -> None:
    """The environment variable turns alerts on; a webhook that refuses the message (a 4xx,
    not retried) warns on stderr, and stdout stays the JSON document."""
    sent = project.sync("--output", "json", stripe_url=emulator.url, api_key=API_KEY,
                        env={"DBT_STRIPE_SYNC_NOTIFY_WEBHOOK": hook_url(webhook)})
    assert sent.code == 1 and sent.json["exit_code"] == 1
    assert len(posts(webhook)) == 1

    webhook.answer(Answer(404), Answer(404))
    refused = project.sync("--output", "json", "--notify-webhook", hook_url(webhook),
                           stripe_url=emulator.url, api_key=API_KEY)
    assert refused.code == 1 and refused.json["exit_code"] == 1
    assert len(webhook.seen) == 1
    assert ("Warning: The notify webhook at 127.0.0.1 did not take the alert (HTTP 404, after "
            "1 attempt(s)); the run's exit code is unchanged.") in " ".join(refused.stderr.split())
    assert SECRET not in sent.stdout + sent.stderr + refused.stdout + refused.stderr


# --- the builders, on documents ------------------------------------------------------------


def _document(models: int = 1, error: str | None = None, code: int = 2) -> dict[str, Any]:
    entries = [{"model": f"model_{i}", "status": "error" if error else "success",
                "counts": {"created": 1, "failed": 0}} for i in range(models)]
    return {"command": "sync", "run_id": "run-1", "exit_code": code, "error": error,
            "totals": {"created": models, "failed": 0}, "models": entries}


def test_the_payload_stays_within_slacks_limits() -> None:
    from dbt_stripe_activation.context import RunRequest
    from dbt_stripe_activation.notify import slack_payload

    payload = slack_payload(_document(models=45, error="x" * 5000), "p" * 200, None,
                            RunRequest(command="sync"))
    blocks = payload["blocks"]
    assert len(blocks) <= 50 and len(blocks[0]["text"]["text"]) <= 150
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks if "text" in b)
    assert all(len(b["fields"]) <= 10 for b in blocks if "fields" in b)
    assert blocks[-1]["text"]["text"] == "... and 5 more models in the results file"


def test_the_payload_escapes_slack_markup() -> None:
    from dbt_stripe_activation.context import RunRequest
    from dbt_stripe_activation.notify import slack_payload

    payload = slack_payload(_document(error="m: <!channel> & sk_test_abcdefghijklmnop"), "p",
                            None, RunRequest(command="sync"))
    text = json.dumps(payload)
    assert "<!channel>" not in text and "&lt;!channel&gt; &amp;" in text
    assert "abcdefghijklmnop" not in text  # redacted, even when a key reaches an error


def test_the_step_summary_keeps_its_table_whole() -> None:
    from dbt_stripe_activation.context import RunRequest
    from dbt_stripe_activation.notify import step_summary

    document = _document(error="line one\n```\nline | two", code=2)
    document["models"][0]["model"] = "odd|name"
    markdown = step_summary(document, "p", Path("target/x.json"), RunRequest(command="sync"))
    assert "| odd\\|name | error | 1 | 1 |" in markdown
    assert markdown.count("```") == 2 and "line | two" in markdown


def test_the_summaries_link_each_object_to_check_and_name_no_key() -> None:
    from dbt_stripe_activation.context import RunRequest
    from dbt_stripe_activation.notify import slack_payload, step_summary

    url = "https://dashboard.stripe.com/test/customers/cus_9"
    document = _document(code=1)
    document["models"][0]["failed"] = [
        {"key": "amy@example.com", "stripe_id": "cus_9", "dashboard_url": url, "reason": "x"}]
    document["models"][0]["rejected"] = [
        {"key": "bob@example.com", "stripe_id": None, "dashboard_url": None, "reason": "y"}]
    markdown = step_summary(document, "p", None, RunRequest(command="sync"))
    assert f"- model_0: failed [cus_9]({url})" in markdown
    slack = json.dumps(slack_payload(document, "p", None, RunRequest(command="sync")))
    assert f"failed <{url}|cus_9>" in slack
    assert "example.com" not in markdown + slack  # keys (emails) stay in the results file
