"""Suggested actions -> CDS Hooks suggestions whose resources are valid FHIR R4.

Resources are built with fhir.resources (R4B, the R4-compatible package), so a malformed
suggestion fails here, in our tests, and never reaches an EHR.
"""

from __future__ import annotations

import uuid
from typing import Any

from fhir.resources.R4B.servicerequest import ServiceRequest

from fhir_mappings import terminology
from hooks import OrderTest, SuggestedAction


def suggestion(action: SuggestedAction, patient_id: str, reason: str) -> dict[str, Any]:
    """One suggestion with one action: Epic applies a single action per suggestion."""
    if isinstance(action, OrderTest):
        return _order_test(action, patient_id, reason)
    raise TypeError(f"no renderer for {type(action).__name__}")


def _order_test(action: OrderTest, patient_id: str, reason: str) -> dict[str, Any]:
    concept = terminology.observations().concepts[action.concept]
    code = concept.codes[0]
    category = terminology.service_categories().concepts["laboratory"].codes[0]
    resource = ServiceRequest.model_validate(
        {
            "resourceType": "ServiceRequest",
            "status": "draft",
            "intent": "proposal",
            "category": [{"coding": [_coding(category)]}],
            "code": {
                "coding": [_coding(code)],
                "text": concept.display,
            },
            "subject": {"reference": f"Patient/{patient_id}"},
            "reasonCode": [{"text": reason}],
        }
    )
    return {
        "label": action.label,
        "uuid": str(uuid.uuid4()),
        "isRecommended": True,
        "actions": [
            {
                "type": "create",
                "description": action.label,
                "resource": resource.model_dump(mode="json", exclude_none=True),
            }
        ],
    }


def _coding(code: terminology.Code) -> dict[str, str]:
    return {"system": code.system, "code": code.code, "display": code.display}
