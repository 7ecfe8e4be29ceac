"""HTTP endpoints. Two blueprints: ``cds`` (discovery, services, feedback), which needs a
client JWT when auth is required, and ``public`` (health, OpenAPI), which never does."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, g, request

from fhir_mappings.valuesets import value_sets

from . import logs, pipeline
from .errors import Issue, ServiceError
from .feedback import entries as feedback_entries
from .feedback import unstorable
from .health import POOL_GAUGE, readiness
from .issuance import audit_line, issued_cards
from .metrics import exposition, metrics
from .metrics_access import metrics_refusal
from .openapi import document
from .pipeline import Evaluation, draft_orders, evaluate
from .prefetch import gather
from .request_checks import check_patient, check_size, read_json, validate_request
from .responses import json_response
from .runtime import runtime
from .services import SERVICES
from .smart_app import launch_url
from .store import StoreOutcomeUnknownError, StoreUnavailableError
from .timing import arrived, elapsed_ms
from .triggers import topics_off
from .validation import check

RETRY_AFTER_SECONDS = 30  # what a 503 asks an EHR to wait before resending feedback
cds = Blueprint("cds", __name__)
public = Blueprint("public", __name__)


@cds.get("/cds-services")
def discovery() -> Response:
    return json_response({"services": [service.discovery() for service in SERVICES.values()]})


@public.get("/openapi.json")
def openapi() -> Response:
    return json_response(document())


@public.get("/livez")
@public.get("/healthz")  # kept, as liveness, for the setups that already probe it
def livez() -> Response:
    """The process answers: nothing else is checked (health.py says why)."""
    return json_response({"status": "ok"})


@public.get("/valuesets")
def valuesets() -> Response:
    """Every code list the service reads, as FHIR ValueSets (the site's codes marked)."""
    return json_response(value_sets())


@public.get("/metrics")
def metrics_page() -> Response:
    """Prometheus text format, for whom ``metrics_access`` allows (metrics_access.py)."""
    refusal = metrics_refusal(request, runtime().settings)
    if refusal is not None:
        raise ServiceError.single(403, "security", refusal)
    body, content_type = exposition()
    return Response(body, 200, content_type=content_type)


@public.get("/readyz")
def readyz() -> Response:
    """Send this instance hook calls? 200 with the checks when ready, else a 503 whose
    OperationOutcome names each check that failed and what it found."""
    ready, checks = readiness(runtime().store, request.environ.get(POOL_GAUGE))
    if ready:
        return json_response({"status": "ready", "checks": checks})
    failed = [
        Issue("transient", f"{name}: " + ", ".join(f"{k} {v}" for k, v in found.items()))
        for name, found in checks.items()
        if found.get("status") != "ok"
    ]
    raise ServiceError(503, failed)


@cds.post("/cds-services/<service_id>")
def invoke(service_id: str) -> Response:
    started = time.perf_counter()
    service = SERVICES.get(service_id)
    if service is None:
        raise ServiceError.single(404, "not-found", f"No CDS service '{service_id}'")
    body = read_json()
    validate_request(body, service)
    check_size(body, runtime().settings.max_resources)
    parse_ms = elapsed_ms(started)
    settings, executor = runtime().settings, runtime().executor
    gathered = gather(
        body, service.queries, settings, executor, arrived(request.environ), pipeline.today()
    )
    gather_ms = elapsed_ms(started) - parse_ms
    context = body["context"]
    patient_id = context["patientId"]
    check_patient(gathered, patient_id)
    drafts, review = draft_orders(context.get("draftOrders"), context.get("selections"))
    store = runtime().store
    patient_key = store.patient_key(patient_id)
    g.alpha1_patient_key = patient_key  # for the audit line, whatever the outcome
    g.alpha1_user_key = store.audit_key("user", context.get("userId"))
    looked_up = time.perf_counter()
    hidden = store.hidden_topics(patient_key)
    overrides_ms = elapsed_ms(looked_up)
    result = evaluate(
        service.hook,
        [*drafts, *gathered.resources],  # drafts first: they win over a stored copy
        patient_id,
        runtime().policy,
        incomplete=gathered.incomplete,
        drafts=review,
        hidden=hidden,
        app_url=launch_url(),
        off=topics_off(body, service.hook, settings),
    )
    auth_ms = g.get("auth_ms")
    timings = {
        **({"auth": auth_ms} if auth_ms is not None else {}),
        "parse": parse_ms,
        "gather": round(gather_ms, 3),
        "overrides": overrides_ms,
        **result.timings,
    }
    logs.event(
        "hook",
        service=service.id,
        hookInstance=body["hookInstance"],
        **client_fields(),
        status=200,
        topics=result.topics,
        # Records that could not be read, by concept name and count: never their values.
        unread=result.unread,
        # Topics a stronger one suppressed, or an override hid; notes the FHIR server sent
        # with its answers (OperationOutcome entries): counted, never their text.
        **result.counts(),
        serverNotes=len(gathered.notes),
        fetched=gathered.fetched,
        resources=len(gathered.resources),
        ms=elapsed_ms(started),
        timings=timings,
    )
    _count(timings, result, elapsed_ms(started))
    _record(result, service.id, body, patient_key)
    server_timing = ", ".join(f"{name};dur={ms}" for name, ms in timings.items())
    return json_response(result.response, headers={"Server-Timing": server_timing})


def _count(timings: dict[str, float], result: Evaluation, total_ms: float) -> None:
    """The call's stage times and cards (shown, and decided silently), for /metrics."""
    found = metrics()
    for stage, ms in [*timings.items(), ("total", total_ms)]:
        found.stage_seconds.labels(stage).observe(ms / 1000)
    for cards, shown in ((result.response["cards"], "true"), (result.silent_cards, "false")):
        for card in cards:
            found.cards.labels(card["source"]["topic"]["code"], card["indicator"], shown).inc()


def _record(result: Evaluation, service: str, body: dict[str, Any], patient_key: str) -> None:
    """Every card decided, shown or silent, with who it was for (the audit trail), and the
    call's audit line."""
    store, context = runtime().store, body["context"]
    audit = {
        "user_key": g.get("alpha1_user_key"),
        "encounter_key": store.audit_key("encounter", context.get("encounterId")),
        "client_iss": g.get("client"),
        "client_tenant": g.get("tenant"),
    }
    instance = body["hookInstance"]
    shown = issued_cards(result.response, service, instance, patient_key, audit)
    silent = {"cards": result.silent_cards}
    store.log_issued(
        [*shown, *issued_cards(silent, service, instance, patient_key, audit | {"shown": False})]
    )
    audit_line(
        200,
        audit["user_key"],
        [c.card_uuid for c in shown],
        [c["uuid"] for c in result.silent_cards],
    )


def client_fields() -> dict[str, Any]:
    """The calling client (its JWT's ``iss`` and ``tenant``) when auth named one."""
    fields = {"iss": g.get("client"), "tenant": g.get("tenant")}
    return {name: value for name, value in fields.items() if value}


@cds.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    if service_id not in SERVICES:
        raise ServiceError.single(404, "not-found", f"No CDS service '{service_id}'")
    body = read_json()
    issues = check("feedback", body)
    if issues:
        raise ServiceError(400, issues)  # nothing of a request with a bad entry is stored
    received = feedback_entries(body)
    issues = unstorable(received)
    if issues:
        raise ServiceError(400, issues)
    try:
        stored = runtime().store.store_feedback(service_id, received)
    except StoreUnavailableError as error:
        said = (
            "Feedback may not have been stored (the store did not confirm in time): resend it"
            " after Retry-After; an entry sent twice is kept once"
            if isinstance(error, StoreOutcomeUnknownError)
            else "Feedback could not be stored now; nothing was kept: retry"
        )
        issue = Issue("transient", said)
        raise ServiceError(503, [issue], {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
    counted = metrics().feedback
    for entry in received:
        counted.labels(entry.outcome).inc()
    logs.event(
        "feedback",
        service=service_id,
        received=len(received),
        new=stored.new,
        unknown_cards=len(stored.unknown_cards),
    )
    answer: dict[str, Any] = {"received": len(received), "new": stored.new}
    if stored.unknown_cards:
        answer["unknownCards"] = list(stored.unknown_cards)
    return json_response(answer)
