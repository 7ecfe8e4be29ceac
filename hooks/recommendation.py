"""What a rule concludes: advice with its reasons, evidence and suggested actions.

Recommendations know nothing of CDS Hooks or FHIR JSON; ``cds_service`` renders them as
cards and turns each SuggestedAction into a FHIR resource.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, StrEnum

from fhir_mappings import Source

from .knowledge import Evidence, topics


@dataclass(frozen=True, slots=True)
class Reason:
    """A fact the advice rests on, with the resource it came from when there is one."""

    text: str
    source: Source | None = None


@dataclass(frozen=True, slots=True)
class OrderTest:
    """Suggest ordering a lab test, named by an observation concept of fhir_mappings."""

    concept: str
    label: str


@dataclass(frozen=True, slots=True)
class OrderService:
    """Suggest a procedure or referral that has no verified code: described in words."""

    text: str
    label: str
    kind: str = "procedure"  # "procedure" | "referral" | "laboratory" (a panel, say)
    # The orderable's name in fhir_mappings/data/order_codes.json (coded, or listed there as
    # uncoded with the reason).
    key: str = ""


@dataclass(frozen=True, slots=True)
class A1piProduct:
    """A labelled A1PI product: its NDC product code and labelled infusion rate."""

    key: str
    display: str
    ndc: str
    rate_ml_per_kg_min: float | None


@dataclass(frozen=True, slots=True)
class PrescribeAugmentation:
    """Suggest one A1PI product at the labelled dose, computed from the latest weight."""

    dose_mg: float
    weight_kg: float
    label: str
    product: A1piProduct | None = None


@dataclass(frozen=True, slots=True)
class StopOrder:
    """Suggest stopping an active MedicationRequest (``MedicationRequest/id``)."""

    reference: str
    label: str


@dataclass(frozen=True, slots=True)
class RemoveDraft:
    """Suggest deleting a draft order (``MedicationRequest/id``) before it is signed."""

    reference: str
    label: str


@dataclass(frozen=True, slots=True)
class CorrectDose:
    """Suggest replacing an order's dose with the labelled one."""

    reference: str
    dose_mg: float
    label: str


SuggestedAction = (
    OrderTest | OrderService | PrescribeAugmentation | StopOrder | RemoveDraft | CorrectDose
)


class Status(StrEnum):
    MET = "met"
    NOT_MET = "not met"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Judgement:
    """One criterion judged for this patient: met, not met or unknown, and the fact behind it.

    ``criterion`` is a member of a therapy's criteria enum (its value is the display
    text); ``kind`` names the finer distinction a decision walk needs (e.g. a borderline
    SZ level), so no rule ever reads the display text.
    """

    criterion: Enum
    status: Status
    fact: Reason
    kind: StrEnum | None = None

    @property
    def name(self) -> str:
        return str(self.criterion.value)

    @property
    def met(self) -> bool:
        return self.status is Status.MET

    @property
    def not_met(self) -> bool:
        return self.status is Status.NOT_MET

    @property
    def unknown(self) -> bool:
        return self.status is Status.UNKNOWN


class Conclusion(StrEnum):
    SUPPORTED = "supported"
    NOT_SUPPORTED = "not supported"
    NEEDS_DOCUMENTATION = "needs documentation"


@dataclass(frozen=True, slots=True)
class Necessity:
    """What a prior-authorization reviewer reads: the criteria and the conclusion."""

    order: str
    criteria: tuple[Judgement, ...]
    conclusion: Conclusion


@dataclass(frozen=True, slots=True)
class Recommendation:
    topic: str
    summary: str
    advice: str
    evidence: tuple[Evidence, ...]
    reasons: tuple[Reason, ...] = ()
    missing: tuple[str, ...] = ()
    # Most important first: a card offers at most a few (cds_service.cards.SUGGESTION_LIMIT);
    # the SMART app lists them all.
    actions: tuple[SuggestedAction, ...] = ()
    indicator: str = field(default="")
    necessity: Necessity | None = None
    # For the care checklist: the reminders it gathers, each a recommendation of its own.
    items: tuple[Recommendation, ...] = ()
    # The branch of the rule that produced it: the words key of its summary without the
    # last part ("a1pi/candidate"), or the topic when the summary was not from a template.
    branch: str = ""
    # As an item of the care checklist, the one orderable that settles this reminder
    # (e.g. every vaccine due in one order); None: the first of ``actions``.
    step: SuggestedAction | None = None

    @property
    def settling_actions(self) -> tuple[SuggestedAction, ...]:
        """What settles this reminder as a checklist item, best first: ``step``, else the
        actions in their order (the renderer offers the first that builds)."""
        return (self.step,) if self.step is not None else self.actions

    def __post_init__(self) -> None:
        topic = topics().get(self.topic)
        if topic is None:
            raise ValueError(f"unknown topic {self.topic!r}")
        if not self.indicator:
            object.__setattr__(self, "indicator", topic.indicator)
        if not self.branch:
            key = getattr(self.summary, "key", "")
            object.__setattr__(self, "branch", key.rsplit(".", 1)[0] if key else self.topic)
        if not self.evidence:
            raise ValueError("a recommendation must cite at least one guideline")
