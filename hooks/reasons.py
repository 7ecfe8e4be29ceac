"""How a card cites a fact: one way for every card, the words in ``words/facts.json``."""

from __future__ import annotations

from datetime import timedelta

from fhir_mappings import (
    AatLevel,
    CodedFinding,
    DataNote,
    Measurement,
    MedicationOrder,
    PatientFacts,
)

from .knowledge import Words
from .recommendation import Reason

FACTS = Words("hooks", "words", "facts.json")


def unread_reason(facts: PatientFacts, concept: str, days: int | None = None) -> Reason | None:
    """The one rule for data that cannot be read: a record of ``concept`` on the chart that
    the service could not interpret (within ``days``, when a lookback applies) is said,
    with what was wrong, and stands where "none on record" would otherwise be written."""
    since = facts.as_of - timedelta(days=days) if days else None
    note = facts.unread(concept, since)
    return None if note is None else note_reason(note)


def note_reason(note: DataNote) -> Reason:
    """How a card cites a record that could not be read: what was wrong, and to review it."""
    return Reason(FACTS("unreadable", why=note.text), note.source)


def genotype_reason(facts: PatientFacts) -> Reason | None:
    genotype = facts.genotype
    if genotype is None:
        return None
    if genotype.basis == "level":
        return Reason(FACTS("level_only", text=genotype.text), genotype.sources[0])
    kind = FACTS(f"genotype_kind.{genotype.basis}")
    text = FACTS("genotype", label=genotype.label, kind=kind, severity=genotype.severity)
    text += (
        FACTS("preliminary")
        if genotype.preliminary
        else FACTS("amended")
        if genotype.amended
        else ""
    )
    return Reason(text, genotype.sources[0])


def aat_reason(facts: PatientFacts) -> Reason | None:
    return level_reason(facts.latest_aat)


def level_reason(level: AatLevel | None) -> Reason | None:
    if level is None:
        return None
    extra = FACTS("preliminary") if level.preliminary else ""
    bound = f"{level.comparator} " if level.comparator else ""
    units = (
        FACTS("aat_umol_l", bound=bound, umol_l=level.umol_l),
        FACTS("aat_mg_dl", bound=bound, mg_dl=level.mg_dl),
    )
    # The value as reported, then in the units it was not reported in: never twice.
    converted = ", ".join(u for u in units if u != level.reported)
    text = FACTS("aat", reported=level.reported, converted=converted, extra=extra)
    return Reason(text, level.source)


def measurement_reason(label: str, measurement: Measurement | None) -> Reason | None:
    if measurement is None:
        return None
    unit = "" if measurement.unit in ("1", "") else f" {measurement.unit}"
    text = FACTS("measurement", label=label, value=shown_value(measurement), unit=unit)
    return Reason(text, measurement.source)


def shown_value(measurement: Measurement) -> str:
    """The value as the lab reported it: its comparator kept ("<20"), no false precision."""
    return f"{measurement.comparator or ''}{round(measurement.value, 2):g}"


def finding_reason(label: str, finding: CodedFinding | None) -> Reason | None:
    if finding is None:
        return None
    past = "" if finding.active else FACTS("finding_inactive")
    return Reason(labelled(label, finding.text, past), finding.source)


def labelled(label: str, text: str, past: str = "") -> str:
    """A coded finding under its label: "COPD: Chronic obstructive lung disease", but
    "Emphysema (CT 2025)", not "emphysema: Emphysema (CT 2025)" (the label only when the
    record's own words do not say it)."""
    named = label.lower() in text.lower()
    return FACTS("finding_named" if named else "finding", label=label, text=text, past=past)


def order_reason(order: MedicationOrder) -> Reason:
    dose = ""
    if order.dose is not None:
        dose = FACTS("order_dose", dose=order.dose, unit=order.dose_unit or "").rstrip()
        if order.interval_days:
            dose += FACTS("order_interval", days=order.interval_days)
    values = {"state": order.state, "text": order.text, "dose": dose}
    kind = order.resource_type
    text = (
        FACTS("statement", **values)
        if kind == "MedicationStatement"
        else FACTS("administration", **values)
        if kind == "MedicationAdministration"
        else FACTS("order", **values)
    )
    return Reason(text, order.source)


def order_reasons(orders: list[MedicationOrder]) -> tuple[Reason, ...]:
    return tuple(order_reason(o) for o in orders)


def age_reason(facts: PatientFacts) -> Reason:
    return Reason(FACTS("age", age=facts.age), facts.patient)


def fev1_reason(fev1: Measurement) -> Reason:
    return Reason(FACTS("fev1", value=fev1.value, how=spirometry_note(fev1)), fev1.source)


def spirometry_note(measurement: Measurement) -> str:
    """Which spirometry value this is: said whenever it is not a plain post-BD result."""
    notes = {True: "", False: FACTS("pre_bd"), None: FACTS("bd_not_stated")}
    note = notes[measurement.post_bronchodilator]
    if measurement.derived:
        note += FACTS("derived", how=measurement.derived)
    return note


def weight_reason(weight: Measurement) -> Reason:
    return Reason(FACTS("weight", value=round(weight.value, 1)), weight.source)


def reasons(*items: Reason | None) -> tuple[Reason, ...]:
    return tuple(item for item in items if item is not None)
