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
from .fhirjson import Json, as_dict, as_list, codings, concept_text

PRELIMINARY = frozenset({"preliminary"})
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
    concepts = terminology.observations().concepts_in(codings(resource.get("code")))
    if not concepts and _is_anti_iga(resource):
        concepts = {"anti_iga"}
    for concept in concepts:
        READERS[concept](concept, resource, source, facts, alleles)


def _quantity(resource: Json) -> tuple[float | None, str | None]:
    quantity = as_dict(resource.get("valueQuantity"))
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, None
    return float(value), aat.normalise_unit(quantity.get("code"), quantity.get("unit"))


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
            facts.notes.append(DataNote("AAT level without a numeric value; not used", source))
        return
    try:
        umol, mg_dl, note = aat.aat_in_both_units(value, unit)
    except aat.UnitError as problem:
        facts.notes.append(DataNote(str(problem), source))
        return
    if umol < 0:
        facts.notes.append(DataNote(f"AAT {value} {unit} is implausible; not used", source))
        return
    if note:
        facts.notes.append(DataNote(note, source))
    method = concept_text(resource.get("method"))
    preliminary = _preliminary(resource, source, facts, "AAT level")
    facts.aat_levels.append(AatLevel(umol, mg_dl, f"{value:g} {unit}", source, method, preliminary))


def _pi_type(
    concept: str, resource: Json, source: Source, facts: PatientFacts, alleles: AlleleEvidence
) -> None:
    _record(concept, resource, source, facts)
    text = _value_text(resource)
    if not text:
        return
    parsed = aat.parse_pi(text)
    if parsed is None:
        facts.notes.append(
            DataNote(f"AAT {concept.split('_')[1]} '{text[:40]}' could not be read", source)
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
    hgvs = concept_text(change.get("valueCodeableConcept")) or change.get("valueString") or ""
    allele = aat.allele_of(str(hgvs).split(":")[-1]) if hgvs else None
    if allele is None:
        facts.notes.append(
            DataNote(f"SERPINA1 variant '{str(hgvs)[:40]}' is not a known allele", source)
        )
        return
    state = components.get(ALLELIC_STATE, {}).get("valueCodeableConcept")
    homozygous = HOMOZYGOUS in {c.get("code") for c in codings(state)}
    alleles.variants.append((allele, homozygous, source))


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
    facts.measurements.setdefault(concept, []).append(
        Measurement(concept, value, unit, source, preliminary, post_bd, _below_range(resource))
    )


LOW_INTERPRETATIONS = frozenset({"L", "LL", "LU"})


def _below_range(resource: Json) -> bool | None:
    """The lab's own low flag, from the interpretation code or the reference range."""
    codes = {c.get("code") for i in as_list(resource.get("interpretation")) for c in codings(i)}
    if codes & LOW_INTERPRETATIONS:
        return True
    value = as_dict(resource.get("valueQuantity")).get("value")
    for reference in as_list(resource.get("referenceRange")):
        low = as_dict(as_dict(reference).get("low")).get("value")
        if isinstance(low, int | float) and isinstance(value, int | float):
            return value < low
    return False if codes else None


def _plausible(kind: str, value: float, label: str, source: Source, facts: PatientFacts) -> bool:
    low, high = PLAUSIBLE[kind]
    if low <= value <= high:
        return True
    facts.notes.append(DataNote(f"{label} {value:g} is implausible; not used", source))
    return False


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
        return
    if unit == "%":
        facts.notes.append(
            DataNote(
                f"FEV1 {value:g} % is coded as a volume ({concept_code(concept)}); probably "
                "% predicted (20152-5) mis-coded; not used",
                source,
            )
        )
        return
    litres = value / 1000 if unit == "mL" else value if unit == "L" else None
    if litres is None:
        facts.notes.append(
            DataNote(f"FEV1 {value:g} has an unknown unit ({unit}); not used", source)
        )
        return
    if _plausible("fev1_volume", litres, "FEV1 (L)", source, facts):
        _measure(
            facts, "fev1_volume", litres, "L", resource, source, _bronchodilator(concept, resource)
        )


def _fev1_percent(
    concept: str, resource: Json, source: Source, facts: PatientFacts, _: AlleleEvidence
) -> None:
    value, unit = _quantity(resource)
    if value is None:
        return
    if unit in ("L", "mL"):
        facts.notes.append(
            DataNote(
                f"a volume ({value:g} {unit}) is coded as FEV1 % predicted (20152-5); not used",
                source,
            )
        )
        return
    if unit not in ("%", None):
        facts.notes.append(
            DataNote(f"FEV1 % predicted has an unknown unit ({unit}); not used", source)
        )
        return
    if _plausible("fev1_percent_predicted", value, "FEV1 % predicted", source, facts):
        _measure(facts, concept, value, "%", resource, source, _bronchodilator(concept, resource))


def _fev1_fvc(
    concept: str, resource: Json, source: Source, facts: PatientFacts, _: AlleleEvidence
) -> None:
    value, unit = _quantity(resource)
    if value is None:
        facts.notes.append(DataNote("FEV1/FVC without a numeric value; not used", source))
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
    if value is None or factor is None or value <= 0:
        facts.notes.append(DataNote(f"body weight {value} {unit} cannot be read; not used", source))
        return
    _measure(facts, concept, value * factor, "kg", resource, source)


def _scaled(table: Mapping[str, float], target: str) -> Reader:
    def read(
        concept: str, resource: Json, source: Source, facts: PatientFacts, _: AlleleEvidence
    ) -> None:
        value, unit = _quantity(resource)
        if value is None:
            return
        if unit is None or unit not in table:
            facts.notes.append(
                DataNote(
                    f"{concept.upper()} {value:g} has an unknown unit ({unit}); not used", source
                )
            )
            return
        _measure(facts, concept, value * table[unit], target, resource, source)

    return read


def _as_reported(
    concept: str, resource: Json, source: Source, facts: PatientFacts, _: AlleleEvidence
) -> None:
    value, unit = _quantity(resource)
    if value is not None:
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
        facts.notes.append(DataNote("smoking status answer is not a known code; not used", source))
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
    answer = (_value_text(resource) or "").lower()
    value, _unit = _quantity(resource)
    if re.search(r"positive|detected|present", answer) and "not detected" not in answer:
        positive: bool | None = True
    elif re.search(r"negative|not detected|absent", answer):
        positive = False
    else:
        positive = None
    text = f"anti-IgA antibodies: {answer or (f'{value:g}' if value is not None else 'no value')}"
    facts.anti_iga.append(CodedFinding("anti_iga", text, bool(positive), source))
    if positive is None:
        facts.notes.append(
            DataNote("anti-IgA antibody result could not be read as positive or negative", source)
        )


def concept_code(concept: str) -> str:
    return terminology.observations().concepts[concept].codes[0].code


READERS: dict[str, Reader] = {
    "aat_level": _aat_level,
    "aat_phenotype": _pi_type,
    "aat_genotype": _pi_type,
    "genetic_variant": _variant,
    "fev1": _fev1_volume,
    "fev1_post_bd": _fev1_volume,
    "fev1_pre_bd": _fev1_volume,
    "fev1_percent_predicted": _fev1_percent,
    "fev1_fvc": _fev1_fvc,
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
