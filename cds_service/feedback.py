"""CDS Hooks 2.0 feedback: ``{"feedback": [...]}`` in, stored once, counted back.

Tolerates what Epic sends: the plural ``overrideReasons`` (an object or a list), and
override reasons carried only in ``extension`` (``com.epic.cdshooks.feedback.overrideReason.*``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fhir_mappings.fhirjson import as_dict, as_list

from .errors import Issue
from .store import FEEDBACK, SNOOZES, FeedbackEntry

EPIC_REASON = "com.epic.cdshooks.feedback.overrideReason."


def entries(body: Mapping[str, Any]) -> list[FeedbackEntry]:
    """Feedback entries of a body already valid against the feedback schema."""
    return [_entry(item) for item in body["feedback"]]


def _entry(item: Mapping[str, Any]) -> FeedbackEntry:
    reason = _override_reason(item)
    coding = as_dict(reason.get("reason"))
    epic = _epic_reason(as_dict(item.get("extension")))
    return FeedbackEntry(
        card_uuid=item["card"],
        outcome=item["outcome"],
        outcome_timestamp=normalised_instant(item["outcomeTimestamp"]),
        accepted_suggestions=tuple(s["id"] for s in item.get("acceptedSuggestions", [])),
        override_code=_text(coding.get("code")) or epic.get("code"),
        override_display=_text(coding.get("display")) or epic.get("display"),
        user_comment=_text(reason.get("userComment")),
        items=tuple(_checklist_items(as_dict(item.get("extension")))),
    )


def unstorable(received: list[FeedbackEntry]) -> list[Issue]:
    """What the store's columns cannot hold, field by field: a value longer than its
    column, or a NUL character (PostgreSQL refuses it in text). Said as a 400 naming the
    field, before anything is stored: a 503 would have the EHR retry for ever."""
    limits = {
        "card": _length(FEEDBACK.c.card_uuid),
        "overrideReason.reason.code": _length(FEEDBACK.c.override_code),
        "overrideReason.reason.display": _length(FEEDBACK.c.override_display),
        "extension.urn:alpha1-cds:checklist": _length(SNOOZES.c.topic),
    }
    issues = []
    for index, entry in enumerate(received):
        fields: dict[str, list[str | None]] = {
            "card": [entry.card_uuid],
            "acceptedSuggestions.id": list(entry.accepted_suggestions),
            "overrideReason.reason.code": [entry.override_code],
            "overrideReason.reason.display": [entry.override_display],
            "overrideReason.userComment": [entry.user_comment],
            "extension.urn:alpha1-cds:checklist": list(entry.items),
        }
        for field, values in fields.items():
            why = _why_unstorable([v for v in values if v is not None], limits.get(field))
            if why:
                issues.append(Issue("invalid", f"{field} {why}", f"feedback[{index}].{field}"))
    return issues


def _length(column: Any) -> int | None:
    """The length a String column declares (None for Text)."""
    return getattr(column.type, "length", None)


def _why_unstorable(values: list[str], limit: int | None) -> str | None:
    if any("\x00" in value for value in values):
        return "holds a NUL character"
    if limit is not None and any(len(value) > limit for value in values):
        return f"is longer than {limit} characters"
    return None


CHECKLIST_ITEMS = "urn:alpha1-cds:checklist"


def _checklist_items(extension: Mapping[str, Any]) -> list[str]:
    """An override of some checklist items only: ``extension`` ``urn:alpha1-cds:checklist``
    names them, by topic or by the uuid of one of their suggestions."""
    named = extension.get(CHECKLIST_ITEMS)
    return [value for value in named if isinstance(value, str)] if isinstance(named, list) else []


def _override_reason(item: Mapping[str, Any]) -> Mapping[str, Any]:
    reason = item.get("overrideReason", item.get("overrideReasons"))
    listed = as_list(reason)
    return as_dict(listed[0]) if listed else {}


def _epic_reason(extension: Mapping[str, Any]) -> dict[str, str]:
    """Epic-built acknowledgement reasons, sent as extension members."""
    found = {
        key.removeprefix(EPIC_REASON): value
        for key, value in extension.items()
        if key.startswith(EPIC_REASON)
    }
    code = _text(found.get("reasonCategory")) or _text(found.get("reasonTitle"))
    display = _text(found.get("reasonDisplay")) or _text(found.get("reasonTitle"))
    return {k: v for k, v in (("code", code), ("display", display)) if v}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value)
    return text.strip()[:500] or None


def normalised_instant(text: str) -> str:
    """One spelling per instant (UTC, milliseconds), so that "...Z", "....000Z" and the same
    moment at "+01:00" are one feedback entry, not three. Unreadable text is kept as sent
    (the schema has already checked it is a date-time)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        utc = moment.astimezone(UTC)
    except (ValueError, OverflowError):  # e.g. year 1 at +01:00 is before year 1 in UTC
        return text
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")
