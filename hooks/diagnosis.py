"""Testing and diagnosis: who to test for AATD (clinical-knowledge.md 2.2; 5, rows 13-19)."""

from __future__ import annotations

from fhir_mappings import CodedFinding, PatientFacts
from fhir_mappings.aat import constants

from . import assessment as a
from .knowledge import threshold
from .policy import Policy
from .recommendation import Evidence, OrderService, OrderTest, Reason, Recommendation

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


def testing_recommended(facts: PatientFacts, policy: Policy) -> Recommendation | None:
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


LAB_GUIDANCE = Evidence(
    "lab-guidance",
    "A level alone cannot classify the alleles; low or borderline levels need phenotyping or "
    "genotyping. Targeted S/Z genotyping misses rare and null alleles: discordant results need "
    "SERPINA1 sequencing or phenotyping. AAT is an acute-phase reactant.",
    "laboratory guidance",
)


def genotype_recommended(facts: PatientFacts, policy: Policy) -> Recommendation | None:
    """A low or grey-zone AAT level and no allele result (row 20)."""
    level = facts.latest_aat
    if level is None or (facts.genotype is not None and facts.genotype.basis != "level"):
        return None
    if any(t.pending and t.concept != "aat_level" for t in facts.aat_tests):
        return None
    low, high = policy.aat_grey_zone_mg_dl
    below = level.umol_l < threshold("aat_below_normal_umol_l")
    grey = low <= level.mg_dl <= high
    if not (below or grey):
        return None
    why = "in the method-dependent grey zone" if grey else "below normal"
    return Recommendation(
        topic="genotype-recommended",
        summary=f"AAT {level.reported} is {why}: order a phenotype or genotype",
        advice="Order phenotyping or genotyping to define the alleles; the level alone cannot "
        f"classify them. Values of {low:g}-{high:g} mg/dL are a grey zone that depends on the "
        "assay.",
        evidence=(LAB_GUIDANCE, TESTING_EVIDENCE[0]),
        reasons=a.reasons(a.aat_reason(facts), Reason("no phenotype or genotype on record")),
        actions=(OrderTest("aat_phenotype", "Order alpha-1 antitrypsin phenotype (Pi type)"),),
    )


def results_discordant(facts: PatientFacts, policy: Policy) -> Recommendation | None:
    """Genotype and level disagree (rows 21-22)."""
    genotype, level = facts.genotype, facts.latest_aat
    if genotype is None or level is None or genotype.basis == "level":
        return None
    limits = constants()
    explain: list[Reason] = []
    if (
        not {"S", "Z"} & set(genotype.alleles)
        and genotype.severity != a.SEVERE
        and (level.umol_l < limits.protective_umol_l)
    ):
        summary = f"PI*{genotype.label} but AAT {level.reported} is severely low: results disagree"
        advice = (
            "A null or rare allele may have been missed by targeted genotyping. Order "
            "SERPINA1 sequencing and/or phenotyping, and repeat the level with a CRP."
        )
        action = OrderService(
            "SERPINA1 gene sequencing and AAT phenotyping; repeat AAT level with CRP",
            "Order SERPINA1 sequencing",
        )
    elif genotype.severity == a.SEVERE and level.umol_l >= limits.zz_unexpectedly_normal_umol_l:
        summary = f"PI*{genotype.label} but AAT {level.reported} is not low: results disagree"
        advice = (
            "Check for an A1PI infusion shortly before sampling, a liver transplant (the donor "
            "liver makes normal AAT) or a lab error; repeat the level as a trough before the "
            "next infusion."
        )
        action = OrderTest("aat_level", "Repeat the AAT level (trough)")
        explain += [a.order_reason(o) for o in a.augmentation_orders(facts)]
        explain += a.reasons(a.finding_reason("liver transplant", facts.liver_transplant))
    else:
        return None
    return Recommendation(
        topic="results-discordant",
        summary=summary,
        advice=advice,
        evidence=(LAB_GUIDANCE,),
        reasons=(*a.reasons(a.genotype_reason(facts), a.aat_reason(facts)), *explain),
        actions=(action,),
    )


def family_testing(facts: PatientFacts, policy: Policy) -> Recommendation | None:
    """An abnormal allele found: cascade testing of relatives (row 19)."""
    if not a.abnormal_allele(facts):
        return None
    genotype = facts.genotype
    return Recommendation(
        topic="family-testing",
        summary=f"PI*{genotype.label}: offer counselling and AATD testing to parents, siblings, "
        "children",
        advice="Offer genetic counselling, and AATD testing (level plus genotype) to first-degree "
        "relatives and the wider family: relatives may carry Z or S alleles, and ZZ or SZ "
        "offspring are possible.",
        evidence=(
            Evidence(
                "a1f-2016",
                "Parents, siblings, children and extended family of individuals "
                "with an abnormal AAT gene: genetic counselling and an offer of testing.",
                "recommendation",
            ),
        ),
        reasons=a.reasons(a.genotype_reason(facts)),
    )
