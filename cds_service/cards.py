"""Recommendations -> CDS Hooks cards a clinician can trust at a glance.

A card says what to do (summary), why (the facts used, with values, dates and resources),
what the guideline says and who says it (source with url and topic), what is missing, and
offers one-click suggestions. Optional members are left out rather than sent empty.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from hooks import Necessity, Recommendation
from hooks.knowledge import (
    OVERRIDE_REASON_SYSTEM,
    TOPIC_SYSTEM,
    guidelines,
    override_reasons,
    topics,
)

from .suggestions import Resources, suggestion

SUMMARY_LIMIT = 139  # CDS Hooks: "<140-character summary"


def render_response(
    recommendations: Iterable[Recommendation],
    patient_id: str,
    resources: Resources,
    app_url: str | None = None,
) -> dict[str, Any]:
    """``app_url``: the SMART app's launch URL, linked from every card (None: no link)."""
    return {"cards": [render_card(rec, patient_id, resources, app_url) for rec in recommendations]}


def render_card(
    rec: Recommendation, patient_id: str, resources: Resources, app_url: str | None = None
) -> dict[str, Any]:
    primary = guidelines()[rec.evidence[0].guideline]
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": _summary(rec.summary),
        "indicator": rec.indicator,
        "detail": detail(rec),
        "source": {
            "label": primary.label,
            "url": primary.url,
            "topic": {
                "system": TOPIC_SYSTEM,
                "code": rec.topic,
                "display": topics()[rec.topic].display,
            },
        },
        "overrideReasons": [
            {"system": OVERRIDE_REASON_SYSTEM, "code": code, "display": display}
            for code, display in override_reasons().items()
        ],
        "links": _links(rec) + _app_link(rec, app_url),
    }
    if rec.items:
        return _checklist(card, rec, patient_id, resources)
    suggestions = [suggestion(a, patient_id, rec.summary, resources) for a in rec.actions]
    if any(suggestions):
        card["suggestions"] = [s for s in suggestions if s]
        card["selectionBehavior"] = "any"
    return card


CHECKLIST_EXTENSION = "urn:alpha1-cds:checklist"


def _checklist(
    card: dict[str, Any], rec: Recommendation, patient_id: str, resources: Resources
) -> dict[str, Any]:
    """The care checklist: a checklist detail, each item's suggestions, and the items for
    machines in the ``urn:alpha1-cds:checklist`` extension (DESIGN)."""
    listed, suggestions = [], []
    for item in rec.items:
        built = [suggestion(a, patient_id, item.summary, resources) for a in item.actions]
        made = [s for s in built if s is not None]
        suggestions += made
        entry: dict[str, Any] = {"topic": item.topic, "summary": _summary(item.summary)}
        if made:  # CDS Hooks allows no empty list: an item with nothing to order lists none
            entry["suggestions"] = [s["uuid"] for s in made]
        listed.append(entry)
    card["detail"] = checklist_detail(rec)
    card["extension"] = {CHECKLIST_EXTENSION: listed}
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "any"
    return card


def checklist_detail(rec: Recommendation) -> str:
    """Markdown: one unchecked box per reminder (what), its facts (why, since when), what
    it still needs; then the guideline statements behind them all."""
    parts = ["**Due**"]
    for item in rec.items:
        parts.append(f"- [ ] **{item.summary}**")
        parts += [f"    - {reason_text(r)}" for r in item.reasons]
        parts += [f"    - missing: {m}" for m in item.missing]
    parts += ["", "**What the guidelines say**", rec.advice, ""]
    for evidence in rec.evidence:
        label = guidelines()[evidence.guideline].label
        parts.append(f"- *{label}* ({evidence.strength}): {evidence.statement}")
    return "\n".join(parts)


def detail(rec: Recommendation) -> str:
    """Markdown: Why, What the guideline says, What is missing."""
    parts = ["**Why**", *(f"- {reason_text(r)}" for r in rec.reasons)]
    if rec.necessity is not None:
        parts += ["", *_necessity(rec.necessity)]
    parts += ["", "**What the guideline says**", rec.advice, ""]
    for evidence in rec.evidence:
        label = guidelines()[evidence.guideline].label
        parts.append(f"- *{label}* ({evidence.strength}): {evidence.statement}")
    if rec.missing:
        parts += ["", "**What is missing**", *(f"- {item}" for item in rec.missing)]
    return "\n".join(parts)


def _necessity(necessity: Necessity) -> list[str]:
    """The medical-necessity statement a prior-authorization reviewer reads."""
    rows = [
        f"| {c.name} | {c.status} | {reason_text(c.fact).replace('|', '/')} |"
        for c in necessity.criteria
    ]
    return [
        f"**Medical necessity: {necessity.order}**",
        "",
        "| Criterion | Status | Fact |",
        "|---|---|---|",
        *rows,
        "",
        f"**Conclusion: {necessity.conclusion}**",
    ]


def reason_text(reason: Any) -> str:
    """A reason with the record it rests on (cards and the SMART app say it alike)."""
    return f"{reason.text} ({reason.source.cite()})" if reason.source else reason.text


def _summary(text: str) -> str:
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1].rstrip() + "…"


APP_LINK_LABEL = "AATD overview: levels, FEV1 course, therapy, what is due (SMART app)"


def _app_link(rec: Recommendation, app_url: str | None) -> list[dict[str, str]]:
    """CDS Hooks ``smart`` link: the EHR launches the app with this patient; ``appContext``
    names the card's topic so the app knows what it was opened about."""
    if app_url is None:
        return []
    return [{"label": APP_LINK_LABEL, "url": app_url, "type": "smart", "appContext": rec.topic}]


def _links(rec: Recommendation) -> list[dict[str, str]]:
    seen: dict[str, dict[str, str]] = {}
    for evidence in rec.evidence:
        guideline = guidelines()[evidence.guideline]
        seen.setdefault(
            guideline.url, {"label": guideline.label, "url": guideline.url, "type": "absolute"}
        )
    return list(seen.values())
