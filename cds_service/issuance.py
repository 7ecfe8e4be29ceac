"""The record of every card a hook call issued, for feedback and the report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .store import IssuedCard


def issued_cards(
    response: dict[str, Any], service: str, hook_instance: str, patient_key: str | None
) -> list[IssuedCard]:
    now = datetime.now(UTC)
    return [
        IssuedCard(
            card_uuid=card["uuid"],
            service=service,
            topic=card["source"]["topic"]["code"],
            indicator=card["indicator"],
            suggestion_uuids=tuple(s["uuid"] for s in card.get("suggestions", [])),
            hook_instance=hook_instance,
            patient_key=patient_key,
            issued_at=now,
            item_topics=tuple(
                (item["topic"], tuple(item.get("suggestions", ())))
                for item in card.get("extension", {}).get("urn:alpha1-cds:checklist", [])
            ),
        )
        for card in response["cards"]
    ]
