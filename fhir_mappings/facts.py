"""PatientFacts: what the rules in ``hooks`` may know about a patient.

No FHIR JSON survives here. Every fact keeps the resource it came from (``Source``) so
that a card can say which value, of which date, from which resource it used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True, slots=True)
class Source:
    """The resource a fact came from: ``Observation/abc``, its clinical date and status."""

    reference: str
    date: date | None = None
    status: str | None = None

    def cite(self) -> str:
        when = f" on {self.date.isoformat()}" if self.date else ""
        return f"{self.reference}{when}"


@dataclass(frozen=True, slots=True)
class CodedFinding:
    """A coded diagnosis or history item (Condition, FamilyMemberHistory condition)."""

    concept: str
    text: str
    active: bool
    source: Source


@dataclass(frozen=True, slots=True)
class TestRecord:
    """That a test was done (or ordered, when ``pending``), whatever its value."""

    concept: str
    text: str
    pending: bool
    source: Source


@dataclass(frozen=True, slots=True)
class Measurement:
    """A numeric result normalised to the unit the rules compare in."""

    concept: str
    value: float
    unit: str
    source: Source


@dataclass(frozen=True, slots=True)
class DataNote:
    """A data-quality note: something skipped, doubtful or incomplete, and why."""

    text: str
    source: Source | None = None


@dataclass(slots=True)
class PatientFacts:
    """Everything the rules read, each list newest first."""

    as_of: date
    patient: Source | None = None
    birth_date: date | None = None
    conditions: dict[str, list[CodedFinding]] = field(default_factory=dict)
    family_history: dict[str, list[CodedFinding]] = field(default_factory=dict)
    aat_tests: list[TestRecord] = field(default_factory=list)
    measurements: dict[str, list[Measurement]] = field(default_factory=dict)
    notes: list[DataNote] = field(default_factory=list)
    incomplete: frozenset[str] = frozenset()

    @property
    def age(self) -> int | None:
        if self.birth_date is None:
            return None
        born = self.birth_date
        before_birthday = (self.as_of.month, self.as_of.day) < (born.month, born.day)
        return self.as_of.year - born.year - before_birthday

    def has_condition(self, concept: str) -> bool:
        return bool(self.conditions.get(concept))

    def latest(self, concept: str) -> Measurement | None:
        values = self.measurements.get(concept)
        return values[0] if values else None

    def complete(self, *resource_types: str) -> bool:
        """True when none of these resource types may have been cut short while gathering."""
        return not self.incomplete.intersection(resource_types)
