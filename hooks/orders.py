"""order-select / order-sign: A1PI and immune globulin orders against the patient's data.

Each order under review gets a medical-necessity statement: every criterion met, not met
or unknown with the fact behind it, and a conclusion (supported, not supported, needs
documentation). The criteria reuse the shared assessment and the immunoglobulin criteria
of the patient-view rules; nothing is judged a second way here.
"""

from __future__ import annotations

from fhir_mappings import MedicationOrder, PatientFacts

from . import assessment as a
from . import immunoglobulin as ig
from .augmentation import A1F, CTS, LABELS, REVIEW, TRANSPLANT, TRANSPLANT_TEAM, dose_card
from .knowledge import threshold
from .monitoring import SPIROMETRY
from .policy import Policy
from .recommendation import (
    Criterion,
    Evidence,
    Necessity,
    OrderService,
    OrderTest,
    Reason,
    Recommendation,
    RemoveDraft,
    SuggestedAction,
)

MET, NOT_MET, UNKNOWN = "met", "not met", "unknown"
ANTI_IGA_TEST = OrderService("Anti-IgA antibodies (serum)", "Order anti-IgA antibodies")

WEIGHT = OrderService("Measure and record body weight", "Record body weight")


# --- A1PI ----------------------------------------------------------------------------------


def augmentation_order(facts: PatientFacts, policy: Policy) -> Recommendation | None:
    orders = facts.orders_under_review("a1pi")
    if not orders:
        return None
    order = orders[0]
    criteria = a1pi_criteria(facts, policy, order)
    by_name = {c.name: c for c in criteria}
    contraindication = by_name["No contraindication to A1PI"]
    failing = [c for c in criteria if c.status == NOT_MET and c.name != DOSE]
    unknown = [c for c in criteria if c.status == UNKNOWN and c.name != DOSE]
    if contraindication.status == NOT_MET:
        return _a1pi(
            order,
            criteria,
            "not supported",
            topic="augmentation-contraindicated",
            summary="A1PI is contraindicated for this patient: remove the order",
            advice="Anaphylaxis to A1PI, or IgA deficiency with antibodies against IgA, "
            "contraindicates every A1PI product.",
            actions=_remove(order, "A1PI"),
        )
    if failing:
        first = failing[0]
        return _a1pi(
            order,
            criteria,
            "not supported",
            topic="augmentation-not-indicated",
            summary=NOT_SUPPORTED[first.name][0],
            advice=NOT_SUPPORTED[first.name][1],
            actions=_remove(order, "A1PI"),
            indicator="warning",
            evidence=_evidence_for(first),
        )
    if contraindication.status == UNKNOWN:
        return _a1pi(
            order,
            criteria,
            "needs documentation",
            topic="augmentation-contraindicated",
            indicator="warning",
            summary="IgA deficiency with unknown anti-IgA status: test before giving A1PI",
            advice="A1PI is contraindicated in IgA-deficient patients with antibodies "
            "against IgA: check anti-IgA antibodies before the first dose.",
            actions=(ANTI_IGA_TEST,),
        )
    if unknown:
        specialist = any(c.name in SPECIALIST_QUESTIONS for c in unknown)
        return _a1pi(
            order,
            criteria,
            "needs documentation",
            topic="augmentation-specialist-review"
            if specialist
            else "augmentation-workup-incomplete",
            summary=_unknown_summary(unknown, specialist),
            advice=_unknown_advice(unknown),
            actions=_missing_actions(unknown),
            evidence=(TRANSPLANT, LABELS) if facts.lung_transplant else (LABELS, A1F),
        )
    return _a1pi(
        order,
        criteria,
        "supported",
        topic="augmentation-candidate",
        summary="A1PI order supported: severe AATD with emphysema, criteria met",
        advice="The order meets the labelled indication and the guideline criteria "
        "for augmentation.",
        actions=(),
    )


DOSE = "Dose 60 mg/kg IV weekly (within 10 %)"
SPECIALIST_QUESTIONS = {
    "No lung transplant",
    "Severe AAT deficiency established",
    "FEV1 % predicted in the policy window",
}


def a1pi_criteria(
    facts: PatientFacts, policy: Policy, order: MedicationOrder
) -> tuple[Criterion, ...]:
    return (
        _deficiency(facts),
        _obstruction(facts),
        _fev1(facts, policy),
        _not_smoking(facts, policy),
        _adult(facts),
        _no_lung_transplant(facts),
        _no_liver_transplant(facts),
        _no_contraindication(facts),
        _dose(facts, order),
    )


def _deficiency(facts: PatientFacts) -> Criterion:
    name = "Severe AAT deficiency established"
    why = (
        a.genotype_reason(facts)
        or a.aat_reason(facts)
        or Reason("no AAT level or genotype on record")
    )
    kind, low = a.severity(facts), a.below_protective(facts)
    if kind == a.SEVERE:
        return Criterion(name, MET, why)
    if kind == a.BORDERLINE and low:
        return Criterion(
            name,
            UNKNOWN,
            Reason(
                f"{why.text}; borderline genotype with a low level: an AATD specialist decides",
                why.source,
            ),
        )
    if kind is not None and low:
        return Criterion(
            name,
            UNKNOWN,
            Reason(f"{why.text}, but the AAT level is low: results disagree", why.source),
        )
    if kind is None and low is None:
        return Criterion(name, UNKNOWN, why)
    return Criterion(name, NOT_MET, a.reasons(a.genotype_reason(facts), a.aat_reason(facts))[0])


def _obstruction(facts: PatientFacts) -> Criterion:
    name = "Emphysema or airflow obstruction"
    found = a.obstruction(facts)
    if found:
        return Criterion(name, MET, found)
    against = a.no_obstruction(facts)
    if against:
        return Criterion(name, NOT_MET, against)
    return Criterion(name, UNKNOWN, Reason("no emphysema, COPD or FEV1/FVC on record"))


def _fev1(facts: PatientFacts, policy: Policy) -> Criterion:
    name = "FEV1 % predicted in the policy window"
    window = policy.window
    fev1 = a.recent_fev1(facts, policy)
    if fev1 is None:
        return Criterion(
            name, UNKNOWN, Reason(f"no FEV1 % predicted within {policy.lookbacks.spirometry} days")
        )
    text = f"FEV1 {fev1.value:g} % predicted ({window.label})"
    if fev1.value < threshold("fev1_advanced_disease_percent"):
        return Criterion(
            name, UNKNOWN, Reason(f"{text}: below 25 %, a specialist decision", fev1.source)
        )
    if window.consider_max is not None and fev1.value > window.consider_max:
        return Criterion(
            name, NOT_MET, Reason(f"{text}: above {window.consider_max:g} %", fev1.source)
        )
    if fev1.value > window.recommend_max:
        return Criterion(
            name,
            MET,
            Reason(f"{text}: above {window.recommend_max:g} %, shared decision", fev1.source),
        )
    return Criterion(name, MET, Reason(text, fev1.source))


def _not_smoking(facts: PatientFacts, policy: Policy) -> Criterion:
    name = "Not a current smoker"
    smoking = facts.smoking
    if (
        smoking is None
        or smoking.status == "unknown"
        or not a.recent_date(smoking.source.date, policy.lookbacks.smoking, facts)
    ):
        return Criterion(
            name, UNKNOWN, Reason(f"no smoking status within {policy.lookbacks.smoking} days")
        )
    status = NOT_MET if smoking.status == "current" else MET
    return Criterion(
        name, status, Reason(f"{smoking.status} smoker: {smoking.text}", smoking.source)
    )


def _adult(facts: PatientFacts) -> Criterion:
    adult = a.is_adult(facts)
    if adult is None:
        return Criterion(
            "Adult (labelled for 18 and over)", UNKNOWN, Reason("birth date not recorded")
        )
    return Criterion(
        "Adult (labelled for 18 and over)",
        MET if adult else NOT_MET,
        Reason(f"age {facts.age}", facts.patient),
    )


def _no_lung_transplant(facts: PatientFacts) -> Criterion:
    name = "No lung transplant"
    lung = facts.lung_transplant
    if lung is None:
        return Criterion(name, MET, Reason("no lung transplant on record"))
    episode = a.inflammatory_episode(facts)
    if episode is None:
        return Criterion(
            name,
            NOT_MET,
            Reason(
                f"lung transplant: {lung.text}; routine maintenance "
                "after lung transplant is not "
                "supported",
                lung.source,
            ),
        )
    return Criterion(
        name,
        UNKNOWN,
        Reason(
            f"lung transplant ({lung.text}) with a current episode: {episode.text}", episode.source
        ),
    )


def _no_liver_transplant(facts: PatientFacts) -> Criterion:
    liver = facts.liver_transplant
    if liver is None:
        return Criterion("No liver transplant", MET, Reason("no liver transplant on record"))
    return Criterion(
        "No liver transplant",
        NOT_MET,
        Reason(f"liver transplant: {liver.text}; the donor liver makes normal AAT", liver.source),
    )


def _no_contraindication(facts: PatientFacts) -> Criterion:
    name = "No contraindication to A1PI"
    found = a.contraindications(facts)
    if found:
        return Criterion(name, NOT_MET, found[0])
    unknown = a.anti_iga_unknown(facts)
    if unknown:
        return Criterion(
            name,
            UNKNOWN,
            Reason(f"{unknown.text}; anti-IgA antibodies not on record", unknown.source),
        )
    return Criterion(
        name, MET, Reason("no A1PI anaphylaxis, no IgA deficiency with anti-IgA on record")
    )


def _dose(facts: PatientFacts, order: MedicationOrder) -> Criterion:
    off = a.off_label_dose(order)
    if off is None:
        stated = order.dose is not None
        why = "no weight to compute mg/kg" if stated else "dose or interval not stated"
        return Criterion(DOSE, UNKNOWN, Reason(why, order.source))
    fact = Reason(f"{order.mg_per_kg_per_week:.0f} mg/kg per week", order.source)
    return Criterion(DOSE, NOT_MET if off else MET, fact)


def _a1pi(
    order: MedicationOrder,
    criteria: tuple[Criterion, ...],
    conclusion: str,
    *,
    topic: str,
    summary: str,
    advice: str,
    actions: tuple[SuggestedAction, ...],
    indicator: str = "",
    evidence: tuple[Evidence, ...] = (LABELS, A1F, CTS),
) -> Recommendation:
    """A card for one A1PI order, carrying its medical-necessity statement."""
    return Recommendation(
        topic=topic,
        summary=summary,
        advice=advice,
        evidence=evidence,
        reasons=(a.order_reason(order),),
        missing=_missing(criteria),
        actions=actions,
        indicator=indicator,
        necessity=Necessity(order.text, criteria, conclusion),
    )


LUNG_TRANSPLANT_ADVICE = (
    "Routine maintenance augmentation after lung transplant is not supported; serum AAT stays "
    "low after lung transplant (AAT is hepatic) and is no indication. During acute rejection or "
    "infection a temporary course is the transplant team's decision."
)
SEVERE_ONLY = (
    "A1PI is indicated only for adults with emphysema due to severe congenital AAT deficiency "
    "(labels); MZ, MS, SS and levels >= 11 umol/L are not severe deficiency."
)
# Failing criterion -> the card's summary and advice when an order is not supported.
NOT_SUPPORTED: dict[str, tuple[str, str]] = {
    "Severe AAT deficiency established": (
        "A1PI not indicated: no severe AAT deficiency is established",
        SEVERE_ONLY,
    ),
    "Emphysema or airflow obstruction": (
        "A1PI not indicated without emphysema or airflow obstruction",
        "Augmentation is not recommended for AATD without airflow obstruction (A1F); the labels "
        "require clinically evident emphysema.",
    ),
    "FEV1 % predicted in the policy window": (
        "A1PI not indicated now: FEV1 is above the policy window",
        "Outside the FEV1 window of the configured guideline; monitor lung function yearly.",
    ),
    "Not a current smoker": (
        "A1PI not recommended while the patient smokes: cessation first",
        "Augmentation is not recommended in continuing smokers; re-assess after sustained "
        "abstinence.",
    ),
    "Adult (labelled for 18 and over)": (
        "A1PI is not labelled under 18 years",
        "Safety and efficacy under 18 are not established.",
    ),
    "No lung transplant": (
        "Routine A1PI after lung transplant is not supported: remove the order",
        LUNG_TRANSPLANT_ADVICE,
    ),
    "No liver transplant": (
        "A1PI not needed after liver transplant: the donor liver makes normal AAT",
        "After a liver transplant serum AAT normalises; augmentation is not needed.",
    ),
}


def _evidence_for(first: Criterion) -> tuple[Evidence, ...]:
    if first.name in ("No lung transplant", "No liver transplant"):
        return (TRANSPLANT, LABELS)
    return (LABELS, A1F, REVIEW)


def _unknown_summary(unknown: list[Criterion], specialist: bool) -> str:
    names = {c.name for c in unknown}
    if "No lung transplant" in names:
        return (
            "A1PI after lung transplant: routine use not supported; during acute rejection "
            "the transplant team decides"
        )
    if specialist:
        return "A1PI order needs an AATD specialist decision before signing"
    return "A1PI order: document " + ", ".join(c.name.lower() for c in unknown[:2])


def _unknown_advice(unknown: list[Criterion]) -> str:
    if any(c.name == "No lung transplant" for c in unknown):
        return LUNG_TRANSPLANT_ADVICE
    return "Medical necessity needs the missing items documented before signing."


def _missing_actions(unknown: list[Criterion]) -> tuple[OrderService, ...]:
    names = {c.name for c in unknown}
    actions = []
    if "FEV1 % predicted in the policy window" in names:
        actions.append(SPIROMETRY)
    if "No lung transplant" in names:
        actions.append(TRANSPLANT_TEAM)
    return tuple(actions)


def _missing(criteria: tuple[Criterion, ...]) -> tuple[str, ...]:
    return tuple(f"{c.name}: {c.fact.text}" for c in criteria if c.status == UNKNOWN)


def _remove(order: MedicationOrder, product: str) -> tuple[RemoveDraft, ...]:
    """Delete a draft MedicationRequest; an order without an id cannot be named."""
    if order.resource_type != "MedicationRequest" or order.source.reference.endswith("(no id)"):
        return ()
    return (RemoveDraft(order.source.reference, f"Remove the draft {product} order"),)


def augmentation_order_dose(facts: PatientFacts, policy: Policy) -> Recommendation | None:
    """A draft A1PI off 60 mg/kg weekly: replace it with the labelled dose."""
    order = next((o for o in facts.orders_under_review("a1pi") if a.off_label_dose(o)), None)
    return None if order is None else dose_card(facts, order)


# --- immune globulin ---------------------------------------------------------------------------


IG_CRITERIA = "AAAAI 2022 criteria (IgG with recurrent serious infections)"
IG_DOSE = "Dose against usual replacement (0.4-0.6 g/kg every 3-4 weeks)"


def immunoglobulin_order(facts: PatientFacts, policy: Policy) -> Recommendation | None:
    orders = facts.orders_under_review("immune_globulin")
    if not orders:
        return None
    order = orders[0]
    criteria = ig_criteria(facts, policy, order)
    main, contraindication = criteria[0], criteria[1]
    if main.status == MET and contraindication.status != NOT_MET:
        conclusion = "supported" if contraindication.status == MET else "needs documentation"
        topic, summary = (
            "immunoglobulin-replacement-indicated",
            ("Immune globulin order supported: AAAAI 2022 criteria met"),
        )
        actions = _ig_actions(criteria)
        indicator = ""
    else:
        failed = NOT_MET in (main.status, contraindication.status)
        conclusion = "not supported" if failed else "needs documentation"
        topic = "immunoglobulin-replacement-not-indicated"
        summary = (
            "Immune globulin order without AAAAI 2022 criteria: review before signing"
            if conclusion == "not supported"
            else "Immune globulin order: document IgG first"
        )
        removal = _remove(order, "immune globulin") if conclusion == "not supported" else ()
        actions = (*removal, *_ig_actions(criteria))
        indicator = "warning"
    return Recommendation(
        topic=topic,
        summary=summary,
        advice="Replacement for secondary hypogammaglobulinaemia needs low IgG with recurrent "
        "serious infections (AAAAI 2022); usual dose 0.4-0.6 g/kg every 3-4 weeks, titrated to a "
        "trough IgG above 500 mg/dL. Higher doses are specialist-directed. US IVIG labels cover "
        "primary immunodeficiency: secondary use depends on the payer.",
        evidence=(ig.AAAAI, ig.ONTARIO),
        reasons=(a.order_reason(order),),
        missing=_missing(criteria) + ((ig.VACCINE_RESPONSE,) if main.status == MET else ()),
        actions=actions,
        indicator=indicator,
        necessity=Necessity(order.text, criteria, conclusion),
    )


def ig_criteria(
    facts: PatientFacts, policy: Policy, order: MedicationOrder
) -> tuple[Criterion, ...]:
    igg = facts.latest("igg")
    if igg is None:
        main = Criterion(IG_CRITERIA, UNKNOWN, Reason("no IgG on record"))
    else:
        found = ig.criteria(facts, igg)
        main = Criterion(
            IG_CRITERIA,
            MET if found.met else NOT_MET,
            Reason("; ".join(r.text for r in found.reasons), igg.source),
        )
    return (main, _ig_contraindication(facts), _ig_dose(order), _trough(facts, policy))


def _ig_contraindication(facts: PatientFacts) -> Criterion:
    name = "No IgA deficiency with anti-IgA antibodies"
    deficient = a.iga_deficient(facts)
    positive = next((f for f in facts.anti_iga if f.active), None)
    if deficient and positive:
        return Criterion(
            name, NOT_MET, Reason(f"{deficient.text}; {positive.text}", positive.source)
        )
    if deficient and not facts.anti_iga:
        return Criterion(
            name,
            UNKNOWN,
            Reason(f"{deficient.text}; anti-IgA antibodies not on record", deficient.source),
        )
    return Criterion(name, MET, Reason("no IgA deficiency with anti-IgA antibodies on record"))


def _ig_dose(order: MedicationOrder) -> Criterion:
    low, high = threshold("ivig_usual_g_per_kg")
    escalation = threshold("ivig_escalation_g_per_kg")
    dose, days = order.g_per_kg_per_dose, order.interval_days
    if dose is None or days is None:
        return Criterion(
            IG_DOSE, UNKNOWN, Reason("dose, interval or weight not stated", order.source)
        )
    text = f"{dose:.2f} g/kg every {days:g} days"
    if dose > escalation:
        return Criterion(
            IG_DOSE,
            MET,
            Reason(
                f"{text}: above {escalation} g/kg, a specialist-directed escalation (not an error)",
                order.source,
            ),
        )
    if dose > high:
        return Criterion(
            IG_DOSE, MET, Reason(f"{text}: above the usual {low}-{high} g/kg", order.source)
        )
    if dose < low:
        return Criterion(
            IG_DOSE, NOT_MET, Reason(f"{text}: below the usual {low} g/kg", order.source)
        )
    return Criterion(IG_DOSE, MET, Reason(text, order.source))


def _trough(facts: PatientFacts, policy: Policy) -> Criterion:
    name = "Trough IgG monitored"
    igg = facts.latest("igg")
    if a.recent(igg, policy.lookbacks.igg, facts):
        return Criterion(name, MET, a.measurement_reason("IgG", igg))
    return Criterion(name, UNKNOWN, Reason(f"no IgG within {policy.lookbacks.igg} days"))


def _ig_actions(criteria: tuple[Criterion, ...]) -> tuple[SuggestedAction, ...]:
    by_name = {c.name: c for c in criteria}
    actions: list[SuggestedAction] = []
    if by_name["No IgA deficiency with anti-IgA antibodies"].status == UNKNOWN:
        actions.append(ANTI_IGA_TEST)
    if by_name["Trough IgG monitored"].status == UNKNOWN or by_name[IG_CRITERIA].status == UNKNOWN:
        actions.append(OrderTest("igg", "Order IgG (trough, before the next infusion)"))
    if by_name[IG_DOSE].status == UNKNOWN:
        actions.append(WEIGHT)
    return tuple(actions)
