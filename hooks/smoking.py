"""Smoking: cessation for every abnormal allele, and a current status before any decision.

Both rules read the one smoking judgement (``assessment.smoking_state``, with recency),
the same one the A1PI criteria read. Sources: A1F 2016 (cessation; no augmentation while
smoking), Molloy 2014 (MZ risk in smokers), US Core (smoking status).
"""

from __future__ import annotations

from . import actions, assessment
from .assessment import SmokingState, smoking_state
from .context import Context
from .knowledge import Words, statements
from .reasons import genotype_reason, reasons
from .recommendation import Recommendation

WORDS = Words("hooks", "words", "smoking.json")
CESSATION = "a1f-2016.cessation"


def _relevant(ctx: Context) -> bool:
    return assessment.has_aatd(ctx.facts) or assessment.abnormal_allele(ctx.facts)


def smoking_cessation(ctx: Context) -> Recommendation | None:
    """When: AATD or an abnormal allele (MZ included) and a current smoker within the
    smoking lookback (A1F 2016; Molloy 2014). Then: intensive cessation support."""
    if ctx.judged(smoking_state).state is not SmokingState.CURRENT or not _relevant(ctx):
        return None
    facts = ctx.facts
    # Under the adult age: smoke avoidance, medicines left to the paediatrician (CK row 39).
    minor = assessment.is_adult(facts) is False
    advice = WORDS("cessation.advice_minor" if minor else "cessation.advice")
    if assessment.severity(facts) == assessment.SEVERE and not minor:
        advice += WORDS("cessation.advice_severe")
    return Recommendation(
        topic="smoking-cessation",
        summary=WORDS("cessation.summary", label=assessment.who(facts)),
        advice=advice,
        evidence=statements(CESSATION, "mz-copd-2014.smokers"),
        reasons=reasons(genotype_reason(facts), ctx.judged(smoking_state).reason),
        actions=(actions.SMOKING_CESSATION,),
    )


def smoking_status_unknown(ctx: Context) -> Recommendation | None:
    """When: AATD or an abnormal allele and no smoking status within the lookback (none,
    "unknown", or older: a stale "current smoker" too). Then: record the status."""
    if ctx.judged(smoking_state).state is not SmokingState.UNKNOWN or not _relevant(ctx):
        return None
    days = ctx.policy.lookbacks.smoking
    return Recommendation(
        topic="smoking-status-unknown",
        summary=WORDS("unknown.summary", label=assessment.who(ctx.facts)),
        advice=WORDS("unknown.advice"),
        evidence=statements("us-core-smoking.data-element", CESSATION),
        reasons=reasons(genotype_reason(ctx.facts), ctx.judged(smoking_state).reason),
        missing=(WORDS("unknown.missing", days=days),),
    )
