"""A Bulk Data server on loopback for the client's tests: the asynchronous pattern.

``$export`` answers 202 with ``Content-Location``; the status URL answers 202 with
``Retry-After`` for ``polls`` polls, then the manifest (or ``fail`` its OperationOutcome);
``finish=False`` never finishes; DELETE cancels (the status then 404). Files are served from
``files`` (name -> NDJSON text); ``error_files`` likewise, listed under ``error``, and
``deleted_files`` (Bundles of ``DELETE Type/id``) under ``deleted``, as a server answers an
export with ``_since``. What the client sent (paths, headers) is kept for the tests.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server

from .fhir_server import free_port


@dataclass
class BulkServer:
    files: dict[str, str]
    error_files: dict[str, str] = field(default_factory=dict)
    deleted_files: dict[str, str] = field(default_factory=dict)
    transaction_time: str = "2026-12-01T00:00:00Z"
    polls: int = 2
    finish: bool = True
    fail: bool = False
    requires_token: bool = True
    token: str = "bulk-token-123"
    seen: list[dict[str, Any]] = field(default_factory=list)
    cancelled: bool = False

    def __post_init__(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        self._polled = 0
        self._server = make_server("127.0.0.1", self.port, self._app(), threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> BulkServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()

    def _app(self) -> Flask:
        app = Flask("bulk")

        @app.before_request
        def remember() -> None:
            self.seen.append(
                {
                    "method": request.method,
                    "path": request.full_path,
                    "headers": dict(request.headers),
                }
            )

        @app.get("/fhir/Patient/$export")
        @app.get("/fhir/Group/<group>/$export")
        def kick_off(group: str | None = None) -> Response:
            if request.headers.get("Prefer") != "respond-async":
                return _outcome("Prefer: respond-async is required", 400)
            answer = Response(status=202)
            answer.headers["Content-Location"] = f"{self.base}/$export-status?job=1"
            return answer

        @app.route("/fhir/$export-status", methods=["GET", "DELETE"])
        def status() -> Response:
            if request.method == "DELETE":
                self.cancelled = True
                return Response(status=202)
            if self.cancelled:
                return _outcome("no such job", 404)
            self._polled += 1
            if not self.finish or self._polled <= self.polls:
                answer = Response(status=202)
                answer.headers["Retry-After"] = "1"
                answer.headers["X-Progress"] = f"poll {self._polled}"
                return answer
            if self.fail:
                return _outcome("the export failed: disk full", 500)
            return jsonify(
                transactionTime=self.transaction_time,
                request=f"{self.base}/Patient/$export",
                requiresAccessToken=self.requires_token,
                output=[
                    {"type": name.split(".")[0], "url": f"{self.base}/files/{name}"}
                    for name in self.files
                ],
                error=[
                    {"type": "OperationOutcome", "url": f"{self.base}/files/{name}"}
                    for name in self.error_files
                ],
                deleted=[
                    {"type": "Bundle", "url": f"{self.base}/files/{name}"}
                    for name in self.deleted_files
                ],
            )

        @app.get("/fhir/files/<name>")
        def file(name: str) -> Response:
            if (
                self.requires_token
                and request.headers.get("Authorization") != f"Bearer {self.token}"
            ):
                return _outcome("a token is required", 401)
            text = {**self.files, **self.error_files, **self.deleted_files}.get(name)
            if text is None:
                return _outcome("no such file", 404)
            return Response(text, content_type="application/fhir+ndjson")

        return app


def _outcome(text: str, status: int) -> Response:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": text}],
    }
    answer = jsonify(body)
    answer.status_code = status
    return answer
