"""Immunoglobulin replacement: every criterion declared once, judged once per hook call.

AAAAI 2022 (secondary hypogammaglobulinaemia): IgG below the very-low threshold; or
below the severe threshold with recurrent serious infections; or below the low threshold
with recurrent infections plus low IgA or IgM (plus impaired vaccine responses, which
records rarely hold: said as missing). Ontario IVIG guideline: usual dose and trough.
Label contraindication: IgA deficiency with anti-IgA antibodies. docs/clinical-basis.md,
"Immunoglobulin replacement".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum, StrEnum

from fhir_mappings import Measurement, MedicationOrder, PatientFacts

from .. import assessment
from ..knowledge import Words, thresholds
from ..policy import Policy
from ..reasons import measurement_reason, reasons, unread_reason
from ..recommendation import Judgement, Reason, Status

WORDS = Words("hooks", "words", "immunoglobulin.json")

# Guideline statements the immunoglobulin cards cite (ids in data/statements.json).
AAAAI = "aaaai-2022.criteria"
ONTARIO = "ontario-ivig.dosing"
MET, NOT_MET, UNKNOWN = Status.MET, Status.NOT_MET, Status.UNKNOWN


class Ig(Enum):
    """The criteria for immunoglobulin replacement; the value is what a reviewer reads."""

    AAAAI_CRITERIA = "AAAAI 2022 criteria (IgG with recurrent serious infections)"
    NO_ANTI_IGA = "No IgA deficiency with anti-IgA antibodies"
    DOSE = "Dose within usual replacement"
    TROUGH_MONITORED = "Trough IgG monitored"


class Kind(StrEnum):
    VERY_LOW = "IgG very low"
    SEVERE_RECURRENT = "IgG severely low with recurrent infections"
    LOW_RECURRENT_LOW_A_OR_M = "IgG low with recurrent infections and low IgA or IgM"
    ESCALATION = "specialist-directed escalation"
    ABOVE_USUAL = "above the usual dose"


@dataclass(frozen=True, slots=True)
class Aaaai:
    """The AAAAI judgement for one IgG value, with the facts it used and what is missing."""

    judgement: Judgement
    reasons: tuple[Reason, ...]
    missing: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class IgCriteria:
    latest_igg: Measurement | None
    latest: Aaaai | None  # on the latest IgG
    baseline: Aaaai | None  # on the IgG before replacement started, when on replacement
    on_replacement: tuple[MedicationOrder, ...]
    anti_iga: Judgement
    trough: Judgement
    # An IgG on record that could not be read (never "no IgG"), or None.
    unread_igg: Reason | None = None

    def __iter__(self) -> Iterator[Judgement]:
        """Every criterion judged (the dose is judged per order), as A1piCriteria iterates."""
        return iter((self.criteria, self.anti_iga, self.trough))

    def __getitem__(self, criterion: Ig) -> Judgement:
        return next(j for j in self if j.criterion is criterion)

    @property
    def criteria(self) -> Judgement:
        """The AAAAI row of a medical-necessity statement (unknown without an IgG)."""
        if self.latest is None:
            why = self.unread_igg or Reason(WORDS("facts.no_igg"))
            return Judgement(Ig.AAAAI_CRITERIA, UNKNOWN, why)
        return self.latest.judgement


def judge(facts: PatientFacts, policy: Policy) -> IgCriteria:
    on = tuple(facts.orders_of("immune_globulin", "active"))
    igg = facts.latest("igg")
    baseline_igg = _baseline(facts, on) if on else None
    return IgCriteria(
        latest_igg=igg,
        latest=aaaai(facts, igg) if igg else None,
        baseline=aaaai(facts, baseline_igg) if baseline_igg else None,
        on_replacement=on,
        anti_iga=_no_anti_iga(facts),
        trough=_trough(facts, policy, bool(on)),
        unread_igg=unread_reason(facts, "igg"),
    )


def aaaai(facts: PatientFacts, igg: Measurement) -> Aaaai:
    """Which AAAAI 2022 criterion this IgG and the infection history meet, with the facts."""
    t = thresholds()
    infections = facts.serious_infections(t.recurrent_infections_days)
    recurrent = len(infections) >= t.recurrent_infections_count
    low_a_or_m = [m for m in (facts.latest("iga"), facts.latest("igm")) if m and _low(m)]
    listed = "; ".join(f.text for f in infections[:4])
    used = reasons(
        measurement_reason("IgG", igg),
        Reason(WORDS("facts.infections", count=len(infections), listed=listed and f": {listed}")),
        *(measurement_reason(m.concept.upper().replace("IG", "Ig"), m) for m in low_a_or_m),
    )
    fact = Reason("; ".join(r.text for r in used), igg.source)
    if igg.below(t.igg_very_low_mg_dl):
        return Aaaai(Judgement(Ig.AAAAI_CRITERIA, MET, fact, Kind.VERY_LOW), used)
    if recurrent and igg.below(t.igg_severe_mg_dl):
        return Aaaai(Judgement(Ig.AAAAI_CRITERIA, MET, fact, Kind.SEVERE_RECURRENT), used)
    if recurrent and low_a_or_m and igg.below(t.igg_low_mg_dl):
        judged = Judgement(Ig.AAAAI_CRITERIA, MET, fact, Kind.LOW_RECURRENT_LOW_A_OR_M)
        return Aaaai(judged, used, (WORDS("missing.vaccine_response"),))
    cannot_tell = recurrent and igg.below(t.igg_severe_mg_dl) is None
    status = UNKNOWN if cannot_tell else NOT_MET  # "< 500" with infections: measure again
    return Aaaai(Judgement(Ig.AAAAI_CRITERIA, status, fact), used)


def _low(measurement: Measurement) -> bool:
    """The lab's own low flag first; IgM falls back to a documented range, IgA to deficiency."""
    if measurement.below_range is not None:
        return measurement.below_range
    fallback = {"igm": thresholds().igm_low_mg_dl, "iga": thresholds().iga_deficient_mg_dl}
    return measurement.value < fallback[measurement.concept]


def _baseline(facts: PatientFacts, on: tuple[MedicationOrder, ...]) -> Measurement | None:
    """The latest IgG before replacement started: values on treatment say nothing of need."""
    started = min((o.source.date for o in on if o.source.date), default=None)
    if started is None:
        return None
    return next((m for m in facts.series("igg") if m.source.date and m.source.date < started), None)


def _no_anti_iga(facts: PatientFacts) -> Judgement:
    c = Ig.NO_ANTI_IGA
    deficient, positive = assessment.iga_deficient(facts), assessment.anti_iga_positive(facts)
    if deficient and positive:
        text = WORDS("facts.anti_iga_positive", deficiency=deficient.text, result=positive.text)
        return Judgement(c, NOT_MET, Reason(text, positive.source))
    unknown = assessment.anti_iga_unknown(facts)
    if unknown:
        text = WORDS("facts.anti_iga_unknown", deficiency=unknown.text)
        return Judgement(c, UNKNOWN, Reason(text, unknown.source))
    return Judgement(c, MET, Reason(WORDS("facts.no_anti_iga")))


def _trough(facts: PatientFacts, policy: Policy, on_replacement: bool) -> Judgement:
    """A recent IgG: a trough only on replacement; before it, the baseline (never called a
    trough: it says nothing of how replacement is dosed)."""
    igg, days = facts.latest("igg"), policy.lookbacks.igg
    found = measurement_reason("IgG", igg) if assessment.recent(igg, days, facts) else None
    if found is not None and not on_replacement:
        baseline = Reason(WORDS("facts.baseline", value=found.text), found.source)
        return Judgement(Ig.TROUGH_MONITORED, MET, baseline)
    if found is not None:
        return Judgement(Ig.TROUGH_MONITORED, MET, found)
    why = unread_reason(facts, "igg", days) or Reason(WORDS("facts.no_trough", days=days))
    return Judgement(Ig.TROUGH_MONITORED, UNKNOWN, why)


def dose(order: MedicationOrder) -> Judgement:
    """An immune globulin order's g/kg per dose against the usual replacement range."""
    t, c = thresholds(), Ig.DOSE
    low, high = t.ivig_usual_g_per_kg
    per_kg, days = order.g_per_kg_per_dose, order.interval_days
    if per_kg is None or days is None:
        return Judgement(c, UNKNOWN, Reason(WORDS("facts.dose_unknown"), order.source))
    text = WORDS("facts.dose", dose=per_kg, days=days)
    if per_kg > t.ivig_escalation_g_per_kg:
        fact = Reason(WORDS("facts.dose_escalation", dose=text), order.source)
        return Judgement(c, MET, fact, Kind.ESCALATION)
    if per_kg > high:
        fact = Reason(WORDS("facts.dose_above", dose=text), order.source)
        return Judgement(c, MET, fact, Kind.ABOVE_USUAL)
    if per_kg < low:
        return Judgement(c, NOT_MET, Reason(WORDS("facts.dose_below", dose=text), order.source))
    return Judgement(c, MET, Reason(text, order.source))
