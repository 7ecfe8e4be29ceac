"""PatientFacts: what the rules in ``hooks`` may know about a patient.

No FHIR JSON survives here. Every fact keeps the resource it came from (``Source``) so
that a card can say which value, of which date, from which resource it used. Lists are
newest first.

Facts are values: nothing assigns to one after mapping (``dataclasses.replace`` makes a
changed copy). The records made once per resource (``Source``, ``CodedFinding``,
``TestRecord``, ``Measurement``: hundreds per request for a long chart) are nonetheless not
``frozen``: a frozen dataclass's ``__init__`` sets each field through
``object.__setattr__`` and costs about seven times a plain one's (2.0 vs 0.28 us for a
Measurement, measured). They stay hashable by value, as frozen ones are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta


@dataclass(slots=True, unsafe_hash=True)  # not frozen: see the module docstring
class Source:
    """The resource a fact came from: ``Observation/abc``, its clinical date and status."""

    reference: str
    date: date | None = None
    status: str | None = None

    def cite(self) -> str:
        when = f" on {self.date.isoformat()}" if self.date else ""
        return f"{self.reference}{when}"


@dataclass(slots=True, unsafe_hash=True)  # not frozen: see the module docstring
class CodedFinding:
    """A coded diagnosis, procedure or history item."""

    concept: str
    text: str
    active: bool
    source: Source


@dataclass(slots=True, unsafe_hash=True)  # not frozen: see the module docstring
class TestRecord:
    """That a test was done (or ordered, when ``pending``), whatever its value."""

    concept: str
    text: str
    pending: bool
    source: Source


@dataclass(slots=True, unsafe_hash=True)  # not frozen: see the module docstring
class Measurement:
    """A numeric result in the unit the rules compare in (``unit``, UCUM)."""

    concept: str
    value: float
    unit: str
    source: Source
    preliminary: bool = False
    post_bronchodilator: bool | None = None
    # The lab's own verdict: interpretation L/LL, or below its reference range; None if silent.
    below_range: bool | None = None
    # Likewise above: interpretation H/HH/HU, or above its reference range; None if silent.
    above_range: bool | None = None
    # "<", "<=", ">" or ">=" when the lab reported a bound rather than a value.
    comparator: str | None = None
    # How the value was obtained when not read directly (e.g. computed from two results).
    derived: str | None = None

    def below(self, threshold: float) -> bool | None:
        """Below ``threshold``? None when a reported bound cannot tell ("< 500" vs 400)."""
        return _below(self.value, self.comparator, threshold)


@dataclass(frozen=True, slots=True)
class AatLevel:
    """A serum AAT level in both unit families, with the method when the lab gave it."""

    umol_l: float
    mg_dl: float
    reported: str
    source: Source
    method: str | None = None
    preliminary: bool = False
    comparator: str | None = None

    def below(self, umol_l: float) -> bool | None:
        """Below ``umol_l``? None when a reported bound cannot tell ("< 60 mg/dL" vs 11)."""
        return _below(self.umol_l, self.comparator, umol_l)


@dataclass(frozen=True, slots=True)
class Genotype:
    """SERPINA1 alleles, their severity class, and what they rest on.

    ``basis``: "dna" (genotype or variant), "phenotype" (Pi type by IEF) or "level"
    (no alleles known; severe inferred from a level below the protective threshold).
    """

    alleles: tuple[str, ...]
    severity: str
    basis: str
    sources: tuple[Source, ...]
    text: str = ""

    @property
    def label(self) -> str:
        return "".join(a if len(a) == 1 else f"/{a}/" for a in self.alleles).strip("/") or "?"

    @property
    def abnormal_allele(self) -> bool:
        return any(allele != "M" for allele in self.alleles)

    @property
    def preliminary(self) -> bool:
        """Resting on a result the lab has not finalised (Observation.status preliminary)."""
        return any(source.status == "preliminary" for source in self.sources)

    @property
    def amended(self) -> bool:
        """Resting on a result the lab changed after it was final (amended, corrected)."""
        return any(source.status in ("amended", "corrected") for source in self.sources)


@dataclass(frozen=True, slots=True)
class Discordance:
    """The allele result and the level disagree, so neither can be trusted alone.

    ``kind``: "level-too-low" (no severe or borderline genotype, yet the level is below
    the protective threshold: a null or rare allele may have been missed) or
    "level-too-high" (a severe genotype with a level that is not low).
    """

    kind: str
    genotype: Genotype
    level: AatLevel


@dataclass(frozen=True, slots=True)
class SmokingStatus:
    """current | former | never | unknown, from 72166-2 or coded tobacco conditions."""

    status: str
    text: str
    source: Source


@dataclass(frozen=True, slots=True)
class MedicationOrder:
    """An A1PI or immune globulin order or statement, dose normalised where computable."""

    product: str  # "a1pi" | "immune_globulin"
    text: str
    state: str  # "active" | "draft"
    resource_type: str
    source: Source
    dose: float | None = None
    dose_unit: str | None = None
    interval_days: float | None = None
    mg_per_kg_per_week: float | None = None
    g_per_kg_per_dose: float | None = None
    # A draft the clinician is selecting or signing now (order-select / order-sign).
    under_review: bool = False
    # Why the per-kg dose could not be computed, in words (None when it was).
    dose_problem: str | None = None


@dataclass(frozen=True, slots=True)
class Immunization:
    group: str
    text: str
    source: Source


@dataclass(frozen=True, slots=True)
class DataNote:
    """A data-quality note: something skipped, doubtful, stale or incomplete, and why.

    ``concept``: what the note is about ("body_weight", "spirometry", "genotype"...) when it
    says a record of that concept could not be read, so that no rule takes the concept as
    absent (``PatientFacts.cannot_read``); None for a note that withholds nothing."""

    text: str
    source: Source | None = None
    concept: str | None = None


@dataclass(slots=True)
class PatientFacts:
    """Everything the rules read."""

    as_of: date
    patient: Source | None = None
    birth_date: date | None = None
    conditions: dict[str, list[CodedFinding]] = field(default_factory=dict)
    procedures: dict[str, list[CodedFinding]] = field(default_factory=dict)
    family_history: dict[str, list[CodedFinding]] = field(default_factory=dict)
    aat_tests: list[TestRecord] = field(default_factory=list)
    aat_levels: list[AatLevel] = field(default_factory=list)
    genotype: Genotype | None = None
    discordance: Discordance | None = None
    measurements: dict[str, list[Measurement]] = field(default_factory=dict)
    smoking: SmokingStatus | None = None
    anti_iga: list[CodedFinding] = field(default_factory=list)
    a1pi_anaphylaxis: list[CodedFinding] = field(default_factory=list)
    orders: list[MedicationOrder] = field(default_factory=list)
    immunizations: dict[str, list[Immunization]] = field(default_factory=dict)
    notes: list[DataNote] = field(default_factory=list)
    incomplete: frozenset[str] = frozenset()
    # Records on the chart that could not be read, by concept ("body_weight", "spirometry",
    # "genotype"...): no rule may treat such a concept as absent or negative (``unread``).
    unreadable: dict[str, list[DataNote]] = field(default_factory=dict)
    # An AAT result with only the lab's verdict (e.g. "Low", interpretation L), no number.
    aat_flagged_low: Source | None = None
    # Patient.deceased[x]: "deceased" or "deceased on <date>"; None when alive or not said.
    deceased: str | None = None

    @property
    def age(self) -> int | None:
        if self.birth_date is None:
            return None
        born = self.birth_date
        before_birthday = (self.as_of.month, self.as_of.day) < (born.month, born.day)
        return self.as_of.year - born.year - before_birthday

    def has_condition(self, concept: str) -> bool:
        return bool(self.conditions.get(concept))

    def active_condition(self, concept: str) -> CodedFinding | None:
        return next((f for f in self.conditions.get(concept, []) if f.active), None)

    def latest(self, concept: str) -> Measurement | None:
        values = self.measurements.get(concept)
        return values[0] if values else None

    def series(self, concept: str) -> list[Measurement]:
        return self.measurements.get(concept, [])

    @property
    def latest_aat(self) -> AatLevel | None:
        return self.aat_levels[0] if self.aat_levels else None

    @property
    def emphysema(self) -> bool:
        return self.has_condition("emphysema")

    @property
    def lung_transplant(self) -> CodedFinding | None:
        return _first(
            self.procedures.get("lung_transplant"), self.conditions.get("lung_transplant_status")
        )

    @property
    def liver_transplant(self) -> CodedFinding | None:
        return _first(
            self.procedures.get("liver_transplant"), self.conditions.get("liver_transplant_status")
        )

    @property
    def liver_disease(self) -> bool:
        return self.liver_finding() is not None

    def liver_finding(self) -> CodedFinding | None:
        """The gravest liver disease on record, active: hepatocellular carcinoma, then
        decompensation (hepatic failure, encephalopathy), then chronic disease or cirrhosis."""
        for concept in ("hepatocellular_carcinoma", "end_stage_liver", "chronic_liver_disease"):
            found = self.active_condition(concept)
            if found is not None:
                return found
        return None

    def serious_infections(self, days: int = 365) -> list[CodedFinding]:
        """Infection episodes (one per Condition) with onset within ``days``."""
        since = self.as_of - timedelta(days=days)
        return [
            finding
            for finding in self.conditions.get("serious_infection", [])
            if finding.source.date is not None and finding.source.date >= since
        ]

    def orders_of(self, product: str, state: str | None = None) -> list[MedicationOrder]:
        return [o for o in self.orders if o.product == product and state in (None, o.state)]

    def orders_under_review(self, product: str) -> list[MedicationOrder]:
        return [o for o in self.orders if o.product == product and o.under_review]

    def cannot_read(self, concept: str, source: Source, note: str) -> None:
        """A record the chart holds but the service cannot interpret: the one way every
        reader says so. Noted, and kept by concept so that no rule concludes the concept
        is absent or negative (hooks read it through ``unread``)."""
        data_note = DataNote(note, source, concept)
        self.unreadable.setdefault(concept, []).append(data_note)
        self.notes.append(data_note)

    def unread(self, concept: str, since: date | None = None) -> DataNote | None:
        """The newest record of ``concept`` that could not be read (dated on or after
        ``since``, when given; an undated one always counts), or None."""
        found = [n for n in self.unreadable.get(concept, []) if _on_or_after(n, since)]
        found.sort(key=lambda n: (n.source and n.source.date) or date.max, reverse=True)
        return found[0] if found else None

    def complete(self, *resource_types: str) -> bool:
        """True when none of these resource types may have been cut short while gathering."""
        return not self.incomplete.intersection(resource_types)


def _on_or_after(note: DataNote, since: date | None) -> bool:
    when = note.source.date if note.source else None
    return since is None or when is None or when >= since


def _below(value: float, comparator: str | None, threshold: float) -> bool | None:
    """A comparison that respects a reported bound: "< x" is below any threshold >= x,
    "> x" is not below any threshold <= x, anything else cannot be told."""
    if comparator in ("<", "<="):
        return True if value <= threshold else None
    if comparator in (">", ">="):
        return False if value >= threshold else None
    return value < threshold


def _first(*groups: list[CodedFinding] | None) -> CodedFinding | None:
    found = [finding for group in groups if group for finding in group]
    found.sort(key=lambda f: f.source.date or date.min, reverse=True)
    return found[0] if found else None
