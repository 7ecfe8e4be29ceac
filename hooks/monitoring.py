"""Monitoring: yearly spirometry, liver surveillance, vaccinations.

Sources: ERS-series review 2022 (annual post-bronchodilator spirometry and DLCO);
Hamesch & Strnad 2020 (liver); A1F 2016 and the EU SmPC (vaccines).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import cache

from fhir_mappings import PatientFacts

from . import actions, assessment
from .context import Context
from .knowledge import Words, listed, read_json, statements
from .policy import Policy
from .reasons import finding_reason, genotype_reason, measurement_reason, reasons, unread_reason
from .recommendation import Reason, Recommendation

WORDS = Words("hooks", "words", "monitoring.json")


def spirometry_due(ctx: Context) -> Recommendation | None:
    """When: severe or borderline AATD and no FEV1 within the spirometry lookback (ERS
    review 2022; CK row 24). Then: post-bronchodilator spirometry with DLCO."""
    facts = ctx.facts
    if assessment.severity(facts) not in assessment.DEFICIENT:
        return None
    days = ctx.policy.lookbacks.spirometry
    latest = [facts.latest(c) for c in ("fev1_percent_predicted", "fev1_volume")]
    if any(assessment.recent(m, days, facts) for m in latest):
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
    z_risk = (
        genotype is not None
        and "Z" in genotype.alleles
        and genotype.severity in assessment.DEFICIENT
    )
    disease = facts.liver_finding()
    if not (z_risk or (disease and assessment.abnormal_allele(facts))):
        return None
    days = ctx.policy.lookbacks.liver_tests
    latest = [m for m in (facts.latest("alt"), facts.latest("ast")) if m is not None]
    recent = [m for m in latest if assessment.recent(m, days, facts)]
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
    label = assessment.who(facts)
    return Recommendation(
        topic="liver-monitoring",
        summary=WORDS("liver.summary_disease" if disease or high else "liver.summary", who=label),
        advice=advice,
        evidence=statements("liver-assessment-2020.monitoring"),
        reasons=reasons(genotype_reason(facts), finding_reason("liver disease", disease), *shown),
        # Tests drawn within their lookback are not ordered again: imaging and elastography.
        actions=actions.LIVER_IMAGING if recent else actions.LIVER_WORKUP,
    )


# Who a row of data/vaccines.json is for: each "who" value, declared once.
ELIGIBLE: dict[str, Callable[[PatientFacts], bool]] = {
    "aatd": lambda facts: True,
    "a1pi_or_liver_disease": lambda facts: bool(
        assessment.augmentation_orders(facts) or facts.liver_disease
    ),
}


@dataclass(frozen=True, slots=True)
class Vaccine:
    """A row of data/vaccines.json: a vaccine group, who it is for, how long a dose counts."""

    group: str
    who: str
    every_days: int | None
    name: str
    against: str
    statement: str


@cache
def vaccine_schedule() -> tuple[Vaccine, ...]:
    rows = read_json("data", "vaccines.json").items()
    return tuple(
        Vaccine(group, e["who"], e["every_days"], e["name"], e["against"], e["statement"])
        for group, e in rows
    )


def _schedule_advice() -> str:
    """The whole schedule in one sentence, from the rows: who each group is for."""
    by_who: dict[str, list[str]] = {}
    for vaccine in vaccine_schedule():
        by_who.setdefault(vaccine.who, []).append(vaccine.against)
    parts = [
        WORDS(f"vaccines.who.{who}", vaccines=listed(tuple(names), "and"))
        for who, names in by_who.items()
    ]
    return WORDS("vaccines.advice", schedule="; against ".join(parts))


def vaccinations_due(ctx: Context) -> Recommendation | None:
    """When: AATD and a vaccine of the schedule (data/vaccines.json: influenza within a
    year, pneumococcal and COVID-19 once, hepatitis A and B on A1PI or with liver disease;
    A1F 2016, EU SmPC, CK row 41) is not on record for an eligible patient. Then: the
    vaccines due."""
    facts = ctx.facts
    if not assessment.has_aatd(facts):
        return None
    due = [v for v in vaccine_schedule() if ELIGIBLE[v.who](facts) and not _covered(facts, v)]
    if not due:
        return None
    names = [v.name for v in due]
    return Recommendation(
        topic="vaccinations-due",
        summary=WORDS("vaccines.summary", due=", ".join(names)),
        advice=_schedule_advice(),
        evidence=statements(*dict.fromkeys(v.statement for v in vaccine_schedule())),
        reasons=reasons(
            genotype_reason(facts),
            Reason(WORDS("vaccines.none_of", due=", ".join(names))),
            unread_reason(facts, "immunization"),  # a record unread may be one of them
        ),
        missing=tuple(WORDS("vaccines.missing", vaccine=name) for name in names),
        actions=tuple(actions.vaccinate(name) for name in names),
        # In the checklist, one order for every vaccine due (one button per item).
        step=actions.vaccinate(", ".join(names)) if len(names) > 1 else None,
    )


def reminder_intervals(policy: Policy) -> dict[str, int]:
    """How often each recurring reminder falls due: an override never hides one longer
    (vaccines: the shortest interval of the schedule; liver tests and spirometry: their
    lookbacks)."""
    every = [v.every_days for v in vaccine_schedule() if v.every_days is not None]
    intervals = {
        "liver-monitoring": policy.lookbacks.liver_tests,
        "spirometry-due": policy.lookbacks.spirometry,
    }
    return intervals | ({"vaccinations-due": min(every)} if every else {})


def _covered(facts: PatientFacts, vaccine: Vaccine) -> bool:
    """A dose on record, within ``every_days`` when the row has one."""
    given = facts.immunizations.get(vaccine.group, [])
    if vaccine.every_days is None:
        return bool(given)
    since = facts.as_of - timedelta(days=vaccine.every_days)
    return any(i.source.date and i.source.date >= since for i in given)
