"""The FHIR token goes only where it may; no secret or patient data in any log; limits hold."""

from __future__ import annotations

import json
import logging

import pytest
import responses

from cds_service import create_app

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
    assert "not on the allowlist" in diagnostics
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


def test_loopback_http_only_in_development():
    settings = {**TEST_SETTINGS, "auth_mode": "required", "trusted_clients": "[]"}
    app = create_app(settings)
    from cds_service.prefetch import server_allowed

    with app.app_context():
        assert not server_allowed(
            "http://127.0.0.1:8091/fhir", app.extensions["alpha1_cds"].settings
        )
    assert server_allowed(
        "http://127.0.0.1:8091/fhir", create_app(TEST_SETTINGS).extensions["alpha1_cds"].settings
    )


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
