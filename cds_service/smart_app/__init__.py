"""The SMART on FHIR app: the patient's AATD picture at a glance, launched from the cards.

Routes under ``/app/``: ``launch`` (EHR launch with ``iss`` + ``launch``; standalone with
``iss`` alone, or ``iss`` + ``patient`` against an open FHIR server), ``callback`` (the
authorization code's way back) and the page itself, rendered on the server from the same
clinical core as the cards. README "SMART app" and docs/smart-app.md describe registration.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    g,
    make_response,
    redirect,
    render_template,
    request,
)
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response as BaseResponse

from fhir_mappings import APP_QUERIES

from .. import logs, pipeline, urls
from ..errors import ServiceError
from ..prefetch import gather, server_problem
from ..runtime import runtime
from ..timing import arrived
from . import launch as smart
from .framing import error_code, log_refused_once, oauth_error, refused_frame
from .overview import build

COOKIE = "alpha1_smart_launch"
app_pages = Blueprint(
    "smart_app",
    __name__,
    url_prefix="/app",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)


# The namespace of the launch states in the store's one-use ids (beside the JWT ids).
STATE_ISSUER = "urn:alpha1-cds:smart-launch-state"
LAUNCH_SECONDS = smart.LAUNCH_SECONDS


def init_smart_app(app: Flask) -> None:
    app.register_blueprint(app_pages)


@app_pages.before_request
def _frame_check() -> Response | None:
    """A page the browser will refuse to show in the EHR's frame: say so in the frame
    instead of leaving it blank, and log once what to set (framing.py)."""
    if request.endpoint == "smart_app.static":
        return None
    origin = refused_frame(request.headers, runtime().settings.smart_frame_ancestors)
    if origin is None:
        return None
    log_refused_once(origin)
    g.alpha1_frame_origin = origin  # this page only, which holds nothing but the words
    where = origin or "this EHR page"
    return _refuse(
        f"The app may not be shown inside {where}.",
        [
            "The service's administrator adds the EHR's origin to smart_frame_ancestors; "
            "until then, open the app in a window of its own."
        ],
        status=403,
    )


@app_pages.after_request
def _security_headers(response: Response) -> Response:
    """No scripts, no outside resources, nothing cached, no referrer (the callback URL
    carries the authorization code); framing only by the EHR origins that are configured
    (and, for the page saying it may not be framed, by the origin that tried)."""
    refused = getattr(g, "alpha1_frame_origin", None)
    ancestors = " ".join(
        ["'self'", *runtime().settings.smart_frame_ancestors, *([refused] if refused else [])]
    )
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; "
        f"form-action 'none'; frame-ancestors {ancestors}"
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def launch_url() -> str:
    """The app's launch URL: under public_base_url (required with auth on), else the URL
    this request came to (a developer on loopback). The cards link to it."""
    return _base() + "/app/launch"


@app_pages.get("/")
def index() -> str:
    return render_template("index.html", launch_url=launch_url())


@app_pages.get("/launch")
def launch() -> BaseResponse:
    iss = request.args.get("iss", "")
    if not iss:
        return _refuse("The launch names no FHIR server (iss).")
    why = server_problem(iss, runtime().settings)
    if why:
        return _refuse(f"This FHIR server may not be used: {why}.")
    listed = [base for base in runtime().settings.fhir_allowed_servers if base != "*"]
    if runtime().settings.auth_required and not any(urls.within(iss, b) for b in listed):
        # "*" lets hooks fetch from any https server, but a launch sends the browser to the
        # authorization endpoint that server names: only servers listed by name may do that,
        # or the app would be an open redirect.
        return _refuse(
            "The app launches only from FHIR servers listed by name in fhir_allowed_servers."
        )
    patient = request.args.get("patient", "")
    settings = runtime().settings
    if patient and "launch" not in request.args:
        # An open FHIR server (a demo or test server): nothing to authorize, no token sent.
        # With auth required, only for servers listed for it: otherwise anyone could make
        # the service read and show any patient of an allowlisted server.
        open_ok = not settings.auth_required or any(
            urls.within(iss, base) for base in settings.smart_open_servers
        )
        if not open_ok:
            logs.event("smart-launch-refused", logging.WARNING, reason="open-server")
            return _refuse(
                "Opening a record without an authorization is allowed only for FHIR servers "
                "listed in smart_open_servers; launch the app from the EHR."
            )
        logs.event("smart-launch", mode="open-server")
        return _overview(iss, patient, token=None)
    try:
        server = smart.discover(iss, settings.fhir_timeout)
    except smart.LaunchError as error:
        return _refuse(str(error))
    flight, url = smart.begin(
        iss, server, settings.smart_client_id, _redirect_uri(), request.args.get("launch")
    )
    logs.event("smart-launch", mode="ehr" if request.args.get("launch") else "standalone")
    response = redirect(url, code=302)
    _set_cookie(response, flight)
    return response


@app_pages.get("/callback")
def callback() -> Response:
    if "error" in request.args:
        # The code is logged; the description, free text from elsewhere, is only shown.
        code = error_code(request.args)
        logs.event("smart-launch-refused", logging.WARNING, reason="authorization", error=code)
        return _refuse(
            "The authorization server did not grant access.",
            [f"It answered: {oauth_error(request.args)}"],
            status=403,
        )
    try:
        flight = smart.Launch.from_cookie(
            _serializer().loads(request.cookies.get(COOKIE, ""), max_age=smart.LAUNCH_SECONDS)
        )
    except (BadSignature, smart.LaunchError):
        return _refuse("This launch has expired or was not started here; launch again.")
    state = request.args.get("state", "")
    if not hmac.compare_digest(state.encode(), flight.state.encode()):
        logs.event("smart-launch-refused", logging.WARNING, reason="state")
        return _refuse("The state does not match this launch; launch again.")
    # One use: a launch cookie and callback URL captured and replayed (within the cookie's
    # life) is refused, on every worker and instance (the store's one-use ids).
    used = runtime().store.first_use(STATE_ISSUER, flight.state, time.time() + LAUNCH_SECONDS)
    if used is not True:
        reason = "state-reused" if used is False else "state-unchecked"
        logs.event("smart-launch-refused", logging.WARNING, reason=reason)
        return _refuse("This launch was already used, or cannot be checked now; launch again.")
    settings = runtime().settings
    try:
        grant = smart.exchange(
            flight,
            request.args.get("code", ""),
            settings.smart_client_id,
            _redirect_uri(),
            settings.fhir_timeout,
        )
    except smart.LaunchError as error:
        return _refuse(str(error))
    response = _overview(flight.iss, grant.patient, grant.access_token, grant.user)
    response.delete_cookie(COOKIE, path="/app/")
    return response


def _overview(iss: str, patient: str, token: str | None, user: str | None = None) -> Response:
    # Who saw what: the server, the user's and the patient's keyed hashes, never the ids.
    store = runtime().store
    seen: dict[str, Any] = {"server": iss, "patient": store.patient_key(patient)}
    if user:
        seen["user"] = store.audit_key("user", user)
    logs.event("smart-record-shown", **seen)
    return _render_overview(iss, patient, token)


def _render_overview(iss: str, patient: str, token: str | None) -> Response:
    hook_like: dict[str, Any] = {"context": {"patientId": patient}, "fhirServer": iss}
    if token:
        hook_like["fhirAuthorization"] = {"access_token": token}
    rt = runtime()
    try:
        gathered = gather(
            hook_like,
            APP_QUERIES,
            rt.settings,
            rt.executor,
            arrived(request.environ),
            pipeline.today(),
        )
    except ServiceError as error:
        reasons = [issue.diagnostics for issue in error.issues]
        return _refuse("Some of the record could not be read, so nothing is shown.", reasons)
    view = build(gathered.resources, pipeline.today(), rt.policy, gathered.incomplete)
    from .plots import plots  # matplotlib loads on the first page, not with the service

    page = render_template("overview.html", view=view, plots=plots(view))
    return make_response(page)


def _refuse(message: str, details: list[str] | None = None, status: int = 400) -> Response:
    logs.event("smart-app-error", logging.WARNING, status=status)
    page = render_template("error.html", message=message, details=details or [])
    return make_response(page, status)


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(runtime().store.secret_for("smart-launch"), salt=COOKIE)


def _set_cookie(response: BaseResponse, flight: smart.Launch) -> None:
    secure = _base().startswith("https://")
    response.set_cookie(
        COOKIE,
        _serializer().dumps(flight.as_cookie()),
        max_age=smart.LAUNCH_SECONDS,
        path="/app/",
        httponly=True,
        secure=secure,
        # In an EHR's iframe the callback is a cross-site request: only SameSite=None
        # (which browsers accept only with Secure) keeps the cookie there.
        samesite="None" if secure else "Lax",
    )


def _base() -> str:
    configured = runtime().settings.public_base_url
    return (configured or request.host_url).rstrip("/")


def _redirect_uri() -> str:
    return _base() + "/app/callback"
