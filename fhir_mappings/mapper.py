"""FHIR R4 resources -> PatientFacts, in one pass, never raising on bad data.

What the record itself withdraws (entered-in-error, cancelled, refuted) is ignored; what
cannot be read is skipped with a DataNote, so the rules can say what is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import date
from typing import Any

from . import terminology
from .facts import CodedFinding, DataNote, Measurement, PatientFacts, Source, TestRecord
from .fhirjson import (
    Json,
    as_dict,
    as_list,
    codings,
    concept_text,
    parse_date,
    reference_id,
    status_code,
)

WITHDRAWN_OBSERVATION = frozenset({"entered-in-error", "cancelled"})
WITHDRAWN_VERIFICATION = frozenset({"refuted", "entered-in-error"})
PAST_CLINICAL_STATUS = frozenset({"inactive", "remission", "resolved"})
SERPINA1_HGNC = "HGNC:8941"
GENE_STUDIED = "48018-6"
FEV1_FVC_PERCENT_CUTOFF = 1.5  # clinical-knowledge.md 3.2: a ratio above 1.5 was sent as a percent
FEV1_FVC_PLAUSIBLE = (0.2, 1.0)  # clinical-knowledge.md 6: FEV1/FVC fraction sanity range


def map_patient(
    resources: Iterable[Json],
    as_of: date,
    incomplete: Iterable[str] = (),
) -> PatientFacts:
    """Build the facts for the one patient these resources describe.

    ``incomplete`` names resource types that gathering may have cut short, so that rules
    never conclude "not on record" from a partial list.
    """
    facts = PatientFacts(as_of=as_of, incomplete=frozenset(incomplete))
    resources = _unique(resources, facts)
    patient_id = _patient_id(resources)
    for resource in resources:
        kind = resource["resourceType"]
        handler = _HANDLERS.get(kind)
        if handler is None:
            continue
        source = _source(resource)
        if not _is_for_patient(resource, patient_id):
            facts.notes.append(DataNote(f"{source.reference} is about another patient; ignored"))
            continue
        try:
            handler(resource, source, facts)
        except (KeyError, TypeError, ValueError, AttributeError):
            facts.notes.append(DataNote(f"{source.reference} could not be read; ignored", source))
    _sort_newest_first(facts)
    return facts


def _unique(resources: Iterable[Any], facts: PatientFacts) -> list[Json]:
    """Resources with a type, each (type, id) once: prefetch and pages may overlap."""
    seen: set[tuple[str, str]] = set()
    unique = []
    for resource in resources:
        if not isinstance(resource, Mapping) or not isinstance(resource.get("resourceType"), str):
            facts.notes.append(DataNote("an entry without a resourceType was ignored"))
            continue
        rid = resource.get("id")
        if isinstance(rid, str):
            key = (resource["resourceType"], rid)
            if key in seen:
                continue
            seen.add(key)
        unique.append(resource)
    return unique


def _patient_id(resources: list[Json]) -> str | None:
    for resource in resources:
        if resource["resourceType"] == "Patient" and isinstance(resource.get("id"), str):
            return resource["id"]
    return None


def _is_for_patient(resource: Json, patient_id: str | None) -> bool:
    """False only when the resource names a different Patient by id."""
    if patient_id is None or resource["resourceType"] == "Patient":
        return True
    for field in ("subject", "patient"):
        other = reference_id(resource.get(field), "Patient")
        if other is not None:
            return other == patient_id
    return True


def _source(resource: Json) -> Source:
    rid = resource.get("id") if isinstance(resource.get("id"), str) else "(no id)"
    when = None
    for field in ("effectiveDateTime", "onsetDateTime", "recordedDate", "date", "issued"):
        when = parse_date(resource.get(field))
        if when:
            break
    if when is None:
        when = parse_date(as_dict(resource.get("effectivePeriod")).get("start"))
    status = resource.get("status") if isinstance(resource.get("status"), str) else None
    return Source(f"{resource['resourceType']}/{rid}", when, status)


def _patient(resource: Json, source: Source, facts: PatientFacts) -> None:
    facts.patient = source
    facts.birth_date = parse_date(resource.get("birthDate"))
    if facts.birth_date is None:
        facts.notes.append(DataNote("the patient's birth date is not recorded", source))


def _condition(resource: Json, source: Source, facts: PatientFacts) -> None:
    if status_code(resource, "verificationStatus") in WITHDRAWN_VERIFICATION:
        return
    concepts = terminology.conditions().concepts_in(codings(resource.get("code")))
    if not concepts:
        return
    active = status_code(resource, "clinicalStatus") not in PAST_CLINICAL_STATUS
    text = concept_text(resource.get("code")) or "condition"
    for concept in concepts:
        facts.conditions.setdefault(concept, []).append(CodedFinding(concept, text, active, source))


def _family_history(resource: Json, source: Source, facts: PatientFacts) -> None:
    if resource.get("status") == "entered-in-error":
        return
    relation = concept_text(resource.get("relationship")) or "relative"
    for condition in as_list(resource.get("condition")):
        code = as_dict(condition).get("code")
        for concept in terminology.conditions().concepts_in(codings(code)):
            text = f"{relation}: {concept_text(code) or concept}"
            facts.family_history.setdefault(concept, []).append(
                CodedFinding(concept, text, True, source)
            )


def _observation(resource: Json, source: Source, facts: PatientFacts) -> None:
    if resource.get("status") in WITHDRAWN_OBSERVATION:
        return
    for concept in terminology.observations().concepts_in(codings(resource.get("code"))):
        reader = _OBSERVATION_READERS.get(concept)
        if reader is not None:
            reader(concept, resource, source, facts)


def _aat_test(concept: str, resource: Json, source: Source, facts: PatientFacts) -> None:
    if concept == "genetic_variant" and not _is_serpina1(resource):
        return
    text = concept_text(resource.get("code")) or concept
    pending = resource.get("status") == "registered"
    facts.aat_tests.append(TestRecord(concept, text, pending, source))


def _is_serpina1(resource: Json) -> bool:
    """A Genomics Reporting variant is about AATD only when the gene studied is SERPINA1."""
    for component in as_list(resource.get("component")):
        component = as_dict(component)
        if any(c.get("code") == GENE_STUDIED for c in codings(component.get("code"))):
            value = component.get("valueCodeableConcept")
            if any(c.get("code") == SERPINA1_HGNC for c in codings(value)):
                return True
    return False


def _fev1_fvc(concept: str, resource: Json, source: Source, facts: PatientFacts) -> None:
    quantity = as_dict(resource.get("valueQuantity"))
    value = quantity.get("value")
    if not isinstance(value, int | float) or isinstance(value, bool):
        facts.notes.append(DataNote("FEV1/FVC without a numeric value; ignored", source))
        return
    ratio = float(value)
    if quantity.get("code") == "%" or ratio > FEV1_FVC_PERCENT_CUTOFF:
        ratio /= 100
    low, high = FEV1_FVC_PLAUSIBLE
    if not low <= ratio <= high:
        facts.notes.append(DataNote(f"FEV1/FVC {value} is implausible; ignored", source))
        return
    facts.measurements.setdefault(concept, []).append(Measurement(concept, ratio, "1", source))


def _sort_newest_first(facts: PatientFacts) -> None:
    def newest(item: CodedFinding | TestRecord | Measurement) -> date:
        return item.source.date or date.min

    for group in (facts.conditions, facts.family_history, facts.measurements):
        for items in group.values():
            items.sort(key=newest, reverse=True)
    facts.aat_tests.sort(key=newest, reverse=True)


Handler = Callable[[Json, Source, PatientFacts], None]
ObservationReader = Callable[[str, Json, Source, PatientFacts], None]

_HANDLERS: dict[str, Handler] = {
    "Patient": _patient,
    "Condition": _condition,
    "FamilyMemberHistory": _family_history,
    "Observation": _observation,
}

_OBSERVATION_READERS: dict[str, ObservationReader] = {
    **dict.fromkeys(terminology.observations().names_in_group("aat"), _aat_test),
    "fev1_fvc": _fev1_fvc,
}
