"""A1PI augmentation: every criterion declared once, judged once per hook call.

Both hooks read these judgements by identifier: the patient-view decision walk
(``patient_view.py``) and the medical-necessity statement of an order (``orders.py``).
The display text of a criterion is its enum value and is never used as a key; the
finer distinctions a decision needs are ``Kind`` members.

Sources: FDA labels of the four products (indication, adults, contraindications,
60 mg/kg weekly); A1F 2016 and CTS 2012 (FEV1 window, smoking, obstruction); ATS/ERS
(transplant); docs/clinical-basis.md, "Augmentation".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum, StrEnum

from fhir_mappings import MedicationOrder, PatientFacts

from .. import assessment
from ..assessment import SmokingState
from ..knowledge import Words, thresholds
from ..policy import Policy
from ..reasons import (
    aat_reason,
    genotype_reason,
    reasons,
    spirometry_note,
    unread_reason,
    weight_reason,
)
from ..recommendation import Judgement, Reason, Status

WORDS = Words("hooks", "words", "a1pi.json")

# Guideline statements the A1PI cards cite (ids in data/statements.json).
LABELS = "fda-labels.indication"
A1F = "a1f-2016.augmentation"
CTS = "cts-2012.augmentation"
REVIEW = "ers-review-2022.not-recommended"
TRANSPLANT = "ats-ers-transplant.after-transplant"
MET, NOT_MET, UNKNOWN = Status.MET, Status.NOT_MET, Status.UNKNOWN


class A1pi(Enum):
    """The criteria for A1PI augmentation; the value is what a reviewer reads."""

    SEVERE_DEFICIENCY = "Severe AAT deficiency established"
    OBSTRUCTION = "Emphysema or airflow obstruction"
    FEV1_WINDOW = "FEV1 % predicted in the policy window"
    NOT_SMOKING = "Not a current smoker"
    ADULT = "Adult (the labels cover adults only)"
    NO_LUNG_TRANSPLANT = "No lung transplant"
    NO_LIVER_TRANSPLANT = "No liver transplant"
    NO_CONTRAINDICATION = "No contraindication to A1PI"
    RECENT_WEIGHT = "Recent body weight (the dose is per kg)"
    DOSE = "Labelled dose (mg/kg, once weekly)"


class Kind(StrEnum):
    """Why a criterion came out as it did, where a decision needs more than the status."""

    SEVERE = "severe genotype"
    NOT_SEVERE = "not a severe deficiency"
    BORDERLINE_LOW = "borderline genotype, low level"
    BORDERLINE_PROTECTIVE = "borderline genotype, protective level"
    BORDERLINE_NO_LEVEL = "borderline genotype, no level"
    DISCORDANT = "level and alleles disagree"
    NO_RESULT = "no level or allele result"
    BELOW_MINIMUM = "FEV1 below the advanced-disease threshold"
    ABOVE_WINDOW = "FEV1 above the window"
    SHARED_DECISION = "FEV1 above the recommended range: discuss"
    INFLAMMATORY_EPISODE = "acute rejection or infection after lung transplant"
    ANTI_IGA_UNKNOWN = "IgA deficient, anti-IgA not on record"
    LEVEL_ONLY = "a level but no allele result"
    UNREADABLE = "a record that could not be read"
    NOT_WEEKLY = "not given once weekly"


# Unknowns an AATD specialist or transplant team settles; other unknowns need documenting.
SPECIALIST_KINDS = frozenset(
    {Kind.BORDERLINE_LOW, Kind.DISCORDANT, Kind.BELOW_MINIMUM, Kind.INFLAMMATORY_EPISODE}
)


@dataclass(frozen=True, slots=True)
class A1piCriteria:
    """The patient's judgements, one per criterion (the dose is judged per order)."""

    judgements: dict[A1pi, Judgement]

    def __getitem__(self, criterion: A1pi) -> Judgement:
        return self.judgements[criterion]

    def __iter__(self) -> Iterator[Judgement]:
        return iter(self.judgements.values())


def judge(facts: PatientFacts, policy: Policy) -> A1piCriteria:
    found = (
        _deficiency(facts),
        _obstruction(facts),
        _fev1(facts, policy),
        _not_smoking(facts, policy),
        _adult(facts),
        _no_lung_transplant(facts),
        _no_liver_transplant(facts),
        _no_contraindication(facts),
        _recent_weight(facts, policy),
    )
    return A1piCriteria({A1pi(j.criterion.value): j for j in found})


def _judged(criterion: A1pi, status: Status, fact: Reason, kind: Kind | None = None) -> Judgement:
    return Judgement(criterion, status, fact, kind)


def _deficiency(facts: PatientFacts) -> Judgement:
    """Severe deficiency: a severe genotype; SZ is decided by its level; nothing else is.
    Discordant results settle nothing until the alleles are confirmed."""
    c = A1pi.SEVERE_DEFICIENCY
    why = genotype_reason(facts) or aat_reason(facts) or Reason(WORDS("facts.no_result"))
    severity, low = assessment.severity(facts), assessment.below_protective(facts)
    if _unexplained_discordance(facts):
        fact = Reason(WORDS("facts.discordant", fact=why.text), why.source)
        return _judged(c, UNKNOWN, fact, Kind.DISCORDANT)
    basis = facts.genotype.basis if facts.genotype else None
    unread = facts.unread("genotype")
    if unread is not None and basis in (None, "level"):
        fact = Reason(WORDS("facts.genotype_unreadable"), unread.source)
        return _judged(c, UNKNOWN, fact, Kind.UNREADABLE)
    if severity == assessment.SEVERE and basis == "level":
        fact = Reason(WORDS("facts.level_only", fact=why.text), why.source)
        return _judged(c, UNKNOWN, fact, Kind.LEVEL_ONLY)
    if severity == assessment.SEVERE:
        return _judged(c, MET, why, Kind.SEVERE)
    if severity == assessment.BORDERLINE:
        if low is None:
            fact = Reason(WORDS("facts.borderline_no_level", fact=why.text), why.source)
            return _judged(c, UNKNOWN, fact, Kind.BORDERLINE_NO_LEVEL)
        if low:
            fact = Reason(WORDS("facts.borderline_low", fact=why.text), why.source)
            return _judged(c, UNKNOWN, fact, Kind.BORDERLINE_LOW)
        return _judged(c, NOT_MET, reasons(why, aat_reason(facts))[-1], Kind.BORDERLINE_PROTECTIVE)
    if severity is None and low is None:
        return _judged(c, UNKNOWN, why, Kind.NO_RESULT)
    return _judged(c, NOT_MET, why, Kind.NOT_SEVERE)


def _unexplained_discordance(facts: PatientFacts) -> bool:
    """Level and alleles disagree, and no infusion explains a level that is not low: the
    alleles must be confirmed before anyone starts (or is refused) A1PI on them."""
    discordance = facts.discordance
    if discordance is None:
        return False
    return discordance.kind == "level-too-low" or not assessment.augmentation_orders(facts)


def _obstruction(facts: PatientFacts) -> Judgement:
    c = A1pi.OBSTRUCTION
    found = assessment.obstruction(facts)
    if found:
        return _judged(c, MET, found)
    against = assessment.no_obstruction(facts)
    if against:
        return _judged(c, NOT_MET, against)
    unread = unread_reason(facts, "fev1_fvc")
    if unread:
        return _judged(c, UNKNOWN, unread, Kind.UNREADABLE)
    return _judged(c, UNKNOWN, Reason(WORDS("facts.no_obstruction_evidence")))


def _fev1(facts: PatientFacts, policy: Policy) -> Judgement:
    c, window = A1pi.FEV1_WINDOW, policy.window
    fev1 = assessment.recent_fev1(facts, policy)
    if fev1 is None:
        days = policy.lookbacks.spirometry
        unread = unread_reason(facts, "spirometry", days)
        if unread:
            return _judged(c, UNKNOWN, unread, Kind.UNREADABLE)
        return _judged(c, UNKNOWN, Reason(WORDS("facts.no_fev1", days=days)))
    text = WORDS("facts.fev1", value=fev1.value, how=spirometry_note(fev1))
    if fev1.value < window.lower:
        fact = Reason(WORDS("facts.fev1_below_minimum", fev1=text), fev1.source)
        return _judged(c, UNKNOWN, fact, Kind.BELOW_MINIMUM)
    if window.consider_max is not None and fev1.value > window.consider_max:
        fact = Reason(WORDS("facts.fev1_above", fev1=text, limit=window.consider_max), fev1.source)
        return _judged(c, NOT_MET, fact, Kind.ABOVE_WINDOW)
    if fev1.value > window.recommend_max:
        fact = Reason(
            WORDS("facts.fev1_discuss", fev1=text, limit=window.recommend_max), fev1.source
        )
        return _judged(c, MET, fact, Kind.SHARED_DECISION)
    return _judged(c, MET, Reason(text, fev1.source))


def _not_smoking(facts: PatientFacts, policy: Policy) -> Judgement:
    smoking = assessment.smoking_state(facts, policy)
    status = {
        SmokingState.CURRENT: NOT_MET,
        SmokingState.NOT_CURRENT: MET,
        SmokingState.UNKNOWN: UNKNOWN,
    }[smoking.state]
    kind = Kind.UNREADABLE if smoking.unreadable else None
    return _judged(A1pi.NOT_SMOKING, status, smoking.reason, kind)


def _adult(facts: PatientFacts) -> Judgement:
    adult = assessment.is_adult(facts)
    if adult is None:
        return _judged(A1pi.ADULT, UNKNOWN, Reason(WORDS("facts.no_birth_date")))
    fact = Reason(WORDS("facts.age", age=facts.age), facts.patient)
    return _judged(A1pi.ADULT, MET if adult else NOT_MET, fact)


def _no_lung_transplant(facts: PatientFacts) -> Judgement:
    c, lung = A1pi.NO_LUNG_TRANSPLANT, facts.lung_transplant
    if lung is None:
        return _judged(c, MET, Reason(WORDS("facts.no_lung_transplant")))
    episode = assessment.inflammatory_episode(facts)
    if episode is None:
        fact = Reason(WORDS("facts.lung_transplant", text=lung.text), lung.source)
        return _judged(c, NOT_MET, fact)
    text = WORDS("facts.lung_transplant_episode", text=lung.text, episode=episode.text)
    return _judged(c, UNKNOWN, Reason(text, episode.source), Kind.INFLAMMATORY_EPISODE)


def _no_liver_transplant(facts: PatientFacts) -> Judgement:
    c, liver = A1pi.NO_LIVER_TRANSPLANT, facts.liver_transplant
    if liver is None:
        return _judged(c, MET, Reason(WORDS("facts.no_liver_transplant")))
    return _judged(
        c, NOT_MET, Reason(WORDS("facts.liver_transplant", text=liver.text), liver.source)
    )


def _no_contraindication(facts: PatientFacts) -> Judgement:
    c = A1pi.NO_CONTRAINDICATION
    found = assessment.contraindications(facts)
    if found:
        return _judged(c, NOT_MET, found[0])
    unknown = assessment.anti_iga_unknown(facts)
    if unknown:
        fact = Reason(WORDS("facts.anti_iga_unknown", fact=unknown.text), unknown.source)
        return _judged(c, UNKNOWN, fact, Kind.ANTI_IGA_UNKNOWN)
    unread = unread_reason(facts, "allergy")
    if unread:  # an allergy record that could not be read may be the A1PI reaction
        return _judged(c, UNKNOWN, unread, Kind.UNREADABLE)
    return _judged(c, MET, Reason(WORDS("facts.no_contraindication")))


def _recent_weight(facts: PatientFacts, policy: Policy) -> Judgement:
    weight = assessment.recent_weight(facts, policy)
    if weight is None:
        days = policy.lookbacks.weight
        unread = unread_reason(facts, "body_weight", days)
        if unread:
            return _judged(A1pi.RECENT_WEIGHT, UNKNOWN, unread, Kind.UNREADABLE)
        return _judged(A1pi.RECENT_WEIGHT, UNKNOWN, Reason(WORDS("facts.no_weight", days=days)))
    return _judged(A1pi.RECENT_WEIGHT, MET, weight_reason(weight))


def dose(order: MedicationOrder) -> Judgement:
    """An order's dose against the labelled mg/kg given once weekly, within the tolerance.

    The interval is judged on its own: a double dose every two weeks averages to the
    labelled weekly amount but is not the labelled regimen.
    """
    per_week = order.mg_per_kg_per_week
    if per_week is None:
        why = WORDS("facts.dose_unknown", problem=order.dose_problem or "dose not stated")
        return _judged(A1pi.DOSE, UNKNOWN, Reason(why, order.source))
    days = order.interval_days or 7
    if not assessment.weekly(days):
        per_dose = per_week * days / 7
        fact = Reason(WORDS("facts.dose_interval", dose=per_dose, days=days), order.source)
        return _judged(A1pi.DOSE, NOT_MET, fact, Kind.NOT_WEEKLY)
    fact = Reason(WORDS("facts.dose", dose=per_week), order.source)
    return _judged(A1pi.DOSE, NOT_MET if assessment.off_label_dose(order) else MET, fact)


def labelled_dose_mg(facts: PatientFacts, policy: Policy) -> float | None:
    """The labelled weekly dose in mg from the latest weight within its lookback."""
    weight = assessment.recent_weight(facts, policy)
    return None if weight is None else thresholds().a1pi_dose_mg_per_kg_week * weight.value


def missing_item(judged: Judgement, policy: Policy) -> str:
    """How a card names a missing input: one wording for both hooks."""
    if judged.kind is Kind.UNREADABLE:
        return WORDS("missing.unreadable", fact=judged.fact.text)
    lookbacks = policy.lookbacks
    days = {
        A1pi.FEV1_WINDOW: lookbacks.spirometry,
        A1pi.NOT_SMOKING: lookbacks.smoking,
        A1pi.RECENT_WEIGHT: lookbacks.weight,
    }.get(judged.criterion, 0)  # type: ignore[call-overload]
    return WORDS(f"missing.{judged.criterion.name}", days=days, fact=judged.fact.text)
