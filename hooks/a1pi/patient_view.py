"""A1PI at patient-view: who should start, stop, or be reviewed, and the dose check.

``augmentation`` walks the decision in the order that keeps the cards consistent:
contraindication, transplant, age, deficiency, then (for a severe deficiency) smoking,
lung function, obstruction, missing work-up and candidacy. It returns at most one of
candidate / not-indicated / specialist-review / workup-incomplete / discontinue /
contraindicated, so these never contradict each other. It reads the criteria of
``criteria.py`` by identifier, the same judgements the order hooks render.
"""

from __future__ import annotations

from typing import Any

from fhir_mappings import Measurement, MedicationOrder

from .. import actions, assessment
from ..context import Context
from ..knowledge import statements, thresholds
from ..reasons import (
    aat_reason,
    age_reason,
    fev1_reason,
    finding_reason,
    genotype_reason,
    order_reasons,
    reasons,
    unread_reason,
)
from ..recommendation import Reason, Recommendation, SuggestedAction
from .criteria import (
    A1F,
    CTS,
    LABELS,
    REVIEW,
    TRANSPLANT,
    WORDS,
    A1pi,
    Kind,
    judge,
    labelled_dose_mg,
    missing_item,
)

# Work-up items the decision needs, in the order a card lists them.
WORKUP = (
    A1pi.FEV1_WINDOW,
    A1pi.OBSTRUCTION,
    A1pi.NOT_SMOKING,
    A1pi.RECENT_WEIGHT,
    A1pi.ADULT,
    A1pi.NO_CONTRAINDICATION,
)


def augmentation(ctx: Context) -> Recommendation | None:
    """When: the patient has (or may have) AATD, or is on A1PI.
    Then: one verdict on augmentation, from the FDA labels, A1F 2016, CTS 2012 and
    ATS/ERS: contraindicated, discontinue, specialist review, work-up incomplete,
    not indicated, or candidate with the labelled dose.
    """
    on = assessment.augmentation_orders(ctx.facts)
    for step in (_contraindicated, _transplant, _child, _deficiency):
        decided, recommendation = step(ctx, on)
        if decided:
            return _asked(ctx, on, recommendation)
    return _asked(ctx, on, _severe(ctx, on))


def _asked(
    ctx: Context, on: list[MedicationOrder], recommendation: Recommendation | None
) -> Recommendation | None:
    """A "not indicated" card only where the question can arise: therapy active, or
    obstructive lung disease, emphysema or bronchiectasis on record (DESIGN: a card is shown
    only when it asks for or stops something)."""
    if recommendation is None or recommendation.topic != "augmentation-not-indicated":
        return recommendation
    return recommendation if on or assessment.lung_disease(ctx.facts) else None


Step = tuple[bool, Recommendation | None]


def _card(
    topic: str,
    key: str,
    evidence: tuple[str, ...],
    *,
    values: dict[str, Any] | None = None,
    **extra: Any,
) -> Recommendation:
    """A recommendation whose summary and advice are the words at ``key``."""
    values = values or {}
    return Recommendation(
        topic=topic,
        summary=WORDS(f"{key}.summary", **values),
        advice=WORDS(f"{key}.advice", **values),
        evidence=statements(*evidence),
        **extra,
    )


def _contraindicated(ctx: Context, on: list[MedicationOrder]) -> Step:
    """When: on A1PI and a label contraindication is on record. Then: stop (critical)."""
    judged = ctx.judged(judge)[A1pi.NO_CONTRAINDICATION]
    if not on or not judged.not_met:
        return False, None
    return True, _card(
        "augmentation-contraindicated",
        "contraindicated",
        (LABELS,),
        reasons=(*assessment.contraindications(ctx.facts), *order_reasons(on)),
        actions=actions.stop(on, WORDS("contraindicated.stop")),
    )


def _transplant(ctx: Context, on: list[MedicationOrder]) -> Step:
    """When: a liver or lung transplant is on record. Then: never "start"; after a liver
    transplant augmentation is not needed; after a lung transplant routine therapy is
    stopped, and an inflammatory episode goes to the transplant team (ATS/ERS)."""
    facts = ctx.facts
    if facts.liver_transplant is not None:
        return True, _after_liver_transplant(ctx, on)
    lung = ctx.judged(judge)[A1pi.NO_LUNG_TRANSPLANT]
    if lung.met:
        return False, None
    base = reasons(
        finding_reason("lung transplant", facts.lung_transplant),
        genotype_reason(facts),
        *order_reasons(on),
    )
    if lung.kind is Kind.INFLAMMATORY_EPISODE and (
        on or assessment.severity(facts) == assessment.SEVERE
    ):
        return True, _card(
            "augmentation-specialist-review",
            "lung_transplant_episode",
            (TRANSPLANT,),
            reasons=(*base, lung.fact),
            actions=(actions.TRANSPLANT_TEAM,),
        )
    if not on:
        return True, None
    return True, _card(
        "augmentation-discontinue",
        "lung_transplant_routine",
        (TRANSPLANT,),
        reasons=(*base, Reason(WORDS("lung_transplant_routine.no_episode"))),
        actions=actions.stop(on, WORDS("lung_transplant_routine.stop")),
    )


def _after_liver_transplant(ctx: Context, on: list[MedicationOrder]) -> Recommendation | None:
    facts = ctx.facts
    if not on and assessment.severity(facts) not in assessment.DEFICIENT:
        return None
    key = "liver_transplant_on" if on else "liver_transplant_off"
    return _card(
        "augmentation-discontinue" if on else "augmentation-not-indicated",
        key,
        (TRANSPLANT,),
        reasons=reasons(
            finding_reason("liver transplant", facts.liver_transplant),
            genotype_reason(facts),
            *order_reasons(on),
        ),
        actions=actions.stop(on, WORDS("liver_transplant_on.stop")),
    )


def _child(ctx: Context, on: list[MedicationOrder]) -> Step:
    """When: under the labels' adult age. Then: no augmentation (specialist review if
    ordered); focus on liver and family care (labels; CK row 39)."""
    if not ctx.judged(judge)[A1pi.ADULT].not_met:
        return False, None
    if not on and not assessment.has_aatd(ctx.facts):
        return True, None
    return True, _card(
        "augmentation-specialist-review" if on else "augmentation-not-indicated",
        "child_on" if on else "child_off",
        (LABELS,),
        reasons=reasons(age_reason(ctx.facts), genotype_reason(ctx.facts), *order_reasons(on)),
    )


def _deficiency(ctx: Context, on: list[MedicationOrder]) -> Step:
    """When: the deficiency is not established as severe. Then: not indicated (MM, MS, SS,
    MZ, a protective level), stop if on it, specialist for SZ with a low level, the level
    first for SZ without one; discordant results are the results-discordant card's."""
    facts, judged = ctx.facts, ctx.judged(judge)[A1pi.SEVERE_DEFICIENCY]
    base = reasons(
        genotype_reason(facts), aat_reason(facts), assessment.obstruction(facts), *order_reasons(on)
    )
    match judged.kind:
        case Kind.SEVERE:
            return False, None
        case Kind.DISCORDANT | Kind.LEVEL_ONLY | Kind.UNREADABLE:
            return True, None  # results-discordant / genotype-recommended ask for the alleles
        case Kind.NO_RESULT:
            return True, _unestablished(ctx, on) if on else None
        case Kind.BORDERLINE_NO_LEVEL:
            return True, _workup(ctx, (A1pi.SEVERE_DEFICIENCY,))
        case Kind.BORDERLINE_LOW:
            label = facts.genotype.label if facts.genotype else "?"
            return True, _card(
                "augmentation-specialist-review",
                "borderline_low",
                (REVIEW, CTS),
                values={"label": label},
                reasons=base,
                actions=(actions.AATD_SPECIALIST,),
            )
        case Kind.BORDERLINE_PROTECTIVE:
            if on:
                return True, _unestablished(ctx, on)
            label = facts.genotype.label if facts.genotype else "?"
            return True, _card(
                "augmentation-not-indicated",
                "borderline_protective",
                (REVIEW,),
                values={"label": label},
                reasons=base,
            )
    if on:
        return True, _unestablished(ctx, on)
    genotype = facts.genotype
    label = (
        WORDS("not_severe.genotype", label=genotype.label)
        if genotype
        else WORDS("not_severe.level")
    )
    return True, _card(
        "augmentation-not-indicated",
        "not_severe",
        (A1F, LABELS, REVIEW),
        values={"label": label},
        reasons=reasons(genotype_reason(facts), aat_reason(facts), assessment.obstruction(facts)),
    )


def _unestablished(ctx: Context, on: list[MedicationOrder]) -> Recommendation:
    """On A1PI without an established severe deficiency: consider stopping (labels)."""
    facts = ctx.facts
    unknown = not (facts.genotype or facts.aat_levels)
    return _card(
        "augmentation-discontinue",
        "unestablished",
        (LABELS, A1F),
        reasons=reasons(genotype_reason(facts), aat_reason(facts), *order_reasons(on)),
        missing=(WORDS("unestablished.missing"),) if unknown else (),
        actions=actions.stop(on, WORDS("unestablished.stop")),
    )


def _severe(ctx: Context, on: list[MedicationOrder]) -> Recommendation | None:
    """When: severe deficiency. Then, in order: a current smoker is not started (and one on
    therapy is reviewed); FEV1 below the advanced-disease threshold, a contraindication or
    therapy without obstruction go to a specialist; no obstruction is not indicated;
    missing inputs are asked for; otherwise the FEV1 window decides (A1F 2016 / CTS 2012).
    """
    facts, c = ctx.facts, ctx.judged(judge)
    base = reasons(genotype_reason(facts), aat_reason(facts))
    if c[A1pi.NOT_SMOKING].not_met:
        if not on:
            return None  # the smoking-cessation card says not to start while smoking
        return _specialist(ctx, "smoker_on", (*base, c[A1pi.NOT_SMOKING].fact))
    fev1 = c[A1pi.FEV1_WINDOW]
    if fev1.kind is Kind.BELOW_MINIMUM:
        return _specialist(ctx, "below_minimum", (*base, fev1.fact))
    if not on and c[A1pi.NO_CONTRAINDICATION].not_met:
        return _specialist(
            ctx, "contraindicated_not_on", (*base, *assessment.contraindications(facts))
        )
    obstruction = c[A1pi.OBSTRUCTION]
    if obstruction.not_met:
        if on:
            return _specialist(
                ctx, "no_obstruction_on", (*base, obstruction.fact, *order_reasons(on))
            )
        return _card(
            "augmentation-not-indicated",
            "no_obstruction",
            (A1F, LABELS),
            reasons=(*base, obstruction.fact),
        )
    if fev1.kind is Kind.ABOVE_WINDOW:
        return _above_window(ctx, base)
    missing = tuple(criterion for criterion in WORKUP if c[criterion].unknown)
    if missing:
        return None if on else _workup(ctx, missing)
    if on:
        return None  # already treated; the dose check looks at the order
    return _candidate(ctx, base)


def _specialist(ctx: Context, key: str, why: tuple[Reason, ...]) -> Recommendation:
    return _card(
        "augmentation-specialist-review",
        key,
        (A1F, CTS, REVIEW),
        reasons=why,
        actions=(actions.AATD_SPECIALIST,),
    )


def _workup(ctx: Context, missing: tuple[A1pi, ...]) -> Recommendation:
    """What the decision still needs, each item said the same way as in the order hooks."""
    facts = ctx.facts
    return _card(
        "augmentation-workup-incomplete",
        "workup",
        (LABELS, A1F),
        reasons=reasons(genotype_reason(facts), aat_reason(facts)),
        missing=tuple(
            missing_item(ctx.judged(judge)[criterion], ctx.policy) for criterion in missing
        ),
        actions=_workup_actions(ctx, missing),
    )


def _workup_actions(ctx: Context, missing: tuple[A1pi, ...]) -> tuple[SuggestedAction, ...]:
    """The step that settles each missing input, where one can be ordered. A record that
    could not be read is reviewed, not ordered again: no order is offered on it."""
    steps = {
        A1pi.FEV1_WINDOW: actions.SPIROMETRY,
        A1pi.RECENT_WEIGHT: actions.WEIGHT,
        A1pi.NO_CONTRAINDICATION: actions.ANTI_IGA_TEST,
    }
    return tuple(
        steps[c] for c in missing if c in steps and ctx.judged(judge)[c].kind is not Kind.UNREADABLE
    )


def _above_window(ctx: Context, base: tuple[Reason, ...]) -> Recommendation:
    """FEV1 above the configured window (CTS 2012): not indicated now; re-evaluate."""
    fev1, window = ctx.judged(judge)[A1pi.FEV1_WINDOW], ctx.policy.window
    value = ctx.facts.latest("fev1_percent_predicted")
    return _card(
        "augmentation-not-indicated",
        "above_window",
        (CTS,),
        values={
            "value": value.value if value else 0,
            "window": window.label,
            "limit": window.consider_max,
        },
        reasons=(*base, fev1.fact),
    )


def _candidate(ctx: Context, base: tuple[Reason, ...]) -> Recommendation:
    """When: every criterion is met. Then: start (or, above the recommended FEV1, discuss)
    at the labelled dose from the latest weight; on a preliminary allele result, confirm
    the final result first (DESIGN: a preliminary result is said, and never starts therapy
    with one click)."""
    facts, policy, c = ctx.facts, ctx.policy, ctx.judged(judge)
    weight = assessment.recent_weight(facts, policy)
    dose_mg = labelled_dose_mg(facts, policy)
    if weight is None or dose_mg is None:  # RECENT_WEIGHT is met before a candidate
        raise RuntimeError("candidate without a recent weight")
    window = policy.window
    discuss = c[A1pi.FEV1_WINDOW].kind is Kind.SHARED_DECISION
    values = {
        "dose": dose_mg,
        "weight": round(weight.value, 1),
        "window": window.label,
        "limit": window.recommend_max,
    }
    checks, check_actions = _before_first_dose(ctx)
    # A preliminary allele result is confirmed before anything is started; an active
    # medication record that could not be read may be A1PI already given.
    therapy = unread_reason(facts, "therapy")
    confirm = facts.genotype is not None and facts.genotype.preliminary
    # "Discuss" and "confirm" are settled by the specialist or the final result, never by a
    # pre-selected infusion order.
    found: tuple[SuggestedAction, ...] = (
        (actions.AATD_SPECIALIST,)
        if discuss or confirm or therapy
        else (*actions.prescribe_a1pi(dose_mg, weight.value), actions.AATD_SPECIALIST)
    )
    evidence = (A1F, CTS, LABELS) if policy.fev1_window == "a1f-2016" else (CTS, A1F, LABELS)
    return _card(
        "augmentation-candidate",
        "confirm"
        if confirm
        else "check_therapy"
        if therapy
        else "discuss"
        if discuss
        else "candidate",
        evidence,
        values=values,
        reasons=reasons(
            *base,
            c[A1pi.OBSTRUCTION].fact,
            c[A1pi.FEV1_WINDOW].fact,
            c[A1pi.NOT_SMOKING].fact,
            c[A1pi.RECENT_WEIGHT].fact,
            c[A1pi.ADULT].fact,
            therapy,
        ),
        missing=checks,
        # The checks before a first dose come first: a card shows at most a few buttons.
        actions=(*check_actions, *found),
    )


def _before_first_dose(ctx: Context) -> tuple[tuple[str, ...], tuple[SuggestedAction, ...]]:
    """What to have before the first infusion of a plasma-derived product: an IgA level
    (IgA deficiency with anti-IgA antibodies contraindicates A1PI) and hepatitis A and B
    vaccination (EU SmPC). Said as missing; the candidate card still stands."""
    facts = ctx.facts
    missing: list[str] = []
    steps: list[SuggestedAction] = []
    unread_iga = unread_reason(facts, "iga")
    if facts.latest("iga") is None and unread_iga is not None:
        missing.append(WORDS("first_dose.iga_unread", fact=unread_iga.text))
    elif facts.latest("iga") is None:
        missing.append(WORDS("first_dose.iga"))
        steps.append(actions.IGA_LEVEL)
    unvaccinated = [g for g in ("hepatitis_a", "hepatitis_b") if not facts.immunizations.get(g)]
    if unvaccinated:
        missing.append(WORDS("first_dose.hepatitis"))
    return tuple(missing), tuple(steps)


# --- rules that accompany the decision ------------------------------------------------------


# Guideline statements the liver branch cites (ids in data/statements.json).
LIVER_END_STAGE = "liver-assessment-2020.end-stage"
LIVER_MONITORING = "liver-assessment-2020.monitoring"


def advanced_disease_referral(ctx: Context) -> Recommendation | None:
    """When: severe or borderline AATD and either recent FEV1 below the advanced-disease
    threshold without a lung transplant (CK row 4), or cirrhosis, decompensated liver
    disease or hepatocellular carcinoma without a liver transplant (CK 2.8: a liver
    transplant is the definitive treatment; augmentation does not treat the liver). Then:
    lung or liver transplant evaluation; both are said when both apply."""
    facts = ctx.facts
    if assessment.severity(facts) not in assessment.DEFICIENT:
        return None
    lung = _advanced_lung(ctx)
    liver = facts.liver_finding() if facts.liver_transplant is None else None
    if lung is None and liver is not None:
        return _card(
            "advanced-disease-referral",
            "advanced_liver",
            (LIVER_END_STAGE, LIVER_MONITORING),
            values={"finding": WORDS(f"advanced_liver.finding.{liver.concept}")},
            reasons=reasons(genotype_reason(facts), finding_reason("liver", liver)),
            actions=(actions.HEPATOLOGY,),
        )
    if lung is None:
        return None
    return _card(
        "advanced-disease-referral",
        "advanced",
        (REVIEW, A1F),
        values={"value": lung.value},
        reasons=reasons(genotype_reason(facts), fev1_reason(lung), finding_reason("liver", liver)),
        actions=(actions.TRANSPLANT_EVALUATION, *((actions.HEPATOLOGY,) if liver else ())),
    )


def _advanced_lung(ctx: Context) -> Measurement | None:
    """A recent FEV1 below the advanced-disease threshold, without a lung transplant."""
    if ctx.facts.lung_transplant is not None:
        return None
    fev1 = assessment.recent_fev1(ctx.facts, ctx.policy)
    if fev1 is None or fev1.value >= thresholds().fev1_advanced_disease_percent:
        return None
    return fev1
