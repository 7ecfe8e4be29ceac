"""Derived clinical state that several rules read, each judged one way only.

Severity, obstruction, recency, smoking state, IgA status and contraindications live
here, so that two rules (or two hooks) never judge the same question differently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from fhir_mappings import CodedFinding, Measurement, MedicationOrder, PatientFacts, SmokingStatus
from fhir_mappings.aat import constants

from .knowledge import thresholds
from .policy import Policy
from .reasons import FACTS, labelled, note_reason, shown_value
from .recommendation import Reason

SEVERE = "severe"
BORDERLINE = "borderline"
DEFICIENT = (SEVERE, BORDERLINE)


def severity(facts: PatientFacts) -> str | None:
    return facts.genotype.severity if facts.genotype else None


def has_aatd(facts: PatientFacts) -> bool:
    """AATD as the catalogue means it: coded, or a severe or borderline genotype."""
    return facts.has_condition("aatd") or severity(facts) in DEFICIENT


def abnormal_allele(facts: PatientFacts) -> bool:
    genotype = facts.genotype
    return genotype is not None and genotype.basis != "level" and genotype.abnormal_allele


def who(facts: PatientFacts) -> str:
    """How a card names the patient's AAT status: the alleles when known (PI*MZ is a
    carrier state, never called AATD), else AATD (coded, or a level only)."""
    genotype = facts.genotype
    return f"PI*{genotype.label}" if genotype and genotype.alleles else FACTS("aatd")


def is_adult(facts: PatientFacts) -> bool | None:
    age = facts.age
    return None if age is None else age >= thresholds().adult_age_years


def recent_date(when: date | None, days: int, facts: PatientFacts) -> bool:
    return when is not None and when >= facts.as_of - timedelta(days=days)


def recent(measurement: Measurement | None, days: int, facts: PatientFacts) -> bool:
    return measurement is not None and recent_date(measurement.source.date, days, facts)


def recent_fev1(facts: PatientFacts, policy: Policy) -> Measurement | None:
    fev1 = facts.latest("fev1_percent_predicted")
    return fev1 if recent(fev1, policy.lookbacks.spirometry, facts) else None


def recent_weight(facts: PatientFacts, policy: Policy) -> Measurement | None:
    weight = facts.latest("body_weight")
    return weight if recent(weight, policy.lookbacks.weight, facts) else None


def below_protective(facts: PatientFacts) -> bool | None:
    """Latest level below the protective threshold; None without a level or when a reported
    bound cannot tell ("< 60 mg/dL")."""
    level = facts.latest_aat
    return None if level is None else level.below(constants().protective_umol_l)


def obstruction(facts: PatientFacts) -> Reason | None:
    """Evidence of emphysema or airflow obstruction, the best one first."""
    for concept, label in (("emphysema", "emphysema"), ("copd", "COPD")):
        finding = facts.conditions.get(concept)
        if finding:
            return Reason(labelled(label, finding[0].text), finding[0].source)
    ratio = facts.latest("fev1_fvc")
    if ratio is not None and ratio.value < thresholds().fev1_fvc_obstruction:
        return Reason(FACTS("obstruction_ratio", ratio=ratio.value), ratio.source)
    return None


def no_obstruction(facts: PatientFacts) -> Reason | None:
    """Evidence against obstruction: a normal FEV1/FVC and no emphysema or COPD coded."""
    ratio = facts.latest("fev1_fvc")
    if obstruction(facts) is None and ratio is not None:
        return Reason(FACTS("no_obstruction_ratio", ratio=ratio.value), ratio.source)
    return None


def lung_disease(facts: PatientFacts) -> bool:
    """Lung disease that makes the augmentation question relevant at all."""
    concepts = ("copd", "emphysema", "asthma", "bronchiectasis")
    return obstruction(facts) is not None or any(facts.has_condition(c) for c in concepts)


def augmentation_orders(facts: PatientFacts) -> list[MedicationOrder]:
    """Active A1PI orders and statements: the patient is on augmentation."""
    return facts.orders_of("a1pi", "active")


def inflammatory_episode(facts: PatientFacts) -> CodedFinding | None:
    """Active acute rejection or infection: when ATS/ERS favours augmentation after LTx."""
    for concept in ("lung_transplant_rejection", "lung_transplant_infection", "serious_infection"):
        finding = facts.active_condition(concept)
        if finding is not None:
            return finding
    return None


# --- smoking: one judgement with recency, for every rule and hook ------------------------


class SmokingState(StrEnum):
    CURRENT = "current"
    NOT_CURRENT = "not current"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Smoking:
    state: SmokingState
    reason: Reason
    # The unknown rests on a status on record that could not be read (not on none).
    unreadable: bool = False


def smoking_state(facts: PatientFacts, policy: Policy) -> Smoking:
    """Current, not current, or unknown: a status older than the lookback is unknown.

    A stale "current smoker" is not a current smoker today, nor evidence of having
    stopped: the status must be asked again (every rule that reads smoking uses this).
    """
    smoking, days = facts.smoking, policy.lookbacks.smoking
    unread = _unread_smoking(facts, smoking)
    if unread is not None:
        return Smoking(SmokingState.UNKNOWN, unread, unreadable=True)
    if smoking is None:
        return Smoking(SmokingState.UNKNOWN, Reason(FACTS("smoking_none")))
    if smoking.status == "unknown":
        text = FACTS("smoking_unknown", text=smoking.text)
        return Smoking(SmokingState.UNKNOWN, Reason(text, smoking.source))
    if not recent_date(smoking.source.date, days, facts):
        text = FACTS("smoking_stale", status=smoking.status, text=smoking.text, days=days)
        return Smoking(SmokingState.UNKNOWN, Reason(text, smoking.source))
    state = SmokingState.CURRENT if smoking.status == "current" else SmokingState.NOT_CURRENT
    text = FACTS("smoking_current", status=smoking.status, text=smoking.text)
    return Smoking(state, Reason(text, smoking.source))


def _unread_smoking(facts: PatientFacts, smoking: SmokingStatus | None) -> Reason | None:
    """A status on record that could not be read counts when none could be read, or when
    it is the newer one (the status may have changed since)."""
    note = facts.unread("smoking_status")
    if note is None or note.source is None:
        return None
    when, read = note.source.date, smoking.source.date if smoking else None
    if smoking is None or when is None or (read is not None and when > read):
        return note_reason(note)
    return None


# --- IgA and the label contraindications (A1PI and immune globulin) -----------------------


def iga_deficient(facts: PatientFacts) -> Reason | None:
    coded = facts.active_condition("iga_deficiency")
    if coded is not None:
        return Reason(FACTS("iga_coded", text=coded.text), coded.source)
    iga = facts.latest("iga")
    # A bound that cannot rule deficiency out ("< 20 mg/dL") counts: anti-IgA is then asked for.
    if iga is not None and iga.below(thresholds().iga_deficient_mg_dl) is not False:
        return Reason(FACTS("iga_level", value=shown_value(iga)), iga.source)
    return None


def anti_iga_positive(facts: PatientFacts) -> Reason | None:
    positive = next((f for f in facts.anti_iga if f.active), None)
    return None if positive is None else Reason(positive.text, positive.source)


def contraindications(facts: PatientFacts) -> list[Reason]:
    """Label contraindications: anaphylaxis to A1PI; IgA deficiency with anti-IgA antibodies."""
    found = [
        Reason(FACTS("anaphylaxis", text=f.text), f.source) for f in facts.a1pi_anaphylaxis[:1]
    ]
    deficient, positive = iga_deficient(facts), anti_iga_positive(facts)
    if deficient and positive:
        found += [deficient, positive]
    return found


def iga_caution(facts: PatientFacts) -> str:
    """IgA deficiency without anti-IgA antibodies: not a contraindication, but the first
    infusion of A1PI or immune globulin calls for care (clinical-knowledge.md row 35:
    "consider low-IgA product and monitored setting"). Words to add to the advice, or ""."""
    deficient = iga_deficient(facts)
    if deficient is None or anti_iga_positive(facts) or not facts.anti_iga:
        return ""
    return FACTS("iga_caution", fact=deficient.text)


def anti_iga_unknown(facts: PatientFacts) -> Reason | None:
    """The IgA question that must be settled before A1PI or IVIG, or None when settled:
    IgA deficient with no readable anti-IgA result, or anti-IgA positive with no IgA level.
    An anti-IgA result that could not be read never counts as negative."""
    deficient, positive = iga_deficient(facts), anti_iga_positive(facts)
    unreadable = facts.unread("anti_iga")
    if deficient and not positive:
        if unreadable:
            text = FACTS("anti_iga_unreadable", fact=deficient.text)
            return Reason(text, unreadable.source)
        if not facts.anti_iga:
            return deficient
    if positive and not deficient and facts.latest("iga") is None:
        return Reason(FACTS("anti_iga_without_iga", fact=positive.text), positive.source)
    return None


def weekly(interval_days: float) -> bool:
    """Given once weekly (the labelled interval), allowing for a day's rounding of dates."""
    return abs(interval_days - 7) < 1


def off_label_dose(order: MedicationOrder) -> bool | None:
    """A1PI dose off the labelled mg/kg weekly by more than the tolerance; None if unknown."""
    dose = order.mg_per_kg_per_week
    if dose is None:
        return None
    if order.interval_days is not None and not weekly(order.interval_days):
        return True
    target = thresholds().a1pi_dose_mg_per_kg_week
    return abs(dose - target) > target * thresholds().a1pi_dose_tolerance
