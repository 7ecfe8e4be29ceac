"""What fired a patient-view: Epic reuses the hook for triggers other than opening the chart.

Epic names the trigger in the request's ``extension`` (``com.epic.cdshooks.request.
bpa-trigger-action``; "60" is "open patient chart", cds-hooks-notes). Reminders are for a
chart-open: fired by another trigger (a section opened, a form signed) they would show the
same checklist again in the middle of other work. Such a call decides the rest as usual;
the reminders are left out unless ``other_trigger_reminders = "show"``. A call without the
extension (every other EHR) is a chart-open.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hooks.checklist import REMINDERS

from .config import Settings

EPIC_TRIGGER = "com.epic.cdshooks.request.bpa-trigger-action"


def trigger_action(body: Mapping[str, Any]) -> str | None:
    """The Epic trigger action of the request (its ``extension``, or its context's)."""
    for holder in (body, body.get("context") or {}):
        extension = holder.get("extension")
        if isinstance(extension, Mapping) and extension.get(EPIC_TRIGGER) is not None:
            return str(extension[EPIC_TRIGGER])
    return None


def topics_off(body: Mapping[str, Any], hook: str, settings: Settings) -> frozenset[str]:
    """The topics this call does not decide: the reminders, for a patient-view fired by
    another trigger than opening the chart (unless the setting shows them)."""
    if hook != "patient-view" or settings.other_trigger_reminders == "show":
        return frozenset()
    action = trigger_action(body)
    if action is None or action in settings.chart_open_trigger_actions:
        return frozenset()
    return frozenset(REMINDERS)
