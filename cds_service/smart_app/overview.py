"""What the SMART app shows, from the same facts and recommendations as the cards.

Nothing here decides anything clinical: the mapping (``fhir_mappings``) reads the record,
the rules (``hooks``) give the recommendations and the checklist exactly as at chart-open,
``hooks.trajectory`` gives the FEV1 decline. This module only arranges them into rows
for the plots and their tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import hooks
from fhir_mappings import PatientFacts, TherapyPeriod, map_patient, therapy_periods
from fhir_mappings.aat import constants
from hooks import Policy, Recommendation
from hooks.knowledge import guidelines
from hooks.policy import Fev1Window
from hooks.trajectory import Decline, NoDecline, fev1_decline

from ..cards import reason_text


@dataclass(frozen=True, slots=True)
class Point:
    when: date
    value: float
    shown: str  # the value as reported, with its unit or comparator
    note: str = ""


@dataclass(slots=True)
class Overview:
    """Everything on the page, in the order it is shown."""

    as_of: date
    name: str
    born: str
    genotype: str
    genotype_basis: str
    aat: list[Point] = field(default_factory=list)
    protective_umol_l: float = 0.0
    fev1_percent: list[Point] = field(default_factory=list)
    fev1_volume: list[Point] = field(default_factory=list)
    decline: Decline | NoDecline | None = None
    window: Fev1Window | None = None
    periods: list[TherapyPeriod] = field(default_factory=list)
    weights: list[Point] = field(default_factory=list)
    igg: list[Point] = field(default_factory=list)
    on_replacement: bool = False
    recommendations: list[dict[str, Any]] = field(default_factory=list)
    checklist: list[dict[str, Any]] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)


def build(
    resources: list[dict[str, Any]], as_of: date, policy: Policy, incomplete: Iterable[str] = ()
) -> Overview:
    facts = map_patient(resources, as_of, incomplete, policy.lookbacks)
    recommendations = hooks.evaluate("patient-view", facts, policy, frozenset())
    periods = therapy_periods(resources, as_of)
    view = Overview(
        as_of=as_of,
        name=_name(resources),
        born=facts.birth_date.isoformat() if facts.birth_date else "not recorded",
        genotype=facts.genotype.label if facts.genotype else "not on record",
        genotype_basis=facts.genotype.basis if facts.genotype else "",
        protective_umol_l=constants().protective_umol_l,
        decline=fev1_decline(facts),
        window=policy.window,
        periods=periods,
        on_replacement=any(p.product == "immune_globulin" for p in periods)
        or any(o.product == "immune_globulin" and o.state == "active" for o in facts.orders),
        unread=[note.text for note in facts.notes],
    )
    view.aat = [
        Point(level.source.date, level.umol_l, f"{level.reported} ({level.umol_l:.1f} µmol/L)")
        for level in reversed(facts.aat_levels)
        if level.source.date
    ]
    view.fev1_percent = _series(facts, "fev1_percent_predicted", "%")
    view.fev1_volume = _series(facts, "fev1_volume", "L")
    view.weights = _series(facts, "body_weight", "kg")
    view.igg = _series(facts, "igg", "mg/dL")
    for rec in recommendations:
        if rec.items:
            view.checklist = [_recommendation(item) for item in rec.items]
        else:
            view.recommendations.append(_recommendation(rec))
    return view


def _series(facts: PatientFacts, concept: str, unit: str) -> list[Point]:
    points = []
    for m in reversed(facts.series(concept)):
        if m.source.date is None:
            continue
        shown = f"{m.comparator or ''}{m.value:g} {unit}"
        note = "post-bronchodilator" if m.post_bronchodilator else ""
        if m.post_bronchodilator is False:
            note = "pre-bronchodilator"
        if m.derived:
            note = ", ".join(filter(None, [note, m.derived]))
        points.append(Point(m.source.date, m.value, shown, note))
    return points


def _recommendation(rec: Recommendation) -> dict[str, Any]:
    sources = []
    for evidence in rec.evidence:
        guideline = guidelines()[evidence.guideline]
        sources.append({"label": guideline.label, "url": guideline.url})
    return {
        "topic": rec.topic,
        "indicator": rec.indicator,
        "summary": rec.summary,
        "advice": rec.advice,
        "reasons": [reason_text(reason) for reason in rec.reasons],
        "missing": list(rec.missing),
        # Every step the rule offers: a card shows at most a few buttons, the app all of them.
        "steps": list(dict.fromkeys(action.label for action in rec.actions)),
        "sources": sources,
    }


def _name(resources: list[dict[str, Any]]) -> str:
    for resource in resources:
        if resource.get("resourceType") != "Patient":
            continue
        for name in resource.get("name") or []:
            if isinstance(name, dict):
                given = " ".join(g for g in name.get("given") or [] if isinstance(g, str))
                text = name.get("text") or f"{given} {name.get('family') or ''}".strip()
                if text:
                    return str(text)
    return "(no name on record)"
