"""Derived clinical state every rule module reads, computed one way only.

Severity, obstruction, recency and the reasons that cite them live here, so that two
rules never judge the same question differently.
"""

from __future__ import annotations

from datetime import date, timedelta

from fhir_mappings import CodedFinding, Measurement, MedicationOrder, PatientFacts
from fhir_mappings.aat import constants

from .knowledge import threshold
from .policy import Policy
from .recommendation import Reason

SEVERE = "severe"
BORDERLINE = "borderline"


def severity(facts: PatientFacts) -> str | None:
    return facts.genotype.severity if facts.genotype else None


def has_aatd(facts: PatientFacts) -> bool:
    """AATD as the catalogue means it: coded, or a severe or borderline genotype."""
    return facts.has_condition("aatd") or severity(facts) in (SEVERE, BORDERLINE)


def abnormal_allele(facts: PatientFacts) -> bool:
    genotype = facts.genotype
    return genotype is not None and genotype.basis != "level" and genotype.abnormal_allele


def is_adult(facts: PatientFacts) -> bool | None:
    age = facts.age
    return None if age is None else age >= threshold("adult_age_years")


def recent_date(when: date | None, days: int, facts: PatientFacts) -> bool:
    return when is not None and when >= facts.as_of - timedelta(days=days)


def recent(measurement: Measurement | None, days: int, facts: PatientFacts) -> bool:
    return measurement is not None and recent_date(measurement.source.date, days, facts)


def recent_fev1(facts: PatientFacts, policy: Policy) -> Measurement | None:
    fev1 = facts.latest("fev1_percent_predicted")
    return fev1 if recent(fev1, policy.lookbacks.spirometry, facts) else None


def below_protective(facts: PatientFacts) -> bool | None:
    level = facts.latest_aat
    return None if level is None else level.umol_l < constants().protective_umol_l


def obstruction(facts: PatientFacts) -> Reason | None:
    """Evidence of emphysema or airflow obstruction, the best one first."""
    for concept, label in (("emphysema", "emphysema"), ("copd", "COPD")):
        finding = facts.conditions.get(concept)
        if finding:
            return Reason(f"{label}: {finding[0].text}", finding[0].source)
    ratio = facts.latest("fev1_fvc")
    if ratio is not None and ratio.value < threshold("fev1_fvc_obstruction"):
        return Reason(f"airflow obstruction: FEV1/FVC {ratio.value:.2f}", ratio.source)
    return None


def no_obstruction(facts: PatientFacts) -> Reason | None:
    """Evidence against obstruction: a normal FEV1/FVC and no emphysema or COPD coded."""
    ratio = facts.latest("fev1_fvc")
    if obstruction(facts) is None and ratio is not None:
        return Reason(f"no airflow obstruction: FEV1/FVC {ratio.value:.2f}", ratio.source)
    return None


def lung_disease(facts: PatientFacts) -> bool:
    """Lung disease that makes the augmentation question relevant at all."""
    concepts = ("copd", "emphysema", "asthma", "bronchiectasis")
    return obstruction(facts) is not None or any(facts.has_condition(c) for c in concepts)


def augmentation_orders(facts: PatientFacts, state: str = "active") -> list[MedicationOrder]:
    return facts.orders_of("a1pi", state)


def inflammatory_episode(facts: PatientFacts) -> CodedFinding | None:
    """Active acute rejection or infection: when ATS/ERS favours augmentation after LTx."""
    for concept in ("lung_transplant_rejection", "lung_transplant_infection", "serious_infection"):
        finding = facts.active_condition(concept)
        if finding is not None:
            return finding
    return None


def off_label_dose(order: MedicationOrder) -> bool | None:
    """A1PI dose off 60 mg/kg weekly by more than the tolerance; None when not computable."""
    dose = order.mg_per_kg_per_week
    if dose is None:
        return None
    target = threshold("a1pi_dose_mg_per_kg_week")
    return abs(dose - target) > target * threshold("a1pi_dose_tolerance")


def iga_deficient(facts: PatientFacts) -> Reason | None:

    coded = facts.active_condition("iga_deficiency")
    if coded is not None:
        return Reason(f"IgA deficiency: {coded.text}", coded.source)
    iga = facts.latest("iga")
    if iga is not None and iga.value < threshold("iga_deficient_mg_dl"):
        return Reason(f"IgA {iga.value:g} mg/dL", iga.source)
    return None


def contraindications(facts: PatientFacts) -> list[Reason]:
    """Label contraindications: anaphylaxis to A1PI; IgA deficiency with anti-IgA antibodies."""
    found = [
        Reason(f"prior reaction to A1PI: {f.text}", f.source) for f in facts.a1pi_anaphylaxis[:1]
    ]
    deficient = iga_deficient(facts)
    positive = next((f for f in facts.anti_iga if f.active), None)
    if deficient and positive:
        found += [deficient, Reason(positive.text, positive.source)]
    return found


def anti_iga_unknown(facts: PatientFacts) -> Reason | None:
    """IgA deficient with no anti-IgA result: the test to ask for before A1PI or IVIG."""
    deficient = iga_deficient(facts)
    if deficient and not facts.anti_iga:
        return deficient
    return None


# --- reasons, cited the same way on every card ------------------------------------------


def genotype_reason(facts: PatientFacts) -> Reason | None:
    genotype = facts.genotype
    if genotype is None:
        return None
    if genotype.basis == "level":
        return Reason(
            f"no genotype on record; {genotype.text} is below the protective level",
            genotype.sources[0],
        )
    kind = "genotype" if genotype.basis == "dna" else "phenotype"
    return Reason(f"PI*{genotype.label} ({kind}, {genotype.severity})", genotype.sources[0])


def aat_reason(facts: PatientFacts) -> Reason | None:
    level = facts.latest_aat
    if level is None:
        return None
    extra = " (preliminary)" if level.preliminary else ""
    return Reason(
        f"AAT {level.reported} ({level.umol_l:.1f} umol/L, {level.mg_dl:.0f} mg/dL){extra}",
        level.source,
    )


def measurement_reason(
    label: str, measurement: Measurement | None, fmt: str = "{:g}"
) -> Reason | None:
    if measurement is None:
        return None
    unit = "" if measurement.unit in ("1", "") else f" {measurement.unit}"
    return Reason(f"{label} {fmt.format(measurement.value)}{unit}", measurement.source)


def finding_reason(label: str, finding: CodedFinding | None) -> Reason | None:
    if finding is None:
        return None
    past = "" if finding.active else " (resolved or inactive)"
    return Reason(f"{label}: {finding.text}{past}", finding.source)


def order_reason(order: MedicationOrder) -> Reason:
    dose = ""
    if order.dose is not None:
        dose = f", {order.dose:g} {order.dose_unit or ''}".rstrip()
        if order.interval_days:
            dose += f" every {order.interval_days:g} days"
    return Reason(f"{order.state} order: {order.text}{dose}", order.source)


def reasons(*items: Reason | None) -> tuple[Reason, ...]:
    return tuple(item for item in items if item is not None)
