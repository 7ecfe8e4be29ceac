"""Upstream faults against a real, misbehaving FHIR server on loopback (issue 17 items 2
and 8): each is a 412 naming the key within the deadline, and none disables fetching for
the calls after it. The test app allows 1 s per FHIR call and 2 s per hook call."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from cds_service import create_app

from .conftest import TEST_SETTINGS
from .support.builders import hook_request, load_bundle
from .support.faulty_fhir import FaultyFhir

SERVICE = "/cds-services/aatd-patient-view"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultyFhir]:
    server = FaultyFhir()
    yield server
    server.close()


def _call(client, base: str) -> tuple[int, dict, float]:
    request = hook_request(
        load_bundle("testing-copd-untested"),
        fhirServer=base,
        fhirAuthorization={
            "access_token": "t",
            "token_type": "Bearer",
            "expires_in": 60,
            "scope": "patient/*.read",
            "subject": "alpha1-cds",
        },
    )
    del request["prefetch"]["conditions"]  # fetched from the faulty server
    started = time.monotonic()
    response = client.post(SERVICE, json=request)
    return response.status_code, response.json, time.monotonic() - started


def _diagnostics(body: dict) -> str:
    return " ".join(issue["diagnostics"] for issue in body["issue"])


def test_a_trickling_server_meets_the_deadline_inside_the_read(client, upstream):
    status, body, seconds = _call(client, f"{upstream.base}/trickle")
    assert status == 412
    assert body["issue"][0]["expression"] == ["prefetch.conditions"]
    # Whichever notices first: the wait for all fetches, or the read itself (which stops,
    # freeing its thread: the next test).
    assert "deadline" in _diagnostics(body) or "in time" in _diagnostics(body)
    assert seconds < 2.8  # the 2 s deadline, not the ~60 s the body would take


def test_trickling_calls_leave_fetching_working_for_the_next_ones(app, upstream):
    """Eight trickling calls at once (the fetch pool's size), then a healthy one at once."""
    results: list[int] = []

    def trickle() -> None:
        results.append(_call(app.test_client(), f"{upstream.base}/trickle")[0])

    threads = [threading.Thread(target=trickle) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert results == [412] * 8
    status, _, seconds = _call(app.test_client(), f"{upstream.base}/healthy")
    assert status == 200
    assert seconds < 2.0  # well inside the 2 s deadline a held pool would exhaust


def test_a_gzip_bomb_is_refused_at_the_size_cap(client, upstream):
    status, body, _ = _call(client, f"{upstream.base}/bomb")
    assert status == 412
    assert "larger than 20971520 bytes" in _diagnostics(body)


def test_a_search_past_max_resources_is_refused(client, upstream):
    status, body, _ = _call(client, f"{upstream.base}/many")
    assert status == 412
    assert "more than 20000 resources" in _diagnostics(body)


def test_fetched_data_of_all_keys_together_are_bounded_by_max_resources(upstream):
    """Each key under the cap, two keys together over it: still a 412, never a worker
    mapping an unbounded record."""
    app = create_app(TEST_SETTINGS | {"max_resources": 15_000})
    request = hook_request(load_bundle("testing-copd-untested"), fhirServer=f"{upstream.base}/half")
    del request["prefetch"]["conditions"], request["prefetch"]["allergies"]
    response = app.test_client().post(SERVICE, json=request)
    assert response.status_code == 412
    assert "more than 15000 resources" in _diagnostics(response.json)
