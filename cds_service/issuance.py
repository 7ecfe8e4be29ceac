"""The record of every card a hook call decided, for feedback, the report and the audit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from flask import g, request

from . import logs, tracing
from .audit import audit_event, content_hash, knowledge_version
from .services import SERVICES
from .store import Audit, IssuedCard


def issued_cards(
    response: Mapping[str, Any],
    service: str,
    hook_instance: str,
    patient_key: str | None,
    context: Mapping[str, Any] | None = None,
) -> list[IssuedCard]:
    """``context``: the audit fields of the call (``user_key``, ``encounter_key``,
    ``client_iss``, ``client_tenant``, ``shown``); each card adds its content hash and the
    knowledge version it was decided on."""
    now = datetime.now(UTC)
    audit = dict(context or {})
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
            audit=Audit(
                user_key=audit.get("user_key"),
                encounter_key=audit.get("encounter_key"),
                client_iss=audit.get("client_iss"),
                client_tenant=audit.get("client_tenant"),
                knowledge_version=knowledge_version(),
                content_hash=content_hash(card),
                shown=audit.get("shown", True),
            ),
        )
        for card in response["cards"]
    ]


def audit_line(
    status: int, user_key: str | None, shown: Sequence[str] = (), silent: Sequence[str] = ()
) -> None:
    """One line per hook call, shaped as a FHIR AuditEvent (audit.py), for a SIEM."""
    service = (request.view_args or {}).get("service_id", "")
    hook = SERVICES[service].hook if service in SERVICES else ""
    trace = tracing.current()
    event = audit_event(
        hook=hook,
        service=service,
        status=status,
        client={"iss": g.get("client"), "tenant": g.get("tenant")},
        patient_key=g.get("alpha1_patient_key"),
        user_key=user_key,
        cards=[*shown, *silent],
        silent=set(silent),
        request_id=trace.request_id if trace else None,
    )
    logs.event("audit", auditEvent=event)
