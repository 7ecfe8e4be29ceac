"""A stopped and a frozen PostgreSQL (issue 17 items 3 and 4), where CI can run them.

Each fault is short (a few seconds) but long enough to outlast every bounded wait: the
hook path must not slow down, feedback must say 503 promptly, and no issued card may be
lost. Needs the PostgreSQL that ``.ci/postgres start`` runs, and root to stop it.
"""

from __future__ import annotations

import gc
import os
import subprocess
import time
import uuid
import warnings
from pathlib import Path

import pytest
import sqlalchemy as sa

from cds_service import create_app
from cds_service.store import CARDS

from .conftest import TEST_SETTINGS, ConformanceClient
from .support.builders import hook_request, load_bundle
from .test_feedback import overridden

POSTGRES_URL = os.environ.get("ALPHA1_CDS_TEST_POSTGRES_URL")
SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "postgres"
FEEDBACK = "/cds-services/aatd-patient-view/feedback"
pytestmark = pytest.mark.skipif(
    not POSTGRES_URL or os.geteuid() != 0,
    reason="needs the PostgreSQL of .ci/postgres (ALPHA1_CDS_TEST_POSTGRES_URL) and root",
)


def _postgres(command: str) -> None:
    subprocess.run(["bash", str(SCRIPT), command], check=True, capture_output=True, timeout=60)


@pytest.fixture
def app():
    # A key of its own: overrides other tests left in the shared database hide nothing here.
    key = uuid.uuid4().hex
    app = create_app(TEST_SETTINGS | {"database_url": POSTGRES_URL, "patient_hash_key": key})
    app.test_client_class = ConformanceClient
    yield app
    app.extensions["alpha1_cds"].store.close()
    # A connection whose statement hung on the frozen server is invalidated by the pool and
    # collected unclosed; psycopg's ResourceWarning about it is expected here, not later.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _issued(app) -> set[str]:
    store = app.extensions["alpha1_cds"].store
    with store.engine.connect() as connection:
        return set(connection.scalars(sa.select(CARDS.c.card_uuid)))


def _patient_view(client) -> tuple[list[str], float]:
    started = time.monotonic()
    response = client.post(
        "/cds-services/aatd-patient-view", json=hook_request(load_bundle("seed-000-zz-emphysema"))
    )
    assert response.status_code == 200
    return [card["uuid"] for card in response.json["cards"]], time.monotonic() - started


def _feedback(client, card: str) -> tuple[int, float]:
    started = time.monotonic()
    response = client.post(FEEDBACK, json={"feedback": [overridden({"uuid": card})]})
    return response.status_code, time.monotonic() - started


def _during_fault(app, seconds: float) -> tuple[list[str], list[float], list[tuple[int, float]]]:
    client = app.test_client()
    issued, times, answers = [], [], []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        cards, took = _patient_view(client)
        issued += cards
        times.append(took)
        if len(times) % 20 == 1:
            answers.append(_feedback(client, cards[0]))
    return issued, times, answers


def test_a_frozen_database_holds_no_hook_call_and_loses_no_card(app):
    before, _ = _patient_view(app.test_client())  # warm: connections open, snapshot loaded
    app.extensions["alpha1_cds"].store.flush()
    _postgres("freeze")
    try:
        issued, times, answers = _during_fault(app, 6.0)
    finally:
        _postgres("thaw")
    assert max(times) < 2.0, max(times)  # never held by the store (its bounds are 3 s+)
    assert all(status == 503 for status, _ in answers), answers
    assert max(took for _, took in answers) < 5.5  # 503 promptly, a request thread freed
    store = app.extensions["alpha1_cds"].store
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not set(issued) <= _issued(app):
        time.sleep(0.5)
    assert set(before + issued) <= _issued(app)
    assert store.dropped == 0


def test_a_stopped_database_loses_no_card_and_feedback_resumes(app):
    _patient_view(app.test_client())
    _postgres("halt")
    try:
        issued, times, answers = _during_fault(app, 8.0)  # past the old 7.5 s of retries
    finally:
        _postgres("resume")
    assert max(times) < 2.0, max(times)
    assert answers
    assert all(status == 503 for status, _ in answers), answers
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not set(issued) <= _issued(app):
        time.sleep(0.5)
    assert set(issued) <= _issued(app)
    # Feedback resumes once the store is taken as up again (the 503s said Retry-After).
    deadline = time.monotonic() + 15
    while _feedback(app.test_client(), issued[-1])[0] != 200:
        assert time.monotonic() < deadline, "feedback did not resume"
        time.sleep(1)


def test_readiness_fails_while_the_database_is_down_and_recovers(app):
    """Issue 28 item 3: /readyz says 503 (and what failed) while PostgreSQL is stopped, and
    ready again once it is back; /livez stays 200 throughout."""
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    _postgres("halt")
    try:
        started = time.monotonic()
        down = client.get("/readyz")
        assert time.monotonic() - started < 3.0  # bounded: a probe never hangs
        assert down.status_code == 503
        assert down.json["issue"][0]["diagnostics"].startswith("store: status unreachable")
        assert client.get("/livez").status_code == 200
    finally:
        _postgres("resume")
    deadline = time.monotonic() + 20
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "readiness did not recover"
        time.sleep(0.5)
