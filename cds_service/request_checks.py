"""What a hook or feedback request must be before the service acts on it.

Each check raises a ``ServiceError`` whose OperationOutcome names the offending field:
415 for another media type, 400 for bad JSON or a schema violation, 413 past the
resource limit, 412 without the patient in context.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from flask import request

from fhir_mappings.fhirjson import as_list

from .errors import Issue, ServiceError
from .prefetch import Gathered
from .services import Service
from .validation import check

# "\ud800" not followed by a low surrogate, or "\udc00" not preceded by a high one: JSON
# allows the escape, but the string is not text (orjson refuses it; this says why).
_LONE_SURROGATE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


def read_json() -> Any:
    """The request body as JSON: 415 for another media type, 413 past the size limit."""
    mimetype = request.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ServiceError.single(415, "not-supported", "Content-Type must be application/json")
    data = request.get_data(cache=False)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        if _LONE_SURROGATE.search(data):
            raise ServiceError.single(
                400, "structure", "The body holds a lone UTF-16 surrogate escape (not valid text)"
            ) from None
        if "UTF-8" in error.msg:
            raise ServiceError.single(400, "structure", "The body is not valid UTF-8") from None
        if "infinity" in error.msg:  # past a double's range, or too many digits to read
            raise ServiceError.single(
                400, "structure", "The body holds a number too long to read"
            ) from None
        if "depth" in error.msg:
            raise ServiceError.single(
                400, "structure", "The JSON body is nested too deeply"
            ) from None
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
    """The record must be the patient in context: 412 without it or for another one (an
    answer about someone else is data that could not be had, not the EHR's mistake)."""
    patients = [r for r in gathered.resources if r.get("resourceType") == "Patient"]
    if not patients:
        raise ServiceError.single(
            412, "not-found", "The Patient resource could not be obtained", "prefetch.patient"
        )
    if any(p.get("id") != patient_id for p in patients):
        raise ServiceError.single(
            412,
            "incomplete",
            "Required data 'patient' could not be obtained: the answer is another patient",
            "prefetch.patient",
        )
