"""The A1PI dose check, one rule for both hooks: an active order at patient-view, a draft
under review at order-select / order-sign. Source: the FDA labels (60 mg/kg actual body
weight IV once weekly); the tolerance is in data/thresholds.json."""

from __future__ import annotations

from .. import assessment
from ..context import Context
from ..recommendation import Recommendation
from .criteria import dose
from .dose_card import dose_card


def dose_check(ctx: Context) -> Recommendation | None:
    """When: an active A1PI order is off the labelled mg/kg weekly by more than the
    tolerance (FDA labels; CK row 27). Then: the labelled dose, corrected from the weight."""
    order = next((o for o in assessment.augmentation_orders(ctx.facts) if dose(o).not_met), None)
    return None if order is None else dose_card(ctx, order)


def draft_dose_check(ctx: Context) -> Recommendation | None:
    """When: an A1PI draft under review is off the labelled mg/kg weekly (FDA labels).
    Then: the same dose card as patient-view, offering the labelled dose."""
    order = next((o for o in ctx.facts.orders_under_review("a1pi") if dose(o).not_met), None)
    return None if order is None else dose_card(ctx, order)
