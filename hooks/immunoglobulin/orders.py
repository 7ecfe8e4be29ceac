"""Immune globulin orders at order-select / order-sign: the medical-necessity statement."""

from __future__ import annotations

from .. import actions, assessment
from ..context import Context
from ..knowledge import statements
from ..reasons import order_reason
from ..recommendation import Conclusion, Judgement, Necessity, Recommendation, SuggestedAction
from .criteria import AAAAI, ONTARIO, WORDS, Ig, dose, judge


def immunoglobulin_order(ctx: Context) -> Recommendation | None:
    """When: an immune globulin order is under review. Then: AAAAI 2022 criteria, the
    anti-IgA contraindication, the dose against usual replacement and trough monitoring,
    and one verdict: supported, needs documentation, or not supported."""
    orders = ctx.facts.orders_under_review("immune_globulin")
    if not orders:
        return None
    order, ig = orders[0], ctx.judged(judge)
    judged = (ig.criteria, ig.anti_iga, dose(order), ig.trough)
    main, contraindication = ig.criteria, ig.anti_iga
    if main.met and not contraindication.not_met:
        conclusion = (
            Conclusion.SUPPORTED if contraindication.met else Conclusion.NEEDS_DOCUMENTATION
        )
        topic, key, indicator = "immunoglobulin-replacement-indicated", "supported", ""
        found = _actions(judged)
    else:
        failed = main.not_met or contraindication.not_met
        conclusion = Conclusion.NOT_SUPPORTED if failed else Conclusion.NEEDS_DOCUMENTATION
        topic, indicator = "immunoglobulin-replacement-not-indicated", "warning"
        key = "not_supported" if failed else "document"
        removal = actions.remove_draft(order) if failed else ()
        found = (*removal, *_actions(judged))
    vaccine = ig.latest.missing if ig.latest is not None and main.met else ()
    return Recommendation(
        topic=topic,
        summary=WORDS(f"orders.{key}.summary"),
        advice=WORDS("orders.advice") + assessment.iga_caution(ctx.facts),
        evidence=statements(AAAAI, ONTARIO),
        reasons=(order_reason(order),),
        missing=tuple(f"{j.name}: {j.fact.text}" for j in judged if j.unknown) + vaccine,
        actions=found,
        indicator=indicator,
        necessity=Necessity(order.text, judged, conclusion),
    )


def _actions(judged: tuple[Judgement, ...]) -> tuple[SuggestedAction, ...]:
    unknown = {j.criterion for j in judged if j.unknown}
    found: list[SuggestedAction] = []
    if Ig.NO_ANTI_IGA in unknown:
        found.append(actions.ANTI_IGA_TEST)
    if unknown & {Ig.TROUGH_MONITORED, Ig.AAAAI_CRITERIA}:
        found.append(actions.IGG_TROUGH)
    if Ig.DOSE in unknown:
        found.append(actions.WEIGHT)
    return tuple(found)
