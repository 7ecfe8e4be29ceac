"""Hostile input: schemathesis against /openapi.json and hypothesis on raw HTTP.

Zero 5xx and zero unhandled exceptions are required; the counts are printed at the end of
the run ("fuzzing: ..."). The service runs as deployed: client JWTs required, each fuzz
case signed by a trusted EHR key (schemathesis also sends cases without one).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from cds_service import create_app

from .conftest import TEST_SETTINGS
from .support.builders import hook_request, load_bundle
from .support.fuzzstats import REQUESTS
from .support.jwts import ISSUER, ec_key, jwks, token

BASE = "http://localhost"
KEY = ec_key("fuzz")
JWKS_FILE = Path(__file__).parent / ".fuzz-jwks.json"
JWKS_FILE.write_text(json.dumps(jwks(KEY)))
APP = create_app(
    {
        **TEST_SETTINGS,
        "auth_mode": "required",
        "public_base_url": BASE,
        "trusted_clients": json.dumps([{"iss": ISSUER, "jwks_file": str(JWKS_FILE)}]),
        # Who may read /metrics is tested in test_metrics.py; here its answer is fuzzed.
        "metrics_access": "open",
    }
)
SCHEMA = schemathesis.openapi.from_wsgi("/openapi.json", APP)
SCHEMA.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
# A schema-valid request may still lack data the EHR must supply: 412 is the spec's answer.
SCHEMA.config.checks.positive_data_acceptance.expected_statuses = ["2xx", "401", "412", "413"]
# A schema-violating body can also be too large (strings past a maxLength): 413 refuses it.
SCHEMA.config.checks.negative_data_rejection.expected_statuses = [
    *SCHEMA.config.checks.negative_data_rejection.expected_statuses,
    "413",
]


@SCHEMA.auth()
class EhrJwt:
    """A fresh client JWT for the exact URL of each case, as an EHR signs it."""

    def get(self, case, context):
        return KEY.kid

    def set(self, case, data, context):
        case.headers = case.headers or {}
        audience = BASE + case.formatted_path
        case.headers["Authorization"] = "Bearer " + token(KEY, audience, header={"jku": None})


@SCHEMA.parametrize()
@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_fuzzing(case):
    response = case.call()
    REQUESTS[f"schemathesis {response.status_code // 100}xx"] += 1
    assert response.status_code < 500, response.text[:500]
    case.validate_response(response)


def _bearer(path: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + token(KEY, BASE + path, header={"jku": None})}


VALID = hook_request(load_bundle("seed-002-lung-transplant"))
PATHS = st.sampled_from(
    [
        "/cds-services",
        "/cds-services/aatd-patient-view",
        "/cds-services/aatd-order-sign",
        "/cds-services/nope",
        "/healthz",
        "/x" * 50,
    ]
)
METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
CONTENT_TYPES = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/fhir+json",
            "text/plain",
            "application/xml",
            "multipart/form-data; boundary=x",
            "application/json; charset=latin-1",
            "",
        ]
    ),
    # any printable text: a header value cannot carry control characters at all
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40),
)

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)


def _mutated(path: list[str], value) -> bytes:
    """The valid request with one member, at any depth, replaced by random JSON."""
    body = json.loads(json.dumps(VALID))
    node = body
    for key in path[:-1]:
        if isinstance(node, dict) and isinstance(node.get(key), dict):
            node = node[key]
    if isinstance(node, dict):
        node[path[-1]] = value
    return json.dumps(body).encode()


BODIES = st.one_of(
    st.binary(max_size=300),  # anything, invalid UTF-8 included
    st.builds(lambda b: b'{"hook": "' + b + b'"}', st.binary(max_size=50)),
    JSONISH.map(lambda v: json.dumps(v).encode()),
    st.builds(
        _mutated,
        st.lists(
            st.sampled_from(
                [
                    "context",
                    "prefetch",
                    "patient",
                    "conditions",
                    "entry",
                    "hook",
                    "hookInstance",
                    "fhirServer",
                    "fhirAuthorization",
                    "access_token",
                    "patientId",
                    "draftOrders",
                ]
            ),
            min_size=1,
            max_size=3,
        ),
        JSONISH,
    ),
    st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 200_000).map(lambda n: json.dumps({"hook": "x" * n}).encode()),
    # Integers past Python's int-conversion limit (4,300 digits), anywhere in the body.
    st.builds(
        _mutated,
        st.lists(st.sampled_from(["context", "prefetch", "entry", "valueQuantity"]), min_size=1),
        st.just("HUGE"),
    ).map(lambda b: b.replace(b'"HUGE"', b"9" * 5000)),
    st.integers(4000, 9000).map(lambda n: b'{"hook": "patient-view", "n": ' + b"7" * n + b"}"),
    # Lone UTF-16 surrogates as JSON escapes, in keys and values.
    st.sampled_from(["\\ud800", "\\udfff", "a\\udc00b"]).map(
        lambda s: ('{"hook": "' + s + '", "' + s + '": 1}').encode()
    ),
)


@settings(max_examples=1200, deadline=None, suppress_health_check=list(HealthCheck))
@given(method=METHODS, path=PATHS, content_type=CONTENT_TYPES, body=BODIES, signed=st.booleans())
def test_raw_hostile_requests_never_fail_the_server(method, path, content_type, body, signed):
    client = APP.test_client()
    headers = {"Content-Type": content_type, **(_bearer(path) if signed else {})}
    response = client.open(path, method=method, data=body, headers=headers)
    REQUESTS[f"hypothesis {response.status_code // 100}xx"] += 1
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    if response.status_code >= 400 and method != "HEAD":
        assert response.json["resourceType"] == "OperationOutcome"


def test_fuzzing_sent_at_least_2000_requests():
    if not REQUESTS:
        pytest.skip("run with the fuzz tests above")
    assert sum(REQUESTS.values()) >= 2000
    assert not any(key.endswith("5xx") for key in REQUESTS)
