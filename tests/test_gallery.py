"""``alpha1-cds cards``: the page a CDS committee reviews, opened in a real browser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cds_service.cli import main

from .support.browser import chromium
from .support.builders import FIXTURES

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("gallery") / "cards.html"
    argv = ["cards", "--output", str(output), "--date", "2026-11-21"]
    assert main([*argv, "--patients", str(FIXTURES / "patients")]) == 0
    return output


def test_every_card_of_every_sample_patient_is_on_the_page_grouped_by_topic(gallery):
    page = gallery.read_text(encoding="utf-8")
    assert page.count('<article class="card') == 170
    assert '<h2 id="augmentation-candidate">' in page
    assert page.count("<hr />") + page.count("<hr>") == 170  # each detail rendered, its rule too
    assert "<script" not in page
    assert "**" not in page.split("<body>")[1]  # the detail's Markdown is rendered


def test_record_words_on_the_page_are_text_never_markup(tmp_path):
    """A record's words reach card text: they are escaped, never run as HTML."""
    import json

    bundle = json.loads((FIXTURES / "patients" / "testing-copd-untested.json").read_text())
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "Condition":
            entry["resource"]["code"]["text"] = "<img src=x onerror=alert(1)> COPD"
    folder = tmp_path / "patients"
    folder.mkdir()
    (folder / "one.json").write_text(json.dumps(bundle))
    output = tmp_path / "cards.html"
    argv = ["cards", "--patients", str(folder), "--output", str(output), "--date", "2026-11-21"]
    assert main(argv) == 0
    page = output.read_text(encoding="utf-8")
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def test_the_page_opens_in_a_browser_as_a_clinician_would_read_it(gallery, browser):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(gallery.as_uri(), wait_until="load")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "gallery-top.png"))
    candidate = page.locator("#augmentation-candidate + article")
    candidate.scroll_into_view_if_needed()
    candidate.screenshot(path=str(ARTIFACTS / "gallery-candidate-card.png"))
    assert page.locator("article.card").count() == 170
    assert candidate.locator(".summary").inner_text().startswith("Start A1PI augmentation")
    assert candidate.locator(".detail hr").count() == 1  # the rule between deciding and why
    assert candidate.locator(".buttons button").count() >= 4  # one order per product
    page.close()
