"""What a rule concludes: advice with its reasons, evidence and suggested actions.

Recommendations know nothing of CDS Hooks or FHIR JSON; ``cds_service`` renders them as
cards and turns each SuggestedAction into a FHIR resource.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fhir_mappings import Source

from .knowledge import guidelines, topics


@dataclass(frozen=True, slots=True)
class Reason:
    """A fact the advice rests on, with the resource it came from when there is one."""

    text: str
    source: Source | None = None


@dataclass(frozen=True, slots=True)
class Evidence:
    """A guideline statement behind the advice and how strong it is."""

    guideline: str
    statement: str
    strength: str

    def __post_init__(self) -> None:
        if self.guideline not in guidelines():
            raise ValueError(f"unknown guideline {self.guideline!r}")


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
    kind: str = "procedure"  # "procedure" | "referral"


@dataclass(frozen=True, slots=True)
class PrescribeAugmentation:
    """Suggest A1PI at the labelled dose, computed from the latest weight."""

    dose_mg: float
    weight_kg: float
    label: str


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


@dataclass(frozen=True, slots=True)
class Criterion:
    """One medical-necessity criterion of an order: met, not met or unknown, and why."""

    name: str
    status: str  # "met" | "not met" | "unknown"
    fact: Reason

    def __post_init__(self) -> None:
        if self.status not in ("met", "not met", "unknown"):
            raise ValueError(f"criterion status {self.status!r}")


@dataclass(frozen=True, slots=True)
class Necessity:
    """What a prior-authorization reviewer reads: the criteria and the conclusion."""

    order: str
    criteria: tuple[Criterion, ...]
    conclusion: str  # "supported" | "not supported" | "needs documentation"


@dataclass(frozen=True, slots=True)
class Recommendation:
    topic: str
    summary: str
    advice: str
    evidence: tuple[Evidence, ...]
    reasons: tuple[Reason, ...] = ()
    missing: tuple[str, ...] = ()
    actions: tuple[SuggestedAction, ...] = ()
    indicator: str = field(default="")
    necessity: Necessity | None = None

    def __post_init__(self) -> None:
        topic = topics().get(self.topic)
        if topic is None:
            raise ValueError(f"unknown topic {self.topic!r}")
        if not self.indicator:
            object.__setattr__(self, "indicator", topic.indicator)
        if not self.evidence:
            raise ValueError("a recommendation must cite at least one guideline")
