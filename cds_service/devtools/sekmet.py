"""A real FHIR R4 server (sekmet-fhir) on loopback: for the demo, the tests and the benchmarks.

sekmet-fhir is an optional dependency (``pip install -e '.[demo]'``, or the test extras);
``sekmet_command()`` says whether it is installed.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from fhir_mappings.fhirjson import as_dict, as_list

from ..bundles import transaction

STARTUP_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sekmet_command() -> list[str] | None:
    """How to start sekmet from this environment, or None when it is not installed."""
    script = Path(sys.executable).with_name("sekmet")
    if script.exists():
        return [str(script)]
    found = shutil.which("sekmet")
    return [found] if found else None


# Resource types sekmet-fhir 0.1.1 cannot search by ``patient``: it answers every
# patient's search with all of them, which the service refuses as another patient's data.
UNSEARCHABLE_BY_PATIENT = frozenset({"FamilyMemberHistory"})


def searchable_by_patient(bundle: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The bundle without the resources sekmet-fhir cannot search by patient, and how many
    were left out (the demo says so; ``load-patients`` sends them all to a real server)."""
    kept = [
        entry
        for entry in as_list(bundle.get("entry"))
        if as_dict(as_dict(entry).get("resource")).get("resourceType")
        not in UNSEARCHABLE_BY_PATIENT
    ]
    return {**bundle, "entry": kept}, len(as_list(bundle.get("entry"))) - len(kept)


class SekmetServer:
    """sekmet-fhir serving an empty store from a temporary folder."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        self._folder = tempfile.TemporaryDirectory(prefix="sekmet-")
        self._process: subprocess.Popen[bytes] | None = None
        self._log = Path(self._folder.name) / "server.log"

    def start(self) -> SekmetServer:
        command = sekmet_command()
        if command is None:
            raise RuntimeError("sekmet-fhir is not installed (pip install -e '.[test]')")
        folder = Path(self._folder.name)
        config = folder / "settings.yaml"
        config.write_text(
            f"base_url: {self.base}\nhost: 127.0.0.1\nport: {self.port}\n"
            f"data_dir: {folder / 'data'}\nlog_inbound: false\n"
            "simulator:\n  enabled: false\nvalidation:\n  inbound: 'off'\n"
        )
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(  # noqa: S603 - our own command and config
                [*command, "serve", "--config", str(config)],
                cwd=folder,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_until_up()
        return self

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"sekmet exited: {self._log.read_text()[-2000:]}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.base}/metadata", timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("sekmet did not start in time")

    def load(self, bundle: dict[str, Any]) -> int:
        """Store the resources of a Bundle with one transaction of PUTs, leaving out those
        it cannot search by patient; answers how many were left out."""
        searchable, left_out = searchable_by_patient(bundle)
        response = requests.post(
            self.base,
            json=transaction(searchable),
            headers={"Content-Type": "application/fhir+json"},
            timeout=30,
        )
        response.raise_for_status()
        return left_out

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._folder.cleanup()


@contextlib.contextmanager
def sekmet(port: int | None = None) -> Iterator[SekmetServer]:
    server = SekmetServer(port).start()
    try:
        yield server
    finally:
        server.stop()
