"""The Stripe gateway replayed from recorded HTTP (vcrpy): no server, same SDK, same code path.

The cassettes in tests/cassettes were recorded through the real SDK and the gateway's own HTTP
client, so a replay exercises request encoding, pagination, error mapping and counting. To
re-record (against localstripe, or a Stripe test-mode key): see docs/RECORDING.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import vcr
import yaml

from dbt_stripe_activation.stripe_api import StripeGateway, StripeSettings, redact

CASSETTES = Path(__file__).resolve().parents[1] / "cassettes"
RECORDING = os.environ.get("STRIPE_RECORD") == "1"
REPLAY_KEY = "sk_test_replayOnly000000000001"
REPLAY_BASE = "http://127.0.0.1:12111"  # never contacted: every answer comes from a cassette
EMAIL = "cassette-ada@example.com"
# Headers that carry the key or describe the recording machine; left out of every cassette.
FILTERED_HEADERS = ["authorization", "user-agent", "x-stripe-client-user-agent", "cookie"]

RECORDER = vcr.VCR(
    cassette_library_dir=str(CASSETTES),
    record_mode="all" if RECORDING else "none",
    match_on=["method", "path", "query", "body"],
    filter_headers=FILTERED_HEADERS,
    decode_compressed_response=True,
)

CUSTOMER_PROBE = [("customers", "list", {"limit": 1})]


def _scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    """No cookies and nothing key-shaped in what is stored."""
    headers = response.get("headers") or {}
    for name in list(headers):
        if name.lower() in ("set-cookie", "cookie"):
            del headers[name]
    body = response.get("body") or {}
    if isinstance(body.get("string"), bytes):
        body["string"] = redact(body["string"].decode("utf-8", "replace")).encode()
    return response


RECORDER.before_record_response = _scrub_response


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str | None]]:
    """(key, api base) to record against, or the replay placeholders."""
    if not RECORDING:
        yield REPLAY_KEY, REPLAY_BASE
        return
    key = os.environ.get("STRIPE_API_KEY", "").strip()
    if key:
        if "_live_" in key[:8]:
            pytest.fail("record cassettes with a test-mode key (sk_test_/rk_test_), never live")
        yield key, os.environ.get("STRIPE_API_BASE") or None
        return
    from tests.integration.stripe_fixtures import LocalStripeServer

    server = LocalStripeServer(tmp_path_factory.mktemp("localstripe-recording"))
    try:
        yield "sk_test_recording00000000001", server.url
    finally:
        server.stop()


def gateway(target: tuple[str, str | None]) -> StripeGateway:
    key, base = target
    return StripeGateway(StripeSettings(api_key=key, api_base=base, max_network_retries=0))


def cassette(name: str) -> Any:
    path = CASSETTES / name
    if not RECORDING and not path.exists():
        pytest.fail(f"missing cassette {path}: record it with STRIPE_RECORD=1 (docs/RECORDING.md)")
    return RECORDER.use_cassette(name)


def test_check_replays_a_balance_read(target: tuple[str, str | None]) -> None:
    with cassette("check.yaml"):
        gw = gateway(target)
        result = gw.check(CUSTOMER_PROBE)
    assert (result.mode, result.key_kind, result.method) == ("test", "secret", "balance")
    assert gw.stats.by_endpoint == {"GET /v1/balance": 1}


def test_create_then_update_replays(target: tuple[str, str | None]) -> None:
    with cassette("create_update.yaml"):
        gw = gateway(target)
        created = gw.create(
            "customers",
            {"email": EMAIL, "name": "Ada", "metadata": {"source": "cassette"}},
            "cassette-create-ada",
        )
        updated = gw.update("customers", created["id"], {"name": "Ada L."}, "cassette-update-ada")
    assert created["id"].startswith("cus_") and type(created["metadata"]) is dict
    assert (created["email"], created["name"], created["metadata"]) == (
        EMAIL,
        "Ada",
        {"source": "cassette"},
    )
    assert (updated["id"], updated["name"]) == (created["id"], "Ada L.")
    assert gw.stats.by_endpoint == {"POST /v1/customers": 1, "POST /v1/customers/{id}": 1}
    assert (gw.stats.writes, gw.stats.reads) == (2, 0)


def test_list_by_email_replays(target: tuple[str, str | None]) -> None:
    with cassette("list_by_email.yaml"):
        gw = gateway(target)
        created = gw.create("customers", {"email": EMAIL, "name": "Listed"}, "cassette-list-ada")
        found = gw.list_where("customers", {"email": EMAIL})
        missing = gw.retrieve("customers", "cus_cassetteMissing01")
    # A real test account may hold earlier recordings' customers with this email too.
    assert created["id"] in {c["id"] for c in found}
    assert all(c["email"] == EMAIL for c in found)
    assert missing is None
    assert gw.stats.by_endpoint == {
        "POST /v1/customers": 1,
        "GET /v1/customers": 1,
        "GET /v1/customers/{id}": 1,
    }


def test_cassettes_hold_no_key_and_no_authorization_header() -> None:
    files = sorted(CASSETTES.glob("*.yaml"))
    assert {f.name for f in files} >= {"check.yaml", "create_update.yaml", "list_by_email.yaml"}
    for path in files:
        text = path.read_text()
        assert not re.search(r"(sk|rk)_(test|live)_[A-Za-z0-9]", text), path.name
        for interaction in yaml.safe_load(text)["interactions"]:
            names = {name.lower() for name in interaction["request"]["headers"]}
            assert not names & set(FILTERED_HEADERS), path.name
            assert "idempotency-key" in names or interaction["request"]["method"] != "POST"
