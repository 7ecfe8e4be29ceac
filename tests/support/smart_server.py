"""A test EHR for SMART App Launch on loopback: discovery, authorize, token, and FHIR.

``/fhir/.well-known/smart-configuration`` names this server's endpoints; ``/authorize``
approves at once (as a clinician would) and redirects back with a code; ``/token`` checks
the PKCE verifier against the challenge it was given and answers with a token and the
patient; ``/fhir/...`` passes GETs with that bearer token on to a real FHIR server
(sekmet-fhir) and refuses any other. What it saw is kept for the tests to assert on.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
import requests
from flask import Flask, Response, abort, jsonify, redirect, request
from werkzeug.serving import make_server

from .fhir_server import free_port


@dataclass
class Seen:
    authorize: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    fhir_tokens: list[str] = field(default_factory=list)


class SmartEhr:
    def __init__(self, fhir_base: str, patient: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.iss = f"{self.base}/fhir"
        self.fhir_base = fhir_base.rstrip("/")
        self.patient = patient
        self.token = secrets.token_urlsafe(24)
        self.user = f"{self.iss}/Practitioner/dr-lee"
        self.seen = Seen()
        self.approve = True  # False: /authorize stops there, as a clinician who walks away
        # (error, error_description): /authorize sends the browser back with them instead.
        self.deny: tuple[str, str] | None = None
        self._codes: dict[str, str] = {}  # code -> code_challenge
        self._server = make_server("127.0.0.1", self.port, self._app(), threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> SmartEhr:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()

    def _app(self) -> Flask:
        app = Flask("smart-ehr")

        @app.get("/fhir/.well-known/smart-configuration")
        def discovery() -> Any:
            return jsonify(
                authorization_endpoint=f"{self.base}/authorize",
                token_endpoint=f"{self.base}/token",
                grant_types_supported=["authorization_code"],
                code_challenge_methods_supported=["S256"],
                capabilities=["launch-ehr", "launch-standalone", "permission-v2"],
            )

        @app.get("/authorize")
        def authorize() -> Any:
            params = dict(request.args)
            self.seen.authorize.append(params)
            if not self.approve:
                return "Waiting for the clinician", 200
            if self.deny is not None:
                error, description = self.deny
                said = {"error": error, "error_description": description}
                back = urlencode({**said, "state": params.get("state", "")})
                return redirect(f"{params['redirect_uri']}?{back}")
            code = secrets.token_urlsafe(16)
            self._codes[code] = params.get("code_challenge", "")
            back = {"code": code, "state": params.get("state", "")}
            return redirect(f"{params['redirect_uri']}?{urlencode(back)}")

        @app.get("/chart")
        def chart() -> Any:
            """An EHR page that shows the app in a frame, as an EHR's activity tab does."""
            src = request.args["src"].replace('"', "%22")
            frame = f'<iframe src="{src}" width="900" height="600"></iframe>'
            page = f"<!doctype html><title>Chart</title>{frame}"
            return Response(page, content_type="text/html")

        @app.post("/token")
        def token() -> Any:
            form = dict(request.form)
            self.seen.token_requests.append(form)
            challenge = self._codes.pop(form.get("code", ""), None)
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if challenge is None or base64.urlsafe_b64encode(digest).decode().rstrip("=") != (
                challenge
            ):
                return jsonify(error="invalid_grant"), 400
            # An id token as an OpenID provider signs it (the app reads fhirUser only).
            id_token = jwt.encode(
                {"iss": self.iss, "sub": "u1", "aud": "alpha1-cds", "fhirUser": self.user},
                "test-signing-secret-of-32-bytes!!",
                algorithm="HS256",
            )
            return jsonify(
                access_token=self.token,
                token_type="Bearer",
                expires_in=300,
                scope=form.get("scope", ""),
                patient=self.patient,
                id_token=id_token,
            )

        @app.get("/fhir/<path:path>")
        def fhir(path: str) -> Any:
            given = request.headers.get("Authorization", "")
            self.seen.fhir_tokens.append(given)
            if given != f"Bearer {self.token}":
                abort(401)
            query = request.query_string.decode()
            upstream = requests.get(
                f"{self.fhir_base}/{path}" + (f"?{query}" if query else ""),
                timeout=10,
                headers={"Accept": "application/fhir+json"},
            )
            body = upstream.content.replace(self.fhir_base.encode(), self.iss.encode())
            return Response(body, upstream.status_code, content_type="application/fhir+json")

        return app
