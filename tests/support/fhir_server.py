"""A real FHIR R4 server (sekmet-fhir) on loopback, and a proxy that delays its answers.

Used by the integration tests and the benchmarks: both need an EHR-like FHIR server that
answers our prefetch queries the way a real one does.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

from cds_service.devtools.sekmet import SekmetServer, free_port, sekmet, sekmet_command

__all__ = ["DelayingProxy", "SekmetServer", "free_port", "sekmet", "sekmet_command"]


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
