"""Periods on A1PI augmentation or immune globulin replacement, for the SMART app's time axis.

The hook queries fetch only current orders (the rules decide on what is active now); the
app asks for every status and reads here when each order or statement ran. Products are
recognised exactly as the rules recognise them (``medications.product_of``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from .facts import Source
from .fhirjson import Json, as_dict, concept_text, parse_date
from .medications import medication_concept, product_of

# Records that say the therapy never ran or the record was a mistake: not a period.
NOT_GIVEN = frozenset({"entered-in-error", "cancelled", "draft", "not-taken", "unknown"})
ONGOING = frozenset({"active", "on-hold", "intended", "in-progress"})
READ_FROM = ("MedicationRequest", "MedicationStatement")


@dataclass(frozen=True, slots=True)
class TherapyPeriod:
    """One order or statement of a therapy: from ``start`` to ``end`` (None: still going)."""

    product: str  # "a1pi" | "immune_globulin"
    text: str
    start: date
    end: date | None
    status: str
    source: Source


def therapy_periods(resources: Iterable[Json], as_of: date) -> list[TherapyPeriod]:
    """Every period with a known start, oldest first; records without a start are skipped
    (a bar needs a start; the cards still see such orders)."""
    listed = [r for r in resources if isinstance(r, dict)]
    medications: dict[str, Json] = {
        r["id"]: r for r in listed if r.get("resourceType") == "Medication" and "id" in r
    }
    periods = []
    for resource in listed:
        if resource.get("resourceType") not in READ_FROM:
            continue
        period = _period(resource, medications, as_of)
        if period is not None:
            periods.append(period)
    return sorted(periods, key=lambda p: p.start)


def _period(resource: Json, medications: dict[str, Json], as_of: date) -> TherapyPeriod | None:
    status = str(resource.get("status", ""))
    if status in NOT_GIVEN:
        return None
    concept = medication_concept(resource, medications)
    product = product_of(concept)
    if product is None:
        return None
    start, end = _when(resource)
    if start is None:
        return None
    if end is None and status not in ONGOING:
        end = start  # completed or stopped with no end date: known to have run, not how long
    if end is not None and end > as_of:
        end = None
    source = Source(f"{resource['resourceType']}/{resource.get('id', '(no id)')}", start, status)
    return TherapyPeriod(product, concept_text(concept) or product, start, end, status, source)


def _when(resource: Json) -> tuple[date | None, date | None]:
    period: Any = (
        resource.get("effectivePeriod")
        or as_dict(resource.get("dispenseRequest")).get("validityPeriod")
        or {}
    )
    start = parse_date(as_dict(period).get("start"))
    end = parse_date(as_dict(period).get("end"))
    single = parse_date(resource.get("effectiveDateTime") or resource.get("authoredOn"))
    return start or single, end
