"""AATD guideline rules over PatientFacts -> Recommendations. Knows nothing of HTTP or FHIR JSON."""

from __future__ import annotations

from collections.abc import Callable

from fhir_mappings import PatientFacts

from . import augmentation, diagnosis, immunoglobulin, monitoring, orders, smoking
from .policy import Policy
from .recommendation import (
    CorrectDose,
    Criterion,
    Evidence,
    Necessity,
    OrderService,
    OrderTest,
    PrescribeAugmentation,
    Reason,
    Recommendation,
    RemoveDraft,
    StopOrder,
    SuggestedAction,
)

Rule = Callable[[PatientFacts, Policy], Recommendation | None]

# Order hooks judge the orders under review: the selected ones, or all drafts when signing.
ORDER_RULES: tuple[Rule, ...] = (
    orders.augmentation_order,
    orders.augmentation_order_dose,
    orders.immunoglobulin_order,
)

# The rules of each hook, in the order their cards are shown (most urgent areas first).
RULES: dict[str, tuple[Rule, ...]] = {
    "patient-view": (
        augmentation.augmentation,
        augmentation.dose_check,
        augmentation.advanced_disease_referral,
        diagnosis.results_discordant,
        smoking.smoking_cessation,
        diagnosis.testing_recommended,
        diagnosis.genotype_recommended,
        immunoglobulin.replacement_indicated,
        immunoglobulin.replacement_not_indicated,
        immunoglobulin.trough_low,
        smoking.smoking_status_unknown,
        monitoring.spirometry_due,
        monitoring.liver_monitoring,
        monitoring.vaccinations_due,
        diagnosis.family_testing,
    ),
    "order-select": ORDER_RULES,
    "order-sign": ORDER_RULES,
}

# A topic is dropped when one of these is present: they would contradict it, or repeat it.
SUPPRESSED_BY: dict[str, frozenset[str]] = {
    # Never advise starting therapy on results that contradict each other.
    "augmentation-candidate": frozenset(
        {
            "augmentation-not-indicated",
            "augmentation-discontinue",
            "augmentation-contraindicated",
            "augmentation-specialist-review",
            "results-discordant",
        }
    ),
    "augmentation-dose-check": frozenset(
        {"augmentation-discontinue", "augmentation-contraindicated", "augmentation-not-indicated"}
    ),
    "spirometry-due": frozenset({"augmentation-workup-incomplete"}),
    "smoking-status-unknown": frozenset({"augmentation-workup-incomplete"}),
}


def evaluate(hook: str, facts: PatientFacts, policy: Policy | None = None) -> list[Recommendation]:
    """Run the rules of ``hook``: at most one recommendation per topic, none contradicting."""
    policy = policy or Policy()
    found: dict[str, Recommendation] = {}
    for rule in RULES[hook]:
        recommendation = rule(facts, policy)
        if recommendation is not None and recommendation.topic not in found:
            found[recommendation.topic] = recommendation
    return [
        rec
        for topic, rec in found.items()
        if not SUPPRESSED_BY.get(topic, frozenset()) & found.keys()
    ]


__all__ = [
    "RULES",
    "CorrectDose",
    "Criterion",
    "Evidence",
    "Necessity",
    "OrderService",
    "OrderTest",
    "Policy",
    "PrescribeAugmentation",
    "Reason",
    "Recommendation",
    "RemoveDraft",
    "StopOrder",
    "SuggestedAction",
    "evaluate",
]
