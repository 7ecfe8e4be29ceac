"""The suggested actions rules offer, declared once: tests, orders, referrals, changes.

Their words are in ``words/actions.json``; ``cds_service`` turns each into a FHIR resource.
"""

from __future__ import annotations

from functools import cache

from fhir_mappings import MedicationOrder
from fhir_mappings.medications import offered_products

from .knowledge import Words
from .recommendation import (
    A1piProduct,
    CorrectDose,
    OrderService,
    OrderTest,
    PrescribeAugmentation,
    RemoveDraft,
    StopOrder,
)

ACTIONS = Words("hooks", "words", "actions.json")


def _service(key: str, kind: str = "procedure") -> OrderService:
    return OrderService(ACTIONS(f"{key}.text"), ACTIONS(f"{key}.label"), kind, key)


def _test(concept: str, key: str) -> OrderTest:
    return OrderTest(concept, ACTIONS(f"tests.{key}"))


SPIROMETRY = _service("spirometry")
GENETIC_COUNSELLING = _service("genetic_counselling", "referral")
SMOKING_CESSATION = _service("smoking_cessation", "referral")
# One orderable per resource: the liver tests as the hepatic function panel (LOINC 24325-3:
# ALT, AST, ALP, bilirubin, albumin, total protein) plus GGT, which the panel lacks and the
# reference's liver tests include; imaging and elastography apart. The panel comes first:
# it is the one order the care checklist offers for the item.
HEPATIC_PANEL = _service("hepatic_function_panel", "laboratory")
LIVER_IMAGING: tuple[OrderTest | OrderService, ...] = (
    _service("liver_ultrasound"),
    _service("liver_elastography"),
)
LIVER_WORKUP: tuple[OrderTest | OrderService, ...] = (
    HEPATIC_PANEL,
    _test("ggt", "ggt"),
    *LIVER_IMAGING,
)
HEPATOLOGY = _service("hepatology", "referral")
ANTI_IGA_TEST = _service("anti_iga")
WEIGHT = _service("weight")
SEQUENCING = _service("sequencing")
TRANSPLANT_TEAM = _service("transplant_team", "referral")
AATD_SPECIALIST = _service("aatd_specialist", "referral")
TRANSPLANT_EVALUATION = _service("transplant_evaluation", "referral")
IMMUNOLOGY = _service("immunology", "referral")
AAT_LEVEL = _test("aat_level", "aat_level")
AAT_PHENOTYPE = _test("aat_phenotype", "aat_phenotype")
AAT_TROUGH = _test("aat_level", "aat_trough")
IGG_TROUGH = _test("igg", "igg_trough")
IGA_LEVEL = _test("iga", "iga")


@cache
def a1pi_products() -> tuple[A1piProduct, ...]:
    """The labelled products offered, from the one product list (fhir_mappings'
    data/medications.json, which also reads them on orders)."""
    return tuple(
        A1piProduct(p.ndc, p.display, p.ndc, p.rate_ml_per_kg_min) for p in offered_products("a1pi")
    )


def vaccinate(vaccine: str) -> OrderService:
    """A vaccine due, by name (or several, listed, as one order): the product (and its CVX
    code) is chosen when it is given."""
    return OrderService(
        ACTIONS("vaccinate.text", vaccine=vaccine),
        ACTIONS("vaccinate.label", vaccine=vaccine),
        "procedure",
        "vaccinate",
    )


def prescribe_a1pi(dose_mg: float, weight_kg: float) -> tuple[PrescribeAugmentation, ...]:
    """One order per labelled product: the clinician picks the product the payer covers."""
    return tuple(
        PrescribeAugmentation(
            dose_mg,
            weight_kg,
            ACTIONS("prescribe_a1pi", product=product.display, dose=dose_mg),
            product,
        )
        for product in a1pi_products()
    )


def correct_a1pi_dose(order: MedicationOrder, dose_mg: float) -> tuple[CorrectDose, ...]:
    """Replace the dose of an order the EHR can update (a MedicationRequest)."""
    if order.resource_type != "MedicationRequest":
        return ()
    label = ACTIONS("correct_a1pi_dose", dose=dose_mg)
    return (CorrectDose(order.source.reference, dose_mg, label),)


def stop(orders: list[MedicationOrder], label: str) -> tuple[StopOrder, ...]:
    """Stop active MedicationRequests; a MedicationStatement is not ours to stop."""
    return tuple(
        StopOrder(o.source.reference, label)
        for o in orders
        if o.resource_type == "MedicationRequest"
    )


def remove_draft(order: MedicationOrder) -> tuple[RemoveDraft, ...]:
    """Delete a draft MedicationRequest; an order without an id cannot be named."""
    if order.resource_type != "MedicationRequest" or order.source.reference.endswith("(no id)"):
        return ()
    product = ACTIONS(f"products.{order.product}")
    return (RemoveDraft(order.source.reference, ACTIONS("remove_draft", product=product)),)
