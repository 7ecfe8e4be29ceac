"""Observation readers: each turns one kind of result into facts, or into a DataNote.

Values are compared in one unit per quantity; a value whose unit is unknown, inconsistent
with its code or implausible is noted and left out, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cache

from . import aat, terminology
from .facts import (
    AatLevel,
    CodedFinding,
    DataNote,
    Measurement,
    PatientFacts,
    SmokingStatus,
    Source,
    TestRecord,
)
from .fhirjson import NUMBER, Json, as_dict, as_list, codings, concept_text

PRELIMINARY = frozenset({"preliminary"})
# The key FEV1 volumes, % predicted and predicted litres share when one cannot be read: the
# FEV1 criterion reads any of them.
SPIROMETRY = "spirometry"
SERPINA1_HGNC = "HGNC:8941"
GENE_STUDIED = "48018-6"
DNA_CHANGE = "48004-6"
ALLELIC_STATE = "53034-5"
HOMOZYGOUS = "LA6705-3"
PRESENT = "LA9633-4"
LB_TO_KG = 0.45359237  # clinical-knowledge.md 3.2
# clinical-knowledge.md 6 "FEV1 sanity checks" (and 3.2 for the percent cut-off).
PLAUSIBLE = {"fev1_percent_predicted": (5, 150), "fev1_volume": (0.2, 7.0), "fev1_fvc": (0.2, 1.0)}
FEV1_FVC_PERCENT_CUTOFF = 1.5
IG_TO_MG_DL = {"mg/dL": 1, "g/L": 100, "mg/L": 0.1, "g/dL": 1000}  # clinical-knowledge.md 3.2
CRP_TO_MG_L = {"mg/L": 1, "mg/dL": 10}


@dataclass(slots=True)
class AlleleEvidence:
    """Allele results collected while reading, resolved into one Genotype at the end."""

    dna: list[tuple[tuple[str, ...], Source, str]] = field(default_factory=list)
    phenotype: list[tuple[tuple[str, ...], Source, str]] = field(default_factory=list)
    variants: list[tuple[str, bool, Source]] = field(default_factory=list)


Reader = Callable[[str, Json, Source, PatientFacts, AlleleEvidence], None]


def read_observation(
    resource: Json, source: Source, facts: PatientFacts, alleles: AlleleEvidence
) -> None:
    concepts = terminology.observations().concepts_named_by(resource.get("code"))
    if not concepts and _is_anti_iga(resource):
        concepts = {"anti_iga"}
    for concept in concepts:
        READERS[concept](concept, resource, source, facts, alleles)


def _quantity(resource: Json) -> tuple[float | None, str | None]:
    quantity = as_dict(resource.get("valueQuantity"))
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, NUMBER):
        return None, None
    return float(value), aat.normalise_unit(quantity.get("code"), quantity.get("unit"))


def _comparator(resource: Json) -> str | None:
    comparator = as_dict(resource.get("valueQuantity")).get("comparator")
    return comparator if comparator in ("<", "<=", ">", ">=") else None


def _interpretations(resource: Json) -> set[str]:
    return {
        str(c.get("code"))
        for i in as_list(resource.get("interpretation"))
        for c in codings(i)
        if c.get("code")
    }


# The one rule for "positive" (interpretation codes of the FHIR R4 v3 ObservationInterpretation
# value set: H/HH/HU high, A/AA abnormal, POS positive, DET detected; N/NEG/ND the opposite).
POSITIVE_INTERPRETATIONS = frozenset({"H", "HH", "HU", "A", "AA", "POS", "DET"})
NEGATIVE_INTERPRETATIONS = frozenset({"N", "NEG", "ND"})
# SNOMED CT 10828004 Positive, 260385009 Negative; LOINC answers LA6576-8, LA6577-6.
POSITIVE_ANSWERS = frozenset({"10828004", "LA6576-8", "260373001"})
NEGATIVE_ANSWERS = frozenset({"260385009", "LA6577-6", "260415000"})


def positive_result(resource: Json) -> bool | None:
    """True, False, or None when the result does not say: one rule for every presence-type
    result. A value above the result's own reference range, an interpretation of high,
    abnormal, positive or detected, or a positive / detected / present answer is positive.
    """
    codes = _interpretations(resource)
    if codes & POSITIVE_INTERPRETATIONS:
        return True
    answers = {str(c.get("code")) for c in codings(resource.get("valueCodeableConcept"))}
    if answers & POSITIVE_ANSWERS:
        return True
    if answers & NEGATIVE_ANSWERS:
        return False
    text = (_value_text(resource) or "").lower()
    if re.search(r"\b(not detected|negative|absent|non-?reactive)\b", text):
        return False
    if re.search(r"\b(positive|detected|present|reactive)\b", text):
        return True
    above = _above_range(resource)
    if above is not None:
        return above
    return False if codes & NEGATIVE_INTERPRETATIONS else None


def _above_range(resource: Json) -> bool | None:
    value, _ = _quantity(resource)
    if value is None:
        return None
    comparator = _comparator(resource)
    for reference in as_list(resource.get("referenceRange")):
        high = as_dict(as_dict(reference).get("high")).get("value")
        if isinstance(high, NUMBER) and not isinstance(high, bool):
            if comparator in ("<", "<="):
                return False if value <= high else None
            return value > high
    return None


def _as_written(resource: Json) -> str:
    """A value that could not be read, as the record has it: "158 stone", "'about 80'" or
    "without a value", never "None None"."""
    value, unit = _quantity(resource)
    if value is not None:
        return f"{value:g} {unit or '(no unit)'}"
    text = _value_text(resource)
    return f"'{text}'" if text else "without a value"


def _value_text(resource: Json) -> str | None:
    if isinstance(resource.get("valueString"), str):
        return resource["valueString"]
    return concept_text(resource.get("valueCodeableConcept"))


def _preliminary(resource: Json, source: Source, facts: PatientFacts, what: str) -> bool:
    if resource.get("status") in PRELIMINARY:
        facts.notes.append(DataNote(f"{what} is preliminary", source))
        return True
    return False


def _record(concept: str, resource: Json, source: Source, facts: PatientFacts) -> None:
    text = concept_text(resource.get("code")) or concept
    facts.aat_tests.append(
        TestRecord(concept, text, resource.get("status") == "registered", source)
    )


def _aat_level(
    concept: str, resource: Json, source: Source, facts: PatientFacts, _: AlleleEvidence
) -> None:
    _record(concept, resource, source, facts)
    value, unit = _quantity(resource)
    if value is None:
        if resource.get("status") != "registered":
            _aat_without_number(resource, source, facts)
        return
    try:
        umol, mg_dl, note = aat.aat_in_both_units(value, unit)
    except aat.UnitError as problem:
        facts.cannot_read("aat_level", source, str(problem))
        return
    if umol < 0:
        facts.cannot_read("aat_level", source, f"AAT {value} {unit} is implausible; not used")
        return
    if note:
        facts.notes.append(DataNote(note, source))
    method = concept_text(resource.get("method"))
    preliminary = _preliminary(resource, source, facts, "AAT level")
    comparator = _comparator(resource)
    reported = f"{comparator or ''} {value:g} {unit}".strip()
    facts.aat_levels.append(
        AatLevel(umol, mg_dl, reported, source, method, preliminary, comparator)
    )


def _aat_without_number(resource: Json, source: Source, facts: PatientFacts) -> None:
    """An AAT result with the lab's verdict only ("Low", interpretation L) is a low level of
    unknown size; anything else without a number is a result that could not be read."""
    text = _value_text(resource) or ""
    if _interpretations(resource) & LOW_INTERPRETATIONS or re.search(r"(?i)\blow\b", text):
        facts.aat_flagged_low = facts.aat_flagged_low or source
        note = f"AAT reported as low without a number ({text or 'L'})"
        facts.notes.append(DataNote(note, source))
        return
    if _interpretations(resource) & NEGATIVE_INTERPRETATIONS or re.search(r"(?i)normal", text):
        facts.notes.append(DataNote(f"AAT reported as normal without a number ({text})", source))
        return
    facts.cannot_read("aat_level", source, "AAT result without a numeric value could not be read")


def _pi_type(
    concept: str, resource: Json, source: Source, facts: PatientFacts, alleles: AlleleEvidence
) -> None:
    _record(concept, resource, source, facts)
    text = _value_text(resource)
    if not text:
        return
    parsed = aat.parse_pi(text)
    if parsed is None:
        kind = concept.split("_")[1]
        facts.cannot_read(
            "genotype", source, f"AAT {kind} result '{text[:40]}' on record could not be read"
        )
        return
    target = alleles.dna if concept == "aat_genotype" else alleles.phenotype
    target.append((parsed, source, text))


def _variant(
    concept: str, resource: Json, source: Source, facts: PatientFacts, alleles: AlleleEvidence
) -> None:
    components = {
        c.get("code"): as_dict(comp)
        for comp in as_list(resource.get("component"))
        for c in codings(as_dict(comp).get("code"))
    }
    gene = components.get(GENE_STUDIED)
    if gene is None or SERPINA1_HGNC not in {
        c.get("code") for c in codings(gene.get("valueCodeableConcept"))
    }:
        return
    _record(concept, resource, source, facts)
    value = resource.get("valueCodeableConcept")
    absent = re.search(r"(?i)absent|not detected|negative", concept_text(value) or "")
    if value is not None and PRESENT not in {c.get("code") for c in codings(value)} and absent:
        return
    change = components.get(DNA_CHANGE, {})
    names = _variant_names(change)
    allele = next(filter(None, (aat.allele_of(name.split(":")[-1]) for name in names)), None)
    if allele is None:
        shown = (names or ["no DNA change"])[0]
        facts.cannot_read(
            "genotype", source, f"SERPINA1 variant '{shown[:40]}' on record could not be read"
        )
        return
    state = components.get(ALLELIC_STATE, {}).get("valueCodeableConcept")
    homozygous = HOMOZYGOUS in {c.get("code") for c in codings(state)}
    alleles.variants.append((allele, homozygous, source))


def _variant_names(change: Json) -> list[str]:
    """Every name a DNA-change component gives: its codings (HGVS codes, displays), its
    text, a valueString: labs fill any of them."""
    value = as_dict(change.get("valueCodeableConcept"))
    names = [str(c.get(k)) for c in codings(value) for k in ("code", "display") if c.get(k)]
    names += [v for v in (value.get("text"), change.get("valueString")) if isinstance(v, str)]
    return [n.strip() for n in names if n.strip()]


def _measure(
    facts: PatientFacts,
    concept: str,
    value: float,
    unit: str,
    resource: Json,
    source: Source,
    post_bd: bool | None = None,
) -> None:
    preliminary = _preliminary(resource, source, facts, concept.replace("_", " "))
    below, comparator = _below_range(resource), _comparator(resource)
    above = _high(resource)
    facts.measurements.setdefault(concept, []).append(
        Measurement(
            concept,
            value,
            unit,
            source,
            preliminary,
            post_bd,
            below_range=below,
            above_range=above,
            comparator=comparator,
        )
    )


LOW_INTERPRETATIONS = frozenset({"L", "LL", "LU"})


def _below_range(resource: Json) -> bool | None:
    """The lab's own low flag, from the interpretation code or the reference range."""
    if "interpretation" not in resource and "referenceRange" not in resource:
        return None  # most results: the lab said nothing
    codes = {c.get("code") for i in as_list(resource.get("interpretation")) for c in codings(i)}
    if codes & LOW_INTERPRETATIONS:
        return True
    value = as_dict(resource.get("valueQuantity")).get("value")
    for reference in as_list(resource.get("referenceRange")):
        low = as_dict(as_dict(reference).get("low")).get("value")
        if isinstance(low, NUMBER) and isinstance(value, NUMBER):
            return value < low
    return False if codes else None


HIGH_INTERPRETATIONS = frozenset({"H", "HH", "HU"})


def _high(resource: Json) -> bool | None:
    """The lab's own high flag, from the interpretation code or the reference range."""
    if "interpretation" not in resource and "referenceRange" not in resource:
        return None
    if _interpretations(resource) & HIGH_INTERPRETATIONS:
        return True
    return _above_range(resource)


def _plausible(kind: str, value: float, label: str, source: Source, facts: PatientFacts) -> bool:
    low, high = PLAUSIBLE[kind]
    if low <= value <= high:
        return True
    concept = "fev1_fvc" if kind == "fev1_fvc" else SPIROMETRY
    facts.cannot_read(concept, source, f"{label} {value:g} is implausible; not used")
    return False


def _no_value(concept: str, resource: Json, source: Source, facts: PatientFacts) -> None:
    """A result without a number: pending when registered (ordered, not yet resulted),
    otherwise on record but not readable ("see report", a value in text)."""
    if resource.get("status") != "registered":
        what = concept.replace("_", " ")
        facts.cannot_read(concept, source, f"{what} without a numeric value could not be read")


def _bronchodilator(concept: str, resource: Json) -> bool | None:
    if concept == "fev1_post_bd":
        return True
    if concept == "fev1_pre_bd":
        return False
    words = " ".join(
        filter(None, (concept_text(resource.get("code")), concept_text(resource.get("method"))))
    )
    if re.search(r"(?i)\bpost", words):
        return True
    if re.search(r"(?i)\bpre\b|pre-", words):
        return False
    return None


def _fev1_volume(
    concept: str, resource: Json, source: Source, facts: PatientFacts, _: AlleleEvidence
) -> None:
    value, unit = _quantity(resource)
    if value is None:
        _no_value(SPIROMETRY, resource, source, facts)
        return
    if unit == "%":
        facts.cannot_read(
            SPIROMETRY,
            source,
            f"FEV1 {value:g} % is coded as a volume ({concept_code(concept)}); probably "
            "% predicted (20152-5) mis-coded; not used",
        )
        return
    litres = value / 1000 if unit == "mL" else value if unit == "L" else None
    if litres is None:
        facts.cannot_read(
            SPIROMETRY, source, f"FEV1 {value:g} has an unknown unit ({unit}); not used"
        )
        return
    if _plausible("fev1_volume", litres, "FEV1 (L)", source, facts):
        _measure(
            facts, "fev1_volume", litres, "L", resource, source, _bronchodilator(concept, resource)
        )


def _fev1_predicted(
    concept: str, resource: Json, source: Source, facts: PatientFacts, _: AlleleEvidence
) -> None:
    """The predicted FEV1 in litres (20147-5), to compute % predicted with a measured FEV1."""
    value, unit = _quantity(resource)
    litres = (
        None if value is None else value / 1000 if unit == "mL" else value if unit == "L" else None
    )
    if litres is None:
        written = _as_written(resource)
        facts.cannot_read(SPIROMETRY, source, f"FEV1 predicted {written} cannot be read")
        return
    if _plausible("fev1_volume", litres, "FEV1 predicted (L)", source, facts):
        _measure(facts, concept, litres, "L", resource, source)


def _fev1_percent(
    concept: str, resource: Json, source: Source, facts: PatientFacts, _: AlleleEvidence
) -> None:
    value, unit = _quantity(resource)
    if value is None:
        _no_value(SPIROMETRY, resource, source, facts)
        return
    if unit in ("L", "mL"):
        facts.cannot_read(
            SPIROMETRY,
            source,
            f"a volume ({value:g} {unit}) is coded as FEV1 % predicted (20152-5); not used",
        )
        return
    if unit not in ("%", None):
        facts.cannot_read(
            SPIROMETRY, source, f"FEV1 % predicted has an unknown unit ({unit}); not used"
        )
        return
    if _plausible("fev1_percent_predicted", value, "FEV1 % predicted", source, facts):
        _measure(facts, concept, value, "%", resource, source, _bronchodilator(concept, resource))


def _fev1_fvc(
    concept: str, resource: Json, source: Source, facts: PatientFacts, _: AlleleEvidence
) -> None:
    value, unit = _quantity(resource)
    if value is None:
        _no_value("fev1_fvc", resource, source, facts)
        return
    ratio = value / 100 if unit == "%" or value > FEV1_FVC_PERCENT_CUTOFF else value
    if _plausible("fev1_fvc", ratio, "FEV1/FVC", source, facts):
        _measure(facts, concept, ratio, "1", resource, source, _bronchodilator(concept, resource))


def _weight(
    concept: str, resource: Json, source: Source, facts: PatientFacts, _: AlleleEvidence
) -> None:
    value, unit = _quantity(resource)
    factor = {"kg": 1.0, "[lb_av]": LB_TO_KG, "lb": LB_TO_KG, "lbs": LB_TO_KG, "g": 0.001}.get(
        unit or ""
    )
    if value is None and resource.get("status") == "registered":
        return
    if value is None or factor is None or value <= 0:
        note = f"body weight {_as_written(resource)} cannot be read; not used"
        facts.cannot_read("body_weight", source, note)
        return
    _measure(facts, concept, value * factor, "kg", resource, source)


def _scaled(table: Mapping[str, float], target: str) -> Reader:
    def read(
        concept: str, resource: Json, source: Source, facts: PatientFacts, _: AlleleEvidence
    ) -> None:
        value, unit = _quantity(resource)
        if value is None:
            _no_value(concept, resource, source, facts)
            return
        if unit is None or unit not in table:
            note = f"{concept.upper()} {value:g} has an unknown unit ({unit}); not used"
            facts.cannot_read(concept, source, note)
            return
        _measure(facts, concept, value * table[unit], target, resource, source)

    return read


def _as_reported(
    concept: str, resource: Json, source: Source, facts: PatientFacts, _: AlleleEvidence
) -> None:
    value, unit = _quantity(resource)
    if value is None:
        _no_value(concept, resource, source, facts)
        return
    _measure(facts, concept, value, unit or "", resource, source)


@cache
def _smoking_classes() -> dict[str, str]:
    return terminology.load_data("smoking.json")


def _smoking(
    concept: str, resource: Json, source: Source, facts: PatientFacts, _: AlleleEvidence
) -> None:
    answer = resource.get("valueCodeableConcept")
    status = next(
        (
            _smoking_classes()[c["code"]]
            for c in codings(answer)
            if c.get("code") in _smoking_classes()
        ),
        None,
    )
    if status is None:
        note = "smoking status answer is not a known code; not used"
        facts.cannot_read("smoking_status", source, note)
        return
    candidate = SmokingStatus(status, concept_text(answer) or status, source)
    if facts.smoking is None or (source.date or date.min) > (facts.smoking.source.date or date.min):
        facts.smoking = candidate


def _is_anti_iga(resource: Json) -> bool:
    words = terminology.observations_words("anti_iga")
    text = " ".join(
        filter(
            None,
            [
                concept_text(resource.get("code")),
                *(c.get("display") for c in codings(resource.get("code"))),
            ],
        )
    ).lower()
    return any(word in text for word in words)


def _anti_iga(
    concept: str, resource: Json, source: Source, facts: PatientFacts, _: AlleleEvidence
) -> None:
    """Anti-IgA antibodies, by the one positive rule; unreadable is never negative."""
    positive = positive_result(resource)
    value, unit = _quantity(resource)
    shown = _value_text(resource) or (
        f"{_comparator(resource) or ''}{value:g} {unit or ''}".strip() if value is not None else ""
    )
    verdict = {True: "positive", False: "negative", None: "not interpretable"}[positive]
    text = f"anti-IgA antibodies {verdict}" + (f": {shown}" if shown else "")
    if positive is None:
        facts.cannot_read(
            "anti_iga", source, "anti-IgA antibody result could not be read as positive or negative"
        )
        return
    facts.anti_iga.append(CodedFinding("anti_iga", text, positive, source))


def _panel(
    concept: str, resource: Json, source: Source, facts: PatientFacts, alleles: AlleleEvidence
) -> None:
    """A PFT panel Observation: each component coded as a result we read (FEV1, % predicted,
    FEV1/FVC...) is read by that result's own reader, as if it stood alone, with the
    panel's date, status, method and source. Components of other codes (FVC, DLCO, z-scores)
    carry nothing the rules read."""
    shared = {k: v for k, v in resource.items() if k not in PANEL_OWN}
    for component in as_list(resource.get("component")):
        component = as_dict(component)
        for name in terminology.observations().concepts_named_by(component.get("code")):
            if name in PANEL_READS:
                part = shared | {k: v for k, v in component.items() if k in PANEL_PARTS}
                READERS[name](name, part, source, facts, alleles)


# What a component brings of its own, and what it takes from its panel.
PANEL_OWN = frozenset(
    {"code", "component", "valueQuantity", "valueString", "interpretation", "referenceRange"}
)
PANEL_PARTS = frozenset({"code", "valueQuantity", "interpretation", "referenceRange"})


def concept_code(concept: str) -> str:
    return terminology.observations().concepts[concept].codes[0].code


# The results a panel's components are read as (spirometry: clinical-knowledge.md 4.1).
PANEL_READS = frozenset(
    {"fev1", "fev1_post_bd", "fev1_pre_bd", "fev1_percent_predicted", "fev1_predicted", "fev1_fvc"}
)

READERS: dict[str, Reader] = {
    "aat_level": _aat_level,
    "aat_phenotype": _pi_type,
    "aat_genotype": _pi_type,
    "genetic_variant": _variant,
    "fev1": _fev1_volume,
    "fev1_post_bd": _fev1_volume,
    "fev1_predicted": _fev1_predicted,
    "fev1_pre_bd": _fev1_volume,
    "fev1_percent_predicted": _fev1_percent,
    "fev1_fvc": _fev1_fvc,
    "spirometry_panel": _panel,
    "body_weight": _weight,
    "smoking_status": _smoking,
    "igg": _scaled(IG_TO_MG_DL, "mg/dL"),
    "iga": _scaled(IG_TO_MG_DL, "mg/dL"),
    "igm": _scaled(IG_TO_MG_DL, "mg/dL"),
    "alt": _as_reported,
    "ast": _as_reported,
    "ggt": _as_reported,
    "bilirubin": _as_reported,
    "crp": _scaled(CRP_TO_MG_L, "mg/L"),
    "anti_iga": _anti_iga,
}
