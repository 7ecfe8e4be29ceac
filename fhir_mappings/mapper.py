"""FHIR R4 resources -> PatientFacts, in one pass, never raising on bad data.

What the record itself withdraws (entered-in-error, cancelled, refuted, not-done) is
ignored; what cannot be read is skipped with a DataNote, so the rules can say what is
missing. Only the resource types the rules use are read at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from . import terminology
from .facts import CodedFinding, DataNote, Immunization, PatientFacts, SmokingStatus, Source
from .fhirjson import (
    Json,
    as_dict,
    as_list,
    clinical_date,
    concept_text,
    names_other_patient,
    parse_date,
    status_code,
)
from .interpretation import (
    Lookbacks,
    choose_spirometry,
    derive_fev1_percent,
    note_stale,
    resolve_genotype,
)
from .medications import (
    keep_newest_administrations,
    normalise_doses,
    product_of,
    read_administration,
    read_order,
)
from .observations import AlleleEvidence, read_observation

WITHDRAWN_OBSERVATION = frozenset({"entered-in-error", "cancelled"})
WITHDRAWN_VERIFICATION = frozenset({"refuted", "entered-in-error"})
PAST_CLINICAL_STATUS = frozenset({"inactive", "remission", "resolved"})
WITHDRAWN_EVENT = frozenset({"entered-in-error", "not-done"})
ANAPHYLAXIS_WORDS = ("anaphyla", "severe systemic")


@dataclass(slots=True)
class _Pass:
    """State of one mapping pass."""

    facts: PatientFacts
    medications: dict[str, Json]
    drafts: Mapping[str, bool]
    alleles: AlleleEvidence = field(default_factory=AlleleEvidence)


def map_patient(
    resources: Iterable[Any],
    as_of: date,
    incomplete: Iterable[str] = (),
    lookbacks: Lookbacks | None = None,
    drafts: Mapping[str, bool] | None = None,
) -> PatientFacts:
    """Build the facts for the one patient these resources describe.

    ``incomplete`` names resource types that gathering may have cut short, so that rules
    never conclude "not on record" from a partial list. ``drafts`` maps the references of
    the hook's draft orders (``MedicationRequest/x``) to whether each is under review.
    """
    facts = PatientFacts(as_of=as_of, incomplete=frozenset(incomplete))
    unique = _unique(resources, facts)
    medications = {
        r["id"]: r
        for r in unique
        if r["resourceType"] == "Medication" and isinstance(r.get("id"), str)
    }
    state = _Pass(facts, medications, drafts or {})
    patient_id = _patient_id(unique)
    for resource in unique:
        handler = _HANDLERS.get(resource["resourceType"])
        if handler is None:
            continue
        source = _source(resource)
        if not _is_for_patient(resource, patient_id):
            facts.notes.append(DataNote(f"{source.reference} is about another patient; ignored"))
            continue
        try:
            handler(resource, source, state)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            _unreadable_record(facts, resource["resourceType"], source)
    _finish(state, lookbacks or Lookbacks())
    return facts


# What a record of each type stands for when it cannot be read at all, so that the rules
# that would otherwise say "none on record" say "could not be read" (``unread``).
UNREADABLE_AS = {
    "AllergyIntolerance": ("allergy", "an allergy record"),
    "MedicationRequest": ("therapy", "a medication order"),
    "MedicationStatement": ("therapy", "a medication statement"),
    "MedicationAdministration": ("therapy", "an infusion record"),
    "Immunization": ("immunization", "a vaccination record"),
    "Condition": ("condition", "a diagnosis"),
    "Procedure": ("procedure", "a procedure record"),
    "FamilyMemberHistory": ("family_history", "a family history record"),
    "Observation": ("observation", "a result"),
    "Patient": ("patient", "the patient record"),
}


def _unreadable_record(facts: PatientFacts, resource_type: str, source: Source) -> None:
    """A record whose reading failed outright: kept as unreadable under what it stands for,
    never dropped (an allergy record dropped would read as "no A1PI reaction")."""
    concept, what = UNREADABLE_AS.get(resource_type, ("record", "a record"))
    facts.cannot_read(concept, source, f"{what} with malformed content")


def _finish(state: _Pass, lookbacks: Lookbacks) -> None:
    facts = state.facts
    _sort_newest_first(facts)
    choose_spirometry(facts)
    derive_fev1_percent(facts)
    resolve_genotype(facts, state.alleles)
    _smoking_from_conditions(facts)
    keep_newest_administrations(facts)
    normalise_doses(facts)
    note_stale(facts, lookbacks)


def _unique(resources: Iterable[Any], facts: PatientFacts) -> list[Json]:
    """Resources with a type, each (type, id) once: prefetch and pages may overlap."""
    seen: set[tuple[str, str]] = set()
    unique: list[Json] = []
    for resource in resources:
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
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


def _deceased(patient: Json) -> str | None:
    """Patient.deceasedBoolean true or a deceasedDateTime (as Synthea and EHRs write it)."""
    when = patient.get("deceasedDateTime")
    if isinstance(when, str) and when.strip():
        day = parse_date(when)
        return f"deceased on {day.isoformat()}" if day else "deceased"
    return "deceased" if patient.get("deceasedBoolean") is True else None


def _is_for_patient(resource: Json, patient_id: str | None) -> bool:
    """False only when the resource names a different Patient by id."""
    if patient_id is None or resource["resourceType"] == "Patient":
        return True
    return not names_other_patient(resource, patient_id)


def _source(resource: Json) -> Source:
    """Reference, clinical date (``clinical_date``) and status. Runs once per resource."""
    rid = resource.get("id")
    status = resource.get("status")
    return Source(
        f"{resource['resourceType']}/{rid if isinstance(rid, str) else '(no id)'}",
        clinical_date(resource),
        status if isinstance(status, str) else None,
    )


def _patient(resource: Json, source: Source, state: _Pass) -> None:
    state.facts.patient = source
    state.facts.birth_date = parse_date(resource.get("birthDate"))
    state.facts.deceased = _deceased(resource)
    if state.facts.birth_date is None:
        state.facts.notes.append(DataNote("the patient's birth date is not recorded", source))


def _condition(resource: Json, source: Source, state: _Pass) -> None:
    if status_code(resource, "verificationStatus") in WITHDRAWN_VERIFICATION:
        return
    concepts = terminology.conditions().concepts_named_by(resource.get("code"))
    active = status_code(resource, "clinicalStatus") not in PAST_CLINICAL_STATUS
    text = concept_text(resource.get("code")) or "condition"
    for concept in concepts:
        state.facts.conditions.setdefault(concept, []).append(
            CodedFinding(concept, text, active, source)
        )


def _procedure(resource: Json, source: Source, state: _Pass) -> None:
    if resource.get("status") in WITHDRAWN_EVENT:
        return
    text = concept_text(resource.get("code")) or "procedure"
    for concept in terminology.procedures().concepts_named_by(resource.get("code")):
        state.facts.procedures.setdefault(concept, []).append(
            CodedFinding(concept, text, True, source)
        )


def _family_history(resource: Json, source: Source, state: _Pass) -> None:
    if resource.get("status") == "entered-in-error":
        return
    relation = concept_text(resource.get("relationship")) or "relative"
    for condition in as_list(resource.get("condition")):
        code = as_dict(condition).get("code")
        for concept in terminology.conditions().concepts_named_by(code):
            finding = CodedFinding(
                concept, f"{relation}: {concept_text(code) or concept}", True, source
            )
            state.facts.family_history.setdefault(concept, []).append(finding)


def _observation(resource: Json, source: Source, state: _Pass) -> None:
    if resource.get("status") not in WITHDRAWN_OBSERVATION:
        read_observation(resource, source, state.facts, state.alleles)


def _order(resource: Json, source: Source, state: _Pass) -> None:
    read_order(resource, source, state.facts, state.medications, state.drafts)


def _administration(resource: Json, source: Source, state: _Pass) -> None:
    read_administration(resource, source, state.facts, state.medications)


def _immunization(resource: Json, source: Source, state: _Pass) -> None:
    if resource.get("status") != "completed":
        return
    text = concept_text(resource.get("vaccineCode")) or "vaccine"
    for group in terminology.immunizations().concepts_named_by(resource.get("vaccineCode")):
        state.facts.immunizations.setdefault(group, []).append(Immunization(group, text, source))


def _allergy(resource: Json, source: Source, state: _Pass) -> None:
    """History of anaphylaxis or a severe systemic reaction to an A1PI product."""
    if status_code(resource, "verificationStatus") in WITHDRAWN_VERIFICATION:
        return
    if product_of(resource.get("code")) != "a1pi":
        return
    reactions = [as_dict(r) for r in as_list(resource.get("reaction"))]
    words = " ".join(
        concept_text(m) or "" for r in reactions for m in as_list(r.get("manifestation"))
    ).lower()
    severe = any(r.get("severity") == "severe" for r in reactions) or any(
        w in words for w in ANAPHYLAXIS_WORDS
    )
    if severe or resource.get("criticality") == "high":
        text = f"{concept_text(resource.get('code')) or 'A1PI'}: {words or 'severe reaction'}"
        state.facts.a1pi_anaphylaxis.append(CodedFinding("a1pi_anaphylaxis", text, True, source))


def _smoking_from_conditions(facts: PatientFacts) -> None:
    """US Core fallback (clinical-knowledge.md 4.5) when no 72166-2 answer is recorded."""
    if facts.smoking is not None:
        return
    current = facts.active_condition("tobacco_dependence")
    former = facts.conditions.get("former_tobacco", [None])[0]
    if current is not None:
        facts.smoking = SmokingStatus("current", current.text, current.source)
    elif former is not None:
        facts.smoking = SmokingStatus("former", former.text, former.source)


def _sort_newest_first(facts: PatientFacts) -> None:
    def newest(item: Any) -> date:
        return item.source.date or date.min

    for group in (
        facts.conditions,
        facts.procedures,
        facts.family_history,
        facts.measurements,
        facts.immunizations,
    ):
        for items in group.values():
            items.sort(key=newest, reverse=True)
    lists: tuple[list[Any], ...] = (
        facts.aat_tests,
        facts.aat_levels,
        facts.anti_iga,
        facts.orders,
        facts.a1pi_anaphylaxis,
    )
    for items in lists:
        items.sort(key=newest, reverse=True)


Handler = Callable[[Json, Source, _Pass], None]

_HANDLERS: dict[str, Handler] = {
    "Patient": _patient,
    "Condition": _condition,
    "Procedure": _procedure,
    "FamilyMemberHistory": _family_history,
    "Observation": _observation,
    "MedicationRequest": _order,
    "MedicationStatement": _order,
    "MedicationAdministration": _administration,
    "Immunization": _immunization,
    "AllergyIntolerance": _allergy,
}
