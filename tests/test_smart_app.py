"""The SMART app (/app/): launch security with a test client, then the real thing in Chromium.

The browser tests drive Debian's chromium through Playwright against the service and
sekmet-fhir on loopback, save screenshots to ``test-artifacts/`` and skip, saying why,
only where no browser can run (no /usr/bin/chromium, or Playwright missing).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import responses
from werkzeug.serving import make_server

from cds_service import create_app
from cds_service.devtools.sekmet import SekmetServer, sekmet
from fhir_mappings import APP_QUERIES

from .conftest import TEST_SETTINGS
from .support.browser import chromium
from .support.builders import hook_request, load_bundle
from .support.smart_server import SmartEhr

CANDIDATE = "candidate-zz-course"
TRANSPLANT = "seed-002-lung-transplant"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
ISS = "https://fhir.example.org/r4"  # allowlisted in TEST_SETTINGS


# --- launch security, with the Flask test client --------------------------------------------


def _discovery(mock: responses.RequestsMock, **overrides: Any) -> None:
    document = {
        "authorization_endpoint": "https://auth.example.org/authorize",
        "token_endpoint": "https://auth.example.org/token",
        "code_challenge_methods_supported": ["S256"],
        "capabilities": ["launch-ehr", "permission-v2"],
        **overrides,
    }
    mock.get(f"{ISS}/.well-known/smart-configuration", json=document)


def _launch(client: Any) -> dict[str, list[str]]:
    with responses.RequestsMock() as mock:
        _discovery(mock)
        response = client.get(f"/app/launch?iss={ISS}&launch=opaque-launch-id")
    assert response.status_code == 302
    return parse_qs(urlsplit(response.headers["Location"]).query)


def test_ehr_launch_redirects_with_pkce_state_and_only_the_scopes_it_needs(client):
    query = _launch(client)
    assert query["response_type"] == ["code"]
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43  # base64url SHA-256, unpadded
    assert len(query["state"][0]) >= 32
    assert query["aud"] == [ISS]
    assert query["launch"] == ["opaque-launch-id"]
    scopes = query["scope"][0].split()
    assert scopes[:3] == ["launch", "openid", "fhirUser"]  # fhirUser: who opened it (audit)
    assert all(re.fullmatch(r"patient/[A-Za-z]+\.rs", s) for s in scopes[3:])
    assert "patient/Observation.rs" in scopes
    assert not any(s.endswith((".write", ".cruds", "*.rs")) for s in scopes)
    cookie = client.get_cookie("alpha1_smart_launch", path="/app/")
    assert cookie is not None
    assert cookie.http_only


def test_a_server_without_pkce_is_refused(client):
    with responses.RequestsMock() as mock:
        _discovery(mock, code_challenge_methods_supported=["plain"])
        response = client.get(f"/app/launch?iss={ISS}&launch=x")
    assert response.status_code == 400
    assert "PKCE" in response.get_data(as_text=True)


def test_a_fhir_server_off_the_allowlist_is_refused_before_any_request(client):
    with responses.RequestsMock():  # any outbound call would fail this test
        response = client.get("/app/launch?iss=https://evil.example/fhir&launch=x")
    assert response.status_code == 400
    assert "not on the allowlist" in response.get_data(as_text=True)


def test_a_callback_whose_state_does_not_match_is_refused_and_no_code_is_spent(client):
    _launch(client)
    with responses.RequestsMock():  # no token request may be made
        response = client.get("/app/callback?code=stolen&state=forged")
    assert response.status_code == 400
    assert "state does not match" in response.get_data(as_text=True)


def test_a_callback_without_the_launch_cookie_is_refused(app):
    response = app.test_client().get("/app/callback?code=x&state=y")
    assert response.status_code == 400
    assert "launch again" in response.get_data(as_text=True)


def test_pages_carry_a_strict_content_security_policy(client):
    response = client.get("/app/")
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src" not in policy
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"


def test_every_card_links_to_the_app_with_its_topic(client):
    response = client.post(
        "/cds-services/aatd-patient-view", json=hook_request(load_bundle(CANDIDATE))
    )
    for card in response.json["cards"]:
        smart = [link for link in card["links"] if link["type"] == "smart"]
        assert smart == [
            {
                "label": smart[0]["label"],
                "url": "http://localhost/app/launch",
                "type": "smart",
                "appContext": card["source"]["topic"]["code"],
            }
        ]


# --- the real thing: service, sekmet-fhir and Chromium on loopback --------------------------


@pytest.fixture(scope="module")
def fhir() -> Iterator[SekmetServer]:
    with sekmet() as server:
        for name in (CANDIDATE, TRANSPLANT):
            server.load(load_bundle(name))
        yield server


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    app = create_app(TEST_SETTINGS | {"fhir_timeout": 5.0, "fhir_deadline": 10.0})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def _open(browser: Any, url: str, shot: str) -> Any:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(url, wait_until="load")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{shot}.png"), full_page=True)
    return page


def _card_topics(client: Any, fixture: str) -> set[str]:
    response = client.post(
        "/cds-services/aatd-patient-view", json=hook_request(load_bundle(fixture))
    )
    topics = set()
    for card in response.json["cards"]:
        topics.add(card["source"]["topic"]["code"])
        for item in card.get("extension", {}).get("urn:alpha1-cds:checklist", []):
            topics.add(item["topic"])
    return topics - {"aatd-care-checklist"}


def _page_topics(page: Any) -> set[str]:
    found = page.locator("#recommendations [data-topic], #checklist [data-topic]")
    return {found.nth(i).get_attribute("data-topic") for i in range(found.count())}


def test_standalone_launch_shows_the_candidate_at_a_glance(browser, fhir, service, client):
    page = _open(
        browser, f"{service}/app/launch?iss={fhir.base}&patient={CANDIDATE}", "app-candidate"
    )
    assert page.locator("#genotype").inner_text().startswith("ZZ")
    assert "7.3 µmol/L" in page.locator("#latest-aat").inner_text()
    decline = page.locator("#decline").inner_text()
    assert "85 mL/year" in decline
    assert "5 post-bronchodilator FEV1 volumes" in decline
    assert "2022-11-01 to 2023-08-31" in page.locator("#therapy").inner_text()
    for section in ("aat", "fev1", "weight"):
        image = page.locator(f"#{section} img")
        assert image.count() == 1
        assert image.evaluate("i => i.complete && i.naturalWidth > 0")  # the SVG rendered
        assert image.get_attribute("alt")
        assert page.locator(f"#{section} table tbody tr").count() >= 3
    assert page.locator("#weight tbody").inner_text().count("mg") >= 4
    # The same recommendations and checklist items as the cards at chart-open.
    assert _page_topics(page) == _card_topics(client, CANDIDATE)
    assert "augmentation-candidate" in _page_topics(page)
    # Every step, those past the card's five buttons included (the AATD-centre referral).
    steps = page.locator('#recommendations [data-topic="augmentation-candidate"] .steps')
    assert "Refer to an AATD specialist" in steps.inner_text()
    assert "Order serum IgA" in steps.inner_text()
    page.close()


def test_standalone_launch_for_a_lung_transplant_patient(browser, fhir, service, client):
    page = _open(browser, f"{service}/app/launch?iss={fhir.base}&patient=seed-002", "app-ltx")
    assert page.locator("h1#patient").inner_text()
    assert "Prolastin-C" in page.locator("#therapy").inner_text()
    assert _page_topics(page) == _card_topics(client, TRANSPLANT)
    assert "495 mg/dL" in page.locator("#igg").inner_text()  # hypogammaglobulinaemia work-up
    page.close()


def test_ehr_launch_exchanges_the_code_with_pkce_and_reads_with_the_token(
    browser, fhir, service, caplog
):
    with SmartEhr(fhir.base, CANDIDATE) as ehr, caplog.at_level(logging.DEBUG):
        page = _open(browser, f"{service}/app/launch?iss={ehr.iss}&launch=xyz", "app-ehr-launch")
        assert page.url.startswith(f"{service}/app/callback")
        assert page.locator("#genotype").inner_text().startswith("ZZ")
        asked, exchanged = ehr.seen.authorize[0], ehr.seen.token_requests[0]
        verifier = exchanged["code_verifier"]
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        assert asked["code_challenge"] == challenge.decode().rstrip("=")
        assert exchanged["redirect_uri"] == f"{service}/app/callback"
        assert set(ehr.seen.fhir_tokens) == {f"Bearer {ehr.token}"}
        page.close()
    assert ehr.token not in caplog.text
    assert verifier not in caplog.text
    # Who opened which record: the user and the patient as keyed hashes, never their ids.
    [shown] = [r for r in caplog.records if r.getMessage() == "smart-record-shown"]
    assert len(shown.fields["user"]) == 64
    assert "dr-lee" not in caplog.text


def test_ehr_launch_with_a_forged_state_is_refused_in_the_browser(browser, fhir, service):
    with SmartEhr(fhir.base, CANDIDATE) as ehr:
        page = browser.new_page()
        # Start a real launch, stop at the authorization server, and come back forged.
        ehr.approve = False
        page.goto(f"{service}/app/launch?iss={ehr.iss}&launch=xyz")
        page.goto(f"{service}/app/callback?code=anything&state=forged")
        assert "state does not match" in page.locator(".problem").inner_text()
        assert ehr.seen.token_requests == []
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "app-forged-state.png"))
        page.close()


def test_a_token_endpoint_off_https_is_refused_before_any_code_is_sent(client):
    with responses.RequestsMock() as mock:
        _discovery(mock, token_endpoint="http://auth.example.org/token")
        response = client.get(f"/app/launch?iss={ISS}&launch=x")
    assert response.status_code == 400
    assert "https is required" in response.get_data(as_text=True)


def test_a_redirected_discovery_is_never_followed():
    from cds_service.smart_app.launch import LaunchError, discover

    iss = "https://fhir.example.org/r4"
    with responses.RequestsMock() as mock:
        mock.add(
            responses.GET,
            f"{iss}/.well-known/smart-configuration",
            status=302,
            headers={"Location": "https://attacker.example/.well-known/smart-configuration"},
        )
        with pytest.raises(LaunchError, match="redirects are not followed"):
            discover(iss, 2.0)
        assert len(mock.calls) == 1  # the other host was never asked


def test_a_redirected_token_request_never_re_posts_the_code():
    from cds_service.smart_app.launch import Launch, LaunchError, exchange

    token = "https://auth.example.org/token"
    flight = Launch("state", "verifier", "https://fhir.example.org/r4", token)
    with responses.RequestsMock() as mock:
        mock.add(
            responses.POST,
            token,
            status=307,
            headers={"Location": "http://attacker.example/token"},
        )
        with pytest.raises(LaunchError, match="redirects are not followed"):
            exchange(flight, "code", "alpha1-cds", "https://cds.example.org/app/callback", 2.0)
        assert len(mock.calls) == 1


def _auth_required_app(**extra):
    settings = {
        **TEST_SETTINGS,
        "auth_mode": "required",
        "public_base_url": "https://cds.example.org",
        "trusted_clients": '[{"iss": "https://ehr.example.org", "jwks_url": "https://ehr.example.org/jwks"}]',
        **extra,
    }
    return create_app(settings)


def test_an_open_server_launch_is_refused_while_auth_is_required():
    """?iss=<allowlisted>&patient=<id> without a launch would read and show any patient."""
    app = _auth_required_app()
    with responses.RequestsMock():  # no FHIR read may be made
        response = app.test_client().get(f"/app/launch?iss={ISS}&patient=seed-000")
    assert response.status_code == 400
    assert b"smart_open_servers" in response.data


def test_near_miss_a_server_listed_for_open_launch_is_read_and_audited(caplog):
    import logging

    bundle = load_bundle("seed-000-zz-emphysema")
    app = _auth_required_app(smart_open_servers=(ISS,))
    with (
        caplog.at_level(logging.INFO, logger="alpha1_cds"),
        responses.RequestsMock(assert_all_requests_are_fired=False) as mock,
    ):
        patient = next(
            e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
        )
        mock.add(responses.GET, f"{ISS}/Patient/seed-000", json=patient)
        for kind in sorted({q.resource_type for q in APP_QUERIES.values()} - {"Patient"}):
            mock.add(
                responses.GET,
                f"{ISS}/{kind}",
                json={"resourceType": "Bundle", "type": "searchset", "total": 0},
            )
        response = app.test_client().get(f"/app/launch?iss={ISS}&patient=seed-000")
    assert response.status_code == 200
    [shown] = [r for r in caplog.records if r.getMessage() == "smart-record-shown"]
    assert shown.fields["server"] == ISS
    assert shown.fields["patient"] != "seed-000"  # the keyed hash, never the id


def test_a_launch_state_is_used_once(client):
    """The same cookie and callback replayed: the second is refused before any request."""
    query = _launch(client)
    state = query["state"][0]
    with responses.RequestsMock() as mock:
        mock.post("https://auth.example.org/token", status=400)
        first = client.get(f"/app/callback?code=c1&state={state}")
    assert first.status_code == 400  # the code was refused, but the state is spent
    with responses.RequestsMock():  # no token request may be made
        replay = client.get(f"/app/callback?code=c1&state={state}")
    assert replay.status_code == 400
    assert "already used" in replay.get_data(as_text=True)


def test_a_wildcard_allowlist_does_not_make_the_app_an_open_redirect():
    app = _auth_required_app(fhir_allowed_servers=("*",))
    with responses.RequestsMock():  # no discovery of the attacker's server is even asked
        response = app.test_client().get("/app/launch?iss=https://evil.example/fhir&launch=x")
    assert response.status_code == 400
    assert b"listed by name" in response.data


# --- readable and never blank (issue 25) ----------------------------------------------------


def test_a_denied_authorization_says_what_the_server_answered(browser, fhir, service, caplog):
    with SmartEhr(fhir.base, CANDIDATE) as ehr, caplog.at_level(logging.INFO):
        ehr.deny = ("access_denied", "The user <b>declined</b> the launch")
        page = _open(browser, f"{service}/app/launch?iss={ehr.iss}&launch=xyz", "app-denied")
        assert "did not grant access" in page.locator(".problem").inner_text()
        # Shown as text, escaped: the server's words are not markup here.
        said = "It answered: access_denied: The user <b>declined</b> the launch"
        assert said in page.locator("main ul").inner_text()
        assert ehr.seen.token_requests == []
        page.close()
    [refused] = [r for r in caplog.records if r.getMessage() == "smart-launch-refused"]
    assert refused.fields == {"reason": "authorization", "error": "access_denied"}
    ours = [r for r in caplog.records if r.name == "alpha1_cds"]
    assert not any("declined" in repr(r.__dict__) for r in ours)  # shown, never logged


def test_a_token_error_names_the_oauth_error():
    from cds_service.smart_app.launch import _said

    answer = requests_response(400, {"error": "invalid_grant", "error_description": "Code expired"})
    assert _said(answer) == "; it answered invalid_grant: Code expired"
    assert _said(requests_response(400, {"detail": "no"})) == ""


def requests_response(status: int, body: dict) -> Any:
    import json as _json

    import requests

    response = requests.Response()
    response.status_code = status
    response._content = _json.dumps(body).encode()
    return response


def test_an_ehr_page_not_allowed_to_frame_the_app_gets_words_not_a_blank_frame(
    browser, fhir, service, caplog
):
    with SmartEhr(fhir.base, CANDIDATE) as ehr, caplog.at_level(logging.INFO):
        src = f"{service}/app/launch?iss={fhir.base}&patient={CANDIDATE}"
        for _ in range(2):
            page = browser.new_page()
            page.goto(f"{ehr.base}/chart?src={quote(src, safe='')}", wait_until="load")
            frame = page.frame_locator("iframe")
            text = frame.locator(".problem").inner_text()
            assert f"may not be shown inside {ehr.base}" in text
            assert "smart_frame_ancestors" in frame.locator("main").inner_text()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "app-frame-refused.png"))
            page.close()
    [logged] = [r for r in caplog.records if r.getMessage() == "smart-frame-refused"]
    assert logged.fields["set"] == f'smart_frame_ancestors = ["{ehr.base}"]'  # once


@pytest.mark.parametrize(
    ("ancestors", "referer", "framed"),
    [
        ((), "https://ehr.example.org/chart", False),
        (("https://ehr.example.org",), "https://ehr.example.org/chart", True),
        (("https://*.example.org",), "https://ehr.example.org/chart", True),
        (("https://*.example.org",), "https://example.org.evil.test/chart", False),
        ((), "", False),  # no Referer, nothing allowed: refused all the same
        (("https://ehr.example.org",), "", True),  # no Referer: cannot tell, not refused here
    ],
)
def test_the_frame_check_follows_the_configured_ancestors(ancestors, referer, framed):
    app = create_app(TEST_SETTINGS | {"smart_frame_ancestors": ancestors})
    headers = {"Sec-Fetch-Dest": "iframe", "Sec-Fetch-Site": "cross-site"}
    if referer:
        headers["Referer"] = referer
    response = app.test_client().get("/app/", headers=headers)
    assert (response.status_code == 200) is framed
    if not framed:
        assert b"may not be shown inside" in response.data
        policy = response.headers["Content-Security-Policy"]
        origin = referer.rsplit("/", 1)[0] if referer else ""
        assert policy.endswith(f"frame-ancestors 'self' {' '.join((*ancestors, origin))}".strip())


def test_a_frame_ancestor_that_is_not_an_origin_is_refused_at_start():
    from cds_service.config import ConfigError

    with pytest.raises(ConfigError, match="smart_frame_ancestors"):
        create_app(
            TEST_SETTINGS | {"smart_frame_ancestors": ("https://ehr.example.org; script-src *",)}
        )


def test_the_app_is_readable_on_a_phone(browser, fhir, service):
    """At 390 px: no sideways scrolling, and the plots' text at least 10 px high (they are
    drawn at FONT_POINTS for about 400 px and scaled to the screen)."""
    from cds_service.smart_app.plots import FONT_POINTS

    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(f"{service}/app/launch?iss={fhir.base}&patient={CANDIDATE}", wait_until="load")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app-phone.png"), full_page=True)
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
    images = page.locator("section img")
    assert images.count() >= 3
    for i in range(images.count()):
        shown, natural = images.nth(i).evaluate("i => [i.clientWidth, i.naturalWidth]")
        assert FONT_POINTS * 96 / 72 * shown / natural >= 10, (shown, natural)
    page.close()


def test_the_app_page_names_no_fhir_id_over_every_fixture(app):
    """Dates and names, never ``Observation/...``: over every fixture's whole page."""
    import json
    from datetime import date

    from flask import render_template

    from benchmarks.burden import RAW_ID
    from cds_service.smart_app.overview import build
    from fhir_mappings.fhirjson import bundle_resources

    from .support.builders import FIXTURES

    with app.test_request_context("/app/launch"):
        for path in sorted((FIXTURES / "patients").glob("*.json")):
            resources = list(bundle_resources(json.loads(path.read_text(encoding="utf-8"))))
            view = build(resources, date(2026, 11, 21), app.extensions["alpha1_cds"].policy)
            page = render_template("overview.html", view=view, plots={})
            text = re.sub(r"<[^>]+>", " ", page)
            assert not RAW_ID.search(text), (path.stem, RAW_ID.search(text))
