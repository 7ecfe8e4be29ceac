"""Monitoring: yearly spirometry, liver surveillance, vaccinations.

clinical-knowledge.md 2.8, 2.9; section 5 rows 24, 37, 41.
"""

from __future__ import annotations

from datetime import timedelta

from fhir_mappings import PatientFacts

from . import assessment as a
from .knowledge import threshold
from .policy import Policy
from .recommendation import Evidence, OrderService, Reason, Recommendation

SPIROMETRY = OrderService("Post-bronchodilator spirometry with DLCO", "Order spirometry with DLCO")

ANNUAL_PFT = Evidence(
    "ers-review-2022",
    "Annual follow-up of lung function, including post-bronchodilator FEV1 and gas transfer.",
    "recommendation",
)
LIVER = Evidence(
    "liver-assessment-2020",
    "Baseline and periodic liver tests (ALT alone is insensitive), abdominal ultrasound and "
    "non-invasive fibrosis assessment (elastography, APRI, FIB-4); augmentation does not treat "
    "AATD liver disease.",
    "recommendation",
)


def spirometry_due(facts: PatientFacts, policy: Policy) -> Recommendation | None:
    if a.severity(facts) not in (a.SEVERE, a.BORDERLINE):
        return None
    days = policy.lookbacks.spirometry
    latest = [facts.latest(c) for c in ("fev1_percent_predicted", "fev1_volume")]
    if any(a.recent(m, days, facts) for m in latest):
        return None
    newest = max((m for m in latest if m), key=lambda m: m.source.date or facts.as_of, default=None)
    last = a.measurement_reason("last FEV1", newest) or Reason("no FEV1 on record")
    return Recommendation(
        topic="spirometry-due",
        summary=f"AATD: spirometry due (no FEV1 in the last {days // 30} months)",
        advice="Repeat post-bronchodilator spirometry and DLCO once a year.",
        evidence=(ANNUAL_PFT,),
        reasons=a.reasons(a.genotype_reason(facts), last),
        actions=(SPIROMETRY,),
    )


def liver_monitoring(facts: PatientFacts, policy: Policy) -> Recommendation | None:
    """ZZ, SZ, Z/null, or liver disease with an abnormal allele; when liver tests are due."""
    genotype = facts.genotype
    z_risk = (
        genotype is not None
        and "Z" in genotype.alleles
        and genotype.severity in (a.SEVERE, a.BORDERLINE)
    )
    disease = facts.conditions.get("chronic_liver_disease", [None])[0]
    if not (z_risk or (disease and a.abnormal_allele(facts))):
        return None
    alt = facts.latest("alt")
    if disease is None and a.recent(alt, policy.lookbacks.liver_tests, facts):
        return None
    advice = (
        "Check liver tests (ALT, AST, GGT, bilirubin, albumin, INR, platelets), abdominal "
        "ultrasound and elastography; avoid alcohol and hepatotoxins; vaccinate against "
        "hepatitis A and B."
    )
    if disease is not None:
        advice += " With liver disease: hepatology referral; HCC surveillance if cirrhotic."
    return Recommendation(
        topic="liver-monitoring",
        summary="AATD with liver risk: liver tests, ultrasound and elastography"
        + ("; refer to hepatology" if disease else ""),
        advice=advice,
        evidence=(LIVER,),
        reasons=a.reasons(
            a.genotype_reason(facts),
            a.finding_reason("liver disease", disease),
            a.measurement_reason("last ALT", alt) or Reason("no ALT on record"),
        ),
        actions=(
            OrderService(
                "Liver panel (ALT, AST, GGT, bilirubin, albumin, INR, platelets), "
                "abdominal ultrasound and liver elastography",
                "Order liver tests, ultrasound and elastography",
            ),
        ),
    )


def vaccinations_due(facts: PatientFacts, policy: Policy) -> Recommendation | None:
    if not a.has_aatd(facts):
        return None
    flu_since = facts.as_of - timedelta(days=threshold("influenza_vaccine_days"))
    missing = []
    if not any(
        i.source.date and i.source.date >= flu_since
        for i in facts.immunizations.get("influenza", [])
    ):
        missing.append("influenza (this season)")
    missing += [
        label
        for group, label in (("pneumococcal", "pneumococcal"), ("covid19", "COVID-19"))
        if not facts.immunizations.get(group)
    ]
    hepatitis_reason = a.augmentation_orders(facts) or facts.liver_disease
    if hepatitis_reason:
        missing += [
            label
            for group, label in (("hepatitis_a", "hepatitis A"), ("hepatitis_b", "hepatitis B"))
            if not facts.immunizations.get(group)
        ]
    if not missing:
        return None
    return Recommendation(
        topic="vaccinations-due",
        summary="AATD: vaccines due: " + ", ".join(missing),
        advice="Vaccinate against influenza yearly, pneumococcus and COVID-19; against hepatitis A "
        "and B when receiving plasma-derived A1PI or with liver disease.",
        evidence=(
            Evidence(
                "a1f-2016", "Influenza, pneumococcal and COVID-19 vaccination.", "recommendation"
            ),
            Evidence(
                "eu-smpc", "Vaccinate patients receiving A1PI against hepatitis A and B.", "label"
            ),
        ),
        reasons=a.reasons(a.genotype_reason(facts), Reason("no record of: " + ", ".join(missing))),
        missing=tuple(f"{m} vaccination" for m in missing),
    )
