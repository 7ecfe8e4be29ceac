"""One hook call's facts and policy, with each therapy's criteria judged once."""

from __future__ import annotations

from functools import cached_property

from fhir_mappings import PatientFacts

from .a1pi.criteria import A1piCriteria
from .a1pi.criteria import judge as judge_a1pi
from .assessment import Smoking, smoking_state
from .immunoglobulin.criteria import IgCriteria
from .immunoglobulin.criteria import judge as judge_immunoglobulin
from .policy import Policy
from .recommendation import Judgement


class Context:
    """What every rule reads. Judgements are computed on first use and then shared, so
    patient-view, the order checks and the dose check see the very same criteria."""

    def __init__(self, facts: PatientFacts, policy: Policy) -> None:
        self.facts = facts
        self.policy = policy

    @cached_property
    def a1pi(self) -> A1piCriteria:
        return judge_a1pi(self.facts, self.policy)

    @cached_property
    def immunoglobulin(self) -> IgCriteria:
        return judge_immunoglobulin(self.facts, self.policy)

    @cached_property
    def smoking(self) -> Smoking:
        return smoking_state(self.facts, self.policy)

    def judgements(self) -> dict[str, tuple[Judgement, ...]]:
        """Each therapy's criteria as judged for this patient, by therapy."""
        return {"a1pi": tuple(self.a1pi), "immunoglobulin": self.immunoglobulin.judgements()}
