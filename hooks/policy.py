"""Policy: the choices where guidelines differ, set by configuration (README "Policy").

The FEV1 window profile (``a1f-2016`` by default, ``cts-2012`` selectable), the lookback
windows after which a result is stale, and the AAT grey zone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from fhir_mappings import Lookbacks
from fhir_mappings.aat import constants

from .knowledge import read_json, thresholds, topics

INDICATORS = ("info", "warning", "critical")  # CDS Hooks, lowest first


@dataclass(frozen=True, slots=True)
class Fev1Window:
    """FEV1 % predicted bounds: recommend up to ``recommend_max``; consider up to
    ``consider_max`` (None: no upper bound, discuss); below ``lower`` a specialist decides."""

    profile: str
    label: str
    recommend_max: float
    consider_max: float | None
    minimum: float | None
    source: str

    @property
    def lower(self) -> float:
        """The FEV1 % predicted below which augmentation is a specialist decision: the
        profile's own minimum, else the advanced-disease threshold. One bound, read by the
        rule and by the SMART app's chart."""
        if self.minimum is not None:
            return self.minimum
        return thresholds().fev1_advanced_disease_percent


@cache
def fev1_windows() -> dict[str, Fev1Window]:
    return {
        name: Fev1Window(
            name, e["label"], e["recommend_max"], e["consider_max"], e.get("min"), e["source"]
        )
        for name, e in read_json("data", "policy.json").items()
    }


DEFAULT_FEV1_WINDOW = "a1f-2016"
# Reminders at patient-view: one care-checklist card (default) or a card per reminder, for
# EHRs that persist overrides per topic.
REMINDER_STYLES = ("checklist", "cards")


@dataclass(frozen=True, slots=True)
class Policy:
    fev1_window: str = DEFAULT_FEV1_WINDOW
    lookbacks: Lookbacks = field(default_factory=Lookbacks)
    aat_grey_zone_mg_dl: tuple[float, float] = field(
        default_factory=lambda: constants().grey_zone_mg_dl
    )
    reminders: str = REMINDER_STYLES[0]
    # A site's display choices (README "Going live"): topics not decided at all; topics
    # decided and recorded but not shown (silent); the lowest indicator per topic.
    topics_off: frozenset[str] = frozenset()
    silent_topics: frozenset[str] = frozenset()
    indicator_floor: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.fev1_window not in fev1_windows():
            raise ValueError(f"fev1_window must be one of {', '.join(fev1_windows())}")
        if self.reminders not in REMINDER_STYLES:
            raise ValueError(f"reminders must be one of {', '.join(REMINDER_STYLES)}")
        low, high = self.aat_grey_zone_mg_dl
        if not 0 <= low < high:
            raise ValueError("aat_grey_zone_mg_dl must be two increasing values")
        named = {*self.topics_off, *self.silent_topics, *(t for t, _ in self.indicator_floor)}
        unknown = named - topics().keys()
        if unknown:
            raise ValueError(f"unknown topic(s): {', '.join(sorted(unknown))}")
        levels = {level for _, level in self.indicator_floor} - set(INDICATORS)
        if levels:
            raise ValueError(f"indicator floors must be one of {', '.join(INDICATORS)}")

    def indicator(self, topic: str, indicator: str) -> str:
        """``indicator``, raised to the topic's floor when the site set one (never lowered:
        a critical card stays critical)."""
        floor = dict(self.indicator_floor).get(topic)
        if floor is None or INDICATORS.index(indicator) >= INDICATORS.index(floor):
            return indicator
        return floor

    @property
    def window(self) -> Fev1Window:
        return fev1_windows()[self.fev1_window]
