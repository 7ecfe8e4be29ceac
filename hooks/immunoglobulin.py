"""Immunoglobulin replacement for secondary hypogammaglobulinaemia (AAAAI 2022).

clinical-knowledge.md 2.11; section 5 rows 32-34. Criteria: IgG < 150 mg/dL; or IgG < 400
with recurrent serious infections; or IgG < 700 with recurrent infections plus low IgA or
IgM (plus impaired vaccine responses, which records rarely hold: said as missing).
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_mappings import Measurement, MedicationOrder, PatientFacts

from . import assessment as a
from .knowledge import threshold
from .policy import Policy
from .recommendation import Evidence, OrderService, Reason, Recommendation

AAAAI = Evidence(
    "aaaai-2022",
    "Immunoglobulin replacement for secondary hypogammaglobulinaemia: IgG < 400 mg/dL with "
    "recurrent infections; IgG < 700 mg/dL with recurrent infections, low IgA or IgM and impaired "
    "vaccine responses; or IgG < 150 mg/dL. Not without recurrent infections.",
    "work-group consensus",
)
ONTARIO = Evidence(
    "ontario-ivig",
    "Adult replacement 0.4-0.6 g/kg every 3-4 weeks; titrate to a trough IgG above 500, ideally "
    "700 mg/dL. Higher doses are specialist-directed.",
    "guideline",
)
VACCINE_RESPONSE = "specific antibody (vaccine) responses, needed for the IgG < 700 criterion"


@dataclass(frozen=True, slots=True)
class Criteria:
    met: bool
    reasons: tuple[Reason, ...]
    missing: tuple[str, ...]


def criteria(facts: PatientFacts, igg: Measurement) -> Criteria:
    """Which AAAAI 2022 criterion IgG and the infection history meet, with the facts used."""
    infections = facts.serious_infections(threshold("recurrent_infections_days"))
    recurrent = len(infections) >= threshold("recurrent_infections_count")
    low_a_or_m = [m for m in (facts.latest("iga"), facts.latest("igm")) if m and _low(m)]
    facts_used = (
        a.measurement_reason("IgG", igg),
        Reason(
            f"{len(infections)} serious infection episode(s) in 12 months"
            + (": " + "; ".join(f.text for f in infections[:4]) if infections else "")
        ),
        *(a.measurement_reason(m.concept.upper().replace("IG", "Ig"), m) for m in low_a_or_m),
    )
    if igg.value < threshold("igg_very_low_mg_dl"):
        return Criteria(True, a.reasons(*facts_used), ())
    if recurrent and igg.value < threshold("igg_severe_mg_dl"):
        return Criteria(True, a.reasons(*facts_used), ())
    if recurrent and low_a_or_m and igg.value < threshold("igg_low_mg_dl"):
        return Criteria(True, a.reasons(*facts_used), (VACCINE_RESPONSE,))
    return Criteria(False, a.reasons(*facts_used), ())


def _low(measurement: Measurement) -> bool:
    """The lab's own low flag first; IgM falls back to a documented range, IgA to deficiency."""
    if measurement.below_range is not None:
        return measurement.below_range
    fallback = {"igm": "igm_low_mg_dl", "iga": "iga_deficient_mg_dl"}[measurement.concept]
    return measurement.value < threshold(fallback)


def _on_replacement(facts: PatientFacts) -> list[MedicationOrder]:
    return facts.orders_of("immune_globulin", "active")


def replacement_indicated(facts: PatientFacts, policy: Policy) -> Recommendation | None:
    igg = facts.latest("igg")
    if igg is None:
        return None
    found = criteria(facts, igg)
    if not found.met:
        return None
    on = _on_replacement(facts)
    untreated_severe = not on and igg.value < threshold("igg_severe_mg_dl")
    return Recommendation(
        topic="immunoglobulin-replacement-indicated",
        summary=(
            "Immunoglobulin replacement supported: low IgG with recurrent serious infections"
            if on
            else "Low IgG with recurrent serious infections: refer to immunology for replacement"
        ),
        advice="Secondary hypogammaglobulinaemia with recurrent serious infections meets AAAAI "
        "2022 "
        "criteria for immunoglobulin replacement. Measure trough IgG before infusions (target > "
        "500, "
        "ideally ~700 mg/dL); usual replacement is 0.4-0.6 g/kg every 3-4 weeks.",
        evidence=(AAAAI, ONTARIO),
        reasons=(*found.reasons, *(a.order_reason(o) for o in on)),
        missing=found.missing,
        indicator="warning" if untreated_severe else "",
        actions=()
        if on
        else (
            OrderService(
                "Referral to clinical immunology: immunoglobulin replacement",
                "Refer to immunology",
                "referral",
            ),
        ),
    )


def replacement_not_indicated(facts: PatientFacts, policy: Policy) -> Recommendation | None:
    """Low IgG without recurrent infections; or replacement whose baseline meets no criterion."""
    on = _on_replacement(facts)
    igg = _baseline(facts, on) if on else facts.latest("igg")
    if igg is None or (not on and igg.value >= threshold("igg_low_mg_dl")):
        return None
    found = criteria(facts, igg)
    if found.met:
        return None
    return Recommendation(
        topic="immunoglobulin-replacement-not-indicated",
        summary=(
            "Immunoglobulin replacement ordered without AAAAI criteria: review the indication"
            if on
            else "Low IgG without recurrent infections: replacement not routinely indicated"
        ),
        advice="Without recurrent serious infections replacement is not routinely indicated: "
        "monitor IgG, optimise vaccination and reassess.",
        evidence=(AAAAI,),
        reasons=(*found.reasons, *(a.order_reason(o) for o in on)),
    )


def _baseline(facts: PatientFacts, on: list[MedicationOrder]) -> Measurement | None:
    """The latest IgG before replacement started: values on treatment say nothing of need."""
    started = min((o.source.date for o in on if o.source.date), default=None)
    if started is None:
        return None
    return next((m for m in facts.series("igg") if m.source.date and m.source.date < started), None)


def trough_low(facts: PatientFacts, policy: Policy) -> Recommendation | None:
    on = _on_replacement(facts)
    igg = facts.latest("igg")
    if not on or igg is None or not a.recent(igg, policy.lookbacks.igg, facts):
        return None
    if igg.value >= threshold("igg_trough_target_mg_dl"):
        return None
    return Recommendation(
        topic="immunoglobulin-trough-low",
        summary=f"IgG {igg.value:g} mg/dL on replacement: below the 500 mg/dL trough target",
        advice=f"Titrate to a trough IgG above {threshold('igg_trough_target_mg_dl')} mg/dL, "
        "ideally "
        f"~{threshold('igg_trough_ideal_mg_dl')}: raise the dose or shorten the interval with the "
        "immunologist; check the level is a true trough.",
        evidence=(ONTARIO,),
        reasons=(*a.reasons(a.measurement_reason("IgG", igg)), *(a.order_reason(o) for o in on)),
    )
