"""A1PI and immune globulin orders: which product, active or draft, and how much how often.

Products are recognised by NDC product code, RxNorm (once verified codes are added to
``data/medications.json``) or the words of the product text, on the order itself or on
the Medication it references (in the Bundle or contained). Doses are normalised to
mg/kg/week (A1PI) and g/kg per dose (immune globulin) with the latest weight, afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from .facts import DataNote, MedicationOrder, PatientFacts, Source
from .fhirjson import NUMBER, Json, as_dict, as_list, codings, concept_text
from .terminology import canonical_system, load_data

NDC = "http://hl7.org/fhir/sid/ndc"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ACTIVE = {
    "MedicationRequest": {"active": "active", "on-hold": "active", "draft": "draft"},
    "MedicationStatement": {"active": "active", "intended": "active", "on-hold": "active"},
}
DAYS = {"d": 1, "wk": 7, "mo": 30.4375, "h": 1 / 24, "a": 365.25}
MASS_TO_MG = {"mg": 1, "g": 1000, "kg": 1_000_000}
PER_KG_TO_MG = {"mg/kg": 1, "g/kg": 1000}


@cache
def _classes() -> dict[str, dict[str, Any]]:
    """The data file's classes, each product's own word joined to the generic words."""
    return {
        name: {**entry, "words": _words(entry)}
        for name, entry in load_data("medications.json").items()
    }


def _words(entry: Mapping[str, Any]) -> list[str]:
    products = [p["word"] for p in entry["ndc_products"] if p.get("word")]
    return list(dict.fromkeys([*products, *entry["words"]]))


@dataclass(frozen=True, slots=True)
class Product:
    """A product of a medication class that the cards offer (``offer`` in the data file)."""

    display: str
    brand: str
    ndc: str
    rate_ml_per_kg_min: float | None


@cache
def offered_products(name: str) -> tuple[Product, ...]:
    """The products of class ``name`` offered on cards, in the data file's order."""
    return tuple(
        Product(p["display"], p["brand"], p["code"], p.get("rate_ml_per_kg_min"))
        for p in _classes()[name]["ndc_products"]
        if p.get("offer")
    )


@cache
def brands(name: str) -> tuple[str, ...]:
    """The brand names of the offered products of class ``name``, each once."""
    return tuple(dict.fromkeys(product.brand for product in offered_products(name)))


def class_display(name: str) -> str:
    """The class's generic name ("Alpha-1 proteinase inhibitor (human)")."""
    return str(_classes()[name]["display"])


# The three 10-digit NDC layouts (labeler-product-package) and the 11-digit 5-4-2 form that
# billing and most EHRs write (FDA NDC Directory; CMS pads the short segment with a zero).
NDC_LAYOUTS = ((4, 4, 2), (5, 3, 2), (5, 4, 1), (5, 4, 2))


def ndc_products(code: str) -> set[str]:
    """The labeler+product codes (9 digits, 5-4) a written NDC may stand for.

    Hyphenated codes pad each segment; an 11-digit code without hyphens is unambiguous; a
    10-digit one without hyphens may be any of the three layouts, so each is a candidate
    (a product code of two segments, as our data file writes them, reads the same way)."""
    code = code.strip()
    if "-" in code:
        parts = code.split("-")
        if len(parts) in (2, 3) and all(part.isdigit() for part in parts):
            return {parts[0].zfill(5) + parts[1].zfill(4)}
        return set()
    if not code.isdigit():
        return set()
    if len(code) == 11:
        return {code[:9]}
    if len(code) != 10:
        return set()
    found = set()
    for labeler, product, _ in NDC_LAYOUTS[:3]:
        found.add(code[:labeler].zfill(5) + code[labeler : labeler + product].zfill(4))
    return found


@cache
def _ndc_index() -> dict[str, str]:
    """Labeler+product (9 digits) -> medication class, from the data file's products."""
    return {
        product: name
        for name, entry in _classes().items()
        for listed in entry["ndc_products"]
        for product in ndc_products(listed["code"])
    }


def product_of(concept: Any) -> str | None:
    """'a1pi' or 'immune_globulin' for a medication CodeableConcept, else None."""
    index = _ndc_index()
    for name, entry in _classes().items():
        for coding in codings(concept):
            system, code = canonical_system(coding.get("system")), str(coding.get("code", ""))
            if system == NDC and any(index.get(p) == name for p in ndc_products(code)):
                return name
            if system == RXNORM and code in entry["rxnorm"]:
                return name
        text = " ".join(
            filter(None, [concept_text(concept), *(c.get("display") for c in codings(concept))])
        ).lower()
        if any(word in text for word in entry["words"]):
            return name
    return None


def medication_concept(resource: Json, medications: dict[str, Json]) -> Any:
    """The medication CodeableConcept of an order, following medicationReference; when the
    referenced Medication was not sent, the reference's own display (Epic writes the drug
    name there); None when the order names its medication in no way that can be read."""
    if resource.get("medicationCodeableConcept") is not None:
        return resource["medicationCodeableConcept"]
    named = as_dict(resource.get("medicationReference"))
    reference, display = named.get("reference"), named.get("display")
    found = _referenced(resource, reference, medications) if isinstance(reference, str) else None
    if found is None and isinstance(display, str) and display.strip():
        return {"text": display}
    return found


def _referenced(resource: Json, reference: str, medications: dict[str, Json]) -> Any:
    if reference.startswith("#"):
        for contained in as_list(resource.get("contained")):
            if as_dict(contained).get("id") == reference[1:]:
                return as_dict(contained).get("code")
        return None
    medication = medications.get(reference.rsplit("/", 1)[-1]) or medications.get(reference)
    return as_dict(medication).get("code")


def _unnamed(concept: Any, source: Source, facts: PatientFacts) -> bool:
    """True (and said) when active therapy names its medication in no readable way: it
    may be A1PI or immune globulin, so no rule may take therapy as absent."""
    if concept is not None:
        return False
    note = "a medication order naming no drug"
    facts.cannot_read("therapy", source, note)
    return True


WITHDRAWN_DRAFT = frozenset({"cancelled", "entered-in-error"})
# An administration that happened (or is under way): therapy given, whatever the order says.
GIVEN = frozenset({"completed", "in-progress"})


def read_administration(
    resource: Json, source: Source, facts: PatientFacts, medications: dict[str, Json]
) -> None:
    """A recent infusion of A1PI or immune globulin (an infusion centre's record) means the
    patient is on that therapy, even with no active order on record. Recent: within the
    product's ``administration_recent_days`` (data/medications.json, with its reason); an
    undated or older one says nothing about now. Only the newest per product is kept
    (``keep_newest_administrations``), so weekly infusions are one fact, not many orders."""
    if resource.get("status") not in GIVEN or source.date is None:
        return
    concept = medication_concept(resource, medications)
    age = (facts.as_of - source.date).days
    if age <= longest_recent_days() and _unnamed(concept, source, facts):
        return
    product = product_of(concept)
    if product is None or age > _classes()[product]["administration_recent_days"]:
        return
    dose, unit = _quantity(as_dict(as_dict(resource.get("dosage")).get("dose")))
    facts.orders.append(
        MedicationOrder(
            product=product,
            text=concept_text(concept) or product,
            state="active",
            resource_type="MedicationAdministration",
            source=source,
            dose=dose,
            dose_unit=unit,
            # One infusion has no interval: its dose is judged on the order, not here.
            dose_problem="an infusion given, not an order",
        )
    )


def longest_recent_days() -> int:
    """The longest ``administration_recent_days`` of any product: how far back an
    administration can still mean therapy now (the prefetch window reads it too)."""
    return max(entry["administration_recent_days"] for entry in _classes().values())


def keep_newest_administrations(facts: PatientFacts) -> None:
    """One administration fact per product, the newest (orders are sorted newest first)."""
    seen: set[str] = set()
    kept = []
    for order in facts.orders:
        if order.resource_type == "MedicationAdministration":
            if order.product in seen:
                continue
            seen.add(order.product)
        kept.append(order)
    facts.orders[:] = kept


def read_order(
    resource: Json,
    source: Source,
    facts: PatientFacts,
    medications: dict[str, Json],
    drafts: Mapping[str, bool],
) -> None:
    """``drafts``: draft orders of the hook's context, each True when under review."""
    under_review = drafts.get(source.reference)
    if under_review is not None and resource.get("status") not in WITHDRAWN_DRAFT:
        state: str | None = "draft"
    else:
        state = ACTIVE[resource["resourceType"]].get(str(resource.get("status")))
        under_review = False
    if state is None:
        return
    concept = medication_concept(resource, medications)
    if state == "active" and _unnamed(concept, source, facts):
        return
    product = product_of(concept)
    if product is None:
        return
    dosage = as_dict(
        (as_list(resource.get("dosageInstruction")) or as_list(resource.get("dosage")) or [{}])[0]
    )
    dose, unit = _dose(dosage)
    facts.orders.append(
        MedicationOrder(
            product=product,
            text=concept_text(concept) or product,
            state=state,
            resource_type=resource["resourceType"],
            source=source,
            dose=dose,
            dose_unit=unit,
            interval_days=_interval_days(dosage),
            under_review=bool(under_review),
        )
    )


def _dose(dosage: Json) -> tuple[float | None, str | None]:
    for rate in as_list(dosage.get("doseAndRate")):
        dose = _quantity(as_dict(as_dict(rate).get("doseQuantity")))
        if dose[0] is not None:
            return dose
    return None, None


def _quantity(quantity: Json) -> tuple[float | None, str | None]:
    value = quantity.get("value")
    if isinstance(value, NUMBER) and not isinstance(value, bool):
        unit = quantity.get("code") or quantity.get("unit")
        return float(value), str(unit) if unit else None
    return None, None


def _interval_days(dosage: Json) -> float | None:
    repeat = as_dict(as_dict(dosage.get("timing")).get("repeat"))
    period, unit = repeat.get("period"), repeat.get("periodUnit")
    frequency = repeat.get("frequency", 1)
    if not isinstance(period, NUMBER) or unit not in DAYS:
        return None
    if not isinstance(frequency, int) or frequency < 1:
        return None
    return period * DAYS[unit] / frequency


def normalise_doses(facts: PatientFacts) -> None:
    """Per-kg doses from the latest weight; say what is missing when it cannot be done."""
    weight = facts.latest("body_weight")
    for index, order in enumerate(facts.orders):
        if order.resource_type == "MedicationAdministration":
            continue  # an infusion given: no interval, its dose_problem already says so
        per_kg = _mg_per_kg(order, weight.value if weight else None)
        if per_kg is None:
            problem = _dose_problem(order, weight is not None)
            facts.notes.append(DataNote(f"{order.text}: {problem}", order.source))
            facts.orders[index] = replace(order, dose_problem=problem)
            continue
        if order.product == "a1pi" and order.interval_days:
            facts.orders[index] = replace(
                order, mg_per_kg_per_week=per_kg * 7 / order.interval_days
            )
        elif order.product == "immune_globulin":
            facts.orders[index] = replace(order, g_per_kg_per_dose=per_kg / 1000)


def _dose_problem(order: MedicationOrder, has_weight: bool) -> str:
    """Why no per-kg dose: said precisely, so that a card never blames the wrong thing."""
    if order.dose is None:
        return "dose not stated"
    if order.interval_days is None:
        return "dosing interval not stated"
    if order.dose_unit not in PER_KG_TO_MG and order.dose_unit not in MASS_TO_MG:
        return f"dose unit '{order.dose_unit or 'none'}' cannot be read as a mass or mass per kg"
    if not has_weight:
        return "no body weight to compute mg/kg"
    return "dose could not be computed"


def _mg_per_kg(order: MedicationOrder, weight_kg: float | None) -> float | None:
    if order.dose is None or order.interval_days is None or order.dose_unit is None:
        return None
    if order.dose_unit in PER_KG_TO_MG:
        return order.dose * PER_KG_TO_MG[order.dose_unit]
    if order.dose_unit in MASS_TO_MG and weight_kg:
        return order.dose * MASS_TO_MG[order.dose_unit] / weight_kg
    return None
