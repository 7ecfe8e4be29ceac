"""Two instances behind haproxy on one PostgreSQL: the recipe of docs/operations.md, run.

The haproxy configuration is docs/examples/haproxy.cfg itself, its ports substituted. What
is checked: calls are spread over both instances; a card issued by one is known to
feedback received by the other (the store is shared); an instance that goes away is taken
out by the health check and nothing fails meanwhile.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .support.builders import hook_request, load_bundle
from .support.fhir_server import free_port
from .support.served import Served
from .test_feedback import overridden

CONFIG = Path(__file__).resolve().parents[1] / "docs" / "examples" / "haproxy.cfg"
POSTGRES_URL = os.environ.get("ALPHA1_CDS_TEST_POSTGRES_URL")
HAPROXY = shutil.which("haproxy")
PATIENT_VIEW = "/cds-services/aatd-patient-view"
pytestmark = pytest.mark.skipif(
    not POSTGRES_URL or not HAPROXY,
    reason="needs PostgreSQL (.ci/postgres) and haproxy (apt-get install haproxy)",
)


@pytest.fixture(scope="module")
def balanced(tmp_path_factory) -> Iterator[tuple[str, list[Served]]]:
    # One key for both instances (as the generated one would be), of their own: the
    # overrides this test sends hide nothing from other tests sharing the database.
    env = {
        "ALPHA1_CDS_DATABASE_URL": str(POSTGRES_URL),
        "ALPHA1_CDS_PATIENT_HASH_KEY": uuid.uuid4().hex,
    }
    instances = [Served(1, env=env), Served(1, env=env)]
    front = free_port()
    config = (
        CONFIG.read_text()
        .replace("127.0.0.1:8080", f"127.0.0.1:{front}")
        .replace("127.0.0.1:8081", f"127.0.0.1:{instances[0].port}")
        .replace("127.0.0.1:8082", f"127.0.0.1:{instances[1].port}")
    )
    path = tmp_path_factory.mktemp("haproxy") / "haproxy.cfg"
    path.write_text(config)
    proxy = subprocess.Popen([str(HAPROXY), "-f", str(path)], stderr=subprocess.PIPE)
    try:
        assert all(instance.wait_healthy() for instance in instances)
        base = f"http://127.0.0.1:{front}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        time.sleep(1.5)  # both servers seen healthy by the checks
        yield base, instances
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        if proxy.stderr is not None:
            proxy.stderr.close()
        for instance in instances:
            instance.stop()


def _hooks_served(instance: Served) -> int:
    return instance.stderr().count('"event": "hook"') + instance.stderr().count('"event":"hook"')


def test_calls_are_spread_and_the_store_is_shared(balanced):
    base, instances = balanced
    request = hook_request(load_bundle("seed-000-zz-emphysema"))
    cards = []
    for _ in range(10):
        response = requests.post(f"{base}{PATIENT_VIEW}", json=request, timeout=10)
        assert response.status_code == 200
        cards += response.json()["cards"]
    assert all(_hooks_served(instance) >= 3 for instance in instances)
    time.sleep(1)  # each instance's writer has stored what it issued
    feedback = {"feedback": [overridden(card) for card in cards[:6]]}
    for _ in range(2):  # one of the two calls lands on each instance
        answer = requests.post(f"{base}{PATIENT_VIEW}/feedback", json=feedback, timeout=10)
        assert answer.status_code == 200
        assert "unknownCards" not in answer.json()


def test_an_instance_that_goes_away_is_taken_out_without_a_failed_call(balanced):
    base, instances = balanced
    instances[0].stop()
    request = hook_request(load_bundle("testing-copd-untested"))
    statuses = [
        requests.post(f"{base}{PATIENT_VIEW}", json=request, timeout=10).status_code
        for _ in range(20)
    ]
    assert statuses == [200] * 20
