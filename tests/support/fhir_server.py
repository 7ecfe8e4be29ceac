"""A real FHIR R4 server (sekmet-fhir) on loopback, and a proxy that delays its answers.

Used by the integration tests and the benchmarks: both need an EHR-like FHIR server that
answers our prefetch queries the way a real one does.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from fhir_mappings.fhirjson import bundle_resources

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


class SekmetServer:
    """sekmet-fhir serving an empty store from a temporary folder."""

    def __init__(self) -> None:
        self.port = free_port()
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
            self._process = subprocess.Popen(
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

    def load(self, bundle: dict[str, Any]) -> None:
        """Store every resource of a Bundle with one transaction of PUTs."""
        entries = [
            {
                "resource": resource,
                "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
            }
            for resource in bundle_resources(bundle)
        ]
        transaction = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        response = requests.post(
            self.base,
            json=transaction,
            headers={"Content-Type": "application/fhir+json"},
            timeout=30,
        )
        response.raise_for_status()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._folder.cleanup()


@contextlib.contextmanager
def sekmet() -> Iterator[SekmetServer]:
    server = SekmetServer().start()
    try:
        yield server
    finally:
        server.stop()


class DelayingProxy:
    """Forwards GETs to ``upstream`` after ``delay`` seconds, many at a time.

    Stands in for a slow EHR FHIR server, so that parallel fetching can be measured.
    """

    def __init__(self, upstream: str, delay: float) -> None:
        self.upstream = upstream.rstrip("/")
        self.delay = delay
        prefix = self.upstream.split("/", 3)[3] if self.upstream.count("/") > 2 else ""
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                time.sleep(proxy.delay)
                path = self.path[len(prefix) + 1 :] if prefix else self.path
                answer = requests.get(
                    f"{proxy.upstream}{path}",
                    headers={"Accept": "application/fhir+json"},
                    timeout=30,
                )
                body = answer.content.replace(proxy.upstream.encode(), proxy.base.encode())
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_port}/{prefix}".rstrip("/")
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> DelayingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
