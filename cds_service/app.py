"""The application factory: ``create_app(config)``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from fhir_mappings import site
from hooks.knowledge import override_periods
from hooks.monitoring import reminder_intervals

from . import logs, tracing
from .auth import init_auth
from .config import ConfigError, Settings
from .cors import init_cors
from .errors import Issue, ServiceError, operation_outcome
from .issuance import audit_line
from .metrics import metrics, process_stopped
from .responses import json_response
from .routes import cds, public
from .runtime import EXTENSION, Runtime, runtime_of
from .services import SERVICES
from .smart_app import init_smart_app
from .store import SnoozePolicy, Store

# FHIR issue-type codes for the HTTP errors Werkzeug raises itself.
HTTP_ISSUE_CODES = {400: "invalid", 404: "not-found", 405: "not-supported", 413: "too-long"}


def create_app(config: Settings | Mapping[str, Any] | None = None) -> Flask:
    """A configured app. ``config``: Settings, a mapping of settings, or None (environment)."""
    if isinstance(config, Settings):
        settings = config
    elif config is None:
        settings = Settings.load()
    else:
        settings = Settings().with_values(config)
    _use_site_codes(settings)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions[EXTENSION] = Runtime(
        settings=settings,
        executor=ThreadPoolExecutor(settings.fhir_parallel, thread_name_prefix="fhir"),
        policy=settings.policy(),
        store=Store(
            settings.database_url,
            settings.patient_hash_key,
            snooze_policy(settings),
            settings.retention_days,
            spool_dir=settings.spool_dir,
            audit_retention_days=settings.audit_retention_days,
        ),
    )

    logs.LOGGER.setLevel(settings.log_level.upper())
    _trace_requests(app)  # first: every later line of the request carries its id
    init_cors(app, settings)
    _expose_timing_to_browsers(app)
    init_auth(app, settings, protected=cds, replays=app.extensions[EXTENSION].store)
    app.register_blueprint(cds)
    app.register_blueprint(public)
    init_smart_app(app)

    _register_errors(app)
    return app


def _use_site_codes(settings: Settings) -> None:
    """The site's own codes (``site_codes``), or the bundled codes alone: a file that is
    wrong stops the service at start, saying where."""
    try:
        overlay = site.read(settings.site_codes) if settings.site_codes else None
    except site.SiteCodesError as error:
        raise ConfigError(str(error)) from None
    site.install(overlay)


def snooze_policy(settings: Settings) -> SnoozePolicy:
    """How long overrides hide topics: the settings, each reason's period, and the
    recurring reminders' intervals from the rules."""
    return SnoozePolicy(
        topic_days=settings.snooze_days,
        dismiss_days=settings.dismiss_snooze_days,
        reasons=override_periods(),
        intervals=reminder_intervals(settings.policy()),
    )


def close_app(app: Flask) -> None:
    """Close what an app opened: its store writes what is queued (spooling what it cannot)
    and closes its connections; its FHIR pool's threads end. What a worker does when it
    stops, after its requests in flight are answered."""
    runtime = runtime_of(app)
    runtime.store.close()
    runtime.executor.shutdown(wait=True)
    process_stopped()  # this worker's live gauges leave the instance's sums


def _trace_requests(app: Flask) -> None:
    """The request's id and trace (tracing.py) for its log lines and FHIR calls; the id is
    sent back in ``X-Request-ID``."""

    @app.before_request
    def begin() -> None:
        g.alpha1_trace = tracing.from_headers(request.headers)
        g.alpha1_trace_token = tracing.begin(g.alpha1_trace)

    @app.after_request
    def answer(response: Response) -> Response:
        trace = g.get("alpha1_trace")
        if trace is not None:
            response.headers["X-Request-ID"] = trace.request_id
        _count_request(response.status_code)
        if _audited_refusal(response.status_code):
            audit_line(response.status_code, g.get("alpha1_user_key"))
        return response

    @app.teardown_request
    def end(_error: BaseException | None) -> None:
        token = g.pop("alpha1_trace_token", None)
        if token is not None:
            tracing.end(token)


def _audited_refusal(status: int) -> bool:
    """A hook call refused after its client was known (or with auth off) gets its audit
    line too; one refused for its token is an ``auth-rejected`` line (and a metric), no
    more: an attacker's junk costs as little as possible."""
    if request.endpoint != "cds.invoke" or status == 200:
        return False
    return g.get("client") is not None or not runtime_of(current_app).settings.auth_required


def _count_request(status: int) -> None:
    """Requests by endpoint, service and status (labels from fixed sets only: an unknown
    path is counted under no endpoint, an unknown service id under none)."""
    service = (request.view_args or {}).get("service_id")
    metrics().requests.labels(
        request.endpoint or "none",
        service if service in SERVICES else "",
        str(status),
    ).inc()


def _expose_timing_to_browsers(app: Flask) -> None:
    @app.after_request
    def expose(response: Response) -> Response:
        if "Server-Timing" in response.headers:
            response.headers["Timing-Allow-Origin"] = "*"
            response.headers["Access-Control-Expose-Headers"] = "Server-Timing"
        return response


def _register_errors(app: Flask) -> None:

    @app.errorhandler(ServiceError)
    def service_error(error: ServiceError) -> Response:
        _log_error(error.status, [issue.expression or issue.code for issue in error.issues])
        return json_response(operation_outcome(error.issues), error.status, error.headers)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        code = HTTP_ISSUE_CODES.get(status, "processing")
        issue = Issue(code, error.description or error.name)
        _log_error(status, [code])
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        return json_response(operation_outcome([issue]), status, headers)

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        logs.LOGGER.error("unhandled", exc_info=error, extra={"fields": {"path": request.path}})
        issue = Issue("exception", "Internal error; the service log has the details")
        return json_response(operation_outcome([issue]), 500)


def _log_error(status: int, where: list[str]) -> None:
    level = logging.WARNING if status < 500 else logging.ERROR
    logs.event("error", level, status=status, path=request.path, where=where)
