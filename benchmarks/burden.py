"""Alert burden at chart-open: ``python -m benchmarks.burden [--reminders cards] [--json]``.

Evaluates every fixture patient at patient-view (the same mapping, rules and rendering as
the service) and prints the cards per chart-open (mean, max, distribution), how many of
the reminders shown are gathered in the care checklist, and every suggestion whose
resource carries no code (with the reason from fhir_mappings/data/order_codes.json).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import Counter
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

from cds_service.pipeline import evaluate
from fhir_mappings.fhirjson import bundle_resources
from hooks import Policy
from hooks.checklist import REMINDERS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "patients"
AS_OF = date(2026, 11, 21)  # the fixtures' dates are relative to this day
CHECKLIST = "urn:alpha1-cds:checklist"
LIST = "aatd-care-checklist"


def chart_opens(reminders: str = "checklist") -> dict[str, list[dict[str, Any]]]:
    """Fixture name -> the cards its chart-open shows."""
    policy = replace(Policy(), reminders=reminders)
    found = {}
    for path in sorted(FIXTURES.glob("*.json")):
        resources = list(bundle_resources(json.loads(path.read_text(encoding="utf-8"))))
        patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
        result = evaluate("patient-view", resources, patient, policy, as_of=AS_OF)
        found[path.stem] = result.response["cards"]
    return found


def uncoded(card: dict[str, Any]) -> list[str]:
    """Labels of the card's suggestions whose resource has no coding."""
    labels = []
    for suggestion in card.get("suggestions", []):
        for action in suggestion["actions"]:
            resource = action.get("resource") or {}
            concept = resource.get("code") or resource.get("medicationCodeableConcept") or {}
            if action["type"] == "create" and not concept.get("coding"):
                labels.append(suggestion["label"])
    return labels


# A FHIR id as it would show in card text: "Observation/abc-1" (a resource type the
# service reads, a slash, an id).
RESOURCE_TYPES = (
    "Patient|Observation|Condition|Procedure|MedicationRequest|MedicationStatement|"
    "MedicationAdministration|Medication|AllergyIntolerance|Immunization|FamilyMemberHistory"
)
RAW_ID = re.compile(rf"\b(?:{RESOURCE_TYPES})/[A-Za-z0-9.\-]{{1,64}}")
RULE = "\n---\n"


def reading(cards: list[dict[str, Any]]) -> dict[str, Any]:
    """What a clinician reads: detail words above the rule (the part that decides) and in
    all, raw FHIR ids in summary or detail, suggestions and links per card."""
    above = [len(c["detail"].split(RULE)[0].split()) for c in cards]
    total = [len(c["detail"].split()) for c in cards]
    return {
        "detail_words_above_rule": {"median": statistics.median(above), "max": max(above)},
        "detail_words": {"median": statistics.median(total), "max": max(total)},
        "raw_ids_in_text": sum(len(RAW_ID.findall(c["summary"] + c["detail"])) for c in cards),
        "suggestions_per_card_max": max(len(c.get("suggestions", [])) for c in cards),
        "links_per_card_max": max(len(c.get("links", [])) for c in cards),
    }


def measure(reminders: str = "checklist") -> dict[str, Any]:
    opens = chart_opens(reminders)
    counts = {name: len(cards) for name, cards in opens.items()}
    items = sum(
        len(card.get("extension", {}).get(CHECKLIST, []))
        for cards in opens.values()
        for card in cards
    )
    reminder_cards = sum(
        1
        for cards in opens.values()
        for card in cards
        if card["source"]["topic"]["code"] in REMINDERS
    )
    checklists = sum(
        1 for cards in opens.values() for card in cards if card["source"]["topic"]["code"] == LIST
    )
    without_code = Counter(label for cards in opens.values() for c in cards for label in uncoded(c))
    return {
        "reminders": reminders,
        "chart_opens": len(counts),
        "cards": sum(counts.values()),
        "mean": round(statistics.mean(counts.values()), 2),
        "max": max(counts.values()),
        "distribution": dict(sorted(Counter(counts.values()).items())),
        "most": sorted(counts, key=counts.__getitem__, reverse=True)[:3],
        "decision_cards": sum(counts.values()) - checklists - reminder_cards,
        "checklist_cards": checklists,
        "reminders_in_checklist": items,
        "reminder_cards": reminder_cards,
        "suggestions_without_code": dict(without_code.most_common()),
        **reading([card for cards in opens.values() for card in cards]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reminders", choices=("checklist", "cards"), default="checklist")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    found = measure(args.reminders)
    if args.json:
        print(json.dumps(found, indent=2))
        return
    print(f"alert burden over {found['chart_opens']} fixture chart-opens ({args.reminders}):")
    print(f"  cards: {found['cards']}, mean {found['mean']}, max {found['max']}")
    print(f"  cards per chart-open -> patients: {found['distribution']}")
    print(f"  most cards: {', '.join(found['most'])}")
    print(
        f"  of the cards: {found['decision_cards']} decisions, {found['checklist_cards']} care "
        f"checklists, {found['reminder_cards']} reminders of their own"
    )
    print(
        f"  reminders: {found['reminders_in_checklist']} as checklist items, "
        f"{found['reminder_cards']} as cards of their own"
    )
    above, words = found["detail_words_above_rule"], found["detail_words"]
    print(
        f"  detail words above the rule: median {above['median']}, max {above['max']}"
        f" (all: median {words['median']}, max {words['max']})"
    )
    print(
        f"  raw FHIR ids in card text: {found['raw_ids_in_text']}; per card at most"
        f" {found['suggestions_per_card_max']} suggestions, {found['links_per_card_max']} links"
    )
    print("  suggestions without a code (reasons in fhir_mappings/data/order_codes.json):")
    for label, n in found["suggestions_without_code"].items():
        print(f"    {n:4d}  {label}")


if __name__ == "__main__":
    main()
