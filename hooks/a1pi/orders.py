"""A1PI orders at order-select / order-sign: the medical-necessity statement.

Every criterion of ``criteria.py`` is rendered with the fact behind it, plus the dose of
the order under review, and a conclusion: supported, not supported, or needs
documentation. Nothing is judged here that patient-view judges otherwise.
"""

from __future__ import annotations

from dataclasses import replace

from fhir_mappings import MedicationOrder

from .. import actions, assessment
from ..context import Context
from ..knowledge import statements
from ..reasons import order_reason
from ..recommendation import (
    Conclusion,
    Judgement,
    Necessity,
    Recommendation,
    SuggestedAction,
)
from .criteria import (
    A1F,
    CTS,
    LABELS,
    REVIEW,
    SPECIALIST_KINDS,
    TRANSPLANT,
    WORDS,
    A1pi,
    Kind,
    dose,
    judge,
    missing_item,
)
from .dose_card import dose_card

TRANSPLANTS = (A1pi.NO_LUNG_TRANSPLANT, A1pi.NO_LIVER_TRANSPLANT)


def augmentation_order(ctx: Context) -> Recommendation | None:
    """When: an A1PI order is under review. Then: its medical necessity, criterion by
    criterion (FDA labels, A1F 2016, CTS 2012, ATS/ERS), and one verdict: contraindicated,
    not supported (the first failing criterion says why), anti-IgA first, needs a
    specialist or documentation, or supported."""
    orders = ctx.facts.orders_under_review("a1pi")
    if not orders:
        return None
    order = orders[0]
    judged = (*ctx.judged(judge), dose(order))
    patient = [j for j in judged if j.criterion is not A1pi.DOSE]
    failing = [j for j in patient if j.not_met]
    unknown = [j for j in judged if j.unknown]
    contraindication = ctx.judged(judge)[A1pi.NO_CONTRAINDICATION]
    if contraindication.not_met:
        return _verdict(
            ctx,
            order,
            judged,
            Conclusion.NOT_SUPPORTED,
            "augmentation-contraindicated",
            "contraindicated",
            actions=actions.remove_draft(order),
        )
    if failing:
        first = failing[0].criterion
        return _verdict(
            ctx,
            order,
            judged,
            Conclusion.NOT_SUPPORTED,
            "augmentation-not-indicated",
            f"not_supported.{first.name}",
            actions=actions.remove_draft(order),
            indicator="warning",
            evidence=(TRANSPLANT, LABELS) if first in TRANSPLANTS else (LABELS, A1F, REVIEW),
        )
    if contraindication.unknown:
        return _verdict(
            ctx,
            order,
            judged,
            Conclusion.NEEDS_DOCUMENTATION,
            "augmentation-contraindicated",
            "anti_iga_unknown",
            actions=(actions.ANTI_IGA_TEST,),
            indicator="warning",
        )
    if unknown:
        return _unknown(ctx, order, judged, unknown)
    if _extra_orders(ctx):
        return None  # indicated, but twice: ``duplicate_order`` says so, with the statement
    if judged[-1].not_met:
        # Indicated, but not as written: the dose card, carrying the statement.
        card = dose_card(ctx, order)
        necessity = Necessity(order.text, judged, Conclusion.NOT_SUPPORTED)
        return replace(card, necessity=necessity)
    card = _verdict(ctx, order, judged, Conclusion.SUPPORTED, "augmentation-candidate", "supported")
    return replace(card, advice=card.advice + assessment.iga_caution(ctx.facts))


def _a1pi_orders(ctx: Context) -> list[MedicationOrder]:
    """Every A1PI order, drafts first, then active MedicationRequests. An infusion record or
    a statement is therapy given, not an order: a new order beside one is how a lapsed
    prescription is renewed, so neither counts here."""
    drafts = ctx.facts.orders_of("a1pi", "draft")
    active = [
        o for o in ctx.facts.orders_of("a1pi", "active") if o.resource_type == "MedicationRequest"
    ]
    return [*drafts, *active]


def _extra_orders(ctx: Context) -> list[MedicationOrder]:
    """The A1PI orders beyond the first, when a draft is among them (duplicate therapy)."""
    orders = _a1pi_orders(ctx)
    return orders[1:] if orders and orders[0].state == "draft" else []


def duplicate_order(ctx: Context) -> Recommendation | None:
    """When: a second A1PI draft, or a draft beside an active A1PI order (FDA labels: one
    product at the labelled dose once weekly; two orders double it). Then: not supported as
    duplicate therapy, suggesting the removal of each extra draft under review: beside an
    active order the draft itself, else every draft but the first. Shown beside a refusal
    or a specialist review, never beside "supported" (``augmentation_order`` yields)."""
    reviewed = ctx.facts.orders_under_review("a1pi")
    if not reviewed or not _extra_orders(ctx):
        return None
    order, orders = reviewed[0], _a1pi_orders(ctx)
    on_therapy = any(o.state == "active" for o in orders)
    extra = [o for o in reviewed if on_therapy or o is not orders[0]]
    judged = (*ctx.judged(judge), dose(order))
    return Recommendation(
        topic="augmentation-dose-check",
        summary=WORDS("orders.duplicate.summary", count=len(orders)),
        advice=WORDS("orders.duplicate.advice"),
        evidence=statements(LABELS),
        reasons=tuple(order_reason(o) for o in orders),
        actions=tuple(a for o in extra for a in actions.remove_draft(o)),
        indicator="warning",
        necessity=Necessity(order.text, judged, Conclusion.NOT_SUPPORTED),
    )


def _unknown(
    ctx: Context, order: MedicationOrder, judged: tuple[Judgement, ...], unknown: list[Judgement]
) -> Recommendation:
    """Unknowns a specialist settles go to one; the rest are documented first."""
    lung = ctx.judged(judge)[A1pi.NO_LUNG_TRANSPLANT]
    specialist = any(j.kind in SPECIALIST_KINDS for j in unknown)
    if lung.unknown:
        key = "lung_transplant_episode"
    elif specialist:
        key = "specialist"
    else:
        key = "document"
    names = ", ".join(j.name.lower() for j in unknown[:2])
    return _verdict(
        ctx,
        order,
        judged,
        Conclusion.NEEDS_DOCUMENTATION,
        "augmentation-specialist-review" if specialist else "augmentation-workup-incomplete",
        key,
        values={"items": names},
        actions=_missing_actions(unknown),
        evidence=(TRANSPLANT, LABELS) if ctx.facts.lung_transplant else (LABELS, A1F),
    )


def _missing_actions(unknown: list[Judgement]) -> tuple[SuggestedAction, ...]:
    criteria = {j.criterion for j in unknown}
    found: list[SuggestedAction] = []
    if A1pi.FEV1_WINDOW in criteria:
        found.append(actions.SPIROMETRY)
    if A1pi.RECENT_WEIGHT in criteria:
        found.append(actions.WEIGHT)
    if any(j.kind in (Kind.LEVEL_ONLY, Kind.UNREADABLE) for j in unknown):
        found.append(actions.AAT_PHENOTYPE)
    if A1pi.NO_CONTRAINDICATION in criteria:
        found.append(actions.ANTI_IGA_TEST)
    if A1pi.NO_LUNG_TRANSPLANT in criteria:
        found.append(actions.TRANSPLANT_TEAM)
    elif any(j.kind in SPECIALIST_KINDS for j in unknown):
        found.append(actions.AATD_SPECIALIST)
    return tuple(found)


def _verdict(
    ctx: Context,
    order: MedicationOrder,
    judged: tuple[Judgement, ...],
    conclusion: Conclusion,
    topic: str,
    key: str,
    *,
    actions: tuple[SuggestedAction, ...] = (),
    indicator: str = "",
    evidence: tuple[str, ...] = (LABELS, A1F, CTS),
    values: dict[str, str] | None = None,
) -> Recommendation:
    """A card for one A1PI order, carrying its medical-necessity statement."""
    missing = tuple(missing_item(j, ctx.policy) for j in judged if j.unknown)
    return Recommendation(
        topic=topic,
        summary=WORDS(f"orders.{key}.summary", **(values or {})),
        advice=WORDS(f"orders.{key}.advice", **(values or {})),
        evidence=statements(*evidence),
        reasons=(order_reason(order),),
        missing=missing,
        actions=actions,
        indicator=indicator,
        necessity=Necessity(order.text, judged, conclusion),
    )
