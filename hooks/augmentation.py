"""Augmentation therapy (A1PI 60 mg/kg IV weekly): who should start, stop, or be reviewed.

``augmentation`` walks the decision in the order that keeps the cards consistent:
contraindications, transplant, age, deficiency, smoking, lung function, missing work-up,
then candidacy. It returns at most one of candidate / not-indicated / specialist-review /
workup-incomplete / discontinue / contraindicated, so these never contradict each other.
Dose checks and advanced-disease referral are separate rules that may accompany them.
(clinical-knowledge.md 2.5-2.10; section 5 rows 1-5, 10-12, 25-31, 35-40.)
"""

from __future__ import annotations

from fhir_mappings import CodedFinding, Measurement, MedicationOrder, PatientFacts

from . import assessment as a
from .knowledge import threshold
from .monitoring import SPIROMETRY
from .policy import Policy
from .recommendation import (
    CorrectDose,
    Evidence,
    OrderService,
    PrescribeAugmentation,
    Reason,
    Recommendation,
    StopOrder,
)

LABELS = Evidence(
    "fda-labels",
    "A1PI (Prolastin-C, Aralast NP, Zemaira, Glassia) is indicated for chronic augmentation in "
    "adults with clinically evident emphysema due to severe congenital AAT deficiency, at 60 mg/kg "
    "IV once weekly; not for patients in whom severe deficiency has not been established.",
    "label",
)
A1F = Evidence(
    "a1f-2016",
    "Augmentation is recommended for severe AATD with FEV1 <= 65 % predicted; above 65 %, discuss "
    "benefit against cost and the lack of evidence. Not recommended for MZ, for current smokers, "
    "or "
    "for emphysema or bronchiectasis without airflow obstruction.",
    "recommendation",
)
CTS = Evidence(
    "cts-2012",
    "Consider augmentation in non- or ex-smokers with COPD and emphysema, FEV1 25-80 % predicted, "
    "AAT <= 11 umol/L, on optimal therapy.",
    "conditional",
)
REVIEW = Evidence(
    "ers-review-2022",
    "Augmentation is not recommended in PiSZ, PiMZ, current smokers or for liver disease.",
    "recommendation",
)
TRANSPLANT = Evidence(
    "ats-ers-transplant",
    "Evidence for augmentation after lung transplant is insufficient; the ATS/ERS task force "
    "favours "
    "it only during episodes that provoke inflammation (acute rejection, infection). Serum AAT "
    "stays "
    "low after lung transplant because AAT is made in the liver; only a liver transplant restores "
    "it.",
    "expert opinion",
)


TRANSPLANT_TEAM = OrderService(
    "Referral to transplant pulmonology: temporary augmentation during acute rejection or "
    "infection?",
    "Ask the transplant team",
    "referral",
)


def augmentation(facts: PatientFacts, policy: Policy) -> Recommendation | None:
    on = a.augmentation_orders(facts)
    for step in (_contraindicated, _transplant, _child, _not_severe, _borderline):
        decided, recommendation = step(facts, policy, on)
        if decided:
            return recommendation
    return _severe(facts, policy, on) if a.severity(facts) == a.SEVERE else None


Step = tuple[bool, Recommendation | None]


def _contraindicated(facts: PatientFacts, policy: Policy, on: list[MedicationOrder]) -> Step:
    found = a.contraindications(facts)
    if not on or not found:
        return False, None
    return True, Recommendation(
        topic="augmentation-contraindicated",
        summary="A1PI is contraindicated for this patient: stop augmentation",
        advice="A1PI products are contraindicated after anaphylaxis or a severe systemic reaction "
        "to "
        "A1PI, and in IgA-deficient patients with antibodies against IgA.",
        evidence=(LABELS,),
        reasons=(*found, *(a.order_reason(o) for o in on)),
        actions=_stop(on, "Stop the A1PI order (contraindicated)"),
    )


def _transplant(facts: PatientFacts, policy: Policy, on: list[MedicationOrder]) -> Step:
    lung, liver = facts.lung_transplant, facts.liver_transplant
    if liver is not None:
        return True, _after_liver_transplant(facts, liver, on)
    if lung is None:
        return False, None
    episode = a.inflammatory_episode(facts)
    base = a.reasons(
        a.finding_reason("lung transplant", lung),
        a.genotype_reason(facts),
        *(a.order_reason(o) for o in on),
    )
    if episode is not None and (on or a.severity(facts) == a.SEVERE):
        return True, Recommendation(
            topic="augmentation-specialist-review",
            summary="Lung transplant with an inflammatory episode: a temporary A1PI course is a "
            "transplant-team decision",
            advice="Routine maintenance augmentation after lung transplant is not recommended. "
            "During "
            "acute rejection or infection a temporary course may be considered; the transplant "
            "pulmonology team decides. Do not use the serum AAT level as the indication.",
            evidence=(TRANSPLANT,),
            reasons=(*base, a.finding_reason("current episode", episode)),
            actions=(TRANSPLANT_TEAM,),
        )
    if not on:
        return True, None  # no "start augmentation" after lung transplant
    return True, Recommendation(
        topic="augmentation-discontinue",
        summary="Lung transplant recipient on routine A1PI: not recommended, consider stopping",
        advice="Routine augmentation after lung transplant is generally not recommended. Serum AAT "
        "stays low after lung transplant (AAT is hepatic) and is not an indication. A temporary "
        "course may be considered during acute rejection or infection.",
        evidence=(TRANSPLANT,),
        reasons=(*base, Reason("no active rejection or infection on record")),
        actions=_stop(on, "Stop routine A1PI after lung transplant"),
    )


def _after_liver_transplant(
    facts: PatientFacts, liver: CodedFinding, on: list[MedicationOrder]
) -> Recommendation | None:
    if not on and a.severity(facts) not in (a.SEVERE, a.BORDERLINE):
        return None
    topic = "augmentation-discontinue" if on else "augmentation-not-indicated"
    summary = (
        "Liver transplant recipient on A1PI: the donor liver makes normal AAT, consider stopping"
        if on
        else "Augmentation not needed after liver transplant: the donor liver makes normal AAT"
    )
    return Recommendation(
        topic=topic,
        summary=summary,
        advice="After a liver transplant the recipient's AAT is the donor's and serum levels "
        "normalise; "
        "augmentation is not needed for the deficiency. A phenotype now reflects the donor, a DNA "
        "genotype the recipient.",
        evidence=(TRANSPLANT,),
        reasons=a.reasons(
            a.finding_reason("liver transplant", liver),
            a.genotype_reason(facts),
            *(a.order_reason(o) for o in on),
        ),
        actions=_stop(on, "Stop A1PI after liver transplant"),
    )


def _child(facts: PatientFacts, policy: Policy, on: list[MedicationOrder]) -> Step:
    if a.is_adult(facts) is not False:
        return False, None
    if not on and not a.has_aatd(facts):
        return True, None
    return True, Recommendation(
        topic="augmentation-specialist-review" if on else "augmentation-not-indicated",
        summary=(
            "A1PI ordered for a child: not labelled under 18, specialist review"
            if on
            else "Augmentation not indicated in children: focus on liver and family care"
        ),
        advice="A1PI products are labelled for adults only (safety and efficacy under 18 are not "
        "established). In children with AATD focus on liver assessment, smoke avoidance, family "
        "testing and routine vaccines.",
        evidence=(LABELS,),
        reasons=a.reasons(
            Reason(f"age {facts.age}", facts.patient),
            a.genotype_reason(facts),
            *(a.order_reason(o) for o in on),
        ),
    )


def _not_severe(facts: PatientFacts, policy: Policy, on: list[MedicationOrder]) -> Step:
    """MM, MS, SS, MZ, or a level >= 11 umol/L with no severe genotype."""
    kind = a.severity(facts)
    if kind in (a.SEVERE, a.BORDERLINE):
        return False, None
    low = a.below_protective(facts)
    if kind is not None and low:
        return True, None  # a non-severe genotype with a severe level: results-discordant speaks
    protective = low is False
    if kind is None and not protective:
        if on:
            return True, _discontinue_unestablished(facts, on)
        return False, None  # nothing known: other rules ask for testing
    if not on and not (a.lung_disease(facts) or facts.has_condition("aatd")):
        return True, None
    if on:
        return True, _discontinue_unestablished(facts, on)
    label = f"PI*{facts.genotype.label}" if facts.genotype else "AAT above 11 umol/L"
    return True, Recommendation(
        topic="augmentation-not-indicated",
        summary=f"Augmentation not indicated for {label}: not a severe deficiency",
        advice="Augmentation is for severe deficiency only. Use standard COPD care (GOLD), smoking "
        "cessation, irritant avoidance, prompt treatment of infections and lung-function "
        "monitoring.",
        evidence=(A1F, LABELS, REVIEW),
        reasons=a.reasons(a.genotype_reason(facts), a.aat_reason(facts), a.obstruction(facts)),
    )


def _discontinue_unestablished(facts: PatientFacts, on: list[MedicationOrder]) -> Recommendation:
    missing = () if facts.genotype or facts.aat_levels else ("an AAT level and genotype",)
    return Recommendation(
        topic="augmentation-discontinue",
        summary="A1PI active but no severe deficiency is established: consider stopping",
        advice="A1PI is not indicated in patients in whom severe deficiency has not been "
        "established (labels). MZ, MS, SS and levels >= 11 umol/L are not severe deficiency.",
        evidence=(LABELS, A1F),
        reasons=a.reasons(
            a.genotype_reason(facts), a.aat_reason(facts), *(a.order_reason(o) for o in on)
        ),
        missing=missing,
        actions=_stop(on, "Stop A1PI (no severe deficiency established)"),
    )


def _borderline(facts: PatientFacts, policy: Policy, on: list[MedicationOrder]) -> Step:
    """SZ (and S/null): level decides; a low level goes to an AATD specialist (row 10)."""
    if a.severity(facts) != a.BORDERLINE:
        return False, None
    base = a.reasons(
        a.genotype_reason(facts),
        a.aat_reason(facts),
        a.obstruction(facts),
        *(a.order_reason(o) for o in on),
    )
    low = a.below_protective(facts)
    if low is None:
        return True, _workup(facts, base, ("an AAT level (borderline genotype)",))
    if low:
        return True, Recommendation(
            topic="augmentation-specialist-review",
            summary=f"PI*{facts.genotype.label} with AAT below 11 umol/L: refer to an AATD "
            "specialist",
            advice="Borderline genotype: augmentation is not routinely recommended for SZ, but "
            "level-based criteria (AAT < 11 umol/L) may apply. An AATD specialist decides.",
            evidence=(REVIEW, CTS),
            reasons=base,
            actions=(_specialist(),),
        )
    if on:
        return True, _discontinue_unestablished(facts, on)
    return True, Recommendation(
        topic="augmentation-not-indicated",
        summary=f"Augmentation not indicated: PI*{facts.genotype.label} with AAT at or above 11 "
        "umol/L",
        advice="With a level at or above the protective threshold augmentation is not indicated; "
        "avoid smoke, monitor lung function, and offer family testing.",
        evidence=(REVIEW,),
        reasons=base,
    )


def _severe(
    facts: PatientFacts, policy: Policy, on: list[MedicationOrder]
) -> Recommendation | None:
    base = a.reasons(a.genotype_reason(facts), a.aat_reason(facts))
    smoker = facts.smoking is not None and facts.smoking.status == "current"
    if smoker:
        if not on:
            return None  # the smoking-cessation card says not to start while smoking
        return _specialist_review(
            facts,
            "Current smoker on A1PI: augmentation is not recommended while smoking",
            "Augmentation is not recommended in continuing smokers. Prioritise cessation and "
            "discuss "
            "continuation with the AATD specialist.",
            (*base, Reason(facts.smoking.text, facts.smoking.source)),
        )
    fev1 = a.recent_fev1(facts, policy)
    if fev1 is not None and fev1.value < threshold("fev1_advanced_disease_percent"):
        return _specialist_review(
            facts,
            "FEV1 below 25 % predicted in severe AATD: augmentation is a specialist decision",
            "Below 25 % predicted augmentation is outside the CTS window and of less shown "
            "benefit; "
            "an AATD specialist decides, alongside transplant evaluation.",
            (*base, _fev1_reason(fev1)),
        )
    if not on and a.contraindications(facts):
        return _specialist_review(
            facts,
            "Severe AATD with a contraindication to A1PI: specialist review",
            "A1PI is contraindicated after anaphylaxis to A1PI and in IgA deficiency with anti-IgA "
            "antibodies.",
            (*base, *a.contraindications(facts)),
        )
    against = a.no_obstruction(facts)
    if against is not None:
        return _severe_without_obstruction(facts, base, against, on)
    missing = _missing(facts, policy)
    if missing:
        return None if on else _workup(facts, base, missing)
    if on:
        return None  # already treated; the dose check looks at the order
    return _candidate(facts, policy, base, fev1)


def _severe_without_obstruction(
    facts: PatientFacts, base: tuple[Reason, ...], against: Reason, on: list[MedicationOrder]
) -> Recommendation:
    if on:
        return _specialist_review(
            facts,
            "A1PI active without airflow obstruction: review the indication",
            "The labels require clinically evident emphysema; A1F does not recommend augmentation "
            "without airflow obstruction.",
            (*base, against, *(a.order_reason(o) for o in on)),
        )
    return Recommendation(
        topic="augmentation-not-indicated",
        summary="Severe AATD without airflow obstruction: augmentation not indicated now",
        advice="Augmentation is not recommended for emphysema or bronchiectasis without airflow "
        "obstruction. Monitor with annual post-bronchodilator spirometry and DLCO, avoid smoke, "
        "assess the liver and offer family testing; re-evaluate if lung function declines.",
        evidence=(A1F, LABELS),
        reasons=(*base, against),
    )


def _missing(facts: PatientFacts, policy: Policy) -> tuple[str, ...]:
    missing = []
    if a.recent_fev1(facts, policy) is None:
        missing.append(
            f"FEV1 % predicted (post-bronchodilator) within {policy.lookbacks.spirometry} days"
        )
    if a.obstruction(facts) is None:
        missing.append("evidence of emphysema or airflow obstruction (chest CT, FEV1/FVC)")
    smoking = facts.smoking
    if (
        smoking is None
        or smoking.status == "unknown"
        or not a.recent_date(smoking.source.date, policy.lookbacks.smoking, facts)
    ):
        missing.append(f"smoking status within {policy.lookbacks.smoking} days")
    if not a.recent(facts.latest("body_weight"), policy.lookbacks.weight, facts):
        missing.append(f"body weight within {policy.lookbacks.weight} days (dose is 60 mg/kg)")
    return tuple(missing)


def _workup(
    facts: PatientFacts, base: tuple[Reason, ...], missing: tuple[str, ...]
) -> Recommendation:
    actions = ()
    if any(item.startswith("FEV1") for item in missing):
        actions = (SPIROMETRY,)
    return Recommendation(
        topic="augmentation-workup-incomplete",
        summary="AATD: complete the work-up before deciding on augmentation",
        advice="The augmentation decision needs post-bronchodilator FEV1 % predicted, documented "
        "emphysema or airflow obstruction, current smoking status and a recent weight.",
        evidence=(LABELS, A1F),
        reasons=base,
        missing=missing,
        actions=actions,
    )


def _candidate(
    facts: PatientFacts, policy: Policy, base: tuple[Reason, ...], fev1: Measurement
) -> Recommendation:
    window = policy.window
    if window.consider_max is not None and fev1.value > window.consider_max:
        return Recommendation(
            topic="augmentation-not-indicated",
            summary=f"FEV1 {fev1.value:g} % is above the {window.label} window: augmentation not "
            "indicated now",
            advice=f"{window.label}: consider augmentation for FEV1 up to {window.consider_max:g} "
            "% "
            "predicted. Monitor lung function yearly and re-evaluate on decline.",
            evidence=(CTS,),
            reasons=(*base, _fev1_reason(fev1)),
        )
    weight = facts.latest("body_weight")
    dose = threshold("a1pi_dose_mg_per_kg_week") * weight.value
    recommend = fev1.value <= window.recommend_max
    verb = "Start" if recommend else "Discuss"
    return Recommendation(
        topic="augmentation-candidate",
        summary=f"{verb} A1PI augmentation: {dose:,.0f} mg IV weekly (60 mg/kg x {weight.value:g} "
        "kg)",
        advice=(
            "Eligible for augmentation: severe deficiency, emphysema or airflow obstruction, "
            f"FEV1 within the {window.label} window, not smoking, adult. "
            if recommend
            else f"FEV1 is above {window.recommend_max:g} % predicted: {window.label} advises "
            "discussing "
            "benefit against cost and the lack of evidence before starting. "
        )
        + "Also: optimal COPD care (GOLD), pulmonary rehabilitation, vaccines, AATD centre "
        "referral, "
        "family testing. Evidence: RAPID (CT lung density) is the only RCT; FEV1 and mortality "
        "benefits are observational.",
        evidence=(A1F, CTS, LABELS) if policy.fev1_window == "a1f-2016" else (CTS, A1F, LABELS),
        reasons=(
            *base,
            a.obstruction(facts),
            _fev1_reason(fev1),
            Reason(f"{facts.smoking.status} smoker: {facts.smoking.text}", facts.smoking.source),
            Reason(f"weight {weight.value:g} kg", weight.source),
            Reason(f"age {facts.age}", facts.patient),
        ),
        actions=(
            PrescribeAugmentation(dose, weight.value, f"Order A1PI {dose:,.0f} mg IV weekly"),
        ),
    )


def _fev1_reason(fev1: Measurement) -> Reason:
    return Reason(f"FEV1 {fev1.value:g} % predicted", fev1.source)


def _specialist_review(
    facts: PatientFacts, summary: str, advice: str, reasons: tuple[Reason, ...]
) -> Recommendation:
    return Recommendation(
        topic="augmentation-specialist-review",
        summary=summary,
        advice=advice,
        evidence=(A1F, CTS, REVIEW),
        reasons=reasons,
        actions=(_specialist(),),
    )


def _specialist() -> OrderService:
    return OrderService(
        "Referral to an AATD specialist centre for an augmentation decision",
        "Refer to an AATD specialist",
        "referral",
    )


def _stop(orders: list[MedicationOrder], label: str) -> tuple[StopOrder, ...]:
    return tuple(
        StopOrder(o.source.reference, label)
        for o in orders
        if o.resource_type == "MedicationRequest"
    )


# --- rules that accompany the decision ------------------------------------------------------


def dose_check(facts: PatientFacts, policy: Policy) -> Recommendation | None:
    """Active A1PI off 60 mg/kg weekly by more than the tolerance (row 27)."""
    order = next((o for o in a.augmentation_orders(facts) if a.off_label_dose(o)), None)
    return None if order is None else dose_card(facts, order)


def dose_card(facts: PatientFacts, order: MedicationOrder) -> Recommendation:
    """The labelled dose for an order off it, with the corrected dose when a weight allows."""
    weight = facts.latest("body_weight")
    correct = threshold("a1pi_dose_mg_per_kg_week") * weight.value if weight else None
    actions = ()
    if correct and order.resource_type == "MedicationRequest":
        actions = (
            CorrectDose(order.source.reference, correct, f"Change to {correct:,.0f} mg IV weekly"),
        )
    labelled = f"60 mg/kg ({correct:,.0f} mg)" if correct else "60 mg/kg"
    kind = "draft" if order.state == "draft" else "dose"
    return Recommendation(
        topic="augmentation-dose-check",
        summary=f"A1PI {kind} is {order.mg_per_kg_per_week:.0f} mg/kg/week; labelled dose is "
        f"{labelled} IV weekly",
        advice="All four A1PI products are labelled at 60 mg/kg actual body weight IV once weekly.",
        evidence=(LABELS,),
        reasons=a.reasons(a.order_reason(order), a.measurement_reason("weight", weight)),
        missing=() if weight else ("a recent body weight, to compute the corrected dose",),
        actions=actions,
    )


def advanced_disease_referral(facts: PatientFacts, policy: Policy) -> Recommendation | None:
    """Severe AATD with FEV1 below 25 % predicted: transplant evaluation (row 4)."""
    if a.severity(facts) not in (a.SEVERE, a.BORDERLINE) or facts.lung_transplant is not None:
        return None
    fev1 = a.recent_fev1(facts, policy)
    if fev1 is None or fev1.value >= threshold("fev1_advanced_disease_percent"):
        return None
    return Recommendation(
        topic="advanced-disease-referral",
        summary=f"FEV1 {fev1.value:g} % predicted in AATD: refer for lung transplant evaluation",
        advice="Refer for lung-transplant evaluation and advanced-emphysema options (lung volume "
        "reduction, endobronchial valves, oxygen assessment).",
        evidence=(REVIEW, A1F),
        reasons=a.reasons(a.genotype_reason(facts), _fev1_reason(fev1)),
        actions=(
            OrderService(
                "Referral for lung transplant evaluation",
                "Refer for transplant evaluation",
                "referral",
            ),
        ),
    )
