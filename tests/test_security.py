"""The FHIR token goes only where it may; no secret or patient data in any log; limits hold."""

from __future__ import annotations

import json
import logging
import time

import pytest
import responses

from cds_service import create_app
from cds_service.fhir_client import Fetched

from .conftest import TEST_SETTINGS, ConformanceClient
from .support.builders import hook_request, load_bundle
from .support.jwts import ISSUER, JKU, ec_key, jwks, token

SERVICE = "/cds-services/aatd-patient-view"
TOKEN = "eyJ-very-secret-ehr-access-token"
AUTH = {
    "access_token": TOKEN,
    "token_type": "Bearer",
    "expires_in": 300,
    "scope": "patient/*.read",
    "subject": "alpha1-cds",
}


def request_needing_fetch(server: str) -> dict:
    request = hook_request(
        load_bundle("testing-copd-untested"), fhirServer=server, fhirAuthorization=AUTH
    )
    del request["prefetch"]["conditions"]
    return request


@pytest.mark.parametrize(
    "server",
    [
        "https://not-listed.example.org/fhir",
        "https://fhir.example.org.evil.example/r4",  # a longer host is not the listed one
        "http://fhir.example.org/r4",  # the listed server, but not https
        "http://10.0.0.5/fhir",  # plain http off loopback
    ],
)
def test_fhir_server_not_allowed_is_never_contacted_and_gets_412(client, server):
    with responses.RequestsMock() as mock:
        response = client.post(SERVICE, json=request_needing_fetch(server))
        assert len(mock.calls) == 0
    assert response.status_code == 412
    diagnostics = response.json["issue"][0]["diagnostics"]
    # The message says what really happened: nothing fetched, no token sent, and why.
    assert "nothing was fetched and no token was sent" in diagnostics
    assert "not on the allowlist" in diagnostics or "https is required" in diagnostics
    assert TOKEN not in response.get_data(as_text=True)


def test_allowed_server_is_used(client):
    with responses.RequestsMock() as mock:
        mock.get(
            "https://fhir.example.org/r4/Condition",
            json={"resourceType": "Bundle", "type": "searchset", "entry": []},
        )
        response = client.post(SERVICE, json=request_needing_fetch("https://fhir.example.org/r4"))
        assert mock.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert response.status_code == 200


def test_complete_prefetch_needs_no_allowed_server(client):
    request = hook_request(
        load_bundle("testing-copd-untested"),
        fhirServer="https://not-listed.example.org/fhir",
        fhirAuthorization=AUTH,
    )
    assert client.post(SERVICE, json=request).status_code == 200


def _settings(**values):
    from cds_service.config import Settings

    return Settings().with_values({**TEST_SETTINGS, **values})


def test_loopback_http_only_in_development_or_when_allowlisted():
    from cds_service.prefetch import server_problem

    local = "http://127.0.0.1:8091/fhir"
    required = _settings(auth_mode="required")
    assert "not on the allowlist" in server_problem(local, required)
    assert server_problem(local, _settings()) is None  # auth off: development
    listed = _settings(auth_mode="required", fhir_allowed_servers=local)
    assert server_problem(local, listed) is None  # explicitly allowlisted (the sandbox case)


@pytest.mark.parametrize(
    "server",
    [
        "https://fhir.example.org/r4/../evil",
        "https://fhir.example.org/r4/%2e%2e/evil",
        "https://fhir.example.org/r4/..%2fevil",
        "https://fhir.example.org/r4\\..\\evil",
        "https://user:pw@fhir.example.org/r4",
        "https://fhir.example.org/r4?x=1",
        "https://fhir.example.org/r4#frag",
        "https://fhir.example.org/r4-evil",
        "https://fhir.example.org.evil.invalid/r4",
        "https://fhir.example.org:8443/r4",
        "http://fhir.example.org/r4",
        "http://127.0.0.1.evil.invalid/fhir",
    ],
)
def test_url_tricks_do_not_pass_the_allowlist(server):
    from cds_service.prefetch import server_problem

    assert server_problem(server, _settings(auth_mode="required")) is not None


def test_the_allowlisted_base_and_below_pass():
    from cds_service.prefetch import server_problem

    settings = _settings(auth_mode="required")
    assert server_problem("https://fhir.example.org/r4", settings) is None
    assert server_problem("https://FHIR.example.org:443/r4/", settings) is None


def test_loopback_is_decided_by_parsing_the_address():
    from cds_service.urls import is_loopback

    assert is_loopback("127.0.0.1")
    assert is_loopback("127.8.9.10")
    assert is_loopback("[::1]")
    assert is_loopback("localhost")
    assert not is_loopback("127.0.0.1.evil.invalid")
    assert not is_loopback("10.0.0.1")


def test_a_next_link_with_dot_segments_is_not_followed(client):
    from cds_service.config import Settings
    from cds_service.fhir_client import FetchError, FhirClient

    limits = Settings()
    fhir = FhirClient(
        "https://fhir.example.org/r4", "t", 1.0, 3, limits.fhir_max_bytes, limits.max_resources
    )
    page = {
        "resourceType": "Bundle",
        "link": [{"relation": "next", "url": "https://fhir.example.org/r4/../evil?page=2"}],
    }
    with pytest.raises(FetchError, match="outside the FHIR server"):
        fhir.continue_pages(page, time.monotonic() + 5, Fetched())


def test_redirects_are_not_followed(client):
    with responses.RequestsMock() as mock:
        mock.get(
            "https://fhir.example.org/r4/Condition",
            status=302,
            headers={"Location": "https://elsewhere.example/Condition"},
        )
        response = client.post(SERVICE, json=request_needing_fetch("https://fhir.example.org/r4"))
        assert len(mock.calls) == 1
    assert response.status_code == 412


def test_too_many_resources_is_413():
    app = create_app({**TEST_SETTINGS, "max_resources": 5})
    app.test_client_class = ConformanceClient
    response = app.test_client().post(
        SERVICE, json=hook_request(load_bundle("seed-000-zz-emphysema"))
    )
    assert response.status_code == 413
    assert response.json["issue"][0]["code"] == "too-costly"


def test_deep_nesting_is_400_not_a_crash(client):
    deep = "[" * 100_000 + "]" * 100_000
    response = client.post(SERVICE, data=deep, content_type="application/json")
    assert response.status_code == 400


def test_logs_carry_no_token_jwt_or_patient_data(caplog):
    """A full round of calls, every logger at DEBUG: none of the secrets or PHI appear."""
    signing = ec_key()
    trusted = json.dumps([{"iss": ISSUER, "jku": [JKU]}])
    app = create_app(
        {
            **TEST_SETTINGS,
            "auth_mode": "required",
            "trusted_clients": trusted,
            "public_base_url": "https://cds.example.org",
            "log_level": "DEBUG",
        }
    )
    client = app.test_client()
    bundle = load_bundle("seed-002-lung-transplant")
    url = "https://cds.example.org/cds-services/aatd-patient-view"
    jwts = []

    def bearer(audience: str = url) -> dict:
        jwts.append(token(signing, audience))
        return {"Authorization": f"Bearer {jwts[-1]}"}

    caplog.set_level(logging.DEBUG)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(JKU, json=jwks(signing))
        mock.get("https://fhir.example.org/r4/Condition", status=503)
        full = hook_request(
            bundle, fhirServer="https://fhir.example.org/r4", fhirAuthorization=AUTH
        )
        client.post(SERVICE, json=full, headers=bearer())
        fetching = dict(
            full, prefetch={k: v for k, v in full["prefetch"].items() if k != "conditions"}
        )
        client.post(SERVICE, json=fetching, headers=bearer())  # 412 from the FHIR server
        client.post(SERVICE, json={**full, "hookInstance": "bad"}, headers=bearer())  # 400
        client.post(SERVICE, json=full, headers=bearer("https://wrong.example/x"))  # 401
        client.post(SERVICE, json=full, headers={"Authorization": f"Bearer {jwts[0]}"})  # replay
        client.get("/cds-services", headers=bearer("https://cds.example.org/cds-services"))
    logged = "\n".join(
        record.getMessage() + json.dumps(getattr(record, "fields", {}), default=str)
        for record in caplog.records
    )
    assert "hook" in logged  # the log did record the calls
    assert "auth-rejected" in logged

    secrets = [TOKEN, *jwts, *(j.split(".")[1] for j in jwts)]
    patient_data = ["seed-002", "Whitcombe", "Gareth", "1961-10-02", "MRN-", "Prolastin"]
    for value in secrets + patient_data:
        assert value not in logged, value


# --- bad input is a 400 (or 401), never a 500 (issue 14) -------------------------------------


def test_a_huge_integer_is_400(client):
    body = b'{"hook": "patient-view", "x": ' + b"9" * 5000 + b"}"
    response = client.post(SERVICE, data=body, content_type="application/json")
    assert response.status_code == 400
    assert "too long" in response.json["issue"][0]["diagnostics"]


@pytest.mark.parametrize("escape", [b"\\ud800", b"\\udfff", b"x\\ud83dy"])
def test_lone_surrogates_are_400(client, escape):
    body = b'{"hook": "patient-view", "hookInstance": "' + escape + b'"}'
    response = client.post(SERVICE, data=body, content_type="application/json")
    assert response.status_code == 400
    assert "surrogate" in response.json["issue"][0]["diagnostics"]


def test_a_surrogate_pair_is_text(client):
    body = b'{"hook": "patient-view", "hookInstance": "\\ud83d\\ude00"}'
    response = client.post(SERVICE, data=body, content_type="application/json")
    assert response.status_code == 400  # the schema's complaint, not a surrogate one
    assert "surrogate" not in response.json["issue"][0]["diagnostics"]


FEEDBACK = "/cds-services/aatd-patient-view/feedback"


def _entry(**changes):
    return {
        "card": "4c8a5b1e-0000-4000-8000-000000000000",
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-21T10:00:00Z",
        **changes,
    }


@pytest.mark.parametrize(
    "feedback",
    [
        [_entry(card="x" * 100_000)],
        [_entry(outcomeTimestamp="2026-11-21T10:00:00Z" + "0" * 5000)],
        [_entry()] * 150,
        [_entry(overrideReason={"userComment": "y" * 5000})],
        [_entry(overrideReason={"reason": {"code": "z" * 300}})],
    ],
    ids=["huge card id", "huge timestamp", "150 entries", "huge comment", "huge code"],
)
def test_feedback_is_bounded(client, feedback):
    response = client.post(FEEDBACK, json={"feedback": feedback})
    assert response.status_code == 400


# --- CORS for a locally run sandbox (issue 14) ------------------------------------------------


def _preflight(client, origin, private_network=False):
    headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    if private_network:
        headers["Access-Control-Request-Private-Network"] = "true"
    return client.options(SERVICE, headers=headers)


def test_loopback_origins_are_allowed_in_development(client):
    response = _preflight(client, "http://localhost:3000")
    assert response.headers["Access-Control-Allow-Methods"] == "GET, POST, OPTIONS"


def test_private_network_access_is_answered_for_an_allowed_origin(client):
    response = _preflight(client, "https://ehr.example.org", private_network=True)
    assert response.headers["Access-Control-Allow-Private-Network"] == "true"
    refused = _preflight(client, "https://evil.example", private_network=True)
    assert "Access-Control-Allow-Private-Network" not in refused.headers


def test_a_refused_origin_is_logged_once(client, caplog):
    with caplog.at_level(logging.WARNING, logger="alpha1_cds"):
        for _ in range(3):
            _preflight(client, "https://unlisted.example")
    refusals = [r for r in caplog.records if r.getMessage() == "cors-refused"]
    assert len(refusals) == 1


def test_loopback_origins_need_configuring_when_auth_is_required():
    from cds_service.config import Settings

    settings = {**TEST_SETTINGS, "auth_mode": "required", "public_base_url": "https://cds.x"}
    app = create_app(Settings().with_values(settings))
    response = _preflight(app.test_client(), "http://localhost:3000")
    assert "Access-Control-Allow-Methods" not in response.headers
