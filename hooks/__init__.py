"""AATD guideline rules over PatientFacts -> Recommendations. Knows nothing of HTTP or FHIR JSON."""

from __future__ import annotations

from collections.abc import Callable

from fhir_mappings import PatientFacts

from . import diagnosis
from .recommendation import Evidence, OrderTest, Reason, Recommendation, SuggestedAction

Rule = Callable[[PatientFacts], Recommendation | None]

# The rules of each hook, in the order their cards are shown.
RULES: dict[str, tuple[Rule, ...]] = {
    "patient-view": (diagnosis.testing_recommended,),
    "order-select": (),
    "order-sign": (),
}


def evaluate(hook: str, facts: PatientFacts) -> list[Recommendation]:
    """Run the rules of ``hook``; at most one recommendation per topic."""
    found: dict[str, Recommendation] = {}
    for rule in RULES[hook]:
        recommendation = rule(facts)
        if recommendation is not None and recommendation.topic not in found:
            found[recommendation.topic] = recommendation
    return list(found.values())


__all__ = [
    "RULES",
    "Evidence",
    "OrderTest",
    "Reason",
    "Recommendation",
    "SuggestedAction",
    "evaluate",
]
