"""Trace correlation (issue 28 item 6): a request's id and trace in every log line, on every
FHIR call it makes, and back to the caller; millisecond timestamps; the client in the hook
line; an audience mismatch says what was expected and what came."""

from __future__ import annotations

import json
import logging
import re

import pytest
import responses

from cds_service import create_app
from cds_service.logs import JsonFormatter

from .conftest import TEST_SETTINGS
from .support.builders import hook_request, load_bundle
from .support.jwts import ISSUER, JKU, ec_key, jwks, token
from .test_prefetch import AUTH, FHIR, SERVICE, bundle, fhir  # noqa: F401  (fixtures)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def _lines(caplog) -> list[dict]:
    formatter = JsonFormatter()
    return [json.loads(formatter.format(r)) for r in caplog.records if r.name == "alpha1_cds"]


def test_a_hook_call_carries_its_trace_to_the_fhir_server_the_log_and_the_answer(
    client,
    bundle,  # noqa: F811
    fhir,  # noqa: F811
    caplog,
):
    request = hook_request(bundle, prefetch="none", fhirServer=FHIR, fhirAuthorization=AUTH)
    headers = {"traceparent": TRACEPARENT, "X-Request-ID": "ehr-call-42"}
    with caplog.at_level(logging.INFO, logger="alpha1_cds"):
        response = client.post(SERVICE, json=request, headers=headers)
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "ehr-call-42"
    sent = [call.request.headers for call in fhir.calls]
    assert sent
    for outgoing in sent:
        assert outgoing["X-Request-ID"] == "ehr-call-42"
        version, trace_id, parent, flags = outgoing["traceparent"].split("-")
        assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
        assert parent != "00f067aa0ba902b7"  # this service's own span
    [hook] = [line for line in _lines(caplog) if line["event"] == "hook"]
    assert hook["requestId"] == "ehr-call-42"
    assert hook["traceId"] == TRACE_ID
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", hook["time"])


@pytest.mark.parametrize(
    "traceparent",
    [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        "garbage",
    ],
)
def test_a_malformed_trace_is_not_continued_and_a_request_id_is_made(client, traceparent):
    response = client.get("/healthz", headers={"traceparent": traceparent, "X-Request-ID": "a b"})
    made = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)  # "a b" is not a usable id: a new one


def test_the_hook_line_names_the_client_and_a_wrong_audience_says_both(caplog):
    base = "https://cds.example.org"
    settings = {
        **TEST_SETTINGS,
        "auth_mode": "required",
        "public_base_url": base,
        "trusted_clients": json.dumps([{"iss": ISSUER, "jku": [JKU], "tenant": "north"}]),
    }
    app = create_app(settings)
    key = ec_key()
    request = hook_request(load_bundle("testing-copd-untested"))
    with (
        responses.RequestsMock(assert_all_requests_are_fired=False) as mock,
        caplog.at_level(logging.INFO, logger="alpha1_cds"),
    ):
        mock.get(JKU, json=jwks(key))
        right = token(key, f"{base}/cds-services/aatd-patient-view", tenant="north")
        wrong = token(key, "https://cds.example.org/cds/aatd-patient-view", tenant="north")
        client = app.test_client()
        assert (
            client.post(
                SERVICE, json=request, headers={"Authorization": f"Bearer {right}"}
            ).status_code
            == 200
        )
        assert (
            client.post(
                SERVICE, json=request, headers={"Authorization": f"Bearer {wrong}"}
            ).status_code
            == 401
        )
    lines = _lines(caplog)
    [hook] = [line for line in lines if line["event"] == "hook"]
    assert (hook["iss"], hook["tenant"]) == (ISSUER, "north")
    [refused] = [line for line in lines if line["event"] == "auth-rejected"]
    assert "expected 'https://cds.example.org/cds-services/aatd-patient-view'" in refused["reason"]
    assert "received 'https://cds.example.org/cds/aatd-patient-view'" in refused["reason"]
    assert wrong not in caplog.text
    assert right not in caplog.text
