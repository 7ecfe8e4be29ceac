"""The clinical core in process, without Flask: fixture Bundles -> PatientFacts."""

from __future__ import annotations

import copy
from typing import Any

from fhir_mappings import Lookbacks, PatientFacts, map_patient
from fhir_mappings.fhirjson import bundle_resources

from ..conftest import TODAY
from .builders import load_bundle


def facts_of(resources: list[dict[str, Any]], drafts: dict[str, bool] | None = None):
    return map_patient(resources, TODAY, (), Lookbacks(), drafts)


def with_a1pi_draft(
    fixture: str, dosage: dict[str, Any] | None = None
) -> tuple[PatientFacts, PatientFacts]:
    """(patient-view facts, order-sign facts with a Prolastin-C draft): by default at the
    labelled dose from the latest weight, once weekly; ``dosage`` replaces it."""
    resources = list(bundle_resources(load_bundle(fixture)))
    plain = facts_of(resources)
    weight = plain.latest("body_weight")
    dose = round(60 * weight.value) if weight else 4200
    draft = {
        "resourceType": "MedicationRequest",
        "id": "consistency-draft",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{plain.patient.reference.split('/')[1]}"},
        "medicationCodeableConcept": {
            "coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "13533-705-01"}],
            "text": "Prolastin-C Liquid",
        },
        "dosageInstruction": [
            dosage
            or {
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk"}},
                "doseAndRate": [{"doseQuantity": {"value": dose, "unit": "mg", "code": "mg"}}],
            }
        ],
    }
    signing = facts_of(
        [*copy.deepcopy(resources), draft], {"MedicationRequest/consistency-draft": True}
    )
    return plain, signing
