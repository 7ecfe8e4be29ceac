"""CORS for browser-based CDS clients (the CDS Hooks sandbox, SMART apps).

Preflight allows ``Authorization`` (the client JWT) and ``Content-Type``; origins come from
configuration, and ``*`` is never combined with credentials (config refuses it). In
development (auth off) loopback origins are allowed too, so a locally served sandbox
works out of the box. A preflight that asks for Private Network Access (a public page
calling a service on localhost) is answered for allowed origins. A refused origin is
logged once per origin, so a misconfiguration shows in the log, not only in a browser.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Flask, Response, request

from . import logs, urls
from .config import Settings


def _loopback_origin(origin: str) -> bool:
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and urls.is_loopback(parts.hostname or "")


ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type"
MAX_AGE_SECONDS = "600"
MAX_LOGGED_ORIGINS = 100  # bounded: origins come from anyone


def init_cors(app: Flask, settings: Settings) -> None:
    origins = frozenset(settings.cors_origins)
    refused: set[str] = set()

    def allowed(origin: str | None) -> str | None:
        if not origin:
            return None
        if "*" in origins:
            return "*"
        if origin in origins or (not settings.auth_required and _loopback_origin(origin)):
            return origin
        if origin not in refused and len(refused) < MAX_LOGGED_ORIGINS:
            refused.add(origin)
            logs.event(
                "cors-refused",
                logging.WARNING,
                origin=origin[:200],
                note="add it to cors_origins to let this browser origin call",
            )
        return None

    @app.before_request
    def preflight() -> Response | None:
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        response = Response(status=204)
        if allowed(request.headers.get("Origin")):
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = MAX_AGE_SECONDS
            if request.headers.get("Access-Control-Request-Private-Network") == "true":
                response.headers["Access-Control-Allow-Private-Network"] = "true"
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
