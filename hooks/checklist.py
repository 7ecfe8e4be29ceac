"""The care checklist: at patient-view the reminders of a chart-open become items of one
card, so that routine care never takes five cards (DESIGN, "What a clinician sees when
the chart opens"). Decisions keep their own cards. With ``reminders = "cards"`` (for EHRs
that persist overrides per topic) each reminder stays a card of its own."""

from __future__ import annotations

from .knowledge import Words
from .recommendation import Recommendation

WORDS = Words("hooks", "words", "checklist.json")
TOPIC = "aatd-care-checklist"
# The reminder topics, most important first (the summary names the first one due).
REMINDERS = (
    "liver-monitoring",
    "spirometry-due",
    "smoking-status-unknown",
    "vaccinations-due",
    "family-testing",
)


def gather(found: list[Recommendation]) -> list[Recommendation]:
    """``found`` with its reminders replaced by one checklist card (placed where the first
    reminder was); unchanged when there is no reminder."""
    items = sorted(
        (r for r in found if r.topic in REMINDERS), key=lambda r: REMINDERS.index(r.topic)
    )
    if not items:
        return found
    first = WORDS(f"items.{items[0].topic}")
    summary = (
        WORDS("summary_more", first=first, more=len(items) - 1)
        if len(items) > 1
        else WORDS("summary_one", first=first)
    )
    evidence = tuple(dict.fromkeys(e for item in items for e in item.evidence))
    checklist = Recommendation(
        topic=TOPIC,
        summary=summary,
        advice=WORDS("advice"),
        evidence=evidence,
        items=tuple(items),
    )
    place = next(i for i, r in enumerate(found) if r.topic in REMINDERS)
    kept = [r for r in found if r.topic not in REMINDERS]
    return [*kept[:place], checklist, *kept[place:]]
