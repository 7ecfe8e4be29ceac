"""Monitoring: yearly spirometry, liver surveillance, vaccinations.

Sources: ERS-series review 2022 (annual post-bronchodilator spirometry and DLCO);
Hamesch & Strnad 2020 (liver); A1F 2016 and the EU SmPC (vaccines).
"""

from __future__ import annotations

from datetime import timedelta

from . import actions
from . import assessment as a
from .context import Context
from .knowledge import Words, statements, thresholds
from .reasons import finding_reason, genotype_reason, measurement_reason, reasons, unread_reason
from .recommendation import Reason, Recommendation

WORDS = Words("hooks", "words", "monitoring.json")


def spirometry_due(ctx: Context) -> Recommendation | None:
    """When: severe or borderline AATD and no FEV1 within the spirometry lookback (ERS
    review 2022; CK row 24). Then: post-bronchodilator spirometry with DLCO."""
    facts = ctx.facts
    if a.severity(facts) not in a.DEFICIENT:
        return None
    days = ctx.policy.lookbacks.spirometry
    latest = [facts.latest(c) for c in ("fev1_percent_predicted", "fev1_volume")]
    if any(a.recent(m, days, facts) for m in latest):
        return None
    unread = unread_reason(facts, "spirometry", days)
    if unread is not None:  # on record, not readable: review it, order nothing again
        return Recommendation(
            topic="spirometry-due",
            summary=WORDS("spirometry.summary_unread"),
            advice=WORDS("spirometry.advice"),
            evidence=statements("ers-review-2022.annual-lung-function"),
            reasons=reasons(genotype_reason(facts), unread),
        )
    newest = max((m for m in latest if m), key=lambda m: m.source.date or facts.as_of, default=None)
    last = measurement_reason("last FEV1", newest) or Reason(WORDS("spirometry.none"))
    return Recommendation(
        topic="spirometry-due",
        summary=WORDS("spirometry.summary", months=days // 30),
        advice=WORDS("spirometry.advice"),
        evidence=statements("ers-review-2022.annual-lung-function"),
        reasons=reasons(genotype_reason(facts), last),
        actions=(actions.SPIROMETRY,),
    )


def liver_monitoring(ctx: Context) -> Recommendation | None:
    """When: ZZ, SZ, Z/null, or liver disease with an abnormal allele, no liver transplant,
    and liver tests not within their lookback, or the latest ALT or AST above the lab's
    range, or liver disease on record (Hamesch & Strnad 2020; CK 2.8, rows 37-38). Then:
    the liver work-up, without re-ordering tests drawn within their lookback; with liver
    disease, hepatology. An abnormal test asks for the next step: it is not a completed
    check. A carrier (PI*MZ) with liver disease is named by the alleles, never as AATD."""
    facts = ctx.facts
    if facts.liver_transplant is not None:
        return None  # the graft is the transplant hepatologists'; the AATD liver is gone
    genotype = facts.genotype
    z_risk = genotype is not None and "Z" in genotype.alleles and genotype.severity in a.DEFICIENT
    disease = facts.liver_finding()
    if not (z_risk or (disease and a.abnormal_allele(facts))):
        return None
    days = ctx.policy.lookbacks.liver_tests
    latest = [m for m in (facts.latest("alt"), facts.latest("ast")) if m is not None]
    recent = [m for m in latest if a.recent(m, days, facts)]
    high = [m for m in recent if m.above_range]
    if disease is None and recent and not high:
        return None
    last = high or recent
    shown = [measurement_reason(f"last {m.concept.upper()}", m) for m in last]
    if not shown:
        shown = [unread_reason(facts, "alt", days) or Reason(WORDS("liver.no_alt"))]
    advice = WORDS("liver.advice")
    if high:
        advice += WORDS("liver.advice_abnormal")
    if disease:
        advice += WORDS("liver.advice_disease")
    label = a.who(facts)
    return Recommendation(
        topic="liver-monitoring",
        summary=WORDS("liver.summary_disease" if disease or high else "liver.summary", who=label),
        advice=advice,
        evidence=statements("liver-assessment-2020.monitoring"),
        reasons=reasons(genotype_reason(facts), finding_reason("liver disease", disease), *shown),
        # Tests drawn within their lookback are not ordered again: imaging and elastography.
        actions=actions.LIVER_IMAGING if recent else actions.LIVER_WORKUP,
    )


def vaccinations_due(ctx: Context) -> Recommendation | None:
    """When: AATD and no influenza vaccine within a year, no pneumococcal or COVID-19
    vaccine, or (on A1PI or with liver disease) no hepatitis A/B vaccine on record
    (A1F 2016; EU SmPC; CK row 41). Then: the vaccines due."""
    facts = ctx.facts
    if not a.has_aatd(facts):
        return None
    groups = ["pneumococcal", "covid19"]
    if a.augmentation_orders(facts) or facts.liver_disease:
        groups += ["hepatitis_a", "hepatitis_b"]
    due = [group for group in groups if not facts.immunizations.get(group)]
    flu_since = facts.as_of - timedelta(days=thresholds().influenza_vaccine_days)
    if not any(
        i.source.date and i.source.date >= flu_since
        for i in facts.immunizations.get("influenza", [])
    ):
        due.insert(0, "influenza")
    if not due:
        return None
    names = [WORDS(f"vaccines.names.{group}") for group in due]
    return Recommendation(
        topic="vaccinations-due",
        summary=WORDS("vaccines.summary", due=", ".join(names)),
        advice=WORDS("vaccines.advice"),
        evidence=statements("a1f-2016.vaccines", "eu-smpc.hepatitis"),
        reasons=reasons(
            genotype_reason(facts), Reason(WORDS("vaccines.none_of", due=", ".join(names)))
        ),
        missing=tuple(WORDS("vaccines.missing", vaccine=name) for name in names),
        actions=tuple(actions.vaccinate(name) for name in names),
    )
