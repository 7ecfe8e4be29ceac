"""Every status code the service answers, from real HTTP requests on loopback."""

from __future__ import annotations

import json

import pytest
import requests

from .conftest import TEST_ORIGIN
from .support.builders import hook_request, load_bundle
from .support.conformance import assert_conformant

PATIENT_VIEW = "/cds-services/aatd-patient-view"


def call(base: str, method: str, path: str, **kwargs):
    response = requests.request(method, base + path, timeout=10, **kwargs)
    body = response.json() if response.content else None
    if method != "OPTIONS":
        assert_conformant(method, path, response.status_code, body)
    return response, body


def test_discovery_lists_the_three_contract_services(live_server):
    response, body = call(live_server, "GET", "/cds-services")
    assert response.status_code == 200
    services = {s["id"]: s for s in body["services"]}
    assert set(services) == {"aatd-patient-view", "aatd-order-select", "aatd-order-sign"}
    assert services["aatd-patient-view"]["hook"] == "patient-view"
    assert services["aatd-order-sign"]["hook"] == "order-sign"
    for service in services.values():
        assert service["title"]
        assert service["description"]
        assert service["prefetch"]["patient"] == "Patient/{{context.patientId}}"


def test_prefetch_templates_keep_to_the_cds_hooks_query_subset(live_server):
    _, body = call(live_server, "GET", "/cds-services")
    allowed_params = {"patient", "code", "status", "_count", "_sort"}
    for service in body["services"]:
        for template in service["prefetch"].values():
            assert "{{" not in template.replace("{{context.patientId}}", "")
            if "?" in template:
                params = [p.split("=")[0] for p in template.split("?", 1)[1].split("&")]
                assert set(params) <= allowed_params, template


def test_patient_view_answers_200_with_a_card(live_server):
    request = hook_request(load_bundle("testing-copd-untested"))
    response, body = call(live_server, "POST", PATIENT_VIEW, json=request)
    assert response.status_code == 200
    assert [c["source"]["topic"]["code"] for c in body["cards"]] == ["aatd-testing-recommended"]
    assert "gather;dur=" in response.headers["Server-Timing"]


@pytest.mark.parametrize("service", ["aatd-order-select", "aatd-order-sign"])
def test_order_services_answer_no_cards_yet(live_server, service):
    request = hook_request(load_bundle("testing-copd-untested"), service)
    response, body = call(live_server, "POST", f"/cds-services/{service}", json=request)
    assert response.status_code == 200
    assert body == {"cards": []}


def test_health_check(live_server):
    response, body = call(live_server, "GET", "/healthz")
    assert response.status_code == 200
    assert body == {"status": "ok"}


def test_malformed_json_is_400(live_server):
    response, body = call(
        live_server,
        "POST",
        PATIENT_VIEW,
        data=b'{"hook": "patient-view",',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "not valid JSON" in body["issue"][0]["diagnostics"]


def test_invalid_utf8_is_400(live_server):
    response, body = call(
        live_server,
        "POST",
        PATIENT_VIEW,
        data=b'{"hook": "\xff\xfe"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "UTF-8" in body["issue"][0]["diagnostics"]


def test_schema_violation_names_the_field(live_server):
    request = hook_request(load_bundle("testing-copd-untested"))
    request["hookInstance"] = "not-a-uuid"
    del request["context"]["patientId"]
    response, body = call(live_server, "POST", PATIENT_VIEW, json=request)
    assert response.status_code == 400
    expressions = {e for issue in body["issue"] for e in issue.get("expression", [])}
    assert expressions == {"hookInstance"}  # context is checked once the envelope is right
    request["hookInstance"] = "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"
    response, body = call(live_server, "POST", PATIENT_VIEW, json=request)
    assert response.status_code == 400
    assert body["issue"][0]["expression"] == ["context.patientId"]


def test_wrong_hook_for_the_service_is_400(live_server):
    request = hook_request(load_bundle("testing-copd-untested"))
    request["hook"] = "order-sign"
    response, body = call(live_server, "POST", PATIENT_VIEW, json=request)
    assert response.status_code == 400
    assert body["issue"][0]["expression"] == ["hook"]


def test_prefetched_patient_must_be_the_context_patient(live_server):
    request = hook_request(load_bundle("testing-copd-untested"))
    request["prefetch"]["patient"]["id"] = "someone-else"
    response, body = call(live_server, "POST", PATIENT_VIEW, json=request)
    # Another patient's record is data that could not be had, not the EHR's syntax error.
    assert response.status_code == 412
    assert body["issue"][0]["expression"] == ["prefetch.patient"]
    assert "another patient" in body["issue"][0]["diagnostics"]


def test_unknown_service_is_404(live_server):
    request = hook_request(load_bundle("testing-copd-untested"))
    response, body = call(live_server, "POST", "/cds-services/no-such-service", json=request)
    assert response.status_code == 404
    assert body["issue"][0]["code"] == "not-found"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", PATIENT_VIEW), ("PUT", PATIENT_VIEW), ("POST", "/cds-services")],
)
def test_wrong_method_is_405(live_server, method, path):
    response, _body = call(live_server, method, path)
    assert response.status_code == 405
    assert "Allow" in response.headers


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_non_json_is_415(live_server, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    payload = json.dumps(hook_request(load_bundle("testing-copd-untested")))
    response, _body = call(live_server, "POST", PATIENT_VIEW, data=payload, headers=headers)
    assert response.status_code == 415


def test_fhir_json_media_type_is_accepted(live_server):
    payload = json.dumps(hook_request(load_bundle("testing-copd-untested")))
    headers = {"Content-Type": "application/fhir+json; charset=utf-8"}
    response, _ = call(live_server, "POST", PATIENT_VIEW, data=payload, headers=headers)
    assert response.status_code == 200


def test_oversized_body_is_413(live_server):
    request = hook_request(load_bundle("testing-copd-untested"))
    request["extension"] = {"org.example.padding": "x" * (300 * 1024)}
    response, body = call(live_server, "POST", PATIENT_VIEW, json=request)
    assert response.status_code == 413
    assert body["issue"][0]["code"] == "too-long"


def test_missing_data_without_fhir_server_is_412(live_server):
    request = hook_request(load_bundle("testing-copd-untested"), prefetch="none")
    response, body = call(live_server, "POST", PATIENT_VIEW, json=request)
    assert response.status_code == 412
    assert {"prefetch.patient", "prefetch.conditions"} <= {
        issue["expression"][0] for issue in body["issue"]
    }


def test_cors_preflight_allows_authorization_for_a_configured_origin(live_server):
    headers = {
        "Origin": TEST_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    response, _ = call(live_server, "OPTIONS", PATIENT_VIEW, headers=headers)
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == TEST_ORIGIN
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed
    assert "content-type" in allowed
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_cors_ignores_other_origins(live_server):
    headers = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    response, _ = call(live_server, "OPTIONS", PATIENT_VIEW, headers=headers)
    assert "Access-Control-Allow-Origin" not in response.headers
    response, _ = call(
        live_server, "GET", "/cds-services", headers={"Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_headers_on_actual_responses(live_server):
    response, _ = call(live_server, "GET", "/cds-services", headers={"Origin": TEST_ORIGIN})
    assert response.headers["Access-Control-Allow-Origin"] == TEST_ORIGIN
    assert "Origin" in response.headers["Vary"]
