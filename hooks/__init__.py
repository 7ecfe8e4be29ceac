"""AATD guideline rules over PatientFacts -> Recommendations. Knows nothing of HTTP or FHIR JSON.

Layout: each therapy that several hooks judge is a package (``a1pi/``, ``immunoglobulin/``)
with its criteria declared once (a ``judge`` the context memoises), a patient-view walk and
an order check; ``diagnosis``, ``smoking`` and ``monitoring`` are single modules. Shared
judgements are in ``assessment``, citations of facts in ``reasons``, suggested actions in
``actions``; the words a clinician reads in ``words/``, guideline statements, thresholds
and the vaccine schedule in ``data/``. No rule module imports another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from fhir_mappings import PatientFacts

from . import checklist, diagnosis, monitoring, smoking
from .a1pi import criteria as a1pi_criteria
from .a1pi import dose as a1pi_dose
from .a1pi import orders as a1pi_orders
from .a1pi import patient_view as a1pi
from .context import Context
from .immunoglobulin import criteria as ig_criteria
from .immunoglobulin import orders as ig_orders
from .immunoglobulin import patient_view as immunoglobulin
from .knowledge import Evidence
from .policy import Policy
from .recommendation import (
    Conclusion,
    CorrectDose,
    Judgement,
    Necessity,
    OrderService,
    OrderTest,
    PrescribeAugmentation,
    Reason,
    Recommendation,
    RemoveDraft,
    Status,
    StopOrder,
    SuggestedAction,
)

Rule = Callable[[Context], Recommendation | None]

# Each therapy's judge, by name: its criteria, iterable as judgements (``explain``).
Judge = Callable[[PatientFacts, Policy], Iterable[Judgement]]
THERAPIES: dict[str, Judge] = {"a1pi": a1pi_criteria.judge, "immunoglobulin": ig_criteria.judge}

# Order hooks judge the orders under review: the selected ones, or all drafts when signing.
ORDER_RULES: tuple[Rule, ...] = (
    a1pi_orders.augmentation_order,
    a1pi_orders.duplicate_order,
    a1pi_dose.draft_dose_check,
    ig_orders.immunoglobulin_order,
)

# The rules of each hook, in the order their cards are shown (most urgent areas first).
RULES: dict[str, tuple[Rule, ...]] = {
    "patient-view": (
        a1pi.augmentation,
        a1pi_dose.dose_check,
        a1pi.advanced_disease_referral,
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
    # "Not indicated" waits for the step that settles the alleles.
    "augmentation-not-indicated": frozenset({"genotype-recommended", "results-discordant"}),
    "spirometry-due": frozenset({"augmentation-workup-incomplete"}),
    "smoking-status-unknown": frozenset({"augmentation-workup-incomplete"}),
}


# What remains for a deceased patient: relatives still benefit from cascade testing.
AFTER_DEATH: tuple[Rule, ...] = (diagnosis.family_testing,)


@dataclass(frozen=True, slots=True)
class Explanation:
    """What ``evaluate`` decided and why the rest was not shown: the "evaluate every
    definition" view of a CQL author, for ``alpha1-cds evaluate --explain`` and the log."""

    recommendations: list[Recommendation]
    # Topics a rule produced but a stronger topic dropped: topic -> the topics that did.
    suppressed: dict[str, tuple[str, ...]]
    # Topics a rule produced but a clinician's override hides for this patient.
    hidden: tuple[str, ...]
    # Topics a rule produced but the site turned off (policy.topics_off, or this call's
    # ``off``), and what the site decides without showing (silent: recorded, not shown).
    off: tuple[str, ...]
    silent: list[Recommendation]
    # Records on the chart that could not be read, and the mapper's other notes (a record
    # ignored as another patient's or as unreadable, a preliminary result), in words.
    notes: tuple[str, ...]
    context: Context

    def judgements(self) -> dict[str, tuple[Judgement, ...]]:
        """Every criterion of each therapy, judged (computed here if no rule asked)."""
        return {name: tuple(self.context.judged(judge)) for name, judge in THERAPIES.items()}


def evaluate(
    hook: str,
    facts: PatientFacts,
    policy: Policy | None = None,
    hidden: frozenset[str] = frozenset(),
) -> list[Recommendation]:
    """Run the rules of ``hook``: at most one recommendation per topic, none contradicting
    (``explain`` says what was left out, and why)."""
    return explain(hook, facts, policy, hidden).recommendations


def explain(
    hook: str,
    facts: PatientFacts,
    policy: Policy | None = None,
    hidden: frozenset[str] = frozenset(),
    off: frozenset[str] = frozenset(),
) -> Explanation:
    """The recommendations of ``hook``, with what was suppressed and hidden.

    For a deceased patient every patient-directed card is withheld (DESIGN, "Deceased
    patients"); family testing remains, with the death noted on it. ``hidden`` topics
    (overridden by a clinician for this patient, still within their period) are left out.
    At patient-view the reminders become one care-checklist card unless the policy says
    ``reminders = "cards"``.
    """
    policy = policy or Policy()
    ctx = Context(facts, policy)
    found: dict[str, Recommendation] = {}
    rules = RULES[hook] if facts.deceased is None else AFTER_DEATH
    for rule in rules:
        recommendation = rule(ctx)
        if recommendation is not None and recommendation.topic not in found:
            found[recommendation.topic] = recommendation
    suppressed = {
        topic: tuple(sorted(SUPPRESSED_BY.get(topic, frozenset()) & found.keys()))
        for topic in found
    }
    suppressed = {topic: by for topic, by in suppressed.items() if by}
    # An off topic still suppresses what it contradicts: turning a card off never lets a
    # contradicted recommendation through.
    turned_off = off | policy.topics_off
    overridden = tuple(topic for topic in found if topic in hidden and topic not in suppressed)
    dropped = tuple(topic for topic in found if topic in turned_off and topic not in suppressed)
    kept = [
        _floored(rec, policy)
        for topic, rec in found.items()
        if topic not in suppressed and topic not in hidden and topic not in turned_off
    ]
    shown = [rec for rec in kept if rec.topic not in policy.silent_topics]
    silent = [rec for rec in kept if rec.topic in policy.silent_topics]
    if hook == "patient-view" and policy.reminders == "checklist":
        shown, silent = checklist.gather(shown), checklist.gather(silent)
        if checklist.TOPIC in policy.silent_topics:  # the whole checklist silent
            silent += [rec for rec in shown if rec.topic == checklist.TOPIC]
            shown = [rec for rec in shown if rec.topic != checklist.TOPIC]
    unreadable = [note.text for found_notes in facts.unreadable.values() for note in found_notes]
    notes = tuple(dict.fromkeys([*unreadable, *(note.text for note in facts.notes)]))
    return Explanation(
        recommendations=shown,
        suppressed=suppressed,
        hidden=overridden,
        off=dropped,
        silent=silent,
        notes=notes,
        context=ctx,
    )


def _floored(rec: Recommendation, policy: Policy) -> Recommendation:
    indicator = policy.indicator(rec.topic, rec.indicator)
    return rec if indicator == rec.indicator else replace(rec, indicator=indicator)


__all__ = [
    "RULES",
    "Conclusion",
    "Context",
    "CorrectDose",
    "Evidence",
    "Explanation",
    "Judgement",
    "Necessity",
    "OrderService",
    "OrderTest",
    "Policy",
    "PrescribeAugmentation",
    "Reason",
    "Recommendation",
    "RemoveDraft",
    "Status",
    "StopOrder",
    "SuggestedAction",
    "evaluate",
    "explain",
]
