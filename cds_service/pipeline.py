"""Resources -> facts -> recommendations -> response: the one path every caller shares.

The HTTP route and ``alpha1-cds evaluate`` both come through here, so the offline tool
shows exactly what an EHR would get.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import hooks
from fhir_mappings import map_patient
from fhir_mappings.fhirjson import bundle_resources
from hooks import Policy

from .cards import render_response
from .timing import elapsed_ms


@dataclass(slots=True)
class Evaluation:
    response: dict[str, Any]
    topics: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    # Records on the chart that could not be read: concept -> how many (no values: this
    # goes to the log line), and the notes themselves for the command line.
    unread: dict[str, int] = field(default_factory=dict)
    unread_notes: list[str] = field(default_factory=list)
    # Why the rest was not shown: suppressed and hidden topics, every judgement (--explain).
    explanation: hooks.Explanation | None = None
    # Cards decided but not shown (silent mode): recorded, never answered.
    silent_cards: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """For the log line: how many topics were suppressed or hidden (no patient data)."""
        if self.explanation is None:
            return {}
        return {
            "suppressed": len(self.explanation.suppressed),
            "hidden": len(self.explanation.hidden),
            "off": len(self.explanation.off),
            "silent": len(self.silent_cards),
        }


def evaluate(
    hook: str,
    resources: list[dict[str, Any]],
    patient_id: str,
    policy: Policy | None = None,
    as_of: date | None = None,
    incomplete: Iterable[str] = (),
    drafts: Mapping[str, bool] | None = None,
    hidden: frozenset[str] = frozenset(),
    app_url: str | None = None,
    off: frozenset[str] = frozenset(),
) -> Evaluation:
    """``drafts``: the hook's draft orders (``MedicationRequest/x``), True when under review;
    ``hidden``: topics a clinician overrode for this patient, within their period;
    ``app_url``: the SMART app's launch URL for the cards' links; ``off``: topics this call
    does not decide (beside the policy's), e.g. reminders for a non-chart-open trigger."""
    policy = policy or Policy()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    facts = map_patient(resources, as_of or today(), incomplete, policy.lookbacks, drafts)
    timings["map"] = elapsed_ms(started)
    started = time.perf_counter()
    explanation = hooks.explain(hook, facts, policy, hidden, off)
    recommendations = explanation.recommendations
    timings["rules"] = elapsed_ms(started)
    started = time.perf_counter()
    orders = _by_reference(resources)
    response = render_response(recommendations, patient_id, orders, app_url)
    silent = render_response(explanation.silent, patient_id, orders, app_url)["cards"]
    timings["render"] = elapsed_ms(started)
    unread = {concept: len(notes) for concept, notes in sorted(facts.unreadable.items())}
    notes = [note.text for found in facts.unreadable.values() for note in found]
    topics = [r.topic for r in recommendations]
    return Evaluation(response, topics, timings, unread, notes, explanation, silent)


def today() -> date:
    """The date results are judged against (one place, so tests can pin it)."""
    return date.today()


def _by_reference(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Orders as the EHR sent them, for suggestions that update them."""
    return {
        f"{r['resourceType']}/{r['id']}": r
        for r in resources
        if r.get("resourceType") == "MedicationRequest" and isinstance(r.get("id"), str)
    }


def draft_orders(
    bundle: Mapping[str, Any] | None, selections: Iterable[str] | None
) -> tuple[list[dict[str, Any]], dict[str, bool]]:
    """Resources of ``context.draftOrders`` and which orders are under review.

    order-select reviews the ``selections`` only (the other drafts are context); order-sign
    (``selections`` None) reviews every draft. Medication resources in the Bundle come
    along, so that a ``medicationReference`` resolves.
    """
    resources = list(bundle_resources(bundle or {}))
    chosen = None if selections is None else set(selections)
    drafts = {
        f"{r['resourceType']}/{r['id']}": chosen is None
        or f"{r['resourceType']}/{r['id']}" in chosen
        for r in resources
        if r["resourceType"] in ("MedicationRequest", "MedicationStatement")
        and isinstance(r.get("id"), str)
    }
    return resources, drafts
