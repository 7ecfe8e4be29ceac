"""What needs the whole record: the genotype to believe, discordance, stale data.

Precedence (clinical-knowledge.md 6): DNA genotype over phenotype over a level-inferred
class; disagreement is noted, never silently resolved.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta

from . import aat
from .facts import DataNote, Discordance, Genotype, PatientFacts, Source
from .observations import AlleleEvidence


@dataclass(frozen=True, slots=True)
class Lookbacks:
    """Days after which a result is stale (clinical-knowledge.md 6; configurable)."""

    spirometry: int = 365
    smoking: int = 365
    weight: int = 90
    igg: int = 182
    liver_tests: int = 365


def resolve_genotype(facts: PatientFacts, evidence: AlleleEvidence) -> None:
    facts.genotype = (
        _from_dna(facts, evidence) or _newest(evidence.phenotype, "phenotype") or _from_level(facts)
    )
    if facts.genotype and facts.genotype.basis == "phenotype" and facts.liver_transplant:
        facts.notes.append(DataNote("the phenotype after a liver transplant reflects the donor"))
    _note_discordance(facts)


def _newest(found: list[tuple[tuple[str, ...], Source, str]], basis: str) -> Genotype | None:
    if not found:
        return None
    alleles, source, text = max(found, key=lambda item: item[1].date or date.min)
    return Genotype(alleles, aat.severity(alleles), basis, (source,), text)


def _from_dna(facts: PatientFacts, evidence: AlleleEvidence) -> Genotype | None:
    named = _newest(evidence.dna, "dna")
    if named or not evidence.variants:
        return named
    alleles: list[str] = []
    for allele, homozygous, _ in evidence.variants:
        alleles += [allele, allele] if homozygous else [allele]
    sources = tuple(source for *_, source in evidence.variants)
    if len(alleles) == 1:
        alleles.append("M")
        facts.notes.append(
            DataNote(
                "one SERPINA1 variant reported: the other allele is taken as M (targeted tests "
                "detect only S and Z; rare and null alleles are missed)",
                sources[0],
            )
        )
    if len(alleles) != 2:
        facts.notes.append(
            DataNote("SERPINA1 variants do not add up to two alleles; not used", sources[0])
        )
        return None
    pair = tuple(sorted(alleles))
    return Genotype(pair, aat.severity(pair), "dna", sources, "from variant results")


def _from_level(facts: PatientFacts) -> Genotype | None:
    level = facts.latest_aat
    if level is None or not level.below(aat.constants().protective_umol_l):
        return None
    return Genotype((), "severe", "level", (level.source,), f"AAT {level.reported}")


def _note_discordance(facts: PatientFacts) -> None:
    """Compare the allele result with the latest level, once, as a fact (and a note)."""
    genotype, level = facts.genotype, facts.latest_aat
    if genotype is None or level is None or genotype.basis == "level":
        return
    c = aat.constants()
    if genotype.severity not in ("severe", "borderline") and level.below(c.protective_umol_l):
        facts.discordance = Discordance("level-too-low", genotype, level)
        facts.notes.append(
            DataNote(
                f"discordant: {genotype.label} but AAT {level.reported} is below "
                f"{c.protective_umol_l:g} umol/L (a null or rare allele may have been missed)",
                level.source,
            )
        )
    elif facts.liver_transplant is not None:
        return  # after a liver transplant the donor liver makes the AAT: a normal level fits
    elif genotype.severity == "severe" and level.below(c.zz_unexpectedly_normal_umol_l) is False:
        facts.discordance = Discordance("level-too-high", genotype, level)
        facts.notes.append(
            DataNote(
                f"discordant: {genotype.label} but AAT {level.reported} is not low "
                "(infusion before sampling, liver transplant or lab error?)",
                level.source,
            )
        )


def note_stale(facts: PatientFacts, lookbacks: Lookbacks) -> None:
    checks = (
        ("latest FEV1 % predicted", facts.latest("fev1_percent_predicted"), lookbacks.spirometry),
        ("latest body weight", facts.latest("body_weight"), lookbacks.weight),
        ("latest IgG", facts.latest("igg"), lookbacks.igg),
        ("latest ALT", facts.latest("alt"), lookbacks.liver_tests),
        ("smoking status", facts.smoking, lookbacks.smoking),
    )
    for label, fact, days in checks:
        if fact is None or fact.source.date is None:
            continue
        if fact.source.date < facts.as_of - timedelta(days=days):
            facts.notes.append(DataNote(f"{label} is older than {days} days", fact.source))


SPIROMETRY = ("fev1_percent_predicted", "fev1_fvc", "fev1_volume")


def choose_spirometry(facts: PatientFacts) -> None:
    """One rule for the value of a spirometry session (one day): when the session has a
    post-bronchodilator result, its pre-bronchodilator and unstated results are not used
    (post-bronchodilator values decide obstruction and eligibility). A result of the
    session that could not be read may be that post-bronchodilator value, so it withholds
    them too: they never stand in for what could not be read."""
    for concept in SPIROMETRY:
        values = facts.measurements.get(concept)
        if not values:
            continue
        unread = {n.source.date for n in facts.unreadable.get(UNREAD_KEY[concept], []) if n.source}
        post_days = {m.source.date for m in values if m.post_bronchodilator} | unread
        kept = [m for m in values if m.post_bronchodilator or m.source.date not in post_days]
        dropped = len(values) - len(kept)
        if dropped:
            facts.notes.append(
                DataNote(
                    f"{dropped} {concept.replace('_', ' ')} result(s) not used: the same "
                    "session has a post-bronchodilator value, or one that could not be read"
                )
            )
        facts.measurements[concept] = kept


# Where a spirometry concept's unreadable records are kept (observations.py SPIROMETRY).
UNREAD_KEY = {
    "fev1_percent_predicted": "spirometry",
    "fev1_volume": "spirometry",
    "fev1_fvc": "fev1_fvc",
}


def derive_fev1_percent(facts: PatientFacts) -> None:
    """FEV1 % predicted from a measured FEV1 and the predicted FEV1 (20147-5) of the same
    session, where the lab did not report the percentage itself."""
    predicted = facts.measurements.get("fev1_predicted", [])
    if not predicted:
        return
    percents = facts.measurements.setdefault("fev1_percent_predicted", [])
    have = {m.source.date for m in percents}
    for volume in facts.measurements.get("fev1_volume", []):
        day = volume.source.date
        match = next((p for p in predicted if p.source.date == day and p.value > 0), None)
        if day in have or match is None:
            continue
        value = round(100 * volume.value / match.value, 1)
        how = f"computed from FEV1 {volume.value:g} L / predicted {match.value:g} L"
        percents.append(
            replace(volume, concept="fev1_percent_predicted", value=value, unit="%", derived=how)
        )
        have.add(day)
    percents.sort(key=lambda m: m.source.date or date.min, reverse=True)
