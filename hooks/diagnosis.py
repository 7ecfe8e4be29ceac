"""Testing and diagnosis: who to test for AATD (clinical-knowledge.md 2.2; 5, rows 13-19)."""

from __future__ import annotations

from fhir_mappings import CodedFinding, PatientFacts

from .knowledge import threshold
from .recommendation import Evidence, OrderTest, Reason, Recommendation

# Conditions that on their own warrant testing, with how a card names them.
TESTING_TRIGGERS = {
    "copd": "COPD",
    "emphysema": "emphysema",
    "bronchiectasis": "bronchiectasis",
    "chronic_liver_disease": "chronic liver disease",
    "panniculitis": "panniculitis",
    "gpa": "granulomatosis with polyangiitis",
}

TESTING_EVIDENCE = (
    Evidence(
        "a1f-2016",
        "Test all individuals with COPD, unexplained chronic liver disease, necrotizing "
        "panniculitis, granulomatosis with polyangiitis or unexplained bronchiectasis, adults "
        "with asthma and incompletely reversible airflow obstruction, and relatives of people "
        "with an abnormal AAT gene.",
        "recommendation",
    ),
    Evidence(
        "gold",
        "Screen every patient with a diagnosis of COPD once for AATD.",
        "recommendation",
    ),
    Evidence(
        "ats-ers-2003",
        "Test adults with symptomatic COPD or emphysema, and adults with asthma whose airflow "
        "obstruction is incompletely reversible after treatment.",
        "recommendation",
    ),
)


def testing_recommended(facts: PatientFacts) -> Recommendation | None:
    """Case finding: a testing indication and no AAT level, phenotype or genotype on record.

    Silent when the Observation or Condition lists may be incomplete: "no result on record"
    must never rest on a partial record.
    """
    if not facts.complete("Observation", "Condition", "FamilyMemberHistory"):
        return None
    if facts.aat_tests or facts.has_condition("aatd"):
        return None
    reasons = _testing_reasons(facts)
    if not reasons:
        return None
    first = reasons[0].text.split(":")[0]
    return Recommendation(
        topic="aatd-testing-recommended",
        summary=f"Test for alpha-1 antitrypsin deficiency: {first}, and no AAT result on record",
        advice=(
            "Test once with a serum AAT level **plus** phenotype or genotype (or a combined "
            "panel). A level alone cannot classify the alleles."
        ),
        evidence=TESTING_EVIDENCE,
        reasons=(
            *reasons,
            Reason("No AAT level, phenotype or genotype and no AATD diagnosis on record"),
        ),
        actions=(
            OrderTest("aat_level", "Order serum alpha-1 antitrypsin level"),
            OrderTest("aat_phenotype", "Order alpha-1 antitrypsin phenotype (Pi type)"),
        ),
    )


def _testing_reasons(facts: PatientFacts) -> list[Reason]:
    reasons = [
        _finding_reason(label, facts.conditions[concept][0])
        for concept, label in TESTING_TRIGGERS.items()
        if facts.has_condition(concept)
    ]
    reasons.extend(_asthma_with_obstruction(facts))
    for finding in facts.family_history.get("aatd", [])[:1]:
        reasons.append(Reason(f"relative with AATD: {finding.text}", finding.source))
    return reasons


def _finding_reason(label: str, finding: CodedFinding) -> Reason:
    past = "" if finding.active else " (resolved or inactive)"
    return Reason(f"{label}: {finding.text}{past}", finding.source)


def _asthma_with_obstruction(facts: PatientFacts) -> list[Reason]:
    """Asthma counts only with persistent obstruction: latest FEV1/FVC below the cut-off."""
    if not facts.has_condition("asthma"):
        return []
    ratio = facts.latest("fev1_fvc")
    if ratio is None or ratio.value >= threshold("fev1_fvc_obstruction"):
        return []
    asthma = facts.conditions["asthma"][0]
    return [
        _finding_reason("asthma with persistent airflow obstruction", asthma),
        Reason(f"FEV1/FVC {ratio.value:.2f}", ratio.source),
    ]
