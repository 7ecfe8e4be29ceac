"""The worklists: each a category of patients AATD care is missing, decided by the cards the
service gives the same patient on the same date (``pipeline.evaluate``, patient-view, no
overrides): a patient is on a list exactly when the chart-open would show its card.

Each row names the patient (clinicians act on it: see the output's README), the card's
summary, and the decisive facts with the dates they were recorded (the card's
``urn:alpha1-cds:evidence``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from hooks.assessment import augmentation_orders
from hooks.checklist import TOPIC as CHECKLIST

from ..cards import CHECKLIST_EXTENSION, EVIDENCE_EXTENSION
from ..pipeline import Evaluation, evaluate

MONITORING = ("liver-monitoring", "spirometry-due")


@dataclass(frozen=True, slots=True)
class Category:
    name: str
    title: str
    # The card topics that put a patient on the list (any of them), and a further test of
    # the patient's facts where the topic alone does not say it.
    topics: tuple[str, ...]
    also: Callable[[Evaluation], bool] = lambda _: True


def _on_a1pi(result: Evaluation) -> bool:
    explanation = result.explanation
    return explanation is not None and bool(augmentation_orders(explanation.context.facts))


CATEGORIES = (
    Category("testing-recommended", "Test for AATD (never tested)", ("aatd-testing-recommended",)),
    Category(
        "genotype-recommended", "Genotype or phenotype after a low level", ("genotype-recommended",)
    ),
    Category(
        "candidate-not-on-therapy",
        "Augmentation candidate, not on therapy",
        ("augmentation-candidate",),
        lambda result: not _on_a1pi(result),
    ),
    Category(
        "workup-incomplete",
        "Severe deficiency, augmentation work-up incomplete",
        ("augmentation-workup-incomplete",),
        lambda result: not _on_a1pi(result),
    ),
    Category(
        "therapy-monitoring",
        "On A1PI: monitoring overdue or dose off label",
        ("augmentation-dose-check", *MONITORING),
        _on_a1pi,
    ),
    Category("results-discordant", "Level and genotype disagree", ("results-discordant",)),
    Category("family-testing", "Relatives never offered testing", ("family-testing",)),
)


@dataclass
class Screened:
    """One patient's place on the lists, and what the report counts."""

    patient: str
    rows: dict[str, dict[str, str]] = field(default_factory=dict)  # category -> row
    age: int | None = None
    copd: bool = False
    tested: bool = False
    first_copd_year: int | None = None
    deceased: bool = False


def screen_patient(patient: str, resources: list[dict[str, Any]], as_of: date) -> Screened:
    result = evaluate("patient-view", resources, patient, as_of=as_of)
    cards = _cards_by_topic(result.response["cards"])
    screened = Screened(patient)
    for category in CATEGORIES:
        found = [cards[t] for t in category.topics if t in cards]
        if found and category.also(result):
            screened.rows[category.name] = _row(patient, category, found[0])
    facts = result.explanation.context.facts if result.explanation else None
    if facts is not None:
        screened.age = facts.age
        screened.deceased = facts.deceased is not None
        copd = [*facts.conditions.get("copd", []), *facts.conditions.get("emphysema", [])]
        screened.copd = bool(copd)
        dated = [c.source.date.year for c in copd if c.source.date is not None]
        screened.first_copd_year = min(dated) if dated else None
        screened.tested = bool(facts.aat_levels or facts.genotype or facts.aat_tests)
    return screened


def _cards_by_topic(cards: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Topic -> the card that carries it (a reminder: the checklist that lists it)."""
    found: dict[str, dict[str, Any]] = {}
    for card in cards:
        found[card["source"]["topic"]["code"]] = card
        for item in card.get("extension", {}).get(CHECKLIST_EXTENSION, []):
            found[item["topic"]] = {**card, "summary": item["summary"], "item": item["topic"]}
    found.pop(CHECKLIST, None)
    return found


def _row(patient: str, category: Category, card: dict[str, Any]) -> dict[str, str]:
    evidence = card.get("extension", {}).get(EVIDENCE_EXTENSION, [])
    facts = "; ".join(
        f"{e['fact']} ({e['date']})" if e.get("date") else e["fact"] for e in evidence
    )
    recorded = max((e["date"] for e in evidence if e.get("date")), default="")
    return {
        "patient": f"Patient/{patient}",
        "category": category.name,
        "summary": card["summary"],
        "facts": facts,
        "latest_fact_date": recorded,
    }
