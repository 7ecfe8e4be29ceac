"""The A1PI dose check, one rule for both hooks: an active order at patient-view, a draft
under review at order-select / order-sign. Source: the FDA labels (60 mg/kg actual body
weight IV once weekly); the tolerance is in data/thresholds.json."""

from __future__ import annotations

from fhir_mappings import MedicationOrder

from .. import actions
from .. import assessment as a
from ..context import Context
from ..knowledge import statements
from ..reasons import order_reason, reasons
from ..recommendation import Recommendation
from .criteria import LABELS, WORDS, A1pi, dose, labelled_dose_mg


def dose_check(ctx: Context) -> Recommendation | None:
    """When: an active A1PI order is off the labelled mg/kg weekly by more than the
    tolerance (FDA labels; CK row 27). Then: the labelled dose, corrected from the weight."""
    order = next((o for o in a.augmentation_orders(ctx.facts) if dose(o).not_met), None)
    return None if order is None else dose_card(ctx, order)


def dose_card(ctx: Context, order: MedicationOrder) -> Recommendation:
    """The labelled dose for an order off it, with the corrected dose when a weight allows.

    The order hooks use the same card for a draft; it is the one dose check.
    """
    weight = a.recent_weight(ctx.facts, ctx.policy)
    correct = labelled_dose_mg(ctx.facts, ctx.policy)
    labelled = (
        WORDS("dose_check.labelled_mg", dose=correct) if correct else WORDS("dose_check.labelled")
    )
    kind = WORDS("dose_check.draft") if order.state == "draft" else WORDS("dose_check.active")
    weight_text = None if weight is None else ctx.a1pi[A1pi.RECENT_WEIGHT].fact
    values = {"kind": kind, "dose": order.mg_per_kg_per_week, "labelled": labelled}
    return Recommendation(
        topic="augmentation-dose-check",
        summary=WORDS("dose_check.summary", **values),
        advice=WORDS("dose_check.advice"),
        evidence=statements(LABELS),
        reasons=reasons(order_reason(order), weight_text),
        missing=() if correct else (WORDS("dose_check.missing_weight"),),
        actions=actions.correct_a1pi_dose(order, correct) if correct else (),
    )


def draft_dose_check(ctx: Context) -> Recommendation | None:
    """When: an A1PI draft under review is off the labelled mg/kg weekly (FDA labels).
    Then: the same dose card as patient-view, offering the labelled dose."""
    order = next((o for o in ctx.facts.orders_under_review("a1pi") if dose(o).not_met), None)
    return None if order is None else dose_card(ctx, order)
