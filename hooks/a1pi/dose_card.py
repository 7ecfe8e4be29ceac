"""The A1PI dose card: the labelled dose for an order off it, shared by the patient-view
dose check, the order-hook dose check and a medical-necessity verdict on a draft."""

from __future__ import annotations

from fhir_mappings import MedicationOrder

from .. import actions, assessment
from ..context import Context
from ..knowledge import statements
from ..reasons import order_reason, reasons
from ..recommendation import Recommendation
from .criteria import LABELS, WORDS, A1pi, judge, labelled_dose_mg


def dose_card(ctx: Context, order: MedicationOrder) -> Recommendation:
    """The labelled dose for an order off it, with the corrected dose when a weight allows.

    The order hooks use the same card for a draft; it is the one dose check.
    """
    weight = assessment.recent_weight(ctx.facts, ctx.policy)
    correct = labelled_dose_mg(ctx.facts, ctx.policy)
    labelled = (
        WORDS("dose_check.labelled_mg", dose=correct) if correct else WORDS("dose_check.labelled")
    )
    kind = WORDS("dose_check.draft") if order.state == "draft" else WORDS("dose_check.active")
    weight_text = None if weight is None else ctx.judged(judge)[A1pi.RECENT_WEIGHT].fact
    values = {"kind": kind, "dose": order.mg_per_kg_per_week, "labelled": labelled}
    days = order.interval_days
    if days is not None and order.mg_per_kg_per_week is not None and not assessment.weekly(days):
        # Off the weekly interval: say the regimen as written, never a weekly average that
        # looks like the labelled dose (120 mg/kg every 14 days is not 60 mg/kg weekly).
        per_dose = order.mg_per_kg_per_week * days / 7
        summary = WORDS("dose_check.summary_interval", **values, per_dose=per_dose, days=days)
    else:
        summary = WORDS("dose_check.summary", **values)
    return Recommendation(
        topic="augmentation-dose-check",
        summary=summary,
        advice=WORDS("dose_check.advice"),
        evidence=statements(LABELS),
        reasons=reasons(order_reason(order), weight_text),
        missing=() if correct else (WORDS("dose_check.missing_weight"),),
        actions=actions.correct_a1pi_dose(order, correct) if correct else (),
    )
