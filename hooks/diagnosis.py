"""Testing and diagnosis: who to test, genotype after a level, discordance, relatives.

Sources: A1F 2016, ATS/ERS 2003 and GOLD (who to test); laboratory guidance (a level
alone cannot classify alleles; discordance). docs/clinical-basis.md, "Testing".
"""

from __future__ import annotations

from datetime import date

from fhir_mappings import PatientFacts

from . import actions, assessment
from .context import Context
from .knowledge import Words, statements, thresholds
from .reasons import aat_reason, finding_reason, genotype_reason, order_reasons, reasons
from .recommendation import Reason, Recommendation, SuggestedAction

WORDS = Words("hooks", "words", "diagnosis.json")
TESTING = ("a1f-2016.testing", "gold.screening", "ats-ers-2003.testing")
LAB = "lab-guidance.alleles"

# Conditions that on their own warrant testing (asthma only with persistent obstruction).
TESTING_TRIGGERS = (
    "copd",
    "emphysema",
    "bronchiectasis",
    "chronic_liver_disease",
    "panniculitis",
    "gpa",
)


def testing_recommended(ctx: Context) -> Recommendation | None:
    """When: a testing indication (COPD, emphysema, asthma with persistent obstruction,
    bronchiectasis, chronic liver disease, panniculitis, GPA, a relative with AATD) and no
    AAT level, phenotype, genotype or AATD diagnosis on record (A1F 2016, ATS/ERS 2003,
    GOLD). Then: test once with a level plus phenotype or genotype.

    Silent when the Observation or Condition lists may be incomplete: "no result on
    record" must never rest on a partial record.
    """
    facts = ctx.facts
    if not facts.complete("Observation", "Condition", "FamilyMemberHistory"):
        return None
    if facts.aat_tests:
        return None
    if facts.has_condition("aatd"):
        return _document_diagnosis(ctx)
    found = _testing_reasons(ctx)
    if not found:
        return None
    first = found[0].text.split(":")[0]
    return Recommendation(
        topic="aatd-testing-recommended",
        summary=WORDS("testing.summary", first=first),
        advice=WORDS("testing.advice"),
        evidence=statements(*TESTING),
        reasons=(*found, Reason(WORDS("testing.nothing_on_record"))),
        actions=(actions.AAT_LEVEL, actions.AAT_PHENOTYPE),
    )


def _document_diagnosis(ctx: Context) -> Recommendation:
    """AATD on the problem list but no level, phenotype or genotype on record: the results
    are needed for eligibility, family testing and payer approval (A1F 2016; labels)."""
    finding = ctx.facts.conditions["aatd"][0]
    return Recommendation(
        topic="aatd-testing-recommended",
        summary=WORDS("document.summary"),
        advice=WORDS("document.advice"),
        evidence=statements(TESTING[0], LAB),
        reasons=reasons(finding_reason("AATD", finding), Reason(WORDS("document.none"))),
        actions=(actions.AAT_LEVEL, actions.AAT_PHENOTYPE),
    )


def _testing_reasons(ctx: Context) -> list[Reason]:
    facts = ctx.facts
    found = [
        finding_reason(WORDS(f"triggers.{concept}"), facts.conditions[concept][0])
        for concept in TESTING_TRIGGERS
        if facts.has_condition(concept)
    ]
    found.extend(_asthma_with_obstruction(ctx))
    for finding in facts.family_history.get("aatd", [])[:1]:
        found.append(Reason(WORDS("testing.relative", text=finding.text), finding.source))
    return [r for r in found if r is not None]


def _asthma_with_obstruction(ctx: Context) -> list[Reason | None]:
    """Asthma counts only with persistent obstruction: latest FEV1/FVC below the cut-off."""
    facts = ctx.facts
    if not facts.has_condition("asthma"):
        return []
    ratio = facts.latest("fev1_fvc")
    if ratio is None or ratio.value >= thresholds().fev1_fvc_obstruction:
        return []
    return [
        finding_reason(WORDS("triggers.asthma"), facts.conditions["asthma"][0]),
        Reason(WORDS("testing.ratio", ratio=ratio.value), ratio.source),
    ]


def genotype_recommended(ctx: Context) -> Recommendation | None:
    """When: the latest AAT level is below normal or in the grey zone and no phenotype or
    genotype is on record or pending (CK row 20; lab guidance). Then: order a phenotype."""
    facts, policy = ctx.facts, ctx.policy
    if facts.genotype is not None and facts.genotype.basis != "level":
        return None
    if facts.unreadable.get("genotype"):
        return _unreadable_alleles(ctx)
    if any(t.pending and t.concept != "aat_level" for t in facts.aat_tests):
        return None
    level = facts.latest_aat
    if level is None:
        return _flagged_low(ctx) if facts.aat_flagged_low else None
    low, high = policy.aat_grey_zone_mg_dl
    below = level.below(thresholds().aat_below_normal_umol_l)
    grey = level.comparator is None and low <= level.mg_dl <= high
    if not (below or grey):
        return None
    why = WORDS("genotype.grey") if grey else WORDS("genotype.below")
    return Recommendation(
        topic="genotype-recommended",
        summary=WORDS("genotype.summary", reported=level.reported, why=why),
        advice=WORDS("genotype.advice", low=low, high=high),
        evidence=statements(LAB, TESTING[0]),
        reasons=reasons(aat_reason(facts), Reason(WORDS("genotype.no_alleles"))),
        actions=(actions.AAT_PHENOTYPE,),
    )


def _unreadable_alleles(ctx: Context) -> Recommendation:
    """An allele result is on record but could not be read: review it, order nothing new."""
    unread = ctx.facts.unread("genotype")
    source = unread.source if unread else None
    return Recommendation(
        topic="genotype-recommended",
        summary=WORDS("genotype.unreadable.summary"),
        advice=WORDS("genotype.unreadable.advice"),
        evidence=statements(LAB),
        reasons=reasons(Reason(WORDS("genotype.unreadable.fact"), source), aat_reason(ctx.facts)),
    )


def _flagged_low(ctx: Context) -> Recommendation:
    """A level reported only as low (no number): the alleles are still needed."""
    source = ctx.facts.aat_flagged_low
    return Recommendation(
        topic="genotype-recommended",
        summary=WORDS("genotype.flagged_low.summary"),
        advice=WORDS(
            "genotype.advice",
            low=ctx.policy.aat_grey_zone_mg_dl[0],
            high=ctx.policy.aat_grey_zone_mg_dl[1],
        ),
        evidence=statements(LAB, TESTING[0]),
        reasons=(
            Reason(WORDS("genotype.flagged_low.fact"), source),
            Reason(WORDS("genotype.no_alleles")),
        ),
        actions=(actions.AAT_PHENOTYPE,),
    )


def results_discordant(ctx: Context) -> Recommendation | None:
    """When: the allele result and the level disagree, as ``fhir_mappings`` found once
    (CK rows 21-22). Then: sequencing for a level too low for the alleles; for a severe
    genotype with a level that is not low, look for an infusion or a liver transplant and
    repeat the level as a trough."""
    facts = ctx.facts
    discordance = facts.discordance
    if discordance is None:
        return None
    values = {"label": discordance.genotype.label, "reported": discordance.level.reported}
    explain: tuple[Reason, ...] = ()
    action: SuggestedAction
    if discordance.kind == "level-too-low":
        key, action = "discordant_low", actions.SEQUENCING
    else:
        key, action = "discordant_high", actions.AAT_TROUGH
        explain = (
            *order_reasons(assessment.augmentation_orders(facts)),
            *reasons(finding_reason("liver transplant", facts.liver_transplant)),
        )
    return Recommendation(
        topic="results-discordant",
        summary=WORDS(f"{key}.summary", **values),
        advice=WORDS(f"{key}.advice"),
        evidence=statements(LAB),
        reasons=(*reasons(genotype_reason(facts), aat_reason(facts)), *explain),
        actions=(action,),
    )


def family_testing(ctx: Context) -> Recommendation | None:
    """When: an abnormal allele was found (CK row 19; A1F 2016), no relative's AATD result
    is documented (FamilyMemberHistory) and no genetic counselling is recorded since the
    allele result. Then: genetic counselling and testing for first-degree relatives and the
    wider family."""
    facts = ctx.facts
    if not assessment.abnormal_allele(facts) or facts.genotype is None:
        return None
    relatives = [
        *facts.family_history.get("aatd", []),
        *facts.family_history.get("aatd_carrier", []),
    ]
    counselled, unsettled = _counselling(facts)
    if (relatives or counselled) and facts.deceased is None:
        return None  # relatives' results or counselling on record: the cascade has started
    death = Reason(WORDS("family.deceased", when=facts.deceased)) if facts.deceased else None
    return Recommendation(
        topic="family-testing",
        summary=WORDS("family.summary", label=facts.genotype.label),
        advice=WORDS("family.advice"),
        evidence=statements("a1f-2016.family"),
        reasons=reasons(genotype_reason(facts), unsettled, death),
        actions=(actions.GENETIC_COUNSELLING,),
    )


def _counselling(facts: PatientFacts) -> tuple[bool, Reason | None]:
    """Whether a completed genetic counselling (Procedure) dated on or after the allele
    result is on record: the family question was then put to the patient. Counselling
    before the result (pre-test) or without a date does not settle it, and the card says
    so; with the result's date unknown, a dated counselling does."""
    sessions = facts.procedures.get("genetic_counselling", [])
    if facts.genotype is None or not sessions:
        return False, None
    since = min((s.date for s in facts.genotype.sources if s.date is not None), default=None)
    if any(c.source.date and (since is None or c.source.date >= since) for c in sessions):
        return True, None
    dated = [c for c in sessions if c.source.date]
    if dated:
        latest = max(dated, key=lambda c: c.source.date or date.min)
        return False, Reason(WORDS("family.counselling_earlier"), latest.source)
    return False, Reason(WORDS("family.counselling_undated"), sessions[0].source)
