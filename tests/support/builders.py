"""Build CDS Hooks requests from FHIR Bundles, as an EHR would fill prefetch."""

from __future__ import annotations

import json
import uuid
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from cds_service.services import SERVICES
from fhir_mappings import QUERIES, Query, terminology
from fhir_mappings.fhirjson import bundle_resources, clinical_date, codings

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"


def load_bundle(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "patients" / f"{name}.json").read_text(encoding="utf-8"))


def patient_id(bundle: dict[str, Any]) -> str:
    return next(r["id"] for r in bundle_resources(bundle) if r["resourceType"] == "Patient")


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": r, "search": {"mode": "match"}}
            for r in resources
        ],
    }


def wanted_codes(query: Query) -> set[str] | None:
    """The codes a template's ``code=`` asks for (system dropped), or None for any code."""
    if "code=" not in query.template:
        return None
    values = query.template.split("code=")[1].split("&")[0].split(",")
    return {unquote(value).split("|")[-1] for value in values}


def matches(query: Query, resource: dict[str, Any]) -> bool:
    """Whether ``resource`` answers ``query`` (type, and the codes it names)."""
    if resource["resourceType"] != query.resource_type:
        return False
    wanted = wanted_codes(query)
    if wanted is None:
        return True
    field = "vaccineCode" if query.resource_type == "Immunization" else "code"
    return any(c.get("code") in wanted for c in codings(resource.get(field)))


def answer(query: Query, resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A searchset as a conformant server answers ``query``: a window key sorted newest
    first and cut to its page, with the total of every match."""
    found = [r for r in resources if matches(query, r)]
    if query.window is None:
        return searchset(found)
    found.sort(key=lambda r: clinical_date(r) or date.min, reverse=True)
    bundle = searchset(found[: query.window.newest])
    bundle["total"] = len(found)
    return bundle


def prefetch_for(bundle: dict[str, Any], keys: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Prefetch as a conformant EHR sends it: the Patient, a searchset per search key."""
    resources = list(bundle_resources(bundle))
    prefetch: dict[str, Any] = {}
    for key in keys:
        query = QUERIES[key]
        if query.resource_type == "Patient":
            found = [r for r in resources if matches(query, r)]
            prefetch[key] = found[0] if found else None
        else:
            prefetch[key] = answer(query, resources)
    return prefetch


def hook_request(
    bundle: dict[str, Any],
    service_id: str = "aatd-patient-view",
    prefetch: str | dict[str, Any] = "full",
    **extra: Any,
) -> dict[str, Any]:
    """A request for ``service_id`` about the bundle's patient.

    ``prefetch``: "full" (every key), "none" (no prefetch member) or an explicit dict.
    """
    service = SERVICES[service_id]
    pid = patient_id(bundle)
    context: dict[str, Any] = {"userId": "Practitioner/example", "patientId": pid}
    if service.hook != "patient-view":
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection", "entry": []}
    if service.hook == "order-select":
        context["selections"] = ["MedicationRequest/none"]
    body: dict[str, Any] = {
        "hook": service.hook,
        "hookInstance": str(uuid.uuid4()),
        "context": context,
    }
    if prefetch == "full":
        body["prefetch"] = prefetch_for(bundle, service.prefetch_keys)
    elif isinstance(prefetch, dict):
        body["prefetch"] = prefetch
    body.update(extra)
    return body


def aat_codes() -> set[str]:
    observations = terminology.observations()
    return {c.code for c in observations.codes(*observations.names_in_group("aat"))}
