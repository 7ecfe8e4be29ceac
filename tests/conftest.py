"""Shared fixtures: an app, a client that checks every response, a live HTTP server."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from cds_service import create_app, pipeline
from cds_service.app import close_app

from .support.conformance import assert_conformant

TEST_ORIGIN = "https://ehr.example.org"
TODAY = date(2026, 11, 21)  # the fixtures' dates are relative to this day
TEST_SETTINGS: dict[str, Any] = {
    "auth_mode": "off",  # tests/test_auth.py covers client JWTs
    "fhir_allowed_servers": ("https://fhir.example.org/r4",),
    "cors_origins": (TEST_ORIGIN,),
    "fhir_timeout": 1.0,
    "fhir_deadline": 2.0,
    "fhir_max_pages": 3,
    "max_body_bytes": 256 * 1024,
    "database_url": f"sqlite:///{tempfile.mkdtemp(prefix='alpha1-tests-')}/cards.sqlite",
}


class ConformanceClient(FlaskClient):
    """A test client that validates every response body against our schemas."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        response = super().open(*args, **kwargs)
        if response.request.method != "OPTIONS" and response.is_json:
            assert_conformant(
                response.request.method, response.request.path, response.status_code, response.json
            )
        return response


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fuzzing counts, for the record (tests/test_fuzz.py)."""
    from .support.fuzzstats import REQUESTS

    if REQUESTS:
        counts = ", ".join(f"{key}: {n}" for key, n in sorted(REQUESTS.items()))
        terminalreporter.write_line(f"fuzzing: {sum(REQUESTS.values())} requests ({counts})")


@pytest.fixture(autouse=True, scope="session")
def pinned_today() -> Iterator[None]:
    """Judge every fixture as of TODAY, whatever the calendar says when the suite runs."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "today", lambda: TODAY)
        yield


@pytest.fixture
def app() -> Iterator[Flask]:
    app = create_app(TEST_SETTINGS)
    app.test_client_class = ConformanceClient
    yield app
    close(app)


def close(app: Flask) -> None:
    """Close what an app opened (its store's connections, its FHIR pool's threads and their
    sockets): a test suite that makes an app per test otherwise runs out of descriptors."""
    close_app(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="session")
def live_server() -> Iterator[str]:
    """The app served over real HTTP on loopback; yields its base URL."""
    server = make_server("127.0.0.1", 0, create_app(TEST_SETTINGS), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)
