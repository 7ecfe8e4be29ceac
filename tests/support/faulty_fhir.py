"""A FHIR server on loopback that misbehaves on purpose, one fault per path.

``/trickle/...``: headers at once, then the body a byte every 0.2 s; ``/bomb/...``: a small
gzip body that inflates past any sane size; ``/many/...``: a searchset of more resources
than a hook call may hold; ``/half/...``: half as many. Anything else: an empty
searchset.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MANY = 20_001


@cache
def _bomb() -> bytes:
    return gzip.compress(b" " * 64 * 1024 * 1024, compresslevel=9)


def _searchset(count: int) -> bytes:
    entry = [{"resource": {"resourceType": "Condition", "id": f"c{i}"}} for i in range(count)]
    return json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": entry}).encode()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # quiet in test output
        return

    def do_GET(self) -> None:
        fault = self.path.split("/")[1]
        if fault == "trickle":
            body = _searchset(1)
            self._head(len(body))
            try:
                for byte in body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                return
        elif fault == "bomb":
            body = _bomb()
            self._head(len(body), {"Content-Encoding": "gzip"})
            self.wfile.write(body)
        else:
            count = {"many": MANY, "half": MANY // 2}.get(fault, 0)
            body = _searchset(count)
            self._head(len(body))
            self.wfile.write(body)

    def _head(self, length: int, extra: dict[str, str] | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(length))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()


class FaultyFhir:
    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
