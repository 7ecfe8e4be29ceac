"""Smoking: cessation for every abnormal allele, and a current status before any decision.

clinical-knowledge.md 2.6 (MZ ever-smokers), 2.9; section 5 rows 5-7, 28.
"""

from __future__ import annotations

from fhir_mappings import PatientFacts

from . import assessment as a
from .policy import Policy
from .recommendation import Evidence, Reason, Recommendation

CESSATION = Evidence(
    "a1f-2016",
    "Smoking cessation is imperative in AATD; augmentation is not recommended for those who "
    "continue to smoke.",
    "recommendation",
)
MZ_RISK = Evidence(
    "mz-copd-2014",
    "PI*MZ raises COPD risk mainly in smokers (adjusted OR 10.65 in ever-smokers).",
    "observational",
)


def _relevant(facts: PatientFacts) -> bool:
    return a.has_aatd(facts) or a.abnormal_allele(facts)


def smoking_cessation(facts: PatientFacts, policy: Policy) -> Recommendation | None:
    smoking = facts.smoking
    if smoking is None or smoking.status != "current" or not _relevant(facts):
        return None
    severe = a.severity(facts) == a.SEVERE
    advice = "Offer intensive cessation support: pharmacotherapy plus counselling. Avoid "
    advice += "occupational and environmental exposures."
    if severe:
        advice += " Do not start augmentation while smoking; re-assess after sustained abstinence."
    label = f"PI*{facts.genotype.label}" if facts.genotype and facts.genotype.alleles else "AATD"
    return Recommendation(
        topic="smoking-cessation",
        summary=f"Current smoker with {label}: smoking cessation is the priority",
        advice=advice,
        evidence=(CESSATION, MZ_RISK),
        reasons=a.reasons(
            a.genotype_reason(facts), Reason(f"smoking: {smoking.text}", smoking.source)
        ),
    )


def smoking_status_unknown(facts: PatientFacts, policy: Policy) -> Recommendation | None:
    if not _relevant(facts):
        return None
    smoking = facts.smoking
    days = policy.lookbacks.smoking
    if (
        smoking is not None
        and smoking.status != "unknown"
        and a.recent_date(smoking.source.date, days, facts)
    ):
        return None
    last = f"last recorded: {smoking.text}" if smoking else "no tobacco smoking status on record"
    return Recommendation(
        topic="smoking-status-unknown",
        summary="AATD: record current tobacco smoking status",
        advice="Smoking status decides eligibility for augmentation and is the first thing to "
        "change in AATD; record it (LOINC 72166-2) at least yearly.",
        evidence=(
            Evidence(
                "us-core-smoking",
                "Tobacco smoking status is a required data element.",
                "implementation",
            ),
            CESSATION,
        ),
        reasons=a.reasons(
            a.genotype_reason(facts), Reason(last, smoking.source if smoking else None)
        ),
        missing=(f"smoking status within {days} days",),
    )
