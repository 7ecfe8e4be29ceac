"""The FEV1 course: its yearly decline, stated with the method and the data it rests on.

Descriptive only: no rule reads it, and no threshold turns it into advice (the reference
deliberately excludes "rapid decliner" definitions: there is no accepted number). It is
computed only from enough data to mean something: at least MIN_VALUES post-bronchodilator
FEV1 volumes spanning at least MIN_SPAN_YEARS (the least the SMART app's specification
set for a trend); fewer or pre-bronchodilator values give no figure, and the app says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from fhir_mappings import Measurement, PatientFacts

MIN_VALUES = 3
MIN_SPAN_YEARS = 2.0
DAYS_PER_YEAR = 365.25


@dataclass(frozen=True, slots=True)
class Decline:
    """Least-squares slope of FEV1 (mL) against time (years); positive: a loss per year."""

    ml_per_year: float
    values: int
    first: date
    last: date


@dataclass(frozen=True, slots=True)
class NoDecline:
    """Why no decline can be given (post-bronchodilator values on record, and their span)."""

    values: int
    span_years: float


def fev1_decline(facts: PatientFacts) -> Decline | NoDecline:
    points = _post_bronchodilator_volumes(facts.series("fev1_volume"))
    if not points:
        return NoDecline(0, 0.0)
    first, last = points[0][0], points[-1][0]
    span = (last - first).days / DAYS_PER_YEAR
    if len(points) < MIN_VALUES or span < MIN_SPAN_YEARS:
        return NoDecline(len(points), round(span, 1))
    years = [(when - first).days / DAYS_PER_YEAR for when, _ in points]
    millilitres = [litres * 1000 for _, litres in points]
    mean_x, mean_y = sum(years) / len(years), sum(millilitres) / len(millilitres)
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in zip(years, millilitres, strict=True))
    variance = sum((x - mean_x) ** 2 for x in years)
    return Decline(round(-covariance / variance), len(points), first, last)


def _post_bronchodilator_volumes(series: list[Measurement]) -> list[tuple[date, float]]:
    """Post-bronchodilator FEV1 in litres with a date, oldest first; one per day."""
    by_day: dict[date, float] = {}
    for value in series:
        if value.post_bronchodilator and value.source.date and value.comparator is None:
            by_day.setdefault(value.source.date, value.value)
    return sorted(by_day.items())
