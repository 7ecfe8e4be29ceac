"""``alpha1-cds demo`` and ``load-patients``: from a clone to cards in the sandbox (issue 15).

The demo runs for real, briefly and on loopback: sekmet-fhir with the sample patients and
the service configured for it; a patient-view with no prefetch gets its cards through the
embedded FHIR server; Ctrl-C stops both.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import responses

from cds_service.bundles import transaction
from cds_service.devtools.demo import (
    SAMPLES,
    app_url,
    load_patients,
    samples,
    sandbox_url,
)
from cds_service.devtools.sekmet import free_port, sekmet_command

CLI = [sys.executable, "-m", "cds_service.cli"]
READY_SECONDS = 90


@pytest.fixture
def demo():
    if sekmet_command() is None:
        pytest.skip("sekmet-fhir is not installed (pip install -e '.[demo]')")
    port, fhir_port = free_port(), free_port()
    process = subprocess.Popen(
        [*CLI, "demo", "--port", str(port), "--fhir-port", str(fhir_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "ALPHA1_CDS_CONFIG": ""},
    )
    lines: list[str] = []
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
        if line.startswith("ready:"):
            break
    try:
        assert lines, "the demo printed nothing"
        assert lines[-1].startswith("ready:"), "".join(lines[-20:])
        yield process, port, fhir_port, lines
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        process.stdout.close()


@pytest.mark.integration
def test_the_demo_serves_cards_through_its_fhir_server_and_stops_on_ctrl_c(demo):
    process, port, fhir_port, lines = demo
    text = "".join(lines)
    service, fhir = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{fhir_port}/fhir"
    assert sandbox_url(service, fhir, "seed-000") in text
    assert "alpha1-cds evaluate" in text
    # The SMART app opens for a sample patient, from the demo's own FHIR server.
    assert app_url(service, fhir, "seed-000") in text
    page = requests.get(app_url(service, fhir, "seed-000"), timeout=30)
    assert page.status_code == 200, page.text[-3000:]
    assert 'id="genotype"' in page.text
    discovery = requests.get(f"{service}/cds-services", timeout=10).json()
    assert {s["id"] for s in discovery["services"]} >= {"aatd-patient-view"}
    request = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "fhirServer": fhir,  # no prefetch: everything comes from the embedded server
        "context": {"userId": "Practitioner/example", "patientId": "seed-000"},
    }
    answer = requests.post(f"{service}/cds-services/aatd-patient-view", json=request, timeout=20)
    assert answer.status_code == 200, answer.text[:500]
    topics = {c["source"]["topic"]["code"] for c in answer.json()["cards"]}
    assert "augmentation-candidate" in topics
    preflight = requests.options(
        f"{service}/cds-services/aatd-patient-view",
        headers={
            "Origin": "https://sandbox.cds-hooks.org",
            "Access-Control-Request-Method": "POST",
        },
        timeout=10,
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://sandbox.cds-hooks.org"
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=20) == 0
    assert "demo stopped" in process.stdout.read()


def test_the_demo_says_when_a_port_is_taken():
    if sekmet_command() is None:
        pytest.skip("sekmet-fhir is not installed (pip install -e '.[demo]')")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*CLI, "demo", "--port", str(port), "--fhir-port", str(free_port())],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert f"port {port} (the service) is taken" in done.stderr


FHIR = "https://fhir.example.org/r4"


def test_load_patients_reports_each_patient_and_each_rejected_entry(tmp_path):
    folder = tmp_path / "patients"
    folder.mkdir()
    for name in ("seed-000-zz-emphysema", "seed-001-ms-obstruction"):
        (folder / f"{name}.json").write_text((SAMPLES / f"{name}.json").read_text())
    said: list[str] = []

    def answer(request):
        sent = json.loads(request.body)
        entries = [{"response": {"status": "201 Created"}} for _ in sent["entry"]]
        if "seed-001" in request.body.decode():
            entries[1] = {
                "response": {
                    "status": "422 Unprocessable Entity",
                    "outcome": {
                        "resourceType": "OperationOutcome",
                        "issue": [{"severity": "error", "diagnostics": "unknown code system"}],
                    },
                }
            }
        body = {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}
        return 200, {}, json.dumps(body)

    with responses.RequestsMock() as mock:
        mock.add_callback(responses.POST, FHIR, callback=answer)
        failed = load_patients(FHIR, "a-token", folder, said.append)
        assert mock.calls[0].request.headers["Authorization"] == "Bearer a-token"
        sent = json.loads(mock.calls[0].request.body)
        assert sent["type"] == "transaction"
        assert all(e["request"]["method"] == "PUT" for e in sent["entry"])
    assert failed == 1
    assert said[0].startswith("[1/2] seed-000-zz-emphysema (Patient/seed-000): stored")
    assert said[1].startswith(
        "[2/2] seed-001-ms-obstruction (Patient/seed-001): 1 entries rejected"
    )
    assert "422 Unprocessable Entity unknown code system" in said[2]


def test_every_sample_patient_can_be_sent_as_a_transaction():
    for sample in samples():
        ids = [e["request"]["url"] for e in transaction(sample.bundle)["entry"]]
        assert len(ids) == len(set(ids)), sample.name  # duplicated resources sent once
        assert f"Patient/{sample.patient_id}" in ids
    assert Path(SAMPLES).is_dir()
