"""Immunoglobulin replacement at patient-view: indicated, not indicated, trough low."""

from __future__ import annotations

from .. import actions
from ..context import Context
from ..knowledge import statements, thresholds
from ..reasons import measurement_reason, order_reasons, reasons, shown_value
from ..recommendation import Recommendation
from .criteria import AAAAI, ONTARIO, WORDS, judge


def replacement_indicated(ctx: Context) -> Recommendation | None:
    """When: the latest IgG meets an AAAAI 2022 criterion (CK rows 32-33) and the patient is
    not on replacement. Then: refer to immunology (a warning when IgG is severely low).
    Not repeated for a patient already on replacement (the trough rule follows them)."""
    ig = ctx.judged(judge)
    if ig.latest is None or not ig.latest.judgement.met or ig.latest_igg is None:
        return None
    if ig.on_replacement:
        return None
    untreated_severe = ig.latest_igg.below(thresholds().igg_severe_mg_dl) is True
    return Recommendation(
        topic="immunoglobulin-replacement-indicated",
        summary=WORDS("indicated.summary"),
        advice=WORDS("indicated.advice"),
        evidence=statements(AAAAI, ONTARIO),
        reasons=ig.latest.reasons,
        missing=ig.latest.missing,
        indicator="warning" if untreated_severe else "",
        actions=(actions.IMMUNOLOGY,),
    )


def replacement_not_indicated(ctx: Context) -> Recommendation | None:
    """When: on replacement whose baseline IgG met no AAAAI 2022 criterion (CK row 34).
    Then: review the indication. Low IgG without replacement stops nothing and asks for
    nothing, so it is not a chart-open card (the order hooks say it when one is ordered)."""
    ig = ctx.judged(judge)
    on = list(ig.on_replacement)
    judged = ig.baseline
    if not on or judged is None or not judged.judgement.not_met:  # unknown is not "not"
        return None
    key = "not_indicated_on"
    return Recommendation(
        topic="immunoglobulin-replacement-not-indicated",
        summary=WORDS(f"{key}.summary"),
        advice=WORDS("not_indicated.advice"),
        evidence=statements(AAAAI),
        reasons=(*judged.reasons, *order_reasons(on)),
    )


def trough_low(ctx: Context) -> Recommendation | None:
    """When: on replacement and the recent trough IgG is below the target (Ontario).
    Then: titrate the dose or interval with the immunologist."""
    ig = ctx.judged(judge)
    igg = ig.latest_igg
    if not ig.on_replacement or not ig.trough.met or igg is None:
        return None
    if not igg.below(thresholds().igg_trough_target_mg_dl):
        return None
    return Recommendation(
        topic="immunoglobulin-trough-low",
        summary=WORDS("trough_low.summary", value=shown_value(igg)),
        advice=WORDS("trough_low.advice"),
        evidence=statements(ONTARIO),
        reasons=(*reasons(measurement_reason("IgG", igg)), *order_reasons(list(ig.on_replacement))),
    )
