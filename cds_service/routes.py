"""HTTP endpoints: discovery, service invocation, health."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, g, request

from fhir_mappings.fhirjson import as_list

from . import logs
from .errors import Issue, ServiceError
from .feedback import entries as feedback_entries
from .openapi import document
from .pipeline import draft_orders, evaluate
from .prefetch import Gathered, gather
from .responses import json_response
from .runtime import runtime
from .services import SERVICES, Service
from .store import IssuedCard
from .validation import check

bp = Blueprint("cds", __name__)


@bp.get("/cds-services")
def discovery() -> Response:
    return json_response({"services": [service.discovery() for service in SERVICES.values()]})


@bp.get("/openapi.json")
def openapi() -> Response:
    return json_response(document())


@bp.get("/healthz")
def healthz() -> Response:
    return json_response({"status": "ok"})


@bp.post("/cds-services/<service_id>")
def invoke(service_id: str) -> Response:
    started = time.perf_counter()
    service = SERVICES.get(service_id)
    if service is None:
        raise ServiceError.single(404, "not-found", f"No CDS service '{service_id}'")
    body = read_json()
    validate_request(body, service)
    check_size(body, runtime().settings.max_resources)
    parse_ms = _since(started)
    gathered = gather(body, service.queries, runtime().settings, runtime().executor)
    gather_ms = _since(started) - parse_ms
    context = body["context"]
    patient_id = context["patientId"]
    check_patient(gathered, patient_id)
    drafts, review = draft_orders(context.get("draftOrders"), context.get("selections"))
    result = evaluate(
        service.hook,
        [*drafts, *gathered.resources],  # drafts first: they win over a stored copy
        patient_id,
        runtime().policy,
        incomplete=gathered.incomplete,
        drafts=review,
    )
    auth_ms = g.get("auth_ms")
    timings = {
        **({"auth": auth_ms} if auth_ms is not None else {}),
        "parse": parse_ms,
        "gather": round(gather_ms, 3),
        **result.timings,
    }
    logs.event(
        "hook",
        service=service.id,
        hookInstance=body["hookInstance"],
        status=200,
        topics=result.topics,
        fetched=gathered.fetched,
        resources=len(gathered.resources),
        ms=_since(started),
        timings=timings,
    )
    store = runtime().store
    store.log_issued(
        issued_cards(
            result.response, service.id, body["hookInstance"], store.patient_key(patient_id)
        )
    )
    server_timing = ", ".join(f"{name};dur={ms}" for name, ms in timings.items())
    return json_response(result.response, headers={"Server-Timing": server_timing})


@bp.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    if service_id not in SERVICES:
        raise ServiceError.single(404, "not-found", f"No CDS service '{service_id}'")
    body = read_json()
    issues = check("feedback", body)
    if issues:
        raise ServiceError(400, issues)  # nothing of a request with a bad entry is stored
    received = feedback_entries(body)
    stored = runtime().store.store_feedback(service_id, received)
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


def issued_cards(
    response: dict[str, Any], service: str, hook_instance: str, patient_key: str | None
) -> list[IssuedCard]:
    now = datetime.now(UTC)
    return [
        IssuedCard(
            card_uuid=card["uuid"],
            service=service,
            topic=card["source"]["topic"]["code"],
            indicator=card["indicator"],
            suggestion_uuids=tuple(s["uuid"] for s in card.get("suggestions", [])),
            hook_instance=hook_instance,
            patient_key=patient_key,
            issued_at=now,
        )
        for card in response["cards"]
    ]


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def read_json() -> Any:
    """The request body as JSON: 415 for another media type, 413 past the size limit."""
    mimetype = request.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ServiceError.single(415, "not-supported", "Content-Type must be application/json")
    data = request.get_data(cache=False)
    try:
        return json.loads(data)
    except RecursionError:
        raise ServiceError.single(400, "structure", "The JSON body is nested too deeply") from None
    except UnicodeDecodeError:
        raise ServiceError.single(400, "structure", "The body is not valid UTF-8") from None
    except json.JSONDecodeError as error:
        raise ServiceError.single(
            400,
            "structure",
            f"The body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}",
        ) from None


def validate_request(body: Any, service: Service) -> None:
    """400 naming every offending field: the request schema, then the hook's context."""
    issues = check("request", body)
    if not issues and body["hook"] != service.hook:
        issues = [
            Issue(
                "invalid",
                f"hook is '{body['hook']}' but service '{service.id}' answers '{service.hook}'",
                "hook",
            )
        ]
    if not issues:
        issues = check(f"context-{service.hook}", body["context"], prefix="context")
    if issues:
        raise ServiceError(400, issues)


def check_size(body: dict[str, Any], limit: int) -> None:
    """413 when prefetch and draft orders hold more resources than the service will process."""
    bundles = [*(body.get("prefetch") or {}).values(), body["context"].get("draftOrders")]
    count = sum(
        len(as_list(b.get("entry"))) if b.get("resourceType") == "Bundle" else 1
        for b in bundles
        if b
    )
    if count > limit:
        raise ServiceError.single(
            413, "too-costly", f"The request holds {count} resources; the limit is {limit}"
        )


def check_patient(gathered: Gathered, patient_id: str) -> None:
    """The record must be the patient in context: 412 without it, 400 for another one."""
    patients = [r for r in gathered.resources if r.get("resourceType") == "Patient"]
    if not patients:
        raise ServiceError.single(
            412, "not-found", "The Patient resource could not be obtained", "prefetch.patient"
        )
    if any(p.get("id") != patient_id for p in patients):
        raise ServiceError.single(
            400,
            "invalid",
            "prefetch.patient is not the patient named by context.patientId",
            "prefetch.patient",
        )
