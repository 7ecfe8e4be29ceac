"""Recommendations -> CDS Hooks cards a clinician reads in seconds.

Above a horizontal rule, what decides: the facts used, each once, in clinical words with
their dates (never a FHIR id), what is missing, and the advice. Below it, the guideline
statements behind the card. The records each fact rests on go to the machine-readable
``urn:alpha1-cds:evidence`` extension (for the SMART app, the log and the integrator).
The summary says the action; the suggestions are the action. Optional members are left
out rather than sent empty.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import date
from typing import Any

from hooks import Necessity, Reason, Recommendation
from hooks.knowledge import (
    OVERRIDE_REASON_SYSTEM,
    TOPIC_SYSTEM,
    guidelines,
    override_reasons,
    topics,
)

from .suggestions import Resources, suggestion

SUMMARY_LIMIT = 139  # CDS Hooks: "<140-character summary"
# Buttons a card offers at most: the rules list their actions most important first, and
# what does not fit is listed in the SMART app ("ask for little", Bates et al. 2003).
SUGGESTION_LIMIT = 5
CHECKLIST_EXTENSION = "urn:alpha1-cds:checklist"
EVIDENCE_EXTENSION = "urn:alpha1-cds:evidence"
RULE = "---"  # Markdown horizontal rule: what decides above, what supports below


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
        "overrideReasons": _override_reasons(rec),
        "links": _links(rec) + _app_link(rec, app_url),
    }
    evidence = evidence_of(rec)
    if evidence:
        card["extension"] = {EVIDENCE_EXTENSION: evidence}
    if rec.items:
        return _checklist(card, rec, patient_id, resources)
    built = (suggestion(a, patient_id, rec.summary, resources) for a in rec.actions)
    suggestions = [s for s in built if s is not None][:SUGGESTION_LIMIT]
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "any"
    return card


def _checklist(
    card: dict[str, Any], rec: Recommendation, patient_id: str, resources: Resources
) -> dict[str, Any]:
    """The care checklist: one line per item, at most one suggestion per item (the order
    that settles it), and the items for machines in the ``urn:alpha1-cds:checklist``
    extension (DESIGN)."""
    listed: list[dict[str, Any]] = []
    suggestions: list[dict[str, Any]] = []
    for item in rec.items:
        entry: dict[str, Any] = {
            "topic": item.topic,
            "summary": _summary(item.summary),
            "overrideReasons": _override_reasons(item),
        }
        made = _settling(item, patient_id, resources)
        if made is not None and len(suggestions) < SUGGESTION_LIMIT:
            suggestions.append(made)
            entry["suggestions"] = [made["uuid"]]  # never an empty list: none, or one
        listed.append(entry)
    card["detail"] = checklist_detail(rec)
    card.setdefault("extension", {})[CHECKLIST_EXTENSION] = listed
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "any"
    return card


def _override_reasons(rec: Recommendation) -> list[dict[str, str]]:
    """The reasons that fit the card's topic (``hooks/data/override_reasons.json``); a
    checklist offers those of its items, each once, in the file's order."""
    topics = {item.topic for item in rec.items} or {rec.topic}
    fitting = {code for topic in topics for code in override_reasons(topic)}
    return [
        {"system": OVERRIDE_REASON_SYSTEM, "code": code, "display": display}
        for code, display in override_reasons().items()
        if code in fitting
    ]


def _settling(item: Recommendation, patient_id: str, resources: Resources) -> dict[str, Any] | None:
    """The first of the item's settling actions that builds into a suggestion."""
    for action in item.settling_actions:
        made = suggestion(action, patient_id, item.summary, resources)
        if made is not None:
            return made
    return None


def checklist_detail(rec: Recommendation) -> str:
    """Markdown: the fact every item shares once at the top, then one line per item (what,
    and why in its own facts with their dates, and what it still needs); below the rule
    the guideline statements behind them all."""
    shared = _shared(rec.items)
    parts = [_facts_line(shared)] if shared else []
    for item in rec.items:
        own = [r for r in item.reasons if r not in shared]
        why = " · ".join([*(reason_text(r) for r in own), *(f"needs {m}" for m in item.missing)])
        parts.append(f"- **{item.summary}**" + (f": {why}" if why else ""))
    return "\n".join([*parts, "", RULE, "", *_below(rec)])


def detail(rec: Recommendation) -> str:
    """Markdown: above the rule the facts and what is missing (the summary says the action,
    the suggestions are the action); below it the advice, the medical-necessity statement
    (order hooks) and the guideline statements."""
    parts = [_facts_line(rec.reasons)] if rec.reasons else []
    if rec.missing:
        parts += ["", f"**Missing:** {'; '.join(rec.missing)}"]
    parts += ["", RULE, "", rec.advice, ""]
    if rec.necessity is not None:
        parts += [*_necessity(rec.necessity), ""]
    return "\n".join([*parts, *_below(rec)]).lstrip("\n")


def _facts_line(reasons: Iterable[Reason]) -> str:
    return " · ".join(reason_text(r) for r in reasons)


def _shared(items: Iterable[Recommendation]) -> tuple[Reason, ...]:
    """The facts every item cites (the genotype, usually): said once, at the top."""
    lists = [item.reasons for item in items]
    if len(lists) < 2:
        return ()
    return tuple(r for r in lists[0] if all(r in other for other in lists[1:]))


def _below(rec: Recommendation) -> list[str]:
    """Below the rule: the guideline statements, each source named once."""
    lines = [
        f"- *{guidelines()[e.guideline].label}* ({e.strength}): {e.statement}" for e in rec.evidence
    ]
    return ["**What the guidelines say**", *lines]


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


def reason_text(reason: Reason) -> str:
    """A fact as a clinician reads it: its words and the date of its record, never the
    record's id (that goes to the evidence extension)."""
    when = reason.source.date if reason.source is not None else None
    return f"{reason.text}, {clinical_date(when)}" if when else reason.text


def clinical_date(when: date) -> str:
    """ "14 May 2025": unambiguous in every locale, unlike 05/14/2025."""
    return f"{when.day} {when:%b %Y}"


def evidence_of(rec: Recommendation) -> list[dict[str, str]]:
    """Each fact with the record it rests on, once: the card's reasons, its medical
    necessity's, and its checklist items'."""
    reasons = [
        *rec.reasons,
        *(c.fact for c in (rec.necessity.criteria if rec.necessity else ())),
        *(r for item in rec.items for r in item.reasons),
    ]
    found: dict[tuple[str, str], dict[str, str]] = {}
    for reason in reasons:
        if reason.source is None:
            continue
        entry = {"fact": reason.text, "reference": reason.source.reference}
        if reason.source.date is not None:
            entry["date"] = reason.source.date.isoformat()
        found.setdefault((reason.text, reason.source.reference), entry)
    return list(found.values())


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
