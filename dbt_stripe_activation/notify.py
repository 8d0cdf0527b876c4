"""Alerts and CI summaries: a Slack-compatible webhook post when a run fails, and a Markdown
summary in GitHub Actions' step summary for every run.

Both are built from the results document as its file holds it (redacted, JSON-safe), and
neither can change a run's exit code: a webhook or a summary file that fails is a warning.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import __version__
from .context import CommonOptions, RunRequest
from .errors import ConfigError, SyncError
from .report import EXIT_OK, EXIT_ROWS_FAILED, redact, warn
from .results import PROBLEM_OUTCOMES, RunResult

NOTIFY_WEBHOOK_ENV = "DBT_STRIPE_SYNC_NOTIFY_WEBHOOK"
STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
# A webhook must never hold a CI job: a few seconds per attempt, two retries, short pauses.
TIMEOUT_SECONDS = 5.0
ATTEMPTS = 3
BACKOFF_SECONDS = 0.5
# Slack's Block Kit limits: header text, section text, fields per section, blocks.
_HEADER_MAX, _SECTION_MAX, _FIELDS_MAX, _MODEL_SECTIONS_MAX = 150, 3000, 10, 4

RunSync = Callable[[CommonOptions, RunRequest], RunResult]


def webhook_url(request: RunRequest) -> str | None:
    """--notify-webhook (`notify_webhook=`), else the environment variable, for the CLI and
    the Python API alike; an empty value (an unset CI secret) turns alerts off."""
    url = request.notify_webhook
    if url is None:
        url = os.environ.get(NOTIFY_WEBHOOK_ENV)
    return (url or "").strip() or None


def _url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "it is not a URL"
    if parts.scheme not in ("http", "https"):
        return f"its scheme is {parts.scheme!r}" if parts.scheme else "it has no scheme"
    return None if host else "it has no host"


def check_webhook(request: RunRequest) -> None:
    """A webhook that could never be posted to stops the run before any call, as any flag
    that cannot work does. The value is not echoed: a webhook URL is a secret."""
    url = webhook_url(request)
    problem = _url_problem(url) if url else None
    if problem:
        raise ConfigError(
            f"The notify webhook (--notify-webhook or {NOTIFY_WEBHOOK_ENV}) is not an http(s) "
            f"URL: {problem}. Give the incoming webhook's full URL, e.g. "
            "https://hooks.slack.com/services/T000/B000/XXXX, or leave it empty for no alerts."
        )


def reported(run: RunSync) -> RunSync:
    """Wraps pipeline.run_sync, so every run, finished or refused before it started, gets its
    step summary and, when it failed, its alert; the CLI and the Python API alike."""

    @functools.wraps(run)
    def wrapper(common: CommonOptions, request: RunRequest) -> RunResult:
        try:
            result = run(common, request)
        except SyncError as exc:
            publish(common, request, refused_document(request.command, exc), None)
            raise
        publish(common, request, result.document, result.results_path)
        return result

    return wrapper


def refused_document(command: str, exc: SyncError) -> dict[str, Any]:
    """A run that did not start, shaped as a results document with no model."""
    return {"command": command, "run_id": None, "exit_code": exc.exit_code,
            "error": redact(str(exc)), "error_type": type(exc).__name__, "totals": {},
            "models": []}


def publish(common: CommonOptions, request: RunRequest, document: Mapping[str, Any],
            results_path: Path | None) -> None:
    """The step summary when GitHub Actions asks for one; the alert when the run failed."""
    project = project_name(common.project_dir)
    summary_file = os.environ.get(STEP_SUMMARY_ENV)
    if summary_file:
        append_step_summary(Path(summary_file),
                            step_summary(document, project, results_path, request),
                            common.output)
    url = webhook_url(request)
    if url and document["exit_code"] != EXIT_OK and _url_problem(url) is None:
        post_webhook(url, slack_payload(document, project, results_path, request),
                     common.output)


def project_name(project_dir: Path) -> str:
    """The dbt project's name (dbt_project.yml's `name`, never Jinja); else its folder's."""
    import yaml

    try:
        name = (yaml.safe_load((project_dir / "dbt_project.yml").read_text()) or {}).get("name")
    except (OSError, yaml.YAMLError, AttributeError):
        name = None
    return str(name) if name else project_dir.resolve().name


# --- what the messages say ----------------------------------------------------------------


def headline(document: Mapping[str, Any], project: str, request: RunRequest) -> str:
    """One line: the command, the project and the verdict (the fallback text of an alert,
    the heading of a summary)."""
    code = document["exit_code"]
    totals = document.get("totals") or {}
    problems = sum(totals.get(name, 0) for name in PROBLEM_OUTCOMES)
    if code == EXIT_OK:
        verdict = "succeeded"
    elif code == EXIT_ROWS_FAILED:
        verdict = (f"{problems} of {sum(totals.values())} rows rejected, failed or uncertain "
                   f"(beyond --max-failed-pct {request.max_failed_pct:g}%)")
    elif document.get("run_id") is None:
        verdict = f"could not start ({document.get('error_type', 'error')})"
    else:
        verdict = "failed"
    return f"dbt-stripe-sync {document['command']} ({project}): {verdict}, exit {code}"


def _counts(counts: Mapping[str, int]) -> str:
    shown = [f"{name.replace('_', ' ')} {n}" for name, n in counts.items() if n]
    return ", ".join(shown) or "no rows"


def _shown_path(path: Path | None) -> str:
    if path is None:
        return "none (the run did not start)"
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _run_link() -> str | None:
    """The GitHub Actions run, when the alert comes from one."""
    parts = [os.environ.get(name) for name in
             ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")]
    if not all(parts):
        return None
    server, repository, run_id = parts
    return f"{server}/{repository}/actions/runs/{run_id}"


def _slack_escape(text: str) -> str:
    """Slack reads &, < and > as markup (`<!channel>` would ping a channel)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, _SECTION_MAX)}}


# Objects each model's summary links to, at most: the rest are in the results file.
_LINKED_PER_MODEL = 5


def objects_to_check(model: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """A model's rows that need a human and name a Stripe object: (outcome, id, Dashboard
    URL), the first few. Ids only: row keys (often emails) stay in the results file."""
    found = []
    for outcome in PROBLEM_OUTCOMES:
        for row in model.get(outcome) or ():
            if row.get("stripe_id") and row.get("dashboard_url"):
                found.append((outcome, str(row["stripe_id"]), str(row["dashboard_url"])))
    return found[:_LINKED_PER_MODEL]


def slack_payload(document: Mapping[str, Any], project: str, results_path: Path | None,
                  request: RunRequest) -> dict[str, Any]:
    """Slack's incoming-webhook message: `text` (the notification and the fallback) and
    `blocks`. Counts and names only: row keys (often emails) stay in the results file."""
    title = headline(document, project, request)
    facts = [f"*Project:* {_slack_escape(project)}",
             f"*Command:* `dbt-stripe-sync {document['command']}`",
             f"*Run id:* `{document.get('run_id') or 'none'}`",
             f"*Totals:* {_counts(document.get('totals') or {})}",
             f"*Results file:* `{_slack_escape(_shown_path(results_path))}`"]
    link = _run_link()
    if link:
        facts.append(f"*CI run:* <{link}|GitHub Actions>")
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": _clip(title, _HEADER_MAX)}},
              _section("\n".join(facts))]
    error = document.get("error")
    if error:
        blocks.append(_section(f"*Error:*\n```{_slack_escape(error)}```"))
    fields = [{"type": "mrkdwn",
               "text": _clip(f"*{_slack_escape(m['model'])}* ({m['status']})\n"
                             f"{_counts(m['counts'])}", 2000)}
              for m in document.get("models") or []]
    shown = _FIELDS_MAX * _MODEL_SECTIONS_MAX
    for start in range(0, min(len(fields), shown), _FIELDS_MAX):
        blocks.append({"type": "section", "fields": fields[start:start + _FIELDS_MAX]})
    if len(fields) > shown:
        blocks.append(_section(f"... and {len(fields) - shown} more models in the results file"))
    links = [f"*{_slack_escape(m['model'])}*: " + ", ".join(
        f"{outcome} <{url}|{stripe_id}>" for outcome, stripe_id, url in objects_to_check(m))
        for m in (document.get("models") or [])[:shown] if objects_to_check(m)]
    if links:
        blocks.append(_section("*To check in Stripe:*\n" + "\n".join(links)))
    text = title + (f"\n{error.splitlines()[0]}" if error else "")
    payload = {"text": _slack_escape(_clip(text, _SECTION_MAX)), "blocks": blocks}
    return dict(json.loads(redact(json.dumps(payload))))


def _cell(value: object) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def step_summary(document: Mapping[str, Any], project: str, results_path: Path | None,
                 request: RunRequest) -> str:
    """GitHub-flavoured Markdown: the headline, a table per model with its outcomes and
    status, the totals, the run id, the results file and the error."""
    lines = [f"### {headline(document, project, request)}", ""]
    totals: Mapping[str, int] = document.get("totals") or {}
    models = document.get("models") or []
    if models:
        outcomes = [name for name, n in totals.items() if n]
        lines += ["| model | status | " + " | ".join(o.replace("_", " ") for o in outcomes)
                  + " | rows |",
                  "| --- | --- |" + " ---: |" * (len(outcomes) + 1)]
        for m in models:
            counts = m["counts"]
            lines.append(f"| {_cell(m['model'])} | {m['status']} | "
                         + "".join(f"{counts.get(o, 0)} | " for o in outcomes)
                         + f"{sum(counts.values())} |")
        lines += ["| **total** | | " + "".join(f"**{totals[o]}** | " for o in outcomes)
                  + f"**{sum(totals.values())}** |", ""]
    checks = [(m["model"], objects_to_check(m)) for m in models]
    if any(found for _, found in checks):
        lines += ["To check in Stripe:", ""]
        lines += [f"- {_cell(name)}: " + ", ".join(
            f"{outcome} [{stripe_id}]({url})" for outcome, stripe_id, url in found)
            for name, found in checks if found]
        lines.append("")
    if document.get("dry_run"):
        lines += ["A plan: nothing was written to Stripe.", ""]
    lines += [f"Run id `{document.get('run_id') or 'none'}`; results file "
              f"`{_shown_path(results_path)}`.", ""]
    error = document.get("error")
    if error:
        lines += ["**Error**", "", "```text", error.replace("```", "'''"), "```", ""]
    return redact("\n".join(lines))


# --- where they go ------------------------------------------------------------------------


def append_step_summary(path: Path, markdown: str, output: str) -> None:
    try:
        with path.open("a", encoding="utf-8") as summary:
            summary.write(markdown + "\n")
    except OSError as exc:
        warn(f"Cannot append the run summary to ${STEP_SUMMARY_ENV} "
             f"({exc.strerror or type(exc).__name__}); the run's exit code is unchanged.",
             output)


def post_webhook(url: str, payload: Mapping[str, Any], output: str) -> bool:
    """POST the JSON payload (redacted by its builder), retrying a refused connection, a
    timeout, 429 and 5xx; a webhook that still fails is a warning naming its host only (its
    path is a secret)."""
    body = json.dumps(payload).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": f"dbt-stripe-activation/{__version__}"})
    problem = ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                response.read(1024)
            return True
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
            if exc.code != 429 and exc.code < 500:
                break  # the webhook refuses this message: sending it again changes nothing
        except urllib.error.URLError as exc:
            problem = f"no answer: {exc.reason}"
        except (OSError, http.client.HTTPException) as exc:  # a read timeout, a reset
            problem = f"no answer: {exc or type(exc).__name__}"
        if attempt < ATTEMPTS:
            time.sleep(BACKOFF_SECONDS * attempt)
    warn(f"The notify webhook at {urlsplit(url).hostname} did not take the alert ({problem}, "
         f"after {attempt} attempt(s)); the run's exit code is unchanged.", output)
    return False
