"""From clone to cards: upload the sample patients to a FHIR server, or run a whole demo.

``alpha1-cds load-patients --fhir-server URL [--token T]`` sends each sample patient as a
transaction Bundle of PUTs (ids stable, so a second run updates instead of duplicating)
and says, per patient, what was stored or which entries were rejected and why.

``alpha1-cds demo`` starts sekmet-fhir on loopback with the sample patients, starts the
service configured for it (auth off on loopback; CORS for loopback origins and the public
CDS Hooks sandbox), and prints, per patient, its cards, a ready CDS Hooks sandbox URL and
the matching ``alpha1-cds evaluate`` command. Ctrl-C stops both.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests
from werkzeug.serving import make_server

from fhir_mappings.fhirjson import as_dict, as_list, bundle_resources

from ..app import create_app
from ..bundles import transaction
from ..pipeline import evaluate

SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "patients"
SANDBOX = "https://sandbox.cds-hooks.org"
UPLOAD_TIMEOUT_SECONDS = 60


class DemoError(Exception):
    """What stops the demo or an upload, said plainly (no traceback)."""


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    path: Path
    bundle: dict[str, Any]

    @property
    def patient_id(self) -> str:
        return next(
            r["id"] for r in bundle_resources(self.bundle) if r["resourceType"] == "Patient"
        )


def samples(folder: Path = SAMPLES) -> list[Sample]:
    """The bundled sample patients (``fixtures/patients`` of a clone)."""
    if not folder.is_dir():
        raise DemoError(
            f"no sample patients at {folder}: run from a clone of the repository "
            "(pip install -e .), or give --patients DIR"
        )
    found = []
    for path in sorted(folder.glob("*.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        found.append(Sample(path.stem, path, bundle))
    return found


def app_url(service: str, fhir_base: str, patient_id: str) -> str:
    """The SMART app for one patient, launched standalone against the demo's open server."""
    return f"{service}/app/launch?" + urlencode({"iss": fhir_base, "patient": patient_id})


def upload(base: str, sample: Sample, token: str | None = None) -> list[str]:
    """Store one sample patient; the problems, one line per rejected entry (empty: stored)."""
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    sent = transaction(sample.bundle)
    try:
        response = requests.post(
            base.rstrip("/"), json=sent, headers=headers, timeout=UPLOAD_TIMEOUT_SECONDS
        )
    except requests.RequestException as error:
        raise DemoError(f"the FHIR server could not be reached ({type(error).__name__})") from None
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    if response.status_code >= 400:
        return [f"HTTP {response.status_code}: {_outcome_text(answer) or response.reason}"]
    problems = []
    for sent_entry, entry in zip(sent["entry"], as_list(answer.get("entry")), strict=False):
        status = str(as_dict(as_dict(entry).get("response")).get("status", ""))
        if status and not status.startswith("2"):
            outcome = as_dict(as_dict(entry).get("response")).get("outcome")
            problems.append(
                f"{sent_entry['request']['url']}: {status} {_outcome_text(outcome)}".rstrip()
            )
    return problems


def _outcome_text(outcome: Any) -> str:
    issues = as_list(as_dict(outcome).get("issue"))
    return "; ".join(
        str(as_dict(i).get("diagnostics") or as_dict(as_dict(i).get("details")).get("text") or "")
        for i in issues
    ).strip("; ")


def load_patients(base: str, token: str | None, folder: Path, say: Callable[[str], None]) -> int:
    """Upload every sample; a progress line each; the number of patients with problems."""
    failed = 0
    found = samples(folder)
    for number, sample in enumerate(found, 1):
        problems = upload(base, sample, token)
        state = "stored" if not problems else f"{len(problems)} entries rejected"
        say(f"[{number}/{len(found)}] {sample.name} (Patient/{sample.patient_id}): {state}")
        for problem in problems:
            say(f"    {problem}")
        failed += bool(problems)
    return failed


# --- the demo ---------------------------------------------------------------------------------


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def sandbox_url(service: str, fhir: str, patient: str, hook: str = "patient-view") -> str:
    query = {
        "serviceDiscoveryURL": f"{service}/cds-services",
        "fhirServiceUrl": fhir,
        "patientId": patient,
        "hook": hook,
    }
    return f"{SANDBOX}/?{urlencode(query)}"


def summaries(sample: Sample, as_of: date | None = None) -> list[str]:
    """What the patient's chart-open shows: one line per card."""
    resources = list(bundle_resources(sample.bundle))
    result = evaluate("patient-view", resources, sample.patient_id, as_of=as_of)
    return [f"[{c['indicator']}] {c['summary']}" for c in result.response["cards"]]


@dataclass(slots=True)
class Demo:
    service_port: int
    fhir_port: int
    folder: Path
    database_url: str

    @property
    def service(self) -> str:
        return f"http://127.0.0.1:{self.service_port}"

    def run(self, say: Callable[[str], None], stop: threading.Event) -> None:
        """Start everything, print the guide, and serve until ``stop`` is set."""
        from .sekmet import UNSEARCHABLE_BY_PATIENT, SekmetServer, sekmet_command

        for port, what in ((self.service_port, "service"), (self.fhir_port, "FHIR server")):
            if not port_free(port):
                raise DemoError(
                    f"port {port} (the {what}) is taken: stop what uses it, or choose "
                    "another with --port / --fhir-port"
                )
        if sekmet_command() is None:
            raise DemoError("the demo needs sekmet-fhir: pip install -e '.[demo]'")
        found = samples(self.folder)
        fhir = SekmetServer(self.fhir_port).start()
        try:
            say(f"FHIR server (sekmet-fhir) on {fhir.base}; loading {len(found)} sample patients")
            left_out = sum(fhir.load(sample.bundle) for sample in found)
            if left_out:
                kinds = ", ".join(sorted(UNSEARCHABLE_BY_PATIENT))
                say(
                    f"left out {left_out} {kinds} resource(s): sekmet-fhir ignores the "
                    "patient parameter on that search, and the service rightly refuses an "
                    "answer holding another patient's data (412)"
                )
            with self._service(fhir.base):
                self._guide(found, fhir.base, say)
                stop.wait()
        finally:
            fhir.stop()
            say("demo stopped")

    @contextlib.contextmanager
    def _service(self, fhir_base: str) -> Iterator[None]:
        settings = {
            "auth_mode": "off",
            "cors_origins": (SANDBOX,),  # loopback origins are allowed with auth off
            "fhir_allowed_servers": (fhir_base,),
            "database_url": self.database_url,
        }
        server = make_server("127.0.0.1", self.service_port, create_app(settings), threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield
        finally:
            server.shutdown()
            thread.join(timeout=5)

    def _guide(self, found: list[Sample], fhir_base: str, say: Callable[[str], None]) -> None:
        say(f"CDS service on {self.service}/cds-services (auth off: loopback demo)")
        say("")
        for sample in found:
            cards = summaries(sample)
            say(f"{sample.name} (Patient/{sample.patient_id}): {len(cards)} card(s)")
            for line in cards:
                say(f"    {line}")
            say(f"    sandbox:  {sandbox_url(self.service, fhir_base, sample.patient_id)}")
            say(f"    app:      {app_url(self.service, fhir_base, sample.patient_id)}")
            say(f"    offline:  alpha1-cds evaluate {_shown(sample.path)}")
        say("")
        say(f"ready: {len(found)} patients; discovery at {self.service}/cds-services; Ctrl-C stops")


def _shown(path: Path) -> Path:
    """A path relative to the working folder when it lies below it (shorter to copy)."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path
