"""What a screen's worklists hold, and whether they agree with the hooks' own answer for
the same patient on the same date (``pipeline.evaluate``, patient-view): the check the
screen tests and ``python -m benchmarks.generated --check`` both make."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

from cds_service.pipeline import evaluate
from cds_service.screening.worklists import CATEGORIES

# Lists whose topic is necessary but not enough: the screen also reads whether the patient
# is on A1PI (a candidate already treated is not "not on therapy").
NARROWED = frozenset({"candidate-not-on-therapy", "workup-incomplete", "therapy-monitoring"})


def members(out: Path) -> dict[str, set[str]]:
    """Per category, the patient references its CSV lists."""
    found = {}
    for category in CATEGORIES:
        with (out / f"{category.name}.csv").open(encoding="utf-8") as handle:
            found[category.name] = {row["patient"] for row in csv.DictReader(handle)}
    return found


def card_topics(cards: Iterable[dict[str, Any]]) -> set[str]:
    """The topics cards present: each card's, and its checklist's items'."""
    found = set()
    for card in cards:
        found.add(card["source"]["topic"]["code"])
        for item in card.get("extension", {}).get("urn:alpha1-cds:checklist", []):
            found.add(item["topic"])
    return found


def categories_shown(topics: set[str]) -> set[str]:
    """The lists whose cards these topics include."""
    return {c.name for c in CATEGORIES if set(c.topics) & topics}


def disagreement(
    resources: list[dict[str, Any]], patient: str, found: dict[str, set[str]], as_of: date
) -> str | None:
    """Why the lists disagree with what evaluate shows for this patient, or None."""
    cards = evaluate("patient-view", resources, patient, as_of=as_of).response["cards"]
    expected = categories_shown(card_topics(cards))
    listed = {name for name, patients in found.items() if f"Patient/{patient}" in patients}
    if listed - expected:
        return f"{patient}: listed in {sorted(listed - expected)} without its card"
    if expected - listed - NARROWED:
        return f"{patient}: its card shows but it is not in {sorted(expected - listed)}"
    return None
