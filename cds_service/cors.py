"""CORS for browser-based CDS clients (the CDS Hooks sandbox, SMART apps).

Preflight allows ``Authorization`` (the client JWT) and ``Content-Type``; origins come from
configuration, and ``*`` is never combined with credentials (config refuses it).
"""

from __future__ import annotations

from flask import Flask, Response, request

from .config import Settings

ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type"
MAX_AGE_SECONDS = "600"


def init_cors(app: Flask, settings: Settings) -> None:
    origins = frozenset(settings.cors_origins)

    def allowed(origin: str | None) -> str | None:
        if not origin:
            return None
        if "*" in origins:
            return "*"
        return origin if origin in origins else None

    @app.before_request
    def preflight() -> Response | None:
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        response = Response(status=204)
        if allowed(request.headers.get("Origin")):
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = MAX_AGE_SECONDS
        return response

    @app.after_request
    def add_headers(response: Response) -> Response:
        origin = allowed(request.headers.get("Origin"))
        if origin:
            response.headers["Access-Control-Allow-Origin"] = origin
            if origin != "*":
                response.vary.add("Origin")
                if settings.cors_allow_credentials:
                    response.headers["Access-Control-Allow-Credentials"] = "true"
        return response
