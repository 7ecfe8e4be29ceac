"""Client JWTs: every way a token can be wrong is a 401 without detail; right ones pass."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
import responses

from cds_service import create_app

from .conftest import TEST_SETTINGS, ConformanceClient
from .support.builders import hook_request, load_bundle
from .support.jwts import ISSUER, JKU, ec_key, jwks, rsa_key, token

BASE = "https://cds.example.org"
DISCOVERY = f"{BASE}/cds-services"
SERVICE = f"{BASE}/cds-services/aatd-patient-view"
EC, RSA = ec_key(), rsa_key()
TRUSTED = [{"iss": ISSUER, "jku": [JKU], "algorithms": ["ES384", "RS384"]}]


@pytest.fixture
def client():
    settings = {
        **TEST_SETTINGS,
        "auth_mode": "required",
        "public_base_url": BASE,
        "trusted_clients": json.dumps(TRUSTED),
        "jwks_refresh_seconds": 3600,
    }
    app = create_app(settings)
    app.test_client_class = ConformanceClient
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(JKU, json=jwks(EC, RSA))
        yield app.test_client(), mock


def discover(client, jwt_value: str | None):
    headers = {"Authorization": f"Bearer {jwt_value}"} if jwt_value else {}
    return client.get("/cds-services", headers=headers)


def invoke(client, jwt_value: str):
    request = hook_request(load_bundle("testing-copd-untested"))
    return client.post(
        "/cds-services/aatd-patient-view",
        json=request,
        headers={"Authorization": f"Bearer {jwt_value}"},
    )


FEEDBACK = f"{SERVICE}/feedback"


def send_feedback(client, jwt_value: str):
    body = {
        "feedback": [
            {
                "card": "c1",
                "outcome": "overridden",
                "outcomeTimestamp": "2026-11-21T10:00:00Z",
                "overrideReason": {"userComment": "not now"},
            }
        ]
    }
    return client.post(
        "/cds-services/aatd-patient-view/feedback",
        json=body,
        headers={"Authorization": f"Bearer {jwt_value}"},
    )


@pytest.mark.parametrize("key", [EC, RSA], ids=["ES384", "RS384"])
def test_valid_tokens_are_accepted_on_every_endpoint(client, key):
    client, _ = client
    assert discover(client, token(key, DISCOVERY)).status_code == 200
    assert invoke(client, token(key, SERVICE)).status_code == 200
    assert send_feedback(client, token(key, FEEDBACK)).status_code == 200


@pytest.mark.parametrize(
    ("audience", "call"),
    [
        (SERVICE, "feedback"),
        (FEEDBACK, "service"),
        (DISCOVERY, "feedback"),
        (FEEDBACK, "discovery"),
    ],
)
def test_each_endpoint_needs_its_own_audience(client, audience, call):
    client, _ = client
    value = token(EC, audience)
    send = {"feedback": send_feedback, "service": invoke, "discovery": discover}[call]
    assert send(client, value).status_code == 401


def test_audience_may_be_a_list_containing_the_endpoint(client):
    client, _ = client
    assert discover(client, token(EC, [DISCOVERY, "https://other.example"])).status_code == 200


def _unsigned(header: dict, payload: dict, signature: bytes = b"") -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join(
        [part(json.dumps(header).encode()), part(json.dumps(payload).encode()), part(signature)]
    )


def _hs256_with_public_key() -> str:
    """The key-confusion attack: HMAC keyed with the server's public key."""
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT", "kid": EC.kid, "jku": JKU}
    payload = {"iss": ISSUER, "aud": DISCOVERY, "iat": now, "exp": now + 300, "jti": "hs"}
    signing_input = _unsigned(header, payload).rsplit(".", 1)[0]
    mac = hmac.new(EC.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def _none_algorithm() -> str:
    now = int(time.time())
    return _unsigned(
        {"alg": "none", "typ": "JWT", "kid": EC.kid},
        {"iss": ISSUER, "aud": DISCOVERY, "iat": now, "exp": now + 300, "jti": "n"},
    )


OTHER_KEY_SAME_KID = ec_key(EC.kid)

FAILURES = {
    "bad signature": lambda: token(OTHER_KEY_SAME_KID, DISCOVERY),
    "service token on discovery": lambda: token(EC, SERVICE),
    "audience of another host": lambda: token(EC, "https://evil.example/cds-services"),
    "expired": lambda: token(EC, DISCOVERY, iat=int(time.time()) - 600, exp=int(time.time()) - 300),
    "iat beyond leeway": lambda: token(EC, DISCOVERY, iat=int(time.time()) + 60),
    "lifetime over an hour": lambda: token(EC, DISCOVERY, exp=int(time.time()) + 7200),
    "unknown kid": lambda: token(ec_key("unknown-kid"), DISCOVERY),
    "jku not allowlisted": lambda: token(
        EC, DISCOVERY, header={"jku": "https://evil.example/jwks.json"}
    ),
    "issuer not allowlisted": lambda: token(EC, DISCOVERY, iss="https://evil.example"),
    "alg none": _none_algorithm,
    "HS256 signed with the public key": _hs256_with_public_key,
    "no jti": lambda: token(EC, DISCOVERY, jti=None),
    "no exp": lambda: token(EC, DISCOVERY, exp=None),
    "no kid": lambda: token(EC, DISCOVERY, header={"kid": None}),
    "not a JWT": lambda: "not-a-jwt",
}


@pytest.mark.parametrize("make", FAILURES.values(), ids=FAILURES.keys())
def test_bad_tokens_get_401_without_detail(client, make):
    client, mock = client
    response = discover(client, make())
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json["issue"] == [
        {"severity": "error", "code": "login", "diagnostics": "Authentication required"}
    ]
    assert all(call.request.url == JKU for call in mock.calls)  # never another key source


def test_missing_authorization_header_is_401(client):
    client, _ = client
    assert discover(client, None).status_code == 401
    response = client.get("/cds-services", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401


def test_discovery_token_is_refused_on_the_service(client):
    client, _ = client
    assert invoke(client, token(EC, DISCOVERY)).status_code == 401


def test_replayed_jti_is_refused(client):
    client, _ = client
    value = token(EC, DISCOVERY)
    assert discover(client, value).status_code == 200
    assert discover(client, value).status_code == 401


def test_health_and_preflight_need_no_token(client):
    client, _ = client
    assert client.get("/healthz").status_code == 200
    preflight = client.options(
        "/cds-services",
        headers={"Origin": "https://ehr.example.org", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 204


def test_jwks_is_fetched_once_and_unknown_kids_do_not_refetch_within_the_interval(client):
    client, mock = client
    for _ in range(3):
        assert discover(client, token(EC, DISCOVERY)).status_code == 200
    for _ in range(3):
        assert discover(client, token(ec_key("rotated"), DISCOVERY)).status_code == 401
    assert len([c for c in mock.calls if c.request.url == JKU]) == 1


def test_rotated_key_is_found_after_the_refresh_interval():
    rotated = ec_key("rotated")
    settings = {
        **TEST_SETTINGS,
        "auth_mode": "required",
        "public_base_url": BASE,
        "trusted_clients": json.dumps(TRUSTED),
        "jwks_refresh_seconds": 0,
    }
    client = create_app(settings).test_client()
    with responses.RequestsMock() as mock:
        mock.get(JKU, json=jwks(EC))
        assert discover(client, token(EC, DISCOVERY)).status_code == 200
        mock.replace(responses.GET, JKU, json=jwks(EC, rotated))
        assert discover(client, token(rotated, DISCOVERY)).status_code == 200


def test_pinned_jwks_file_without_jku(tmp_path):
    path = tmp_path / "ehr-jwks.json"
    path.write_text(json.dumps(jwks(RSA)))
    trusted = [{"iss": ISSUER, "jwks_file": str(path)}]
    settings = {
        **TEST_SETTINGS,
        "auth_mode": "required",
        "public_base_url": BASE,
        "trusted_clients": json.dumps(trusted),
    }
    client = create_app(settings).test_client()
    assert discover(client, token(RSA, DISCOVERY, header={"jku": None})).status_code == 200
    # a token naming a jku the client was not configured with is refused, nothing fetched
    with responses.RequestsMock() as mock:
        assert discover(client, token(RSA, DISCOVERY)).status_code == 401
        assert len(mock.calls) == 0


def test_tenant_must_match_when_configured():
    trusted = [{**TRUSTED[0], "tenant": "hospital-a"}]
    settings = {
        **TEST_SETTINGS,
        "auth_mode": "required",
        "public_base_url": BASE,
        "trusted_clients": json.dumps(trusted),
    }
    client = create_app(settings).test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(JKU, json=jwks(EC))
        assert discover(client, token(EC, DISCOVERY, tenant="hospital-b")).status_code == 401
        assert discover(client, token(EC, DISCOVERY, tenant="hospital-a")).status_code == 200


def test_required_auth_refuses_to_start_without_public_base_url():
    """The audience is never taken from the Host header (a token minted for another service
    with the same path would pass): without public_base_url the service does not start."""
    from cds_service.config import ConfigError

    settings = {**TEST_SETTINGS, "auth_mode": "required", "trusted_clients": json.dumps(TRUSTED)}
    with pytest.raises(ConfigError, match="needs public_base_url"):
        create_app(settings)


def test_a_forwarded_host_does_not_change_the_audience():
    settings = {
        **TEST_SETTINGS,
        "auth_mode": "required",
        "public_base_url": BASE,
        "trusted_clients": json.dumps(TRUSTED),
    }
    client = create_app(settings).test_client()
    other = "https://other-cds.example.org/cds-services"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(JKU, json=jwks(EC))
        forged = {"Host": "other-cds.example.org", "X-Forwarded-Proto": "https"}
        response = client.get(
            "/cds-services", headers={"Authorization": f"Bearer {token(EC, other)}", **forged}
        )
        assert response.status_code == 401
        assert discover(client, token(EC, DISCOVERY)).status_code == 200


def test_symmetric_algorithms_cannot_be_configured():
    from cds_service.config import ConfigError, Settings

    with pytest.raises(ConfigError, match="algorithms not allowed"):
        Settings().with_values(
            {"trusted_clients": json.dumps([{**TRUSTED[0], "algorithms": ["HS256"]}])}
        )


def test_an_alg_that_does_not_fit_its_key_is_401_not_500(client):
    """An RS384 header naming the EC key: PyJWT raises TypeError; that is a refused token."""
    import jwt as pyjwt

    http, _ = client
    claims = pyjwt.decode(token(EC, DISCOVERY), options={"verify_signature": False})
    forged = pyjwt.encode(claims, RSA.private, algorithm="RS384", headers={"kid": EC.kid})
    assert discover(http, forged).status_code == 401


def _required(database_url: str, **client):
    settings = {
        **TEST_SETTINGS,
        "auth_mode": "required",
        "public_base_url": BASE,
        "database_url": database_url,
        "trusted_clients": json.dumps([{**TRUSTED[0], **client}]),
    }
    return create_app(settings).test_client()


def test_a_jti_is_accepted_once_across_workers(tmp_path):
    """Two app instances on one database stand for two workers (or instances)."""
    url = f"sqlite:///{tmp_path}/shared.sqlite"
    first, second = _required(url), _required(url)
    replayed = token(EC, DISCOVERY)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(JKU, json=jwks(EC))
        assert discover(first, replayed).status_code == 200
        assert discover(second, replayed).status_code == 401
        assert discover(second, token(EC, DISCOVERY)).status_code == 200


def test_a_pinned_jwks_is_used_when_the_token_names_an_allowlisted_jku(tmp_path):
    """The sandbox's tokens carry a jku; a site that pins the keys never fetches them."""
    pinned = tmp_path / "sandbox-jwks.json"
    pinned.write_text(json.dumps(jwks(EC)))
    client = _required(f"sqlite:///{tmp_path}/c.sqlite", jwks_file=str(pinned))
    with responses.RequestsMock() as mock:  # any fetch would fail: nothing is mocked
        assert discover(client, token(EC, DISCOVERY)).status_code == 200
        assert (
            discover(client, token(EC, DISCOVERY, header={"jku": "https://evil"})).status_code
            == 401
        )
        assert len(mock.calls) == 0


def test_a_signed_token_whose_exp_is_a_numeric_string_is_401_not_500(client):
    client, _ = client
    value = token(EC, DISCOVERY, exp=str(int(time.time()) + 300))
    response = discover(client, value)
    assert response.status_code == 401
    assert response.json["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("path", ["/cds-services/aatd-patient-view%00", "/cds-services/nope"])
def test_a_path_naming_no_service_is_404_before_any_token(client, path):
    """Issue 24 item 13: '...view%00' was a 401 (authentication for a service that is not
    there); a valid token for the real service changes nothing."""
    client, _ = client
    for headers in ({}, {"Authorization": f"Bearer {token(EC, SERVICE)}"}):
        response = client.post(path, json={}, headers=headers)
        assert response.status_code == 404, response.json
        assert response.json["issue"][0]["code"] == "not-found"
    assert invoke(client, "not a token").status_code == 401  # the near miss: a real service


class _StoreAway:
    """A shared replay memory that cannot answer (the store down or slow)."""

    def first_use(self, iss: str, jti: str, expires: float) -> None:
        return None


@pytest.mark.parametrize(("policy", "accepted"), [("per-worker", True), ("refuse", False)])
def test_replay_check_unavailable_is_a_choice(policy, accepted):
    """The store cannot say whether a jti was seen: per-worker accepts a token this worker
    has not seen (availability, a replay window of seconds across workers); refuse does not."""
    import time

    from cds_service.auth import ReplayCache

    cache = ReplayCache(_StoreAway(), policy)
    assert cache.first_use("https://ehr.example.org", "jti-1", time.time() + 60) is accepted
    # A replay to the same worker is refused whatever the policy.
    assert cache.first_use("https://ehr.example.org", "jti-1", time.time() + 60) is False


def test_replay_check_unavailable_takes_only_its_two_values():
    from cds_service.config import ConfigError, Settings

    with pytest.raises(ConfigError, match="replay_check_unavailable"):
        Settings().with_values({"replay_check_unavailable": "accept"})
