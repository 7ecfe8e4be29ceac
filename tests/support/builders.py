"""Build CDS Hooks requests from FHIR Bundles, as an EHR would fill prefetch."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from cds_service.services import SERVICES
from fhir_mappings import QUERIES, Query, terminology
from fhir_mappings.fhirjson import bundle_resources, codings

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


def matches(query: Query, resource: dict[str, Any]) -> bool:
    """Whether ``resource`` answers ``query`` (type, and Observation/Procedure codes)."""
    if resource["resourceType"] != query.resource_type:
        return False
    if "code=" not in query.template:
        return True
    wanted = {
        pair.split("|")[1] for pair in query.template.split("code=")[1].split("&")[0].split(",")
    }
    return any(c.get("code") in wanted for c in codings(resource.get("code")))


def prefetch_for(bundle: dict[str, Any], keys: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Prefetch as a conformant EHR sends it: the Patient, a searchset per search key."""
    resources = list(bundle_resources(bundle))
    prefetch: dict[str, Any] = {}
    for key in keys:
        query = QUERIES[key]
        found = [r for r in resources if matches(query, r)]
        if query.resource_type == "Patient":
            prefetch[key] = found[0] if found else None
        else:
            prefetch[key] = searchset(found)
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
