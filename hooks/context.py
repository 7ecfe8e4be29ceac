"""One hook call's facts and policy, with each judge's judgements computed once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fhir_mappings import PatientFacts

from .policy import Policy

Judged = TypeVar("Judged")


class Context:
    """What every rule reads. A judge (a therapy's ``criteria.judge``, the smoking state)
    runs on first use and its answer is shared, so patient-view, the order checks and the
    dose check see the very same judgements; the context names no therapy."""

    def __init__(self, facts: PatientFacts, policy: Policy) -> None:
        self.facts = facts
        self.policy = policy
        self._judged: dict[Callable[..., Any], Any] = {}

    def judged(self, judge: Callable[[PatientFacts, Policy], Judged]) -> Judged:
        """``judge(facts, policy)``, once per hook call."""
        if judge not in self._judged:
            self._judged[judge] = judge(self.facts, self.policy)
        answer: Judged = self._judged[judge]
        return answer
