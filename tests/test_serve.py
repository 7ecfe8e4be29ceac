"""``alpha1-cds serve``: gunicorn serving the app, as in production."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from .support.builders import hook_request, load_bundle
from .support.conformance import assert_conformant
from .support.fhir_server import free_port


@pytest.fixture(scope="module")
def served() -> str:
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("alpha1-cds")),
        "serve",
        "--port",
        str(port),
        "--workers",
        "2",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        else:
            pytest.fail("alpha1-cds serve did not come up")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_serve_answers_discovery_and_hooks(served):
    response = requests.get(f"{served}/cds-services", timeout=5)
    assert response.status_code == 200
    assert_conformant("GET", "/cds-services", 200, response.json())
    request = hook_request(load_bundle("testing-copd-untested"))
    response = requests.post(f"{served}/cds-services/aatd-patient-view", json=request, timeout=5)
    assert response.status_code == 200
    assert_conformant("POST", "/cds-services/aatd-patient-view", 200, response.json())
    assert response.headers["Server"].startswith("gunicorn")
    assert response.json()["cards"][0]["source"]["topic"]["code"] == "aatd-testing-recommended"
