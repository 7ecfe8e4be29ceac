"""Suggested actions -> CDS Hooks suggestions whose resources are valid FHIR R4.

Resources are built with fhir.resources (R4B, the R4-compatible package), so a malformed
suggestion fails here, in our tests, and never reaches an EHR. Updates start from the
order as the EHR sent it; when that order is not at hand, or not valid FHIR, no update is
offered (the card still says what to do).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import ValidationError

from fhir_mappings import medications, terminology
from hooks import (
    CorrectDose,
    OrderService,
    OrderTest,
    PrescribeAugmentation,
    RemoveDraft,
    StopOrder,
    SuggestedAction,
)
from hooks.knowledge import bound_numbers, thresholds

Resources = Mapping[str, Mapping[str, Any]]  # "Type/id" -> resource as received
NDC = "http://hl7.org/fhir/sid/ndc"


def suggestion(
    action: SuggestedAction, patient_id: str, reason: str, resources: Resources
) -> dict[str, Any] | None:
    """One suggestion with one action (Epic applies a single action per suggestion)."""
    built = _action(action, patient_id, reason, resources)
    if built is None:
        return None
    return {
        "label": action.label,
        "uuid": str(uuid.uuid4()),
        # The A1PI products are alternatives under selectionBehavior "any": pre-selecting
        # them all let one click order four products, so none is; the clinician picks one.
        "isRecommended": not isinstance(action, PrescribeAugmentation),
        "actions": [built],
    }


def _action(
    action: SuggestedAction, patient_id: str, reason: str, resources: Resources
) -> dict[str, Any] | None:
    match action:
        case OrderTest():
            return _create(_lab_order(action, patient_id, reason), action.label)
        case OrderService():
            return _create(_service_order(action, patient_id, reason), action.label)
        case PrescribeAugmentation():
            return _create(_augmentation(action, patient_id, reason), action.label)
        case StopOrder():
            return _update(resources.get(action.reference), action.label, _stopped)
        case CorrectDose():
            return _update(resources.get(action.reference), action.label, _dose(action.dose_mg))
        case RemoveDraft():
            return {"type": "delete", "description": action.label, "resourceId": action.reference}
    raise TypeError(f"no renderer for {type(action).__name__}")


def _create(resource: dict[str, Any], description: str) -> dict[str, Any]:
    return {"type": "create", "description": description, "resource": resource}


# Shapes of resources this service builds that fhir.resources has accepted. The values of
# a built resource come from the service's own computation (codes from data files, doses,
# the validated patient id), so one validation per shape shows the template is valid; an
# order the EHR sent is validated in full every time (``_update``).
_VALID_SHAPES: set[tuple[str, bytes]] = set()
_MAX_SHAPES = 1024


def _shape(value: Any) -> Any:
    """The structure of a resource, its leaves reduced to what FHIR's types care about.
    Exact type tests, strings first (most leaves): a subclass of str or int gets its repr,
    so a value of an unexpected type is validated, never assumed."""
    kind = type(value)
    if kind is str:
        return "string" if value and value.strip() == value else repr(value)
    if kind is dict:
        return {key: _shape(item) for key, item in value.items()}
    if kind is list:
        return [_shape(item) for item in value]
    if value is None or kind is bool:
        return value
    if kind is int or kind is float:
        return "number" if math.isfinite(value) else repr(value)
    return repr(value)


def _built(model: Any, resource: dict[str, Any]) -> dict[str, Any]:
    """A resource this service built, validated once per shape."""
    key = (model.__name__, orjson.dumps(_shape(resource), option=orjson.OPT_SORT_KEYS))
    if key not in _VALID_SHAPES:
        model.model_validate(resource)
        if len(_VALID_SHAPES) < _MAX_SHAPES:
            _VALID_SHAPES.add(key)
    return resource


def _validated(model: Any, resource: dict[str, Any]) -> dict[str, Any]:
    """``resource`` after fhir.resources accepted it: the JSON we built is the JSON we send
    (serialising the model back out would cost more than the validation itself)."""
    model.model_validate(resource)
    return resource


def _coding(code: terminology.Code) -> dict[str, str]:
    return {"system": code.system, "code": code.code, "display": code.display}


def _order_code(name: str) -> dict[str, str]:
    return _coding(terminology.order_codes().concepts[name].codes[0])


def _service_request(
    code: dict[str, Any], patient_id: str, reason: str, **extra: Any
) -> dict[str, Any]:
    """A draft, proposed ServiceRequest for the patient, validated."""
    resource = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        **extra,
        "code": code,
        "subject": {"reference": f"Patient/{patient_id}"},
        "reasonCode": [{"text": reason}],
    }
    return _built(ServiceRequest, resource)


def _lab_category() -> list[dict[str, Any]]:
    return [{"coding": [_order_code("laboratory")]}]


def _lab_order(action: OrderTest, patient_id: str, reason: str) -> dict[str, Any]:
    concept = terminology.observations().concepts[action.concept]
    code = {"coding": [_coding(concept.codes[0])], "text": concept.display}
    return _service_request(code, patient_id, reason, category=_lab_category())


def _service_order(action: OrderService, patient_id: str, reason: str) -> dict[str, Any]:
    """Procedures, referrals and lab panels: coded where order_codes.json holds a verified
    code, else described in words (code.text; the data file says why there is no code)."""
    code: dict[str, Any] = {"text": action.text}
    concept = terminology.order_codes().concepts.get(action.key)
    if concept is not None:
        code["coding"] = [_coding(concept.codes[0])]
    extra = {"category": _lab_category()} if action.kind == "laboratory" else {}
    return _service_request(code, patient_id, reason, **extra)


def _a1pi_text() -> str:
    """The generic name and the brands, from the one product list."""
    return f"{medications.class_display('a1pi')}: {bound_numbers()['a1pi_brands_or']}"


def _weekly_dose(dose_mg: float, rate_ml_per_kg_min: float | None = None) -> dict[str, Any]:
    """The labelled dose IV once weekly, with the product's labelled infusion rate when known."""
    dose_and_rate: dict[str, Any] = {
        "doseQuantity": {
            "value": round(dose_mg),
            "unit": "mg",
            "system": terminology.UCUM,
            "code": "mg",
        }
    }
    rate = "at the labelled rate"
    if rate_ml_per_kg_min is not None:
        dose_and_rate["rateQuantity"] = {
            "value": rate_ml_per_kg_min,
            "unit": "mL/kg/min",
            "system": terminology.UCUM,
            "code": "mL/kg/min",
        }
        rate = f"at {rate_ml_per_kg_min:g} mL/kg/min"
    return {
        "text": f"{dose_mg:,.0f} mg ({thresholds().a1pi_dose_mg_per_kg_week:g} mg/kg) IV once"
        f" weekly, {rate}",
        "route": {"coding": [_order_code("intravenous")]},
        "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk"}},
        "doseAndRate": [dose_and_rate],
    }


def _augmentation(action: PrescribeAugmentation, patient_id: str, reason: str) -> dict[str, Any]:
    """One labelled product, by its NDC product code, at the labelled dose and rate."""
    product = action.product
    medication: dict[str, Any] = {"text": _a1pi_text()}
    rate = None
    if product is not None:
        ndc = {"system": NDC, "code": product.ndc, "display": product.display}
        medication = {"coding": [ndc], "text": product.display}
        rate = product.rate_ml_per_kg_min
    return _built(
        MedicationRequest,
        {
            "resourceType": "MedicationRequest",
            "status": "draft",
            "intent": "proposal",
            "medicationCodeableConcept": medication,
            "subject": {"reference": f"Patient/{patient_id}"},
            "reasonCode": [{"text": reason}],
            "dosageInstruction": [_weekly_dose(action.dose_mg, rate)],
            "note": [{"text": f"Dose from the latest weight, {action.weight_kg:g} kg."}],
        },
    )


def _stopped(resource: dict[str, Any]) -> None:
    resource["status"] = "stopped"


def _dose(dose_mg: float):
    def change(resource: dict[str, Any]) -> None:
        resource["dosageInstruction"] = [_weekly_dose(dose_mg)]

    return change


def _pruned(value: Any) -> Any:
    """A copy of ``value`` without null, empty lists, objects or strings, at any depth: an
    EHR's order may carry ``"coding": []``, and a response may carry no empty member. Every
    dict and list is new, so the caller may change the copy freely."""
    if isinstance(value, dict):
        kept = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        kept_items = [_pruned(v) for v in value]
        return [v for v in kept_items if v not in (None, "", [], {})]
    return value


def _update(original: Mapping[str, Any] | None, description: str, change) -> dict[str, Any] | None:
    if original is None or original.get("resourceType") != "MedicationRequest":
        return None
    resource = _pruned(original)
    change(resource)
    try:
        valid = _validated(MedicationRequest, resource)
    except ValidationError:
        return None
    return {"type": "update", "description": description, "resource": valid}
