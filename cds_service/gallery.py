"""``alpha1-cds cards``: every card the sample patients produce, on one page.

What a hospital's CDS committee reviews before switching the service on: each card as an
EHR shows it (indicator, summary, the detail's Markdown rendered, the suggestion buttons,
the links), grouped by topic, from the same pipeline as the service. One self-contained
HTML file: inline CSS, no script, no request to anywhere.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup

from fhir_mappings.fhirjson import bundle_resources
from hooks.knowledge import topics

from .html_pages import render_page
from .pipeline import evaluate

# CommonMark with tables (the medical-necessity statement), and raw HTML off: card text
# holds words from the record, which must show as text, never run as markup.
MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


@dataclass(frozen=True, slots=True)
class Shown:
    """One card as a patient's chart-open showed it."""

    patient: str
    card: dict[str, Any]

    @property
    def detail(self) -> Markup:
        return Markup(MARKDOWN.render(self.card["detail"]))  # noqa: S704 (escaped by markdown-it)


def cards_by_topic(patients: Path, as_of: date) -> dict[str, list[Shown]]:
    """Topic -> every card of that topic over the patients' chart-opens, in topic order."""
    found: dict[str, list[Shown]] = defaultdict(list)
    for path in sorted(patients.glob("*.json")):
        resources = list(bundle_resources(json.loads(path.read_text(encoding="utf-8"))))
        patient = next(r["id"] for r in resources if r.get("resourceType") == "Patient")
        for card in evaluate("patient-view", resources, patient, as_of=as_of).response["cards"]:
            found[card["source"]["topic"]["code"]].append(Shown(path.stem, card))
    order = list(topics())
    return dict(sorted(found.items(), key=lambda item: order.index(item[0])))


def render(by_topic: dict[str, list[Shown]], as_of: date, patients: Iterable[str]) -> str:
    return render_page(
        "gallery.html",
        by_topic=by_topic,
        topics=topics(),
        as_of=as_of,
        patients=sorted(patients),
        total=sum(len(shown) for shown in by_topic.values()),
    )


def write_gallery(patients: Path, output: Path, as_of: date) -> int:
    """The page for every patient Bundle in ``patients``; the number of cards shown."""
    by_topic = cards_by_topic(patients, as_of)
    names = [path.stem for path in patients.glob("*.json")]
    output.write_text(render(by_topic, as_of, names), encoding="utf-8")
    return sum(len(shown) for shown in by_topic.values())
